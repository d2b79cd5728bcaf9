"""Workers run only our jobs: a job written straight into Redis that names any other
function (``os.system``), a callback or a webhook is refused before anything it names is
imported, and lands in the failed registry with the reason; the worker goes on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.utils import import_attribute, utcformat

from queueing.contract import (
    ALLOWED_JOB_FUNCTIONS,
    BATCH_JOB_FUNCTION,
    JOB_FUNCTION,
    QUEUE_NAME,
    enqueue_report,
    report_queue,
)
from tests.processing_helpers import states, store
from workers import allowlist
from workers.run import build_worker

MARKERS: list[Path] = []


def leave_marker(*_args, **_kwargs):
    """What a forged callback would run: it leaves a file behind, so the test sees if it ran."""
    for marker in MARKERS:
        marker.write_text("ran")


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "forged-job-ran"
    MARKERS.append(path)
    yield path
    MARKERS.remove(path)


def plant_job(redis, function: str, args: list, queue: bool = True, **fields) -> str:
    """Write a job the way an attacker with Redis access would: a hash and a queue entry,
    without any RQ code (``data`` is our JSON serializer's job tuple)."""
    job_id = f"planted-{uuid.uuid4()}"
    mapping = {
        "data": json.dumps([function, None, args, {}]),
        "status": "queued",
        "origin": QUEUE_NAME,
        "created_at": utcformat(datetime.now(UTC)),
        "description": "looks harmless",
        "timeout": "60",
        **fields,
    }
    redis.hset(f"rq:job:{job_id}", mapping=mapping)
    if queue:
        redis.rpush(f"rq:queue:{QUEUE_NAME}", job_id)
        redis.sadd("rq:queues", f"rq:queue:{QUEUE_NAME}")
    return job_id


def failure_reason(redis, job_id: str) -> str:
    return report_queue(redis).fetch_job(job_id).latest_result().exc_string


@pytest.mark.parametrize("fork", [False, True], ids=["simple-worker", "forking-worker"])
def test_a_planted_os_system_job_is_refused_and_the_worker_goes_on_with_a_real_report(backend, db, marker, fork):
    redis = backend.redis()
    planted = plant_job(redis, "os.system", [f"touch {marker}"])
    guid = store(db)
    enqueue_report(redis, guid)

    build_worker(redis, fork=fork).work(burst=True)

    assert not marker.exists()
    queue = report_queue(redis)
    assert FailedJobRegistry(queue=queue).get_job_ids() == [planted]
    reason = failure_reason(redis, planted)
    assert "'os.system' is not on the workers' allowlist" in reason
    assert queue.fetch_job(planted).get_status() == JobStatus.FAILED
    assert states(db) == {guid: "done"}
    assert StartedJobRegistry(queue=queue).count == 0
    assert redis.llen(queue.intermediate_queue_key) == 0


def test_a_refused_job_is_not_retried_whatever_retries_it_claims(backend, db, marker):
    redis = backend.redis()
    planted = plant_job(redis, "os.system", [f"touch {marker}"], retries_left="5", retry_intervals="[0]")

    build_worker(redis).work(burst=True)

    queue = report_queue(redis)
    assert FailedJobRegistry(queue=queue).get_job_ids() == [planted]
    assert ScheduledJobRegistry(queue=queue).count == 0
    assert queue.count == 0
    assert not marker.exists()


def test_an_allowlisted_job_with_a_forged_callback_is_refused_without_importing_it(backend, db, marker):
    redis = backend.redis()
    guid = store(db)
    callback = f"{__name__}.leave_marker"
    planted = plant_job(redis, JOB_FUNCTION, [guid], success_callback_name=callback, failure_callback_name=callback)

    build_worker(redis).work(burst=True)

    assert not marker.exists()
    assert FailedJobRegistry(queue=report_queue(redis)).get_job_ids() == [planted]
    assert "callbacks are not allowed" in failure_reason(redis, planted)
    assert states(db) == {guid: "pending"}  # the forged job did nothing; the sweeper queues a real one


def test_an_allowlisted_job_with_a_webhook_is_refused(backend, db):
    redis = backend.redis()
    hook = [{"url": "http://127.0.0.1:9/internal", "job_status": "failed", "method": "GET"}]
    planted = plant_job(redis, JOB_FUNCTION, [str(uuid.uuid4())], webhooks=json.dumps(hook))

    build_worker(redis).work(burst=True)

    assert "webhooks are not allowed" in failure_reason(redis, planted)


def test_job_data_that_is_not_our_json_is_refused(backend, db):
    redis = backend.redis()
    planted = plant_job(redis, JOB_FUNCTION, [], data=b"\x80\x04\x95 not json")

    build_worker(redis).work(burst=True)

    assert FailedJobRegistry(queue=report_queue(redis)).get_job_ids() == [planted]
    assert "cannot be decoded" in failure_reason(redis, planted)


def test_the_maintenance_fails_an_abandoned_forged_job_without_running_its_callback(backend, db, marker):
    """A job planted straight into the started registry, as if its worker had died: RQ's
    clean-up would import and call its failure callback."""
    redis = backend.redis()
    callback = f"{__name__}.leave_marker"
    planted = plant_job(redis, "os.system", ["true"], queue=False, status="started", failure_callback_name=callback)
    redis.zadd(f"rq:wip:{QUEUE_NAME}", {f"{planted}:{uuid.uuid4()}": 1})  # expired long ago

    worker = build_worker(redis)
    worker.clean_registries()

    assert not marker.exists()
    assert planted in FailedJobRegistry(queue=report_queue(redis)).get_job_ids()


def test_the_job_class_never_resolves_a_function_off_the_list(backend):
    redis = backend.redis()
    planted = plant_job(redis, "os.system", ["true"], queue=False)
    job = allowlist.AllowlistedJob.fetch(planted, connection=redis, serializer=report_queue(redis).serializer)
    with pytest.raises(allowlist.ForbiddenJob, match="os.system"):
        _ = job.func


def test_every_allowlisted_name_is_a_function_of_ours():
    assert {JOB_FUNCTION, BATCH_JOB_FUNCTION} <= ALLOWED_JOB_FUNCTIONS
    for name in ALLOWED_JOB_FUNCTIONS:
        assert callable(import_attribute(name)), name
