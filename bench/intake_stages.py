"""Where a submission's CPU goes, stage by stage, in one process (no HTTP, no gunicorn):
ours beside the bare reference's three steps, best of ``--rounds`` so that a busy machine
shows less (CPU time, not wall time: waits for MariaDB and Redis are not counted).

    .venv/bin/python -m bench.intake_stages [--reports 400] [--rounds 5]

The whole request through Flask's test client is timed too, for ours and the reference:
the difference between it and the stages' sum is the framework's share. Needs MariaDB
and Redis on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
import uuid
from collections import defaultdict
from datetime import datetime

import redis

from bench import intake
from bench.machine import yardstick
from queueing import counters
from queueing.contract import put_report_job
from schemas.metabase import decode_report
from schemas.translate import index_columns, metabase_to_v3
from storage.engine import create_engine
from storage.reports import store_report
from tests import captures

REDIS_URL = f"redis://127.0.0.1:6379/{intake.REDIS_DB}"
RECEIVED = datetime(2026, 12, 7)


def fresh_bodies(count: int) -> list[bytes]:
    recorded = captures.load(intake.SCENARIO)[0]
    original = json.loads(recorded.body)["metadata"]["core"]["guid"].encode()
    return [recorded.body.replace(original, str(uuid.uuid4()).encode()) for _ in range(count)]


def ours_stages(bodies, engine, connection) -> dict[str, float]:
    spent: dict[str, float] = defaultdict(float)
    for body in bodies:
        marks = [time.process_time()]
        report = decode_report(body)
        marks.append(time.process_time())
        doc = metabase_to_v3(report, RECEIVED, "CPAN Tester", "tester@example.com")
        row = {"guid": report.guid, "created": RECEIVED, "state": "pending", "creator": "x",
               "submission_sha256": report.sha256, "report": doc, **index_columns(doc)}  # fmt: skip
        marks.append(time.process_time())
        store_report(engine, row)
        marks.append(time.process_time())
        put_report_job(connection, report.guid, count_as=counters.SUBMITTED)
        marks.append(time.process_time())
        for name, start, end in zip(
            ("decode", "translate", "pack + INSERT + COMMIT", "enqueue"), marks, marks[1:], strict=False
        ):
            spent[name] += end - start
    return spent


def reference_stages(bodies, db, queue) -> dict[str, float]:
    spent: dict[str, float] = defaultdict(float)
    for body in bodies:
        marks = [time.process_time()]
        guid = json.loads(body)["metadata"]["core"]["guid"]
        marks.append(time.process_time())
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO reference_report (guid, body) VALUES (%s, %s)", (guid, body.decode()))
        db.commit()
        marks.append(time.process_time())
        queue.enqueue("workers.jobs.process_report", guid, job_id=f"ref-{guid}")
        marks.append(time.process_time())
        for name, start, end in zip(("json.loads", "INSERT + COMMIT", "enqueue"), marks, marks[1:], strict=False):
            spent[name] += end - start
    return spent


def whole_requests(app, bodies) -> float:
    token = base64.b64encode(f"{captures.PROFILE_GUID}:{captures.PROFILE_SECRET}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/octet-stream"}
    client = app.test_client()
    started = time.process_time()
    for body in bodies:
        assert client.post(intake.SUBMIT_PATH, data=body, headers=headers).status_code == 201
    return time.process_time() - started


def best(rounds: int, measure) -> dict[str, float]:
    """Per stage, the smallest total over the rounds (the least disturbed)."""
    found: dict[str, float] = {}
    for _ in range(rounds):
        for name, value in measure().items():
            found[name] = min(found.get(name, float("inf")), value)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    intake.prepare_databases()
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    ours_url = f"mysql://root@127.0.0.1:3306/{intake.OURS_DB}"
    os.environ.update(DATABASE_URL=ours_url, REDIS_URL=REDIS_URL, LOG_LEVEL="WARNING", SPOOL_DIR="/tmp/bench-stages")
    os.environ["DATABASE_URL_REFERENCE"] = f"mysql://root@127.0.0.1:3306/{intake.REFERENCE_DB}"
    from wsgi import app as ours_app  # after the environment is set: the app reads it once

    os.environ["DATABASE_URL"] = os.environ["DATABASE_URL_REFERENCE"]
    from bench.reference_app import _state
    from bench.reference_app import app as reference_app
    from bench.reference_app import connection as reference_connection

    engine = create_engine(ours_url)
    db = reference_connection()

    n = args.reports
    print(f"yardstick: {yardstick()}")
    print(f"CPU per submission, best of {args.rounds} rounds of {n} (µs):")
    for label, measure in (
        ("ours", lambda: ours_stages(fresh_bodies(n), engine, connection)),
        ("reference", lambda: reference_stages(fresh_bodies(n), db, _state["queue"])),
    ):
        stages = best(args.rounds, measure)
        print(f"  {label}: " + ", ".join(f"{name} {1e6 * value / n:.0f}" for name, value in stages.items())
              + f"; sum {1e6 * sum(stages.values()) / n:.0f}")  # fmt: skip
    for label, app in (("ours", ours_app), ("reference", reference_app)):
        whole = best(args.rounds, lambda app=app: {"request": whole_requests(app, fresh_bodies(n))})["request"]
        print(f"  {label}: whole request through Flask's test client {1e6 * whole / n:.0f}")
    engine.dispose()
    db.close()
    intake.drop_databases()


if __name__ == "__main__":
    main()
