"""Recovery paths of the processing farm against the real backends: a real worker killed
mid-job whose report the intake's sweeper brings back, and a real InnoDB deadlock that
the job's transaction retries."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from rq.registry import FailedJobRegistry, StartedJobRegistry

from queueing.contract import enqueue_report, job_id, report_queue
from storage import processing
from storage.tables import cpanstats, release_data, release_summary, report_block, test_report, uploads
from tests.polling import wait_for
from tests.processing_helpers import (
    held_mid_transaction,
    recount,
    run_jobs,
    statements_running,
    states,
    store,
    summary,
    table_count,
)
from tests.test_processing_farm import power_cut, start_worker
from workers import jobs, sweeper

RELEASE = ("CPAN-Testers-WWW-Statistics", "1.06")


def add_release(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            uploads.insert().values(
                type="cpan", author="BARBIE", dist=RELEASE[0], version=RELEASE[1], filename="x", released=1
            )
        )


@pytest.mark.system
def test_the_sweeper_brings_back_the_report_of_a_worker_killed_mid_job(backend, db, time_machine):
    guids = [store(db, grade=grade) for grade in ("pass", "fail", "fail")]
    add_release(db)
    redis = backend.redis()
    queue = report_queue(redis)
    for guid in guids:
        enqueue_report(redis, guid)

    blocker = db.connect()
    transaction = blocker.begin()  # hold a lock the job needs, so that it stops mid-transaction
    if db.dialect.name == "mysql":
        blocker.execute(sa.select(uploads).with_for_update())
    worker = start_worker(backend)
    started = StartedJobRegistry(queue=queue)
    try:
        (stranded,) = wait_for(started.get_job_ids, 30, "the worker to start a job")
        wait_for(lambda: held_mid_transaction(db), 30, "the job to wait for the held lock")
        power_cut(worker)  # in the middle of the transaction
    finally:
        transaction.rollback()
        blocker.close()

    assert set(states(db).values()) == {"pending"}
    assert table_count(db, cpanstats) == 0  # the half-done transaction left nothing
    assert stranded not in queue.get_job_ids()  # RQ alone would wait for the job's timeout

    # The sweeper sees the dead worker's job (its heartbeat is older than the limit) and
    # queues it again; the reports whose jobs are still queued are left alone.
    time_machine.move_to(datetime.now(UTC) + timedelta(seconds=sweeper.STALE_HEARTBEAT_SECONDS + 1))
    assert sweeper.sweep(db, redis, grace_seconds=0) == 1
    assert stranded in queue.get_job_ids()
    assert sweeper.sweep(db, redis, grace_seconds=0) == 0  # now live: not queued twice

    replacement = start_worker(backend, "--burst")
    assert replacement.wait(timeout=120) == 0

    assert FailedJobRegistry(queue=queue).count == 0
    assert states(db) == dict.fromkeys(guids, "done")
    assert table_count(db, cpanstats) == 3
    assert table_count(db, release_data) == 3
    assert summary(db) == {(*RELEASE, 1, 1, 1, 1): (1, 2, 0, 0)}
    assert summary(db) == recount(db)

    # A late duplicate of the stranded job changes nothing.
    enqueue_report(redis, stranded.removeprefix(job_id("")))
    run_jobs(redis)
    assert table_count(db, cpanstats) == 3
    assert summary(db) == {(*RELEASE, 1, 1, 1, 1): (1, 2, 0, 0)}


def waiting_for_state(engine: sa.Engine) -> bool:
    """Whether the job is in its last statement (its state), which waits for the blocker's lock."""
    return statements_running(engine, "UPDATE test_report SET state=") > 0


def test_a_real_innodb_deadlock_reruns_the_job_transaction(backend, db, monkeypatch):
    if db.dialect.name != "mysql":
        pytest.skip("InnoDB deadlocks are MariaDB's")
    guid = store(db, grade="fail")
    add_release(db)

    attempts: list[str] = []
    real = jobs.process_reports

    def spy(conn, guids):  # records each attempt of the transaction and how it ended
        try:
            result = real(conn, guids)
        except sa.exc.OperationalError as exc:
            attempts.append(f"error {exc.orig.args[0]}")
            raise
        attempts.append("ok")
        return result

    monkeypatch.setattr(jobs, "process_reports", spy)

    blocks = table_count(db, report_block)
    blocker = db.connect()
    transaction = blocker.begin()
    # Make the blocker the heavier transaction, so that InnoDB picks the job as the victim.
    blocker.execute(report_block.insert(), [{"digest": os.urandom(32), "body": b"x"} for _ in range(2000)])
    # The job will want this row last (its state), after it has written its cpanstats row.
    blocker.execute(sa.select(test_report.c.id).where(test_report.c.guid == guid).with_for_update())

    done = threading.Event()

    def job():
        try:
            return jobs.run_transaction(jobs.job_engine(), [guid])
        finally:
            done.set()

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(job)
        try:

            def job_waits() -> bool:  # for the test_report row
                assert not done.is_set(), f"the job did not wait: {attempts}"
                return waiting_for_state(db)

            wait_for(job_waits, 30, "the job to wait for the blocker's lock", interval=0.05)
            # The opposite order: the blocker now wants the job's cpanstats row. Deadlock.
            blocker.execute(sa.select(cpanstats.c.id).where(cpanstats.c.guid == guid).with_for_update())
            wait_for(lambda: attempts, 10, "the job to see the deadlock", interval=0.01)
            assert attempts[:1] == ["error 1213"]
        finally:
            transaction.rollback()
            blocker.close()
        outcomes = future.result(timeout=60)

    assert outcomes == {guid: processing.Outcome.DONE}
    assert attempts[0] == "error 1213" and attempts[-1] == "ok"
    assert states(db) == {guid: "done"}
    assert table_count(db, cpanstats) == 1
    assert table_count(db, release_data) == 1
    assert table_count(db, report_block) == blocks  # the blocker's rows were rolled back
    assert table_count(db, release_summary) == 1
    assert summary(db) == {(*RELEASE, 1, 1, 1, 1): (0, 1, 0, 0)}
