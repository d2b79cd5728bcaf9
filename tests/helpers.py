"""Small helpers the tests share: a registered profile, requests as the client sends them."""

from __future__ import annotations

import base64
import json
import uuid

import sqlalchemy as sa

from queueing.contract import SERIALIZER, job_id, report_queue
from storage import users
from storage.tables import test_report
from tests.captures import PROFILE_GUID, PROFILE_SECRET, Recorded, load

HOP_HEADERS = {"host", "content-length"}


def register_profile(engine, secret: str | None = PROFILE_SECRET, guid: str = PROFILE_GUID, name: str = "CPAN Tester"):
    users.register(engine, guid, name, "tester@example.com", secret)


def replay(client, recorded: Recorded, body: bytes | None = None):
    """Send a recorded request through the Flask test client with its own headers."""
    headers = [(k, v) for k, v in recorded.headers if k.lower() not in HOP_HEADERS]
    return client.open(
        recorded.path, method=recorded.method, data=body if body is not None else recorded.body, headers=headers
    )


def submit_captured(app, client, count: int = 1) -> list[str]:
    """Register the captured profile, then send the captured client's submission ``count``
    times, each under a new GUID, as the Perl client does; the GUIDs."""
    register_profile(services(app).engine)
    recorded = load("01-ok")[0]
    guids = []
    for _ in range(count):
        body, guid = with_new_guid(recorded.body)
        assert replay(client, recorded, body).status_code == 201
        guids.append(guid)
    return guids


def auth_header(guid: str = PROFILE_GUID, secret: str = PROFILE_SECRET) -> dict:
    token = base64.b64encode(f"{guid}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def with_new_guid(body: bytes) -> tuple[bytes, str]:
    """The same submission under a fresh report GUID (as a new client run would send)."""
    outer = json.loads(body)
    guid = str(uuid.uuid4())
    outer["metadata"]["core"]["guid"] = guid
    return json.dumps(outer).encode(), guid


def stored_rows(engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(test_report)).mappings())


def queued_job_ids(redis_connection) -> list[str]:
    return report_queue(redis_connection).get_job_ids()


def job_of(redis_connection, guid: str):
    from rq.job import Job

    return Job.fetch(job_id(guid), connection=redis_connection, serializer=SERIALIZER)


def services(app):
    """The per-process services (engine, Redis, spool, intake) of a test's app."""
    return app.extensions["cpantesters"]
