"""The queue contract: one RQ job per report, carrying only the report GUID.

The web app, the sweeper and the backlog tools enqueue through :func:`enqueue_report`;
the workers run :data:`JOB_FUNCTION`. The database (``test_report.state``) is the truth
about what is pending, so a lost job is re-created by the sweeper, and a job that runs
twice does no harm.
"""

from __future__ import annotations

import logging

import redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from queueing import counters

logger = logging.getLogger(__name__)

QUEUE_NAME = "reports"
"""The queue new reports go to (visible in the dashboard under this name)."""

LOW_QUEUE_NAME = "reports-low"
"""The low-priority queue: backfill work (parsing stored reports' texts again). Workers
listen on it after :data:`QUEUE_NAME`, so a live report always goes first."""

JOB_FUNCTION = "workers.jobs.process_report"
"""Dotted path of the job, so that enqueuing does not import the processing code."""

BATCH_JOB_FUNCTION = "workers.jobs.process_batch"
"""The backlog tool's job: many reports in one transaction."""

ENRICH_REPORTS_FUNCTION = "workers.enrich.enrich_reports"
"""Parse the texts of given reports into their facts (low-priority queue)."""

ENRICH_RANGE_FUNCTION = "workers.enrich.enrich_range"
"""The backfill's job: parse the reports of an id window whose facts are missing or stale."""

ALLOWED_JOB_FUNCTIONS = frozenset(
    {
        JOB_FUNCTION,
        BATCH_JOB_FUNCTION,
        ENRICH_REPORTS_FUNCTION,
        ENRICH_RANGE_FUNCTION,
    }
)
"""The only functions a worker runs (``workers.allowlist``): RQ stores the dotted name of
the function in each job, so anyone able to write to Redis could otherwise make every worker
import and run any function (``os.system`` included). A new job function is added here."""

JOB_TIMEOUT = 120
"""Seconds a single report may take before RQ kills the job (the default of ``JOB_TIMEOUT``)."""

JOB_TTL = 7 * 24 * 3600
"""Seconds a job may wait in the queue; the sweeper re-queues a report whose job expired."""

RESULT_TTL = 60
"""Seconds a finished job is kept (enough to see it in the dashboard). The database says
what was done; at 100 reports/s each second kept costs Redis ~0.5 MB (bench/soak.py), so
a longer one only makes Redis grow for that long after a start (600 s: ~300 MB)."""

REPORT_RESULT_TTL = 0
"""A finished report job is deleted at once (RQ's ``result_ttl=0``): its outcome is the
report's state in the database, and a result kept in Redis (a stream of ~4.6 KB and the
job's hash, for :data:`RESULT_TTL`) would make Redis's size follow the last minute's
throughput instead of the backlog it holds (bench/soak.py). The dashboard shows report
jobs while queued, started or failed; the status page and ``/metrics`` count the done."""

FAILURE_TTL = 30 * 24 * 3600
"""Seconds a failed job stays in the failed registry for an operator to inspect and requeue."""

LIFETIMES = {"ttl": JOB_TTL, "result_ttl": RESULT_TTL, "failure_ttl": FAILURE_TTL}
"""The lifetimes every job of ours is enqueued with (``enqueue``/``enqueue_call`` keywords)."""

REPORT_LIFETIMES = {**LIFETIMES, "result_ttl": REPORT_RESULT_TTL}
"""The lifetimes of the one-per-report jobs (see :data:`REPORT_RESULT_TTL`)."""

RETRY_INTERVALS = [10, 30, 120, 600, 1800]
"""Back-off between attempts; with ``--with-scheduler`` workers, retries wait this long."""

SERIALIZER = JSONSerializer
"""Jobs are plain JSON (a GUID), readable from any language and by rq-dashboard."""


def job_id(guid: str) -> str:
    """The job id derived from the report GUID: one job per report, visible by name."""
    return f"report-{guid.lower()}"


def connect(
    url: str, timeout: float | None = None, *, connect_timeout: float | None = None, keepalive: bool = False
) -> redis.Redis:
    """A Redis client; the web app passes a short timeout so Redis never delays a 201.

    Long-running processes (workers) pass ``connect_timeout`` and ``keepalive``, so that a
    Redis host that vanished is noticed in seconds (RQ sets their read timeout itself).
    """
    options = {}
    if keepalive:
        from storage.engine import keepalive_options

        options = {"socket_keepalive": True, "socket_keepalive_options": keepalive_options()}
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout if connect_timeout is not None else timeout,
        socket_timeout=timeout,
        health_check_interval=30,
        **options,
    )


def report_queue(connection: redis.Redis, name: str = QUEUE_NAME, job_class=None) -> Queue:
    """The queue ``name`` with our serializer (and, for workers, their job class)."""
    return Queue(name, connection=connection, serializer=SERIALIZER, job_class=job_class)


def low_queue(connection: redis.Redis) -> Queue:
    """The queue of :data:`LOW_QUEUE_NAME`."""
    return report_queue(connection, LOW_QUEUE_NAME)


def enqueue_report(
    connection: redis.Redis,
    guid: str,
    queue_name: str = QUEUE_NAME,
    count_as: str | None = None,
    timeout: int = JOB_TIMEOUT,
) -> bool:
    """Queue the processing job of one stored report. Returns False (and logs) when
    Redis is unreachable: the report stays pending and the sweeper queues it later.

    The job and, with ``count_as``, the per-minute event counter go to Redis in one
    pipelined round trip (this runs on every submission). ``timeout`` is the job's
    (``JOB_TIMEOUT``).
    """
    try:
        put_report_job(connection, guid, queue_name, count_as, timeout)
        return True
    except redis.RedisError as exc:
        logger.debug("enqueue failed guid=%s error=%s; the sweeper will queue it", guid, exc)
        return False


def put_report_job(
    connection: redis.Redis,
    guid: str,
    queue_name: str = QUEUE_NAME,
    count_as: str | None = None,
    timeout: int = JOB_TIMEOUT,
) -> None:
    """:func:`enqueue_report` that raises ``redis.RedisError`` instead of returning False."""
    pipe = connection.pipeline()
    report_queue(connection, queue_name).enqueue_call(
        JOB_FUNCTION,
        args=(guid,),
        job_id=job_id(guid),
        timeout=timeout,
        **REPORT_LIFETIMES,
        retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        description=f"process report {guid}",
        pipeline=pipe,
    )
    if count_as:
        counters.add_to(pipe, count_as)
    pipe.execute()
