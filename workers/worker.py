"""The farm's RQ worker classes: RQ's own ``SimpleWorker`` and ``Worker`` and their work
loop, with two additions.

**Timing.** Every job's duration goes to the Redis histogram behind ``/metrics``
(:mod:`queueing.job_metrics`) and to one log line with the report's GUID.

**Riding through outages.** A worker never dies of a connection. RQ 3.0 retries a failed
dequeue itself, but a Redis error anywhere else (its heartbeat, registry maintenance,
the suspension check, starting a job, or finishing one: ``handle_execution_ended`` ->
``job.heartbeat``) ends its loop with "found an unhandled exception, quitting". Here each
of those steps waits for Redis with capped, jittered back-off (logged once per outage,
see :mod:`storage.outage`) and goes on:

- a step that is safe to repeat (heartbeat, state, maintenance, dequeue, registration) is
  simply run again once Redis answers;
- a job cut off while being started or finished is never run again in place: once Redis
  is back, if its outcome was not recorded (status still queued or started), it is put
  back at the head of its queue, and its re-run finds the report done (the jobs are
  idempotent); if Redis lost it (a restart without persistence), the report is still
  ``pending`` or already ``done`` in the database, and the sweeper queues what is pending;
- after an outage the worker registers itself again (a Redis restart loses the registry).

A job that fails because the *database* is unreachable (it raises
:class:`storage.engine.DatabaseUnavailable`) is not the job's fault: it is put back at the
head of the queue without using one of its retries, and the worker waits until the
database answers before it takes the next job. So an outage of any length fails no job.

The scheduler RQ forks for retries (:class:`ReportScheduler`) rides through outages the
same way and dies with its worker, even one killed by SIGKILL (no orphan).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import time
from collections.abc import Callable

from rq import SimpleWorker, Worker, worker_registration
from rq.exceptions import InvalidJobOperation, NoSuchJobError, StopRequested
from rq.job import JobStatus
from rq.scheduler import RQScheduler
from rq.utils import now
from rq.worker.base import WorkerStatus

from queueing import job_metrics as job_metrics
from storage.engine import DatabaseUnavailable, is_unavailable
from storage.outage import DEFAULT_CAP, REDIS_ERRORS, Outage, is_redis_outage, wait_until

logger = logging.getLogger(__name__)

JOB_ID_PREFIX = "report-"
"""``queueing.contract.job_id``: the report GUID follows it."""

EX_TEMPFAIL = 75
"""Exit status of a forked work horse whose job found the database unreachable."""


class JobTimingMixin:
    """Times each job in the process that performs it and adds the duration to Redis."""

    def perform_job(self, job, queue, execution) -> bool:
        started = time.perf_counter()
        succeeded = False
        try:
            succeeded = super().perform_job(job, queue, execution)
            return succeeded
        finally:
            seconds = time.perf_counter() - started
            outcome = "done" if succeeded else "error"
            job_metrics.observe(self.connection, seconds, outcome)
            guid = job.id[len(JOB_ID_PREFIX) :] if job.id.startswith(JOB_ID_PREFIX) else "-"
            logger.info("job guid=%s job_id=%s outcome=%s ms=%.1f", guid, job.id, outcome, seconds * 1000)


class RqRetryLogFilter(logging.Filter):
    """Drops RQ's own line per failed attempt to reach Redis: the worker logs the outage once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "could not connect to Redis instance" not in str(record.msg)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (``PR_SET_PDEATHSIG``)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the scheduler's loop checks its parent each second
        pass


class ReportScheduler(RQScheduler):
    """RQ's scheduler (moves due retries to the queue), in its own process, which rides
    through Redis outages and ends with the worker that started it."""

    parent_pid: int | None = None
    backoff_cap: float = DEFAULT_CAP

    def _orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def work(self):
        """RQ's scheduler loop (register, keep the locks, enqueue due jobs, sleep), with
        each Redis step waited through and a stop when the worker is gone."""
        die_with_parent()
        self._install_signal_handlers()
        outage = Outage("redis (scheduler)", logger, cap=self.backoff_cap, quiet=True)
        registered = False
        while not self._stop_requested and not self._orphaned():
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
            except REDIS_ERRORS as exc:
                self._nap(outage.failed(exc))
                continue
            outage.recovered()
            self._nap(self.interval)
        with contextlib.suppress(*REDIS_ERRORS):  # the locks expire by themselves
            self.stop()

    def _nap(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop_requested and not self._orphaned():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 1.0))


