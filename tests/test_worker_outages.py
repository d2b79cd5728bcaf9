"""Workers and the sweeper never die of a connection: real ``python -m workers.run`` and
``python -m scripts.sweeper`` processes against a throwaway Redis server that is killed
and started again (never the shared one), and against MariaDB behind a TCP proxy that is
cut; and the bound on how long a worker cut off mid-transaction holds its row locks."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from rq import Retry, Worker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from queueing.contract import RETRY_INTERVALS, SERIALIZER, enqueue_report, job_id, report_queue
from storage.engine import is_unavailable
from storage.processing import processing_engine
from storage.tables import cpanstats, test_report
from tests import backends
from tests.outage_helpers import ThrowawayRedis, log_lines, start, stop
from tests.polling import wait_for
from tests.processing_helpers import recount, states, store, summary, table_count
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.system

DEADLINE = 60
"""Seconds a healed farm has to process what waits (the issue's figure)."""


@pytest.fixture
def throwaway_redis(tmp_path):
    server = ThrowawayRedis(tmp_path / "redis").start()
    yield server
    server.close()


@pytest.fixture
def persistent_redis(tmp_path):
    server = ThrowawayRedis(tmp_path / "redis-aof", persist=True).start()
    yield server
    server.close()


def all_done(db, guids) -> bool:
    current = states(db)
    return all(current.get(g) == "done" for g in guids)


def test_a_worker_keeps_processing_across_a_redis_restart_without_persistence(backend, db, throwaway_redis, tmp_path):
    log = tmp_path / "worker.log"
    worker = start("workers.run", backend.database_url, throwaway_redis.url, log)
    try:
        before = [store(db, grade="pass") for _ in range(2)]
        for guid in before:
            enqueue_report(throwaway_redis.client(), guid)
        wait_for(lambda: all_done(db, before), DEADLINE, "the first reports")

        throwaway_redis.kill()
        wait_for(lambda: log_lines(log, "redis unreachable"), 30, "the worker to notice the outage")
        assert worker.poll() is None
        throwaway_redis.start()  # empty: the queue and the worker registry are gone

        after = [store(db, grade="fail") for _ in range(2)]
        for guid in after:
            enqueue_report(throwaway_redis.client(), guid)
        wait_for(lambda: all_done(db, after), DEADLINE, "the reports queued after the restart")
        wait_for(lambda: Worker.count(connection=throwaway_redis.client()) == 1, 30, "the worker to register again")
        assert worker.poll() is None
    finally:
        assert stop(worker) == 0  # a clean stop on SIGTERM
    assert len(log_lines(log, "redis unreachable")) == 1  # once per outage, not per try
    assert len(log_lines(log, "redis back after")) == 1
    assert not log_lines(log, "unhandled exception")
    assert table_count(db, cpanstats) == 4
    assert summary(db) == recount(db)


@pytest.mark.parametrize("persist", [True, False], ids=["redis-restored", "redis-wiped"])
def test_redis_dying_while_a_worker_finishes_a_job_costs_nothing_and_counts_once(backend, db, tmp_path, persist):
    server = ThrowawayRedis(tmp_path / "redis", persist=persist).start()
    log = tmp_path / "worker.log"
    worker = start("tests.outage_worker", backend.database_url, server.url, log)
    try:
        guid = store(db, grade="fail")
        # The job commits the report's rows, then kills Redis before the worker records the
        # outcome: RQ 3.0's handle_execution_ended -> job.heartbeat meets a dead server.
        queue = report_queue(server.client())
        queue.enqueue(
            "tests.outage_jobs.process_then_kill_redis",
            guid, server.process.pid, server.port, str(tmp_path / "killed"),
            job_id=job_id(guid), retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        )  # fmt: skip
        wait_for(lambda: log_lines(log, "was started or finished"), DEADLINE, "the worker to lose Redis mid-finish")
        assert states(db) == {guid: "done"}  # committed before Redis died
        assert worker.poll() is None
        server.start()

        if persist:  # the job came back STARTED: the worker hands it back, its re-run finds it done
            job = Job.fetch(job_id(guid), connection=server.client(), serializer=SERIALIZER)
            wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, DEADLINE, "the handed-back job")
            assert job.retries_left == len(RETRY_INTERVALS)  # no attempt was used up
            assert FailedJobRegistry(queue=report_queue(server.client())).count == 0
            assert log_lines(log, "put back at the head")
        # Either way the worker goes on with new work.
        other = store(db, grade="pass")
        enqueue_report(server.client(), other)
        wait_for(lambda: all_done(db, [other]), DEADLINE, "a report queued afterwards")
        assert worker.poll() is None
    finally:
        stop(worker)
        server.close()
    assert not log_lines(log, "unhandled exception")
    assert table_count(db, cpanstats) == 2
    assert summary(db) == recount(db)


def proxied(url: str, proxy: TcpProxy) -> str:
    host, port = backends.MARIADB_HOST, backends.MARIADB_PORT
    return url.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")


