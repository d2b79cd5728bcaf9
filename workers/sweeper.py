"""Queue stored reports that are pending but have no live job.

Closes every gap between "stored" and "queued": Redis away when the web app tried to
enqueue, a Redis restart that lost the queue, a job that expired, a job stranded in the
started registry by a worker killed mid-job (its heartbeat stops), or a retry whose
scheduler is gone.

"Live" is checked against where RQ would actually find the job, not only its status: a
job hash that says ``queued`` but whose id is in no queue (nor being dequeued) is not
live, nor is a ``scheduled`` one missing from the scheduled registry or long overdue, nor
a ``failed`` one no longer in the failed registry. So no pending report can stay unqueued
because some stale hash in Redis claims it.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import redis
import sqlalchemy as sa
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from queueing.contract import JOB_TIMEOUT, QUEUE_NAME, job_id, put_report_job, report_queue
from storage.clock import utc_now
from storage.reports import pending_page

logger = logging.getLogger(__name__)

STALE_HEARTBEAT_SECONDS = 90
"""A started job whose worker has not sent a heartbeat for this long is taken as dead."""

SCHEDULE_OVERDUE_SECONDS = 300
"""A retry due this long ago and still in the scheduled registry has no scheduler to move it."""

PAGE = 2000
"""Pending reports examined per round trip to the database and to Redis."""


class LiveJobs:
    """Where the reports queue's jobs are in Redis, read lazily once per sweep."""

    def __init__(self, connection: redis.Redis, queue_name: str):
        self.connection = connection
        self.queue = report_queue(connection, queue_name)
        self._queued: set[str] | None = None
        self._scheduled: dict[str, float] | None = None

    def queued(self) -> set[str]:
        """Ids in the queue or being moved out of it by a worker (RQ's intermediate queue)."""
        if self._queued is None:
            pipe = self.connection.pipeline(transaction=False)
            pipe.lrange(self.queue.key, 0, -1)
            pipe.lrange(self.queue.intermediate_queue_key, 0, -1)
            self._queued = {i.decode() for ids in pipe.execute() for i in ids}
        return self._queued

    def scheduled(self) -> dict[str, float]:
        if self._scheduled is None:
            key = self.queue.scheduled_job_registry.key
            self._scheduled = {i.decode(): score for i, score in self.connection.zrange(key, 0, -1, withscores=True)}
        return self._scheduled

    def in_registry(self, key: str, ids: list[str]) -> list[bool]:
        pipe = self.connection.pipeline(transaction=False)
        for i in ids:
            pipe.zscore(key, i)
        return [score is not None for score in pipe.execute()]


def _when(raw: bytes | None) -> datetime | None:
    if not raw:
        return None
    text = raw.decode().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _live(ids: list[str], hashes: list[list], jobs: LiveJobs, now: datetime, stale: float) -> list[bool]:
    """Whether each job would be run by a worker (or waits for an operator) as it stands."""
    live = [False] * len(ids)
    failed, deferred = [], []
    for n, (jid, (status, beat, started)) in enumerate(zip(ids, hashes, strict=True)):
        status = status.decode() if status else None
        if status == JobStatus.QUEUED:
            live[n] = jid in jobs.queued()
        elif status == JobStatus.SCHEDULED:
            due = jobs.scheduled().get(jid)
            live[n] = due is not None and due > now.timestamp() - SCHEDULE_OVERDUE_SECONDS
        elif status == JobStatus.STARTED:
            heartbeat = _when(beat) or _when(started)
            live[n] = heartbeat is None or now - heartbeat < timedelta(seconds=stale)
        elif status == JobStatus.FAILED:  # waits in the failed registry for an operator
            failed.append(n)
        elif status == JobStatus.DEFERRED:
            deferred.append(n)
    for positions, key in (
        (failed, jobs.queue.failed_job_registry.key),
        (deferred, jobs.queue.deferred_job_registry.key),
    ):
        if positions:
            for n, present in zip(positions, jobs.in_registry(key, [ids[n] for n in positions]), strict=True):
                live[n] = present
    return live


def sweep(
    engine: sa.Engine,
    connection: redis.Redis,
    grace_seconds: int,
    queue_name: str = QUEUE_NAME,
    *,
    job_timeout: int = JOB_TIMEOUT,
    stale_seconds: float | None = None,
) -> int:
    """Queue every pending report older than ``grace_seconds`` that has no live job.

    Raises ``redis.RedisError`` (and the database's errors) when a service is unreachable:
    the caller waits for it and sweeps again.
    """
    stale = STALE_HEARTBEAT_SECONDS if stale_seconds is None else stale_seconds
    jobs = LiveJobs(connection, queue_name)
    StartedJobRegistry(queue=jobs.queue).cleanup()
    cutoff = utc_now() - timedelta(seconds=grace_seconds)
    requeued = examined = 0
    after = None
    started = time.monotonic()
    while True:
        with engine.connect() as conn:
            page = pending_page(conn, cutoff, PAGE, after)
        if not page:
            break
        after = page[-1][1:]
        guids = [guid for guid, _created, _id in page]
        ids = [job_id(guid) for guid in guids]
        pipe = connection.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(Job.redis_job_namespace_prefix + i, "status", "last_heartbeat", "started_at")
        hashes = pipe.execute()
        now = datetime.now(UTC)
        for guid, jid, (status, *_), live in zip(guids, ids, hashes, _live(ids, hashes, jobs, now, stale), strict=True):
            if live:
                continue
            put_report_job(connection, guid, queue_name, timeout=job_timeout)
            connection.zrem(jobs.queue.scheduled_job_registry.key, jid)  # a retry whose scheduler is gone
            requeued += 1
            logger.info("sweeper queued guid=%s previous_status=%s", guid, status.decode() if status else None)
        examined += len(page)
        if len(page) < PAGE:
            break
    if requeued:
        logger.info("sweep queued %d of %d pending reports in %.1fs", requeued, examined, time.monotonic() - started)
    return requeued
