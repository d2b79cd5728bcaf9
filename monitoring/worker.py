"""RQ worker classes that time every job they perform and add the duration to the Redis
histogram of :mod:`monitoring.jobs`, without any help from the job function.

``perform_job`` runs in the work horse (the forked child) and the duration goes to Redis,
so nothing is left behind per forked process. Use ``MonitoredWorker`` where ``Worker`` is
used (``workers/run.py``); ``MonitoredSimpleWorker`` runs jobs in-process (tests).
"""

from __future__ import annotations

import time

from rq import SimpleWorker, Worker

from monitoring import jobs


class JobTimingMixin:
    def perform_job(self, job, queue, execution) -> bool:
        started = time.perf_counter()
        succeeded = False
        try:
            succeeded = super().perform_job(job, queue, execution)
            return succeeded
        finally:
            jobs.observe(self.connection, time.perf_counter() - started, "done" if succeeded else "error")


class MonitoredWorker(JobTimingMixin, Worker):
    """``rq.Worker`` (a fork per job) that records each job's duration in Redis."""


class MonitoredSimpleWorker(JobTimingMixin, SimpleWorker):
    """``rq.SimpleWorker`` (jobs in the worker's own process) that records each job's duration."""
