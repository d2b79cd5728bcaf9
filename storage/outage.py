"""Riding through an outage of Redis or the database: wait, try again, go on.

Every long-running process (workers, the sweeper, the web app's enqueue) keeps one
:class:`Outage` per service. The first failure of an outage is logged once, the attempts
that follow are spaced by a capped, jittered exponential back-off (so a farm of workers
does not hammer a server that is coming back), and the return of the service is logged
once with the outage's length. The clock, the randomness and the sleep are injected, so
the back-off logic is tested without waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import redis

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
"""What redis-py raises when Redis cannot be reached (refused, reset, timed out, loading)."""

BACKOFF_BASE = 0.5
"""Seconds of the first wait of an outage; each further failure doubles it up to the cap."""

DEFAULT_CAP = 10.0
"""Longest wait between two attempts (``OUTAGE_BACKOFF_MAX``)."""


class Breaker:
    """A circuit breaker in its simplest form: after a failure (:meth:`trip`) the protected
    call is skipped for ``seconds`` (:attr:`open`), then tried again; a new failure opens it
    again. Calls skipped while it is open never extend it.

    Not pybreaker: its breaker holds one lock around every protected call, so the threads of
    a viewer or web process would wait for each other's database call.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        self._until = time.monotonic() + self.seconds

    def reset(self) -> None:
        """Close it now (the next call is tried)."""
        self._until = 0.0


class Outage:
    """One service's outage state: when it began, how many attempts failed, the next wait.

    ``failed(exc)`` records a failed attempt and returns how long to wait before the next
    one; ``recovered()`` ends the outage. Both are cheap no-ops in the common case, so a
    caller may call ``recovered()`` after every success.
    """

    def __init__(
        self,
        service: str,
        log: logging.Logger | None = None,
        *,
        cap: float = DEFAULT_CAP,
        base: float = BACKOFF_BASE,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        quiet: bool = False,
    ):
        self.service = service
        self.log = log or logging.getLogger(__name__)
        self.cap = max(float(cap), 0.001)
        self.base = min(float(base), self.cap)
        self.clock = clock
        self.rng = rng
        self.quiet = quiet
        self.began: float | None = None
        self.failures = 0
        self.next_try = 0.0

    @property
    def down(self) -> bool:
        """Whether an outage is under way (a failure not yet followed by a success)."""
        return self.began is not None

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failed attempts: half the exponential step plus a
        random part of the other half ("equal jitter": never zero, never above the cap)."""
        step = min(self.cap, self.base * 2 ** max(failures - 1, 0))
        return step / 2 + self.rng() * step / 2

    def failed(self, exc: BaseException | None = None) -> float:
        """Record a failed attempt; returns the seconds to wait before the next one.

        The first failure of an outage is logged (a warning), the others only at debug level.
        """
        now = self.clock()
        self.failures += 1
        wait = self.delay(self.failures)
        self.next_try = now + wait
        reason = _reason(exc)
        if self.began is None:
            self.began = now
            level = logging.DEBUG if self.quiet else logging.WARNING
            self.log.log(
                level,
                "%s unreachable (%s); waiting for it, retrying with back-off up to %gs",
                self.service,
                reason,
                self.cap,
            )
        else:
            self.log.debug(
                "%s still unreachable (%s); attempt %d, next in %.2fs", self.service, reason, self.failures, wait
            )
        return wait

    def due(self) -> bool:
        """Whether the next attempt may be made now (always, when the service is up)."""
        return self.began is None or self.clock() >= self.next_try

    def recovered(self) -> float | None:
        """End the outage (if any); logs its length once and returns it in seconds."""
        if self.began is None:
            return None
        lasted = self.clock() - self.began
        if not self.quiet:
            self.log.warning("%s back after %.1fs (%d failed attempts)", self.service, lasted, self.failures)
        self.began = None
        self.failures = 0
        self.next_try = 0.0
        return lasted


def wait_until(
    probe: Callable[[], object],
    outage: Outage,
    *,
    is_outage: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
    first_wait: float | None = None,
    between: Callable[[], None] | None = None,
) -> float | None:
    """Call ``probe`` until it succeeds, waiting the back-off between attempts.

    ``first_wait`` (the value :meth:`Outage.failed` returned for the failure that started
    the wait) comes before the first probe. An error for which ``is_outage`` is false is
    raised at once. ``between`` runs after each wait (a worker sends its heartbeat there).
    Returns the outage's length.
    """
    wait = first_wait
    while True:
        if wait is not None:
            sleep(wait)
            if between is not None:
                between()
        try:
            probe()
        except Exception as exc:
            if not is_outage(exc):
                raise
            wait = outage.failed(exc)
            continue
        return outage.recovered()


def is_redis_outage(exc: BaseException) -> bool:
    return isinstance(exc, REDIS_ERRORS)


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
