"""Two instances of one report's job (one id: the sweeper may queue a report again while
its job is being dequeued) can run at once. Finished jobs are deleted at once
(``REPORT_RESULT_TTL`` = 0), so the first to finish deletes the hash they share; the
other then finishes quietly instead of failing in RQ's clean-up (seen as 126 errors and
failed-registry entries in a 10,000-report drain beside the sweeper)."""

from __future__ import annotations

from rq.job import Job
from rq.registry import FailedJobRegistry

from queueing.contract import enqueue_report, job_id, report_queue
from tests.processing_helpers import states, store
from workers import jobs
from workers.run import build_worker


def test_a_job_whose_hash_a_finished_twin_deleted_finishes_without_error(backend, db, monkeypatch):
    redis = backend.redis()
    guid = store(db, grade="pass")
    enqueue_report(redis, guid)
    real = jobs.run_job_transaction

    def twin_finishes_meanwhile(db_, batch):
        result = real(db_, batch)
        redis.delete(Job.key_for(job_id(guid)))  # as the twin's finish does
        return result

    monkeypatch.setattr(jobs, "run_job_transaction", twin_finishes_meanwhile)
    build_worker(redis).work(burst=True)

    assert states(db) == {guid: "done"}
    assert FailedJobRegistry(queue=report_queue(redis)).count == 0
    assert not Job.exists(job_id(guid), connection=redis)
