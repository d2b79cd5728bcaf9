"""The farm: real worker processes (``python -m workers.run``) against the real backends,
several at once on one release, with duplicate jobs, and one killed in the middle of a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from rq import Retry
from rq.registry import FailedJobRegistry, StartedJobRegistry

from queueing.contract import JOB_FUNCTION, JOB_TIMEOUT, enqueue_report, job_id, report_queue
from storage.tables import cpanstats, release_data, uploads
from tests.polling import wait_for
from tests.processing_helpers import (
    GRADES,
    PERLS,
    TESTERS,
    held_mid_transaction,
    recount,
    run_jobs,
    states,
    store,
    summary,
    table_count,
)

pytestmark = pytest.mark.system


ROOT = Path(__file__).resolve().parent.parent


def start_worker(backend, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": backend.database_url,
        "REDIS_URL": backend.redis_url,
        "LOG_LEVEL": "WARNING",
    }
    # Its own process group: the worker forks RQ's scheduler, and a power cut takes both.
    return subprocess.Popen([sys.executable, "-m", "workers.run", *extra], cwd=ROOT, env=env, start_new_session=True)


def power_cut(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and every process it started (its scheduler), as a power cut would."""
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def test_concurrent_workers_on_one_release_with_duplicate_jobs_count_every_report_once(backend, db):
    expected: dict[str, int] = dict.fromkeys(GRADES, 0)
    guids = []
    for i in range(90):
        grade = GRADES[i % 4]
        expected[grade] += 1
        guids.append(store(db, grade=grade, perl=PERLS[i % 3], tester=TESTERS[i % len(TESTERS)]))
    redis = backend.redis()
    queue = report_queue(redis)
    for guid in guids:
        enqueue_report(redis, guid)
    # The backlog tool's batch jobs for the same reports, overlapping: every report is
    # offered to the workers three times, in different orders.
    for start in range(0, 90, 15):
        queue.enqueue("workers.jobs.process_batch", guids[start : start + 15])
        queue.enqueue("workers.jobs.process_batch", list(reversed(guids[start : start + 20])))

    workers = [start_worker(backend, "--burst") for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0

    assert FailedJobRegistry(queue=queue).count == 0
    assert set(states(db).values()) == {"done"}
    assert table_count(db, cpanstats) == 90
    assert table_count(db, release_data) == 90
    assert table_count(db, uploads) == 1
    got = summary(db)
    assert got == recount(db)
    totals = [sum(counts[i] for counts in got.values()) for i in range(4)]
    assert totals == [expected[g] for g in ("pass", "fail", "na", "unknown")]


def test_a_worker_killed_mid_job_loses_nothing(backend, db):
    guid = store(db, grade="fail")
    with db.begin() as conn:  # the release is known, so the job will want its uploads row
        conn.execute(
            uploads.insert().values(
                type="cpan",
                author="BARBIE",
                dist="CPAN-Testers-WWW-Statistics",
                version="1.06",
                filename="x",
                released=1,
            )
        )
    redis = backend.redis()
    queue = report_queue(redis)
    # The intake's job, with the back-off between attempts shortened for the test.
    queue.enqueue(JOB_FUNCTION, guid, job_id=job_id(guid), job_timeout=JOB_TIMEOUT, retry=Retry(max=3))

    blocker = db.connect()
    transaction = blocker.begin()  # hold a lock the job needs, so that it stops mid-transaction
    if db.dialect.name == "mysql":
        blocker.execute(sa.select(uploads).with_for_update())
    worker = start_worker(backend)
    try:
        started = StartedJobRegistry(queue=queue)
        wait_for(lambda: job_id(guid) in started.get_job_ids(), 30, "the worker to start the job")
        wait_for(lambda: held_mid_transaction(db), 30, "the job to wait for the held lock")
        power_cut(worker)  # in the middle of the transaction
    finally:
        transaction.rollback()
        blocker.close()

    assert states(db) == {guid: "pending"}
    assert table_count(db, cpanstats) == 0  # the half-done transaction left nothing

    # RQ's maintenance, once the dead worker's heartbeat has expired, hands the job back.
    started.cleanup(timestamp=time.time() + JOB_TIMEOUT + 61)
    assert job_id(guid) in queue.get_job_ids()
    run_jobs(redis)

    assert states(db) == {guid: "done"}
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (0, 1, 0, 0)}
