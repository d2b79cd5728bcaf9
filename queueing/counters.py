"""Per-minute event counters in Redis (submissions, processed reports), shared by every
host: the web app and the workers count, the status page and the alarm read.

One key per event and minute, expiring after two hours, so a rate over the last hour is
one MGET and nothing grows without bound.
"""

from __future__ import annotations

import logging
import time

import redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "cpt:events"
RETENTION_SECONDS = 2 * 3600
SUBMITTED = "submitted"
PROCESSED = "processed"


def _key(event: str, minute: int) -> str:
    return f"{KEY_PREFIX}:{event}:{minute}"


def total_key(event: str) -> str:
    """The never-expiring running total of ``event`` (a Prometheus counter; resets with Redis)."""
    return f"{KEY_PREFIX}:{event}:total"


def last_key(event: str) -> str:
    """Epoch seconds of the latest ``event`` (the alarm's "nothing submitted for ..." test)."""
    return f"{KEY_PREFIX}:{event}:last"


def totals(connection: redis.Redis, events: list[str]) -> dict[str, int]:
    """Running totals of ``events`` in one MGET."""
    values = connection.mget([total_key(e) for e in events])
    return {e: int(v or 0) for e, v in zip(events, values, strict=True)}


def record(connection: redis.Redis, event: str, count: int = 1, at: float | None = None) -> None:
    """Add ``count`` to this minute's counter of ``event``; never raises (figures are best effort)."""
    try:
        pipe = connection.pipeline(transaction=False)
        add_to(pipe, event, count, at)
        pipe.execute()
    except redis.RedisError as exc:
        logger.debug("event counter not recorded event=%s error=%s", event, exc)


def add_to(pipe, event: str, count: int = 1, at: float | None = None) -> None:
    """Queue the counter updates on a caller's pipeline (one round trip with its other writes)."""
    moment = at if at is not None else time.time()
    minute = int(moment // 60)
    pipe.incrby(_key(event, minute), count)
    pipe.expire(_key(event, minute), RETENTION_SECONDS)
    pipe.incrby(total_key(event), count)
    pipe.set(last_key(event), int(moment))


def series(connection: redis.Redis, event: str, minutes: int = 60, now: float | None = None) -> list[tuple[int, int]]:
    """``[(epoch_minute_start_seconds, count), ...]`` for the last ``minutes`` minutes, oldest first."""
    current = int((now if now is not None else time.time()) // 60)
    span = list(range(current - minutes + 1, current + 1))
    values = connection.mget([_key(event, m) for m in span])
    return [(m * 60, int(v or 0)) for m, v in zip(span, values, strict=True)]
