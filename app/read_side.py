"""What the two read-side apps (report viewer, v3 read API) share: a read-only engine per
process, ``Cache-Control`` by outcome, CORS (flask-cors) and gzip (flask-compress).

The apps say how long an answer may be reused; the caching itself is done by the reverse
proxy in front (``deploy/nginx/cpantesters.conf``), which keeps the gzipped answers that
the apps send it and serves them to every reader.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, current_app
from flask_compress import Compress
from flask_cors import CORS

import settings as settings_module
from storage.engine import create_read_engine

EXTENSION_KEY = "cpantesters_viewer"

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
    """What a read-side app needs per process: its settings and a read-only engine."""

    settings: settings_module.Settings
    engine: sa.Engine


def read_services() -> ReadServices:
    return current_app.extensions[EXTENSION_KEY]


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
    engine = create_read_engine(config.DATABASE_URL, connect_timeout=config.DB_CONNECT_TIMEOUT, pool_size=threads)
    services = ReadServices(config, engine)
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
