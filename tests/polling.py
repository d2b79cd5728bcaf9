"""Waiting for real processes in system tests: poll a condition until a deadline.

The one place in the tests that pauses (ruff bans ``time.sleep`` in tests/ elsewhere, see
tests/ruff.toml): a test waits for something to become true, never for time to pass.
"""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1, retry_on: tuple = ()):
    """Poll ``predicate`` until it returns something true, and return that; ``TimeoutError``
    after ``timeout`` seconds. An exception of a type in ``retry_on`` (a process still
    starting) counts as "not yet" and is named in the timeout's message."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" ({last})" if last else ""))
        time.sleep(interval)
