"""Job durations in a histogram kept in Redis (the monitored workers of ``workers.worker``
add one per job; ``/metrics`` reads them).

RQ's ``Worker`` forks one work horse per job, so prometheus-client's multiprocess mode
would leave one file per job process behind. Instead the job adds its duration to a
Redis hash (one pipelined round trip), and ``/metrics`` exposes that hash as a Prometheus
histogram: right whichever hosts the workers run on, and nothing grows per process.
"""

from __future__ import annotations

import logging
import math

import redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "cpt:hist:job_seconds"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Upper bounds (seconds) of the job-duration buckets; JOB_TIMEOUT is 120 s."""

OUTCOMES_KEY = f"{KEY_PREFIX}:outcomes"


def _key(outcome: str) -> str:
    return f"{KEY_PREFIX}:{outcome}"


def _bucket(seconds: float) -> str:
    for bound in BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def observe(connection: redis.Redis, seconds: float, outcome: str = "done") -> None:
    """Add one job duration to the shared histogram; never raises."""
    key = _key(outcome)
    try:
        pipe = connection.pipeline(transaction=False)
        pipe.sadd(OUTCOMES_KEY, outcome)
        pipe.hincrby(key, _bucket(seconds), 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", seconds)
        pipe.execute()
    except redis.RedisError as exc:
        logger.debug("job duration not recorded error=%s", exc)


def histograms(connection: redis.Redis) -> dict[str, dict]:
    """``{outcome: {"buckets": [(le, cumulative), ...], "count": n, "sum": s}}`` for /metrics."""
    outcomes = sorted(o.decode() if isinstance(o, bytes) else o for o in connection.smembers(OUTCOMES_KEY))
    pipe = connection.pipeline(transaction=False)
    for outcome in outcomes:
        pipe.hgetall(_key(outcome))
    result = {}
    for outcome, raw in zip(outcomes, pipe.execute(), strict=True):
        data = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
        cumulative, buckets = 0.0, []
        for bound in BUCKETS:
            cumulative += data.get(repr(bound), 0.0)
            buckets.append((repr(bound), cumulative))
        cumulative += data.get("+Inf", 0.0)
        buckets.append(("+Inf", cumulative))
        total = data.get("sum", 0.0)
        result[outcome] = {"buckets": buckets, "count": cumulative, "sum": 0.0 if math.isnan(total) else total}
    return result
