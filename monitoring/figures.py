"""The pipeline figures, read from Redis and the database so that they are right whichever
hosts the web app and the workers run on. Shared by ``/status``, ``/metrics`` and the alarm.

Every figure is cheap: Redis answers from a handful of O(1)/O(workers) commands, and each
database figure is one index lookup (``QUERIES``; ``tests/test_ops_explain.py`` shows the
plans on MariaDB). A backend that does not answer leaves its figures as ``None`` and its
error in ``errors``, so a partial outage still shows what is known.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import redis
import sqlalchemy as sa
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from queueing import counters
from storage.tables import test_report

logger = logging.getLogger(__name__)

HISTORY_MINUTES = 60
"""The span of the per-minute series (the status page's chart)."""

DEPTH_KEY_PREFIX = "cpt:gauge:queue_depth"
"""One queue-depth sample per minute, written by whoever reads the figures (scrape, page, alarm)."""

QUERIES: dict[str, sa.Select] = {
    # The auto-increment key: an estimate of the reports stored (deleted rows still count).
    "stored": sa.select(sa.func.max(test_report.c.id)),
    # Exact, from the (state, created) index: how many wait, and since when.
    "waiting": sa.select(sa.func.count(), sa.func.min(test_report.c.created)).where(test_report.c.state == "pending"),
    # Reports given up on (state 'failed'), from the same index.
    "failed_reports": sa.select(sa.func.count()).where(test_report.c.state == "failed"),
}
"""The database figures, one query each; every one is an index lookup."""


@dataclass
class Figures:
    """A snapshot of the pipeline; ``None`` where the source did not answer."""

    collected_at: float
    queues: list[dict] | None = None
    workers: list[dict] | None = None
    stored: int | None = None
    waiting: int | None = None
    oldest_waiting_seconds: float | None = None
    failed_reports: int | None = None
    submitted_total: int | None = None
    processed_total: int | None = None
    spooled: int | None = None
    oldest_spooled_seconds: float | None = None
    history: dict | None = None
    errors: dict = field(default_factory=dict)

    @property
    def queued(self) -> int | None:
        return None if self.queues is None else sum(q["queued"] for q in self.queues)

    @property
    def failed_jobs(self) -> int | None:
        return None if self.queues is None else sum(q["failed"] for q in self.queues)

    @property
    def workers_alive(self) -> int | None:
        return None if self.workers is None else len(self.workers)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["collected_at"] = _iso(self.collected_at)
        data["queued"] = self.queued
        data["failed_jobs"] = self.failed_jobs
        data["workers_alive"] = self.workers_alive
        return data


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def database_figures(engine: sa.Engine, now: float) -> dict:
    """``stored``, ``waiting``, ``oldest_waiting_seconds`` and ``failed_reports``."""
    with engine.connect() as conn:
        stored = conn.execute(QUERIES["stored"]).scalar()
        waiting, oldest = conn.execute(QUERIES["waiting"]).one()
        failed = conn.execute(QUERIES["failed_reports"]).scalar()
    oldest_age = None
    if oldest is not None:
        oldest_age = max(0.0, now - oldest.replace(tzinfo=UTC).timestamp())
    return {"stored": int(stored or 0), "waiting": int(waiting), "oldest_waiting_seconds": oldest_age,
            "failed_reports": int(failed)}  # fmt: skip


def queue_figures(connection: redis.Redis) -> list[dict]:
    """Depth and registries of every RQ queue (the reports queue always listed)."""
    from queueing.contract import QUEUE_NAME

    names = sorted({q.name for q in Queue.all(connection=connection)} | {QUEUE_NAME})
    result = []
    for name in names:
        queue = Queue(name, connection=connection)
        result.append(
            {
                "name": name,
                "queued": queue.count,
                "started": StartedJobRegistry(name, connection=connection).get_job_count(cleanup=False),
                "failed": FailedJobRegistry(name, connection=connection).get_job_count(cleanup=False),
                "scheduled": ScheduledJobRegistry(name, connection=connection).get_job_count(cleanup=False),
            }
        )
    return result


def worker_figures(connection: redis.Redis) -> list[dict]:
    """Workers whose registration has not expired, and what each is doing."""
    workers = []
    for worker in Worker.all(connection=connection):
        workers.append(
            {
                "name": worker.name,
                "state": str(worker.get_state()),
                "current_job": worker.get_current_job_id(),
                "queues": [q.name for q in worker.queues],
                "last_heartbeat": worker.last_heartbeat.strftime("%Y-%m-%dT%H:%M:%SZ")
                if worker.last_heartbeat
                else None,
                "hostname": worker.hostname,
                "pid": worker.pid,
            }
        )
    return sorted(workers, key=lambda w: w["name"])


def history(connection: redis.Redis, current_depth: int, now: float, minutes: int = HISTORY_MINUTES) -> dict:
    """Per-minute submissions, processed reports and queue depth over the last ``minutes``.

    Depth comes from the per-minute samples where one was taken; a minute with no sample is
    reconstructed from the next one and the counters (depth before = depth after - submitted
    + processed), so the chart is whole even when nobody looked during the hour.
    """
    submitted = counters.series(connection, counters.SUBMITTED, minutes, now)
    processed = counters.series(connection, counters.PROCESSED, minutes, now)
    starts = [t for t, _ in submitted]
    samples = connection.mget([f"{DEPTH_KEY_PREFIX}:{t // 60}" for t in starts])
    depth = [0] * minutes
    depth[-1] = current_depth
    for i in range(minutes - 2, -1, -1):
        sample = samples[i]
        if sample is not None:
            depth[i] = int(sample)
        else:
            depth[i] = max(0, depth[i + 1] - submitted[i + 1][1] + processed[i + 1][1])
    return {
        "minute_starts": [_iso(t) for t in starts],
        "submitted": [c for _, c in submitted],
        "processed": [c for _, c in processed],
        "queue_depth": depth,
    }


def record_depth_sample(connection: redis.Redis, depth: int, now: float) -> None:
    key = f"{DEPTH_KEY_PREFIX}:{int(now // 60)}"
    connection.set(key, depth, ex=counters.RETENTION_SECONDS)


def collect(engine: sa.Engine | None, connection: redis.Redis | None, spool=None, now: float | None = None,
            with_history: bool = True) -> Figures:  # fmt: skip
    """Read every figure; never raises for an unreachable backend (see ``errors``)."""
    now = time.time() if now is None else now
    figures = Figures(collected_at=now)
    if engine is not None:
        try:
            for key, value in database_figures(engine, now).items():
                setattr(figures, key, value)
        except Exception as exc:  # any database failure is a figure, not a crash
            figures.errors["database"] = _error(exc)
    if connection is not None:
        try:
            figures.queues = queue_figures(connection)
            figures.workers = worker_figures(connection)
            totals = counters.totals(connection, [counters.SUBMITTED, counters.PROCESSED])
            figures.submitted_total = totals[counters.SUBMITTED]
            figures.processed_total = totals[counters.PROCESSED]
            record_depth_sample(connection, figures.queued, now)
            if with_history:
                figures.history = history(connection, figures.queued, now)
        except Exception as exc:
            figures.errors["redis"] = _error(exc)
    if spool is not None:
        try:
            mtimes = []
            for path in spool.pending():
                with contextlib.suppress(FileNotFoundError):  # drained meanwhile
                    mtimes.append(path.stat().st_mtime)
            figures.spooled = len(mtimes)
            figures.oldest_spooled_seconds = max(0.0, now - min(mtimes)) if mtimes else 0.0
        except OSError as exc:
            figures.errors["spool"] = _error(exc)
    return figures