class OutageTolerantMixin:
    """Makes an RQ worker wait through Redis and database outages (see the module doc)."""

    def __init__(
        self,
        *args,
        database_probe: Callable[[], object] | None = None,
        backoff_cap: float = DEFAULT_CAP,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs,
    ):
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self.database_probe = database_probe
        self.redis_outage = Outage("redis", logger, cap=backoff_cap)
        self.database_outage = Outage("database", logger, cap=backoff_cap)
        self._pubsub_outage = Outage("redis (command channel)", logger, cap=backoff_cap, quiet=True)
        self._database_down = False
        self._outage_failure: BaseException | None = None
        super().__init__(*args, **kwargs)

    # -- waiting --------------------------------------------------------------------

    def _nap(self, seconds: float) -> None:
        """Sleep, unless a stop was asked (a SIGTERM while idle raises StopRequested here)."""
        if self._stop_requested:
            raise StopRequested()
        self._sleep(seconds)
        if self._stop_requested:
            raise StopRequested()

    def _ride_through(self, step: Callable, *args, **kwargs):
        """Run ``step``; while Redis is unreachable, wait for it and run it again."""
        while True:
            try:
                return step(*args, **kwargs)
            except REDIS_ERRORS as exc:
                self._wait_for_redis(exc)

    def _wait_for_redis(self, exc: BaseException) -> None:
        wait_until(
            self._redis_is_back,
            self.redis_outage,
            is_outage=is_redis_outage,
            sleep=self._nap,
            first_wait=self.redis_outage.failed(exc),
        )
        self._pubsub_outage.recovered()

    def _redis_is_back(self) -> None:
        self.connection.ping()
        self._restore_registration()

    def _restore_registration(self) -> None:
        """Register again (a Redis restart without persistence forgets every worker)."""
        if self.birth_date is None:  # not registered yet: bootstrap will do it
            return
        self.last_heartbeat = now()
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping={**self.serialize(), "state": self._state})
            worker_registration.register(self, pipe)
            pipe.expire(self.key, self.worker_ttl + 60)
            pipe.execute()

    def _wait_for_database(self) -> None:
        """Before the next job: wait until the database answers, beating meanwhile."""
        first_wait = max(0.0, self.database_outage.next_try - self.database_outage.clock())
        if self.database_probe is None:
            self._nap(first_wait)
            self.database_outage.recovered()
        else:
            wait_until(
                self.database_probe,
                self.database_outage,
                is_outage=lambda exc: True,  # whatever stops the probe, the jobs would meet it too
                sleep=self._nap,
                first_wait=first_wait,
                between=self.heartbeat,
            )
        self._database_down = False

    # -- RQ's steps, each ridden through ---------------------------------------------

    def _set_ip_address(self, connection) -> None:
        try:
            super()._set_ip_address(connection)
        except REDIS_ERRORS:  # construction never needs Redis; the address is for display
            self.ip_address = "unknown"

    def register_birth(self):
        def once():
            try:
                super(OutageTolerantMixin, self).register_birth()
            except ValueError:
                # "an active worker of that name exists": after an outage hid the answer to
                # our own first attempt, that worker is this one.
                if self.birth_date is None:
                    raise

        self._ride_through(once)

    def subscribe(self):
        self._ride_through(super().subscribe)

    def set_state(self, state, pipeline=None):
        if pipeline is not None:
            return super().set_state(state, pipeline)
        return self._ride_through(super().set_state, state)

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        return self._ride_through(self._heartbeat_in_one_round_trip, timeout)

    def _heartbeat_in_one_round_trip(self, timeout) -> None:
        # RQ sends a heartbeat's three commands one by one, and beats three times a job:
        # six of the job's ~28 round trips to Redis, saved by pipelining them.
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            pipe.execute()

    def check_for_suspension(self, burst: bool):
        return self._ride_through(super().check_for_suspension, burst)

    def run_maintenance_tasks(self):
        # Stopping: RQ's maintenance would start a new scheduler to replace the one that
        # stopped with our SIGTERM, and a scheduler forked in that moment may take the
        # SIGTERM of our teardown before it has handlers of its own; our exit then waits
        # on it until it is killed. The next worker's maintenance does the clean-up.
        if self._stop_requested:
            return None
        return self._ride_through(super().run_maintenance_tasks)

    def set_shutdown_requested_date(self):
        with contextlib.suppress(*REDIS_ERRORS):  # called from the signal handler: never block there
            super().set_shutdown_requested_date()

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if self._database_down:
            self._wait_for_database()
        return self._ride_through(super().dequeue_job_and_maintain_ttl, timeout, max_idle_time)

    def _pubsub_exception_handler(self, exc, pubsub, pubsub_thread) -> None:
        if isinstance(exc, REDIS_ERRORS):  # redis-py subscribes again once it reconnects
            time.sleep(self._pubsub_outage.failed(exc))
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def _start_scheduler(self, burst=False, logging_level="INFO", date_format=None, log_format=None, **_):
        """RQ's ``_start_scheduler`` with :class:`ReportScheduler` and its lock taken through outages."""
        from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT

        self.scheduler = ReportScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format or DEFAULT_LOGGING_DATE_FORMAT,
            log_format=log_format or DEFAULT_LOGGING_FORMAT,
            serializer=self.serializer,
        )
        self.scheduler.parent_pid = os.getpid()
        self.scheduler.backoff_cap = self.backoff_cap
        self._ride_through(self.scheduler.acquire_locks)
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    def teardown(self):
        try:
            super().teardown()
        except REDIS_ERRORS as exc:
            logger.warning(
                "worker %s stopped without unregistering (%s); its registration expires by itself", self.name, exc
            )

    # -- a job cut off by an outage --------------------------------------------------

    def execute_job(self, job, queue):
        try:
            return super().execute_job(job, queue)
        except REDIS_ERRORS as exc:
            logger.warning("Redis went away while job %s was started or finished; the job is handed back", job.id)
            if self.horse_pid:  # a forked horse finishes (or times out) on its own
                with contextlib.suppress(OSError):
                    self.wait_for_horse()
                self._horse_pid = 0
            executions = list(self.executions.values())
            self.executions.clear()
            self._state = WorkerStatus.IDLE
            self._wait_for_redis(exc)
            self._ride_through(self._hand_back, job, queue, executions)

    def _hand_back(self, job, queue, executions) -> None:
        """Put a job whose outcome was not recorded back at the head of its queue."""
        try:
            status = job.get_status(refresh=True)
        except (InvalidJobOperation, NoSuchJobError):
            logger.info("job %s was lost with Redis; the sweeper queues its report if still pending", job.id)
            return
        if status not in (JobStatus.QUEUED, JobStatus.STARTED):
            return  # its outcome was recorded before Redis went away
        if status == JobStatus.QUEUED and self.connection.lpos(queue.key, job.id) is not None:
            return
        with self.connection.pipeline() as pipe:
            pipe.multi()  # one transaction (RQ's enqueue_job starts one only on an empty pipeline)
            for execution in executions:
                execution.delete(job=job, pipeline=pipe)
            pipe.lrem(queue.intermediate_queue_key, 0, job.id)
            queue.enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        logger.info("job %s put back at the head of %s (its outcome was not recorded)", job.id, queue.name)

    def handle_exception(self, job, *exc_info):
        if exc_info[1] is not None and is_unavailable(exc_info[1]):
            self._outage_failure = exc_info[1]  # not the job's fault: see handle_job_failure
            return
        super().handle_exception(job, *exc_info)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        exc, self._outage_failure = self._outage_failure, None
        if exc is None:
            return super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if not self.is_horse and isinstance(exc, HorseFoundDatabaseDown):
            pass  # the horse has put the job back already
        else:
            self._ride_through(self._put_back, job, queue, execution)
        if not self.is_horse:  # a horse only tells its parent (its exit status), which logs and waits
            self.database_outage.failed(exc)
        self._database_down = True

    def _put_back(self, job, queue, execution) -> None:
        with self.connection.pipeline() as pipe:
            pipe.multi()
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            queue.enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        logger.debug("job %s put back: the database is unreachable", job.id)

    def perform_job(self, job, queue, execution) -> bool:
        performed = super().perform_job(job, queue, execution)
        if self.is_horse and self._database_down:
            os._exit(EX_TEMPFAIL)  # tell the parent, which then waits for the database
        return performed

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        if ret_val is not None and os.WIFEXITED(ret_val) and os.WEXITSTATUS(ret_val) == EX_TEMPFAIL:
            self._outage_failure = HorseFoundDatabaseDown("the work horse found the database unreachable")
            return
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)


class HorseFoundDatabaseDown(DatabaseUnavailable):
    """What a forking worker learns from its horse's exit status."""


class ReportWorker(OutageTolerantMixin, JobTimingMixin, SimpleWorker):
    """The farm's worker: jobs run in the worker process (which keeps its database
    connection), through outages, timed."""


class ForkingReportWorker(OutageTolerantMixin, JobTimingMixin, Worker):
    """The same with RQ's fork per job (``--fork``)."""
