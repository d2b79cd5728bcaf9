"""Secrets as the real clients send them (capture 23): a submission is accepted when the
HTTP Basic credential bytes, read as UTF-8 or as Latin-1, equal the registered secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from storage import users
from tests import captures, processes
from tests.helpers import register_profile, replay, services, stored_rows

NON_ASCII = "23-non-ascii-secret"
FIXTURES = Path(__file__).parent / "fixtures"
NON_ASCII_GUID = "feb0fbd2-7f25-4ad1-a158-f3c2bb3e5383"


def basic(guid: str, secret: bytes) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(guid.encode() + b":" + secret).decode()}


def submit(client, headers: dict):
    body = captures.load("01-ok")[0].body
    return client.post(
        "/api/v1/submit/CPAN-Testers-Report",
        data=body,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


def test_capture_23_register_flow_goes_401_register_then_201(app, client):
    submit_first, head, register, resubmit = captures.load(NON_ASCII)
    assert replay(client, submit_first).status_code == 401
    assert replay(client, head).status_code == 404
    registered = replay(client, register)
    assert (registered.status_code, registered.json) == (200, {"message": "accepted"})
    final = replay(client, resubmit)
    assert (final.status_code, final.json) == (201, {"guid": final.json["guid"]})
    assert [r["guid"] for r in stored_rows(services(app).engine)] == [final.json["guid"]]


def test_capture_23_stores_the_secret_exactly_as_registered_without_repair(app, client):
    register = captures.load(NON_ASCII)[2]
    replay(client, register)
    registered_secret = "p\u00c3\u0083\u00c2\u00a4ssw\u00c3\u0083\u00c2\u00b6rd"
    check, _user = users.check_secret(services(app).engine, NON_ASCII_GUID, registered_secret)
    assert check is users.Check.OK


def test_capture_23_repairs_the_double_encoded_name(app, client):
    replay(client, captures.load(NON_ASCII)[2])
    with services(app).engine.connect() as conn:
        user = users.find_user(conn, NON_ASCII_GUID)
    assert user["fullname"] == "Jöhn Tëster"


def test_a_utf8_client_secret_is_accepted(app, client):
    register_profile(services(app).engine, secret="pässwörd")
    response = submit(client, basic(captures.PROFILE_GUID, "pässwörd".encode()))
    assert response.status_code == 201


def test_a_latin1_client_secret_is_accepted(app, client):
    register_profile(services(app).engine, secret="pässwörd")
    response = submit(client, basic(captures.PROFILE_GUID, "pässwörd".encode("latin-1")))
    assert response.status_code == 201


def test_a_repaired_reading_of_a_double_encoded_secret_is_refused(app, client):
    register_profile(services(app).engine, secret="p\u00c3\u0083\u00c2\u00a4ssw\u00c3\u0083\u00c2\u00b6rd")
    response = submit(client, basic(captures.PROFILE_GUID, "pässwörd".encode()))
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"


def test_a_wrong_non_ascii_secret_is_refused(app, client):
    register_profile(services(app).engine, secret="pässwörd")
    response = submit(client, basic(captures.PROFILE_GUID, "passwörd".encode("latin-1")))
    assert response.status_code == 401
    assert stored_rows(services(app).engine) == []


def test_credentials_that_are_no_text_at_all_are_refused_with_json(app, client):
    register_profile(services(app).engine)
    response = submit(client, {"Authorization": "Basic !!!not-base64"})
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"


def test_the_v3_api_accepts_a_latin1_secret(app, client):
    register_profile(services(app).engine, secret="pässwörd")
    report = json.loads((FIXTURES / "v3-perl5-valid.json").read_text())
    response = client.post(
        "/v3/report", json=report, headers=basic(captures.PROFILE_GUID, "pässwörd".encode("latin-1"))
    )
    assert response.status_code == 201, response.json


@pytest.mark.system
def test_capture_23_raw_bytes_over_a_socket_go_401_404_200_201(backend, tmp_path):
    scenario = captures.load(NON_ASCII)
    with processes.gunicorn(DATABASE_URL=backend.database_url, REDIS_URL=backend.redis_url, SPOOL_DIR=tmp_path) as port:
        statuses = [int(processes.send_raw(port, r.raw).split(b" ", 2)[1]) for r in scenario]
    assert statuses == [401, 404, 200, 201]


def test_a_spool_record_keeps_every_reading_of_the_secret():
    from intake.pipeline import Credentials

    credentials = Credentials(
        captures.PROFILE_GUID, ("pÃ¤sswÃ¶rd", "p\u00c3\u0083\u00c2\u00a4ssw\u00c3\u0083\u00c2\u00b6rd")
    )
    assert Credentials.from_record(credentials.to_record()) == credentials


def test_a_spool_record_written_before_the_readings_still_loads():
    from intake.pipeline import Credentials

    assert Credentials.from_record([captures.PROFILE_GUID, "s3cr3t"]).secrets == ("s3cr3t",)
