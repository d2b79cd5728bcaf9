"""Failed authentications throttled per (profile, client address).

After ``AUTH_FAILURE_LIMIT`` wrong secrets for one profile from one address within
``AUTH_FAILURE_WINDOW`` seconds, that pair is answered ``429`` with ``Retry-After`` and its
secret is not checked, so guessing a tester's secret goes no faster than that. Other
addresses, and other profiles, are not affected.

Only wrong secrets count: a correct submission never adds to the count, and no other limit
is put on submissions (the Perl client never retries, so any refusal loses a report;
connection limits belong to the proxy in front). The counts are a moving window kept in
Redis by ``limits`` (shared by every web process and host). The throttle fails open: when
Redis does not answer, nothing is refused, and it is not asked again for
:data:`REDIS_BACKOFF_SECONDS`, so an outage adds no wait to submissions.

A pair found free is remembered in the process for :data:`FREE_MEMORY_SECONDS`, so that a
tester's steady stream of submissions costs no Redis round trip each. A wrong secret from
the pair forgets it at once: every guess after a wrong one is checked against Redis, and a
block decided by another process applies here within that second.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from cachetools import TTLCache
from flask import Flask, current_app, request
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from app.errors import error_response
from intake.pipeline import Credentials, WrongSecret
from schemas.metabase import is_guid

logger = logging.getLogger(__name__)

KEY_PREFIX = "cpt:authfail"
"""Redis keys of the counts (``cpt:authfail:LIMITER/<profile>/<address>/...``)."""

REDIS_BACKOFF_SECONDS = 5.0
"""After a Redis error the throttle is skipped (open) for this long."""

FREE_MEMORY_SECONDS = 1.0
"""How long a process trusts that a (profile, address) pair it found free is still free."""

FREE_MEMORY_PAIRS = 10_000
"""Pairs remembered as free per process, at most (the least recently seen go first)."""

EXTENSION_KEY = "cpantesters_throttle"


class Throttled(Exception):
    """429: too many wrong secrets for this profile from this address."""

    def __init__(self, retry_after: int):
        super().__init__(
            f"too many failed authentications for this profile from your address; retry in {retry_after} s"
        )
        self.retry_after = retry_after


class AuthThrottle:
    """Counts wrong secrets per (profile, address) and says when a pair must wait."""

    def __init__(
        self,
        redis_connection: redis.Redis,
        limit: int,
        window: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.enabled = limit > 0 and window > 0
        self.item = RateLimitItemPerSecond(max(limit, 1), max(window, 1))
        # The app's own connection pool (its short timeouts included), not a second client.
        storage = RedisStorage("redis://", connection_pool=redis_connection.connection_pool, key_prefix=KEY_PREFIX)
        self.limiter = MovingWindowRateLimiter(storage)
        self.clock = clock
        self._skip_until = 0.0
        self._free: TTLCache = TTLCache(FREE_MEMORY_PAIRS, FREE_MEMORY_SECONDS, timer=clock)
        self._free_lock = threading.Lock()  # gthread workers share the process's memory

    def _available(self) -> bool:
        return self.enabled and self.clock() >= self._skip_until

    def _failed_open(self, exc: Exception) -> None:
        logger.warning("auth throttle skipped for %.0f s, Redis error: %s", REDIS_BACKOFF_SECONDS, exc)
        self._skip_until = self.clock() + REDIS_BACKOFF_SECONDS

    def retry_after(self, profile: str, address: str) -> int | None:
        """Seconds until ``profile`` may be tried again from ``address``; None when it may now."""
        if not self._available():
            return None
        with self._free_lock:
            if (profile, address) in self._free:
                return None
        try:
            reset, remaining = self.limiter.get_window_stats(self.item, profile, address)
        except (redis.RedisError, OSError) as exc:
            self._failed_open(exc)
            return None
        if remaining > 0:
            with self._free_lock:
                self._free[profile, address] = True
            return None
        return max(1, math.ceil(reset - time.time()))

    def failed(self, profile: str, address: str) -> None:
        """Count one wrong secret for the pair."""
        with self._free_lock:
            self._free.pop((profile, address), None)
        if not self._available():
            return
        try:
            self.limiter.hit(self.item, profile, address)
        except (redis.RedisError, OSError) as exc:
            self._failed_open(exc)


@contextmanager
def guard(credentials: Credentials | None) -> Iterator[None]:
    """Around a submission: refuse a throttled pair before its secret is checked, and count
    a wrong secret (:class:`intake.pipeline.WrongSecret`) when the submission raises one."""
    throttle: AuthThrottle | None = current_app.extensions.get(EXTENSION_KEY)
    if throttle is None or credentials is None or not is_guid(credentials.profile_guid):
        yield
        return
    profile, address = credentials.profile_guid.lower(), request.remote_addr or "-"
    wait = throttle.retry_after(profile, address)
    if wait is not None:
        logger.warning("auth throttled profile=%s address=%s retry_after=%d", profile, address, wait)
        raise Throttled(wait)
    try:
        yield
    except WrongSecret:
        throttle.failed(profile, address)
        raise


def _throttled(exc: Throttled):
    response = error_response(str(exc), 429)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def init_app(app: Flask, redis_connection: redis.Redis, limit: int, window: int) -> None:
    """Throttle failed authentications on ``app``'s submission routes (see :func:`guard`)."""
    app.extensions[EXTENSION_KEY] = AuthThrottle(redis_connection, limit, window)
    app.register_error_handler(Throttled, _throttled)
