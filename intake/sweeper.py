"""Queue stored reports that are pending but have no live job.

Closes every gap between "stored" and "queued": Redis away when the web app tried to
enqueue, a Redis restart that lost the queue, a job that expired, or a job stranded in
the started registry by a worker killed mid-job (its heartbeat stops).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import redis
import sqlalchemy as sa
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from storage.reports import pending_guids
from workers.queue import QUEUE_NAME, SERIALIZER, enqueue_report, job_id, report_queue

logger = logging.getLogger(__name__)

STALE_HEARTBEAT_SECONDS = 90
"""A started job whose worker has not sent a heartbeat for this long is taken as dead
(RQ workers beat every 30 s while a job runs)."""

LIVE_STATES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def _job_is_live(job: Job | None, now: datetime) -> bool:
    if job is None:
        return False
    status = job.get_status(refresh=False)
    if status in LIVE_STATES:
        return True
    if status == JobStatus.STARTED:
        beat = job.last_heartbeat or job.started_at
        if beat is None:
            return True
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        return now - beat < timedelta(seconds=STALE_HEARTBEAT_SECONDS)
    # A job in the failed registry waits for an operator; never re-queue it by itself.
    return status == JobStatus.FAILED


def sweep(engine: sa.Engine, connection: redis.Redis, grace_seconds: int, queue_name: str = QUEUE_NAME) -> int:
    """Queue every pending report older than ``grace_seconds`` that has no live job."""
    queue = report_queue(connection, queue_name)
    StartedJobRegistry(queue=queue).cleanup()
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=grace_seconds)
    with engine.connect() as conn:
        guids = pending_guids(conn, cutoff)
    now = datetime.now(UTC)
    requeued = 0
    for guid in guids:
        try:
            job = Job.fetch(job_id(guid), connection=connection, serializer=SERIALIZER)
        except NoSuchJobError:
            job = None
        if _job_is_live(job, now):
            continue
        if enqueue_report(connection, guid, queue_name):
            requeued += 1
            logger.info(
                "sweeper queued guid=%s previous_status=%s", guid, job.get_status(refresh=False) if job else None
            )
    if requeued:
        logger.info("sweep queued %d of %d pending reports", requeued, len(guids))
    return requeued
