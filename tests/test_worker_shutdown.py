"""A worker asked to stop starts nothing new: RQ's maintenance would otherwise start a
fresh scheduler process to replace the one that stopped with the worker's SIGTERM, and a
scheduler started in that moment can miss its own SIGTERM and hold the worker's exit
until it is killed."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

from rq.scheduler import RQScheduler
from rq.worker import WorkerStatus

from workers.run import build_worker
from workers.worker import ReportScheduler


def test_maintenance_after_a_stop_request_starts_no_scheduler(backend, monkeypatch):
    redis = backend.redis()
    worker = build_worker(redis, name="test-stopping")
    worker.register_birth()
    try:
        worker.set_state(WorkerStatus.BUSY)  # a SIGTERM in the middle of a job: a warm stop
        monkeypatch.setattr(signal, "signal", lambda *_: None)  # leave this process's handlers alone
        worker.request_stop(signal.SIGTERM, None)
        worker.scheduler = ReportScheduler(worker.queues, connection=redis, serializer=worker.serializer)
        worker.last_cleaned_at = datetime.now(UTC)  # not the first maintenance: RQ would restart it

        worker.run_maintenance_tasks()

        assert not any(redis.exists(RQScheduler.get_locking_key(queue.name)) for queue in worker.queues)
    finally:
        worker.register_death()
