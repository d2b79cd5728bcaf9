"""RQ worker classes that time every job they perform and add the duration to the Redis
histogram of :mod:`monitoring.jobs`, without any help from the job function.

``perform_job`` runs in the work horse (the forked child) and the duration goes to Redis,
so nothing is left behind per forked process. Use ``MonitoredWorker`` where ``Worker`` is
used (``workers/run.py``); ``MonitoredSimpleWorker`` runs jobs in-process (tests).
"""

from __future__ import annotations

import logging
import time

from rq import SimpleWorker, Worker

from monitoring import jobs

logger = logging.getLogger(__name__)

JOB_ID_PREFIX = "report-"
"""``workers.queue.job_id``: the report GUID follows it."""


class JobTimingMixin:
    def perform_job(self, job, queue, execution) -> bool:
        started = time.perf_counter()
        succeeded = False
        try:
            succeeded = super().perform_job(job, queue, execution)
            return succeeded
        finally:
            seconds = time.perf_counter() - started
            outcome = "done" if succeeded else "error"
            jobs.observe(self.connection, seconds, outcome)
            guid = job.id[len(JOB_ID_PREFIX) :] if job.id.startswith(JOB_ID_PREFIX) else "-"
            logger.info("job guid=%s job_id=%s outcome=%s ms=%.1f", guid, job.id, outcome, seconds * 1000)


class MonitoredWorker(JobTimingMixin, Worker):
    """``rq.Worker`` (a fork per job) that records each job's duration in Redis."""


class MonitoredSimpleWorker(JobTimingMixin, SimpleWorker):
    """``rq.SimpleWorker`` (jobs in the worker's own process) that records each job's duration."""
