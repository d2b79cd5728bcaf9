"""``GET /tail/log.txt``: the last reports in the exact legacy line format.

Built from ``test_report`` at most every ``TAIL_LOG_TTL`` seconds per process, so a new
report shows within seconds (upstream rebuilt a file every ten minutes).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app

from app.services import services
from schemas.v3 import PERL5
from storage.reports import latest_reports
from storage.uploads import upload_paths

tail = Blueprint("tail", __name__)
CACHE_KEY = "tail_log_cache"


def _field(value) -> str:
    # A bracketed field must stay on its line for the consumers' 8-field pattern.
    return " ".join(str(value or "").split())


def format_line(row, distfile: str) -> str:
    created = row["created"].strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"[{created}] [{_field(row['reporter'])}] [{_field(row['grade'])}] [{_field(distfile)}] "
        f"[{_field(row['archname'])}] [perl-v{_field(row['perl'])}] [{row['guid']}] [{created}]"
    )


def build_tail_log(engine: sa.Engine, size: int, now: datetime | None = None) -> str:
    """The whole log.txt text: a header line, then one line per report, newest first."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        rows = latest_reports(conn, PERL5, size)
        # Only reports stored without their own resource path need the uploads table.
        missing = {(r["dist"], r["version"]) for r in rows if not r["distfile"]}
        authors = upload_paths(conn, missing)
    lines = [f"The last {len(rows)} reports as of {now.strftime('%Y-%m-%dT%H:%M:%S')}Z:"]
    for row in rows:
        distfile = row["distfile"] or authors.get((row["dist"], row["version"])) or ""
        lines.append(format_line(row, distfile))
    return "\n".join(lines) + "\n"


class TailLogCache:
    """One process's copy of log.txt and when it was built."""

    def __init__(self):
        self.text = ""
        self.built = -math.inf
        self.lock = threading.Lock()

    def get(self, engine: sa.Engine, size: int, ttl: int) -> tuple[str, int]:
        """The text and how many seconds it stays fresh."""
        with self.lock:
            age = time.monotonic() - self.built
            if age >= ttl:
                self.text = build_tail_log(engine, size)
                self.built = time.monotonic()
                age = 0
            return self.text, max(0, math.ceil(ttl - age))


@tail.get("/tail/log.txt")
def log_txt():
    svc = services()
    text, fresh_for = current_app.extensions[CACHE_KEY].get(
        svc.engine, svc.settings.TAIL_LOG_SIZE, svc.settings.TAIL_LOG_TTL
    )
    response = Response(text, mimetype="text/plain")
    response.headers["Cache-Control"] = f"max-age={fresh_for}, must-revalidate"
    return response


def init_app(app: Flask) -> None:
    app.extensions[CACHE_KEY] = TailLogCache()
    app.register_blueprint(tail)
