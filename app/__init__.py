"""The Flask application factory: one settings object, one blueprint per surface.

``create_app`` builds the intake app (legacy Metabase API, v3 API, operations); the
read side is two more apps from the same factory code, each in its own gunicorn group:
``create_viewer_app`` (report pages) and ``create_read_api_app`` (the v3 read API).
"""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import settings as settings_module
from app import (
    dashboard,
    errors,
    legacy_api,
    openapi,
    ops,
    read_api,
    read_side,
    request_body,
    tail_log,
    throttle,
    v3_api,
    viewer,
)
from app.services import Services

logger = logging.getLogger(__name__)


def _new_app(config: settings_module.Settings) -> Flask:
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = Flask(__name__, static_folder=None)
    if config.PROXY_HOPS:
        # Behind nginx: the client's address, scheme and host come from its X-Forwarded-*.
        hops = config.PROXY_HOPS
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    return app


def create_app(config: settings_module.Settings) -> Flask:
    """Build the submission app from ``config`` (the entry point's ``settings.load()``)."""
    app = _new_app(config)
    services = Services.init_app(app, config)
    app.config["MAX_CONTENT_LENGTH"] = services.max_submission_bytes
    # The client writes a whole body before reading: let it, so that it reads our answer.
    app.wsgi_app = request_body.DrainBody(app.wsgi_app)
    api = openapi.init_app(
        app, "CPAN Testers report intake", "Metabase-compatible submission API and the v3 submission API."
    )
    errors.init_app(app)
    throttle.init_app(app, services.redis, config.AUTH_FAILURE_LIMIT, config.AUTH_FAILURE_WINDOW)
    legacy_api.init_app(api)
    v3_api.init_app(api)
    tail_log.init_app(app, api, config.TAIL_LOG_TTL)
    ops.init_app(app)
    dashboard.init_app(app, config)
    return app


def _read_side_app(config: settings_module.Settings, threads: int, surface, title: str, description: str) -> Flask:
    """A read-only app serving ``surface``'s blueprint and its OpenAPI document."""
    app = _new_app(config)
    read_side.init_app(app, config, threads=threads)
    surface.init_app(openapi.init_app(app, title, description))
    errors.init_app(app)
    return app


def create_viewer_app(config: settings_module.Settings) -> Flask:
    """Build the report viewer app (report pages, /openapi.json); it never writes."""
    return _read_side_app(
        config, config.VIEWER_THREADS, viewer, "CPAN Testers report pages", "Report pages and release analyses (HTML)."
    )


def create_read_api_app(config: settings_module.Settings) -> Flask:
    """Build the v3 read API app (/v3/summary, /v3/release, /v3/upload, /v3/analysis,
    /openapi.json)."""
    return _read_side_app(
        config,
        config.READ_API_THREADS,
        read_api,
        "CPAN Testers v3 read API",
        "Reports, release counts and uploads (MetaCPAN's API).",
    )
