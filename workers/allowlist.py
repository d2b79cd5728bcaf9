"""Workers run only our jobs: a job naming any function not in
:data:`queueing.contract.ALLOWED_JOB_FUNCTIONS` is refused before its function is looked up.

RQ keeps in each job the dotted name of the function to run and imports it when the job
runs, so whoever can write to Redis (a donated worker host among them) could make every
worker run ``os.system``. Two guards, both needed:

- :class:`AllowlistMixin` checks each dequeued job in the worker process itself, before a
  work horse is forked and before ``job.func`` is resolved; a refused job goes straight to
  the failed registry with the reason, with no retry, no callback and no webhook, and the
  worker goes on with the next job (``SimpleWorker`` and the forking ``Worker`` alike).
- :class:`AllowlistedJob` refuses to resolve a function, or any callback, outside the list
  wherever RQ asks for one (the work horse, the abandoned-job clean-up of the maintenance),
  and sends no webhook. :class:`ReportJob`, the job class of our workers and of their
  registries, is one that also tolerates a twin having deleted its hash first.

Callbacks, webhooks and jobs bound to an instance are refused too: our jobs use none, and
each would make a worker import a named function or send a request to a named URL.
"""

from __future__ import annotations

import logging
from functools import cache

from rq.exceptions import DeserializationError, InvalidJobOperation
from rq.job import Job, JobStatus
from rq.results import Result
from rq.utils import now

from queueing.contract import ALLOWED_JOB_FUNCTIONS, FAILURE_TTL

logger = logging.getLogger(__name__)


class ForbiddenJob(Exception):
    """A job names a function (or a callback) that workers do not run."""


def refusal(job: Job) -> str | None:
    """Why a worker must not run ``job``, or None when it may. Reads only the job's data
    (JSON: decoding it runs nothing); never imports what it names."""
    try:
        name, instance = job.func_name, job.instance
    except DeserializationError:
        return "refused: the job's data cannot be decoded (not written by our enqueue code)"
    if name not in ALLOWED_JOB_FUNCTIONS:
        allowed = ", ".join(sorted(ALLOWED_JOB_FUNCTIONS))
        return f"refused: job function {name!r} is not on the workers' allowlist ({allowed})"
    if instance is not None:
        return f"refused: job function {name!r} is bound to an instance"
    callbacks = [n for n in (job._success_callback_name, job._failure_callback_name, job._stopped_callback_name) if n]
    if callbacks:
        return f"refused: job callbacks are not allowed ({', '.join(callbacks)})"
    if job.webhooks:
        return "refused: job webhooks are not allowed"
    return None


class AllowlistedJob(Job):
    """An RQ job that resolves only allowlisted functions and no callbacks, and sends no webhooks."""

    @property
    def func(self):
        reason = refusal(self)
        if reason is not None:
            raise ForbiddenJob(reason)
        return super().func

    def _no_callback(self, name: str | None):
        if name:
            raise ForbiddenJob(f"refused: job callbacks are not allowed ({name})")
        return None

    @property
    def success_callback(self):
        return self._no_callback(self._success_callback_name)

    @property
    def failure_callback(self):
        return self._no_callback(self._failure_callback_name)

    @property
    def stopped_callback(self):
        return self._no_callback(self._stopped_callback_name)

    def send_webhooks(self, status, *, exc_string=None) -> None:
        if self.webhooks:
            logger.warning("webhooks of job %s not sent: workers send none", self.id)


class AllowlistMixin:
    """Put first in the bases of an RQ worker class: refuses jobs outside the allowlist
    in the worker process, before any work horse is forked for them."""

    def execute_job(self, job: Job, queue) -> None:
        reason = refusal(job)
        if reason is None:
            super().execute_job(job, queue)
            return
        self.refuse_job(job, queue, reason)

    def refuse_job(self, job: Job, queue, reason: str) -> None:
        """Move ``job`` to ``queue``'s failed registry with ``reason``: not retried, no
        callback, no webhook, nothing imported."""
        try:
            name = job.func_name
        except DeserializationError:
            name = None
        logger.error("refused job job_id=%s function=%r queue=%s: %s", job.id, name, queue.name, reason)
        job.ended_at = now()
        with self.connection.pipeline() as pipe:
            # BLMOVE put the job id on the intermediate list; RQ removes it there when a job starts.
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            queue.failed_job_registry.add(job, ttl=FAILURE_TTL, exc_string=reason, pipeline=pipe)
            Result.create_failure(job, FAILURE_TTL, exc_string=reason, worker_name=self.name, pipeline=pipe)
            self.increment_failed_job_count(pipe)
            pipe.execute()


@cache
def allowlisted(worker_class: type) -> type:
    """``worker_class`` with :class:`AllowlistMixin` in front (one class per base)."""
    return type(f"Allowlisted{worker_class.__name__}", (AllowlistMixin, worker_class), {"__module__": __name__})


class ReportJob(AllowlistedJob):
    """The job class of our workers: :class:`AllowlistedJob`, and a finished job whose hash
    is already gone is deleted quietly.

    A report's job has one id (``queueing.contract.job_id``), so the sweeper can queue a
    report again while its job is being dequeued, and two instances may run at once. Both
    find the report done; but a finished report job is deleted at once
    (``REPORT_RESULT_TTL`` = 0), so the first to finish deletes the hash they share, and
    RQ's clean-up of the other would fail reading its status (an error logged and a job in
    the failed registry for a report that was processed)."""

    def _remove_from_registries(self, pipeline=None, remove_from_queue: bool = True):
        try:
            super()._remove_from_registries(pipeline=pipeline, remove_from_queue=remove_from_queue)
        except InvalidJobOperation:  # no hash, no status: no registry to leave
            logger.info("job %s was already deleted (a twin finished first)", self.id)
