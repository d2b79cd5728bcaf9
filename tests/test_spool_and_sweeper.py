"""Nothing acknowledged is lost: the spool when the database is away, the sweeper when
Redis is away or a job was lost."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

import settings
from app import create_app
from intake.pipeline import SubmissionPipeline
from intake.spool import Spool
from queueing.contract import SERIALIZER, connect, job_id, report_queue
from storage.tables import test_report
from tests import backends, captures
from tests.helpers import queued_job_ids, register_profile, replay, services, stored_rows, with_new_guid
from workers.sweeper import sweep

UNREACHABLE_DATABASE = f"mysql://root@127.0.0.1:{backends.free_port()}/nowhere"
UNREACHABLE_REDIS = f"redis://127.0.0.1:{backends.free_port()}/0"


@pytest.fixture
def app_without_database(config):
    application = create_app(settings.load({}, **{**config.__dict__, "DATABASE_URL": UNREACHABLE_DATABASE}))
    yield application
    application.extensions["cpantesters"].engine.dispose()


@pytest.fixture
def intake(config, backend):
    """An intake on the real backend sharing the spool directory (what the sweeper runs)."""
    engine = backend.engine()
    yield SubmissionPipeline(engine, connect(backend.redis_url, timeout=2), Spool(config.SPOOL_DIR))
    engine.dispose()


def test_submission_is_spooled_with_201_when_the_database_is_unreachable(app_without_database, config):
    response = replay(app_without_database.test_client(), captures.load("01-ok")[0])
    assert response.status_code == 201
    assert response.json["guid"] == "c3956594-9010-4467-89ed-364d4a882f04"
    spooled = Spool(config.SPOOL_DIR).pending()
    assert len(spooled) == 1
    assert oct(os.stat(spooled[0]).st_mode & 0o777) == "0o600"


def test_drained_submission_keeps_its_receipt_time_and_is_queued(app_without_database, intake, backend, time_machine):
    register_profile(intake.engine)
    received = datetime(2026, 12, 7, 1, 2, 3)
    time_machine.move_to(received.replace(tzinfo=UTC), tick=False)
    guid = replay(app_without_database.test_client(), captures.load("01-ok")[0]).json["guid"]
    time_machine.shift(timedelta(hours=1))  # the database comes back an hour later
    assert intake.drain_spool() == {"drained": 1, "rejected": 0, "remaining": 0}
    rows = stored_rows(intake.engine)
    assert [r["guid"] for r in rows] == [guid]
    assert rows[0]["created"] == received
    assert queued_job_ids(backend.redis()) == [job_id(guid)]
    assert intake.spool.pending() == []


def test_draining_twice_or_after_a_direct_store_adds_nothing(app_without_database, intake, app):
    register_profile(intake.engine)
    recorded = captures.load("01-ok")[0]
    replay(app_without_database.test_client(), recorded)
    replay(app.test_client(), recorded)
    assert intake.drain_spool()["drained"] == 1
    assert len(stored_rows(intake.engine)) == 1


def test_spooled_submission_of_an_unknown_profile_is_kept_aside_not_lost(app_without_database, intake):
    replay(app_without_database.test_client(), captures.load("01-ok")[0])
    assert intake.drain_spool()["rejected"] == 1
    rejected = list(intake.spool.rejected_directory.iterdir())
    assert any(p.name.endswith(".reason") and "unrecognized" in p.read_text() for p in rejected)
    assert stored_rows(intake.engine) == []


def test_drain_stops_while_the_database_is_still_away(app_without_database, config):
    replay(app_without_database.test_client(), captures.load("01-ok")[0])
    counts = services(app_without_database).intake.drain_spool()
    assert counts == {"drained": 0, "rejected": 0, "remaining": 1}
    assert len(Spool(config.SPOOL_DIR).pending()) == 1


def test_503_only_when_neither_database_nor_spool_can_take_it(config, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    app = create_app(
        settings.load({}, **{**config.__dict__, "DATABASE_URL": UNREACHABLE_DATABASE, "SPOOL_DIR": str(blocked)})
    )
    response = replay(app.test_client(), captures.load("01-ok")[0])
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert "error" in response.json


def test_bad_input_is_refused_even_while_the_database_is_away(app_without_database, config):
    response = app_without_database.test_client().post("/api/v1/submit/CPAN-Testers-Report", data=b"{")
    assert response.status_code == 400
    assert Spool(config.SPOOL_DIR).pending() == []


def test_redis_away_still_answers_201_and_the_sweeper_queues_it_later(config, backend):
    app = create_app(settings.load({}, **{**config.__dict__, "REDIS_URL": UNREACHABLE_REDIS}))
    register_profile(services(app).engine)
    response = replay(app.test_client(), captures.load("01-ok")[0])
    assert response.status_code == 201
    guid = response.json["guid"]
    assert stored_rows(services(app).engine)[0]["state"] == "pending"
    assert queued_job_ids(backend.redis()) == []
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 1
    assert queued_job_ids(backend.redis()) == [job_id(guid)]
    services(app).engine.dispose()


def test_sweeper_requeues_reports_whose_jobs_were_lost_in_a_redis_restart(app, client, backend):
    register_profile(services(app).engine)
    guid = replay(client, captures.load("01-ok")[0]).json["guid"]
    backend.redis().flushdb()
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 1
    assert queued_job_ids(backend.redis()) == [job_id(guid)]


def test_sweeper_leaves_live_jobs_and_young_reports_alone(app, client, backend):
    register_profile(services(app).engine)
    replay(client, captures.load("01-ok")[0])
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 0
    backend.redis().flushdb()
    assert sweep(services(app).engine, backend.redis(), grace_seconds=3600) == 0


def test_sweeper_requeues_a_job_stranded_by_a_killed_worker(app, client, backend):
    register_profile(services(app).engine)
    guid = replay(client, captures.load("01-ok")[0]).json["guid"]
    connection = backend.redis()
    queue = report_queue(connection)
    job = Job.fetch(job_id(guid), connection=connection, serializer=SERIALIZER)
    # What a worker leaves behind when it is SIGKILLed mid-job: STARTED, off the queue,
    # and a heartbeat that stopped. (The real kill is tested with the workers.)
    queue.remove(job.id)
    job.set_status(JobStatus.STARTED)
    job.heartbeat(datetime.now(UTC) - timedelta(minutes=10), ttl=3600)
    assert sweep(services(app).engine, connection, grace_seconds=0) == 1
    assert queued_job_ids(connection) == [job_id(guid)]


def test_sweeper_never_requeues_a_job_waiting_in_the_failed_registry(app, client, backend):
    register_profile(services(app).engine)
    guid = replay(client, captures.load("01-ok")[0]).json["guid"]
    connection = backend.redis()
    queue = report_queue(connection)
    job = Job.fetch(job_id(guid), connection=connection, serializer=SERIALIZER)
    queue.remove(job.id)
    job.set_status(JobStatus.FAILED)
    FailedJobRegistry(queue=queue).add(job, ttl=3600)
    assert sweep(services(app).engine, connection, grace_seconds=0) == 0


def stale_hash(app, client, backend, status: JobStatus) -> tuple[str, Job]:
    """A stored report whose job hash says ``status`` but which no queue or registry holds
    (what a Redis restart, a partial restore or a lost worker can leave)."""
    register_profile(services(app).engine)
    guid = replay(client, captures.load("01-ok")[0]).json["guid"]
    connection = backend.redis()
    job = Job.fetch(job_id(guid), connection=connection, serializer=SERIALIZER)
    report_queue(connection).remove(job.id)
    job.set_status(status)
    return guid, job


def test_sweeper_requeues_a_report_whose_job_hash_says_queued_but_is_in_no_queue(app, client, backend):
    guid, _job = stale_hash(app, client, backend, JobStatus.QUEUED)
    assert queued_job_ids(backend.redis()) == []
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 1
    assert queued_job_ids(backend.redis()) == [job_id(guid)]
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 0


def test_sweeper_requeues_a_report_whose_failed_job_is_no_longer_in_the_failed_registry(app, client, backend):
    guid, _job = stale_hash(app, client, backend, JobStatus.FAILED)
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 1
    assert queued_job_ids(backend.redis()) == [job_id(guid)]


def test_sweeper_leaves_a_retry_to_its_scheduler_but_not_one_long_overdue(app, client, backend):
    guid, job = stale_hash(app, client, backend, JobStatus.SCHEDULED)
    registry = ScheduledJobRegistry(queue=report_queue(backend.redis()))
    registry.schedule(job, datetime.now(UTC) + timedelta(minutes=10))
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 0
    registry.schedule(job, datetime.now(UTC) - timedelta(hours=1))  # no scheduler moved it
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 1
    assert queued_job_ids(backend.redis()) == [job_id(guid)]
    assert registry.get_job_ids() == []


def test_sweeper_finds_reports_without_a_job_behind_a_backlog_of_live_ones(app, client, backend, monkeypatch):
    from workers import sweeper as sweeper_module

    monkeypatch.setattr(sweeper_module, "PAGE", 2)  # five pending reports: three pages
    register_profile(services(app).engine)
    recorded = captures.load("01-ok")[0]
    guids = [replay(client, recorded, body=with_new_guid(recorded.body)[0]).json["guid"] for _ in range(5)]
    connection = backend.redis()
    report_queue(connection).remove(job_id(guids[-1]))
    connection.delete(f"rq:job:{job_id(guids[-1])}")
    assert sweep(services(app).engine, connection, grace_seconds=0) == 1
    assert set(queued_job_ids(connection)) == {job_id(g) for g in guids}


def test_sweeper_ignores_processed_reports(app, client, backend):
    register_profile(services(app).engine)
    body, _guid = with_new_guid(captures.load("01-ok")[0].body)
    replay(client, captures.load("01-ok")[0], body=body)
    with services(app).engine.begin() as conn:
        conn.execute(test_report.update().values(state="done"))
    backend.redis().flushdb()
    assert sweep(services(app).engine, backend.redis(), grace_seconds=0) == 0
    with services(app).engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(test_report)).scalar() == 1


def test_while_redis_is_away_submissions_try_it_once_per_back_off_step_and_log_the_outage_once(config, backend, caplog):
    app = create_app(settings.load({}, **{**config.__dict__, "REDIS_URL": UNREACHABLE_REDIS}))
    intake = services(app).intake
    clock = [1000.0]
    intake.redis_outage.clock = lambda: clock[0]
    register_profile(services(app).engine)
    recorded = captures.load("01-ok")[0]
    tries = []
    real = intake.redis.pipeline
    intake.redis.pipeline = lambda *a, **k: tries.append(1) or real(*a, **k)
    with caplog.at_level("DEBUG", logger="intake.pipeline"):
        for _ in range(5):
            assert replay(app.test_client(), recorded, body=with_new_guid(recorded.body)[0]).status_code == 201
        assert len(tries) == 1  # the first failure opened the outage: no wait for the others
        clock[0] += intake.redis_outage.cap + 1
        assert replay(app.test_client(), recorded, body=with_new_guid(recorded.body)[0]).status_code == 201
        assert len(tries) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "redis" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("redis (enqueue) unreachable")
    assert set(stored_rows(services(app).engine)[i]["state"] for i in range(6)) == {"pending"}
    # Redis is back: the next submission is queued again, and the end of the outage logged.
    intake.redis = backend.redis()
    clock[0] += intake.redis_outage.cap + 1
    response = replay(app.test_client(), recorded, body=with_new_guid(recorded.body)[0])
    assert queued_job_ids(backend.redis()) == [job_id(response.json["guid"])]
    assert not intake.redis_outage.down
    services(app).engine.dispose()
