"""The Flask application factory: one settings object, one blueprint per surface.

``create_app`` builds the intake app (legacy Metabase API, v3 API, operations);
the viewer runs as a second app from the same factory code in its own gunicorn group.
"""

from __future__ import annotations

import logging

from flask import Flask

import settings as settings_module
from app import dashboard, errors, legacy_api, openapi, ops, read_api, tail_log, throttle, v3_api, viewer
from app.services import Services

logger = logging.getLogger(__name__)


def create_app(config: settings_module.Settings | None = None) -> Flask:
    """Build the submission app from ``config`` (default: the environment)."""
    config = config or settings_module.load()
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = Flask(__name__, static_folder=None)
    services = Services.init_app(app, config)
    app.config["MAX_CONTENT_LENGTH"] = services.max_submission_bytes
    errors.init_app(app)
    throttle.init_app(app, services.redis, config.AUTH_FAILURE_LIMIT, config.AUTH_FAILURE_WINDOW)
    legacy_api.init_app(app)
    v3_api.init_app(app)
    tail_log.init_app(app)
    openapi.init_app(app)
    ops.init_app(app)
    dashboard.init_app(app, config)
    return app


def create_viewer_app(config: settings_module.Settings | None = None) -> Flask:
    """Build the read-side app (report viewer, v3 read API, /openapi.json); it never writes."""
    config = config or settings_module.load()
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = Flask(__name__, static_folder=None)
    viewer.init_app(app, config)
    read_api.init_app(app)
    errors.init_app(app)
    openapi.init_app(app)
    return app
