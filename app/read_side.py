"""What the two read-side apps (report viewer, v3 read API) share: a read-only engine per
process, ``Cache-Control`` by outcome, CORS (flask-cors) and gzip (flask-compress).

The apps say how long an answer may be reused; the caching itself is done by the reverse
proxy in front (``deploy/nginx/cpantesters.conf``), which keeps the gzipped answers that
the apps send it and serves them to every reader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from flask import Flask, current_app
from flask_compress import Compress
from flask_cors import CORS

import settings as settings_module
from storage.engine import create_read_engine

EXTENSION_KEY = "cpantesters_viewer"

T = TypeVar("T")

STALE_SECONDS = 86400
"""How long a cache may still serve a stored answer while it refreshes it in the
background, or while the app is down (``stale-while-revalidate``, ``stale-if-error``):
reports do not change, only what is shown beside them."""

NOT_FOUND = "no-store"
"""Cache-Control of a report-not-found answer, in every form: the report may arrive the
next moment, and must then show at once."""

READ_METHODS = ["GET", "HEAD", "OPTIONS"]
"""All that the read side serves (and all that its CORS answers allow)."""


@dataclass
class ReadServices:
    """What a read-side app needs per process: its settings, a read-only engine on where it
    reads (``READ_DATABASE_URL``: a replica, or the primary) and, when that is a replica, a
    read-only engine on the primary (``DATABASE_URL``), asked only when the replica has
    nothing: a report just submitted may not have reached the replica yet."""

    settings: settings_module.Settings
    engine: sa.Engine
    primary: sa.Engine | None = None

    def engines(self) -> tuple[sa.Engine, ...]:
        """Where to look, in order: the replica, then (when it is one) the primary."""
        return (self.engine,) if self.primary is None else (self.engine, self.primary)

    def dispose(self) -> None:
        for engine in self.engines():
            engine.dispose()


def read_services() -> ReadServices:
    return current_app.extensions[EXTENSION_KEY]


def read_until_found(read: Callable[[sa.Connection], T], found: Callable[[T], bool]) -> T:
    """``read(conn)`` on the replica; when ``found`` says its answer is a not-found, the same
    on the primary (when reads go to a replica), whose answer is then the one given."""
    answer = None
    for engine in read_services().engines():
        with engine.connect() as conn:
            answer = read(conn)
        if found(answer):
            break
    return answer


def found_page_cache_control(config: settings_module.Settings) -> str:
    """Cache-Control of a found report page: kept by the proxy for ``VIEWER_SHARED_MAX_AGE``
    (the bound on showing a changed tester name or author), then served stale while it is
    refreshed in the background, for a day; browsers revalidate by ETag after ``VIEWER_MAX_AGE``."""
    return (
        f"public, max-age={config.VIEWER_MAX_AGE}, s-maxage={config.VIEWER_SHARED_MAX_AGE}, "
        f"stale-while-revalidate={STALE_SECONDS}, stale-if-error={STALE_SECONDS}"
    )


def read_api_cache_control(config: settings_module.Settings) -> str:
    """Cache-Control of a read-API answer (a list, one release, or "none"): short, since
    the counts move with every processed report."""
    age = config.READ_API_MAX_AGE
    return f"public, max-age={age}, stale-while-revalidate={age}, stale-if-error={STALE_SECONDS}"


def init_app(app: Flask, config: settings_module.Settings, threads: int) -> ReadServices:
    """Give ``app`` its read-only engine (a pooled connection per request thread), CORS
    headers on every answer and gzip for clients that accept it (streamed lists too)."""
    engine = create_read_engine(config.read_database_url, connect_timeout=config.DB_CONNECT_TIMEOUT, pool_size=threads)
    primary = None
    if config.read_database_url != config.DATABASE_URL:
        # Only for not-found answers: a small pool, opened on first use.
        primary = create_read_engine(config.DATABASE_URL, connect_timeout=config.DB_CONNECT_TIMEOUT, pool_size=2)
    services = ReadServices(config, engine, primary)
    app.extensions[EXTENSION_KEY] = services
    # Level 1 (nginx's default): a 20 KB report shrinks about 4x in ~0.1 ms; gzip only, the
    # encoding nginx asks for and can undo (gunzip) for the rare client without it.
    app.config.update(
        COMPRESS_ALGORITHM=["gzip"],
        COMPRESS_ALGORITHM_STREAMING=["gzip"],
        COMPRESS_LEVEL=1,
        COMPRESS_MIN_SIZE=1024,
    )
    Compress(app)
    # What api.cpantesters.org allows, less the methods the read side never served: the
    # wildcard origin itself (never the request's Origin echoed), so that one cached answer
    # serves every site.
    CORS(
        app,
        send_wildcard=True,
        methods=READ_METHODS,
        allow_headers=["Content-Type", "X-Requested-With"],
        max_age=3600,
    )
    return services