@pytest.mark.parametrize("fork", [False, True], ids=["simple", "fork"])
def test_a_worker_waits_through_a_database_outage_without_failing_or_retrying_a_job(backend, db, tmp_path, fork):
    if db.dialect.name != "mysql":
        pytest.skip("a database server outage is MariaDB's (the embedded SQLite file has none)")
    proxy = TcpProxy(backends.MARIADB_HOST, backends.MARIADB_PORT)
    log = tmp_path / "worker.log"
    connection = backend.redis()
    extra = ["--fork"] if fork else []
    worker = start("workers.run", proxied(backend.database_url, proxy), backend.redis_url, log, *extra)
    try:
        first = store(db, grade="pass")
        enqueue_report(connection, first)
        wait_for(lambda: all_done(db, [first]), DEADLINE, "a report before the outage")

        proxy.cut()
        guids = [store(db, grade=g) for g in ("pass", "fail", "na")]
        for guid in guids:
            enqueue_report(connection, guid)
        wait_for(lambda: log_lines(log, "database unreachable"), 30, "the worker to meet the outage")
        # While the database is away, jobs go back to the queue untouched and wait there.
        wait_for(lambda: len(report_queue(connection).get_job_ids()) == 3, 30, "the jobs back in the queue")
        for guid in guids:
            job = Job.fetch(job_id(guid), connection=connection, serializer=SERIALIZER)
            assert job.get_status() == JobStatus.QUEUED
            assert job.retries_left == len(RETRY_INTERVALS)
        assert FailedJobRegistry(queue=report_queue(connection)).count == 0
        assert set(states(db)[g] for g in guids) == {"pending"}
        assert worker.poll() is None

        proxy.restore()
        wait_for(lambda: all_done(db, guids), DEADLINE, "the backlog after the database came back")
        assert worker.poll() is None
    finally:
        stop(worker)
        proxy.close()
    assert len(log_lines(log, "database unreachable")) == 1
    assert len(log_lines(log, "database back after")) == 1
    assert summary(db) == recount(db)


def test_the_sweeper_requeues_what_a_redis_restart_without_persistence_lost(backend, db, throwaway_redis, tmp_path):
    log = tmp_path / "sweeper.log"
    guids = [store(db, grade="pass") for _ in range(3)]
    for guid in guids:
        enqueue_report(throwaway_redis.client(), guid)
    sweeper = start("scripts.sweeper", backend.database_url, throwaway_redis.url, log, SPOOL_DIR=tmp_path / "spool")
    try:
        throwaway_redis.kill()
        wait_for(lambda: log_lines(log, "redis unreachable"), 30, "the sweeper to notice the outage")
        throwaway_redis.start()  # the three jobs are gone
        client = throwaway_redis.client()
        wait_for(
            lambda: set(report_queue(client).get_job_ids()) == {job_id(g) for g in guids}, DEADLINE, "the re-queue"
        )
        assert sweeper.poll() is None
    finally:
        assert stop(sweeper) == 0
    assert len(log_lines(log, "redis unreachable")) == 1
    assert len(log_lines(log, "redis back after")) == 1


CUT_OFF_IDLE_TIMEOUT = 3
"""The test's ``WORKER_DB_IDLE_TIMEOUT`` (production: 30 s)."""


@pytest.mark.timeout(60)
def test_a_worker_cut_off_mid_transaction_releases_its_row_locks_within_the_idle_timeout(backend, db):
    if db.dialect.name != "mysql":
        pytest.skip("row locks held by a cut-off client are MariaDB's")
    guid = store(db, grade="pass")
    proxy = TcpProxy(backends.MARIADB_HOST, backends.MARIADB_PORT)
    worker_engine = processing_engine(
        proxied(backend.database_url, proxy), read_timeout=2, idle_timeout=CUT_OFF_IDLE_TIMEOUT
    )
    row = sa.select(test_report.c.id).where(test_report.c.guid == guid).with_for_update()
    cut_off = worker_engine.connect()
    try:
        cut_off.begin()
        cut_off.execute(row)  # the worker holds the report's row lock...
        proxy.stall()  # ...and its link dies without a word: no FIN, no RST reaches the server
        with db.connect() as other:
            # The deadline is the server's: a lock still held after the idle timeout (+3 s)
            # fails this statement with a lock wait timeout.
            other.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {CUT_OFF_IDLE_TIMEOUT + 3}")
            other.execute(row)  # waits for the lock until the server gives up on the worker
            other.rollback()
        # The worker's side does not hang either: its next statement fails (its read timeout;
        # the test's own timeout is the deadline).
        with pytest.raises(sa.exc.OperationalError) as raised:
            cut_off.execute(sa.text("SELECT 1"))
        assert is_unavailable(raised.value)
    finally:
        cut_off.invalidate()
        cut_off.close()
        worker_engine.dispose()
        proxy.close()
