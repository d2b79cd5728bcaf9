"""``GET /tail/log.txt``: the last reports in the exact legacy line format.

Built from ``test_report`` at most every ``TAIL_LOG_TTL`` seconds per process, so a new
report shows within seconds (upstream rebuilt a file every ten minutes).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime

import cachetools
import sqlalchemy as sa
from flask import Flask, Response, current_app
from flask_smorest import Api, Blueprint

from app.openapi import text_answer
from app.services import services
from schemas.v3 import PERL5
from storage.clock import utc_now
from storage.reports import latest_reports
from storage.uploads import upload_paths

tail = Blueprint("tail", __name__, description="The legacy log.txt of the latest reports")
EXTENSION_KEY = "tail_log"


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
    now = now or utc_now()
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


class TailLog:
    """One process's log.txt, built at most every ``ttl`` seconds (one build at a time; the
    requests meanwhile wait for it), and how long it stays fresh."""

    def __init__(self, ttl: int):
        self.ttl = ttl
        cache = cachetools.TTLCache(maxsize=1, ttl=ttl)
        self._built = cachetools.cached(cache, key=lambda engine, size: size, condition=threading.Condition())(
            lambda engine, size: (build_tail_log(engine, size), time.monotonic())
        )

    def get(self, engine: sa.Engine, size: int) -> tuple[str, int]:
        """The text and how many seconds it stays fresh."""
        text, built = self._built(engine, size)
        return text, max(0, math.ceil(self.ttl - (time.monotonic() - built)))


@tail.route("/tail/log.txt")
@tail.doc(summary="The last reports in the legacy log.txt line format", responses={"200": text_answer("text")})
def log_txt():
    svc = services()
    text, fresh_for = current_app.extensions[EXTENSION_KEY].get(svc.engine, svc.settings.TAIL_LOG_SIZE)
    response = Response(text, mimetype="text/plain")
    response.headers["Cache-Control"] = f"max-age={fresh_for}, must-revalidate"
    return response


def init_app(app: Flask, api: Api, ttl: int) -> None:
    app.extensions[EXTENSION_KEY] = TailLog(ttl)
    api.register_blueprint(tail)
