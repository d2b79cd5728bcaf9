"""Make a freshly forked web worker ready before it takes its first submission.

A worker's first request used to pay for what every later one finds done: the first
connection to the database and to Redis, and Flask's first dispatch. Right after a
deploy, or a ``max_requests`` recycle, those first requests are real testers' reports.
gunicorn calls :func:`warm_up` from ``post_worker_init``, before the worker accepts.
"""

from __future__ import annotations

import logging
import time

from flask import Flask

logger = logging.getLogger(__name__)


def warm_up(app: Flask, who: str = "worker") -> None:
    """Open the database and Redis connections through ``/readyz`` (never fails the boot:
    a backend that is down now is the request path's business, with its spool). ``who``
    names the process in the log line (gunicorn's master warms the code once, too)."""
    started = time.perf_counter()
    with app.test_client() as client:
        status = client.get("/readyz").status_code
    logger.info("%s warmed up in %.0f ms (readyz %d)", who, (time.perf_counter() - started) * 1000, status)
