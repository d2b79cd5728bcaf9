"""rq-dashboard at ``/dashboard``, behind HTTP Basic and a same-origin rule.

rq-dashboard has no authentication of its own. Every route under ``/dashboard`` asks for
``ADMIN_USER`` and the password whose werkzeug hash is ``ADMIN_PASSWORD_HASH`` (compared
in constant time; a successful check is cached for a minute, as the dashboard polls and a
password hash costs tens of milliseconds). Basic auth does not stop cross-site requests
(browsers resend cached credentials), and ``/requeue/<queue>`` answers GET, so every
state-changing request must come from the dashboard's own pages (``Sec-Fetch-Site`` /
``Origin``). With no password hash configured the dashboard is disabled, not open.

With ``OPS_LOGIN=on`` the same login guards ``/status`` and ``/metrics`` (they show queue
depths and the names of the worker hosts); ``/healthz`` and ``/readyz`` stay open for
load balancers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import urllib.parse

import cachetools
import rq_dashboard
import rq_dashboard.web
from flask import Flask, request, send_from_directory
from werkzeug.security import check_password_hash

import settings as settings_module
from app.errors import json_response
from queueing.contract import SERIALIZER

logger = logging.getLogger(__name__)

PREFIX = "/dashboard"
REALM = "cpantesters operators"
AUTH_CACHE_SECONDS = 60
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE_CHANGING_ENDPOINTS = frozenset(
    {
        "rq_dashboard.delete_job_view",
        "rq_dashboard.requeue_job_view",
        "rq_dashboard.requeue_all",
        "rq_dashboard.empty_queue",
        "rq_dashboard.compact_queue",
    }
)
"""Routes that change the queues; ``requeue_all`` also answers GET."""

EXTENSION_KEY = "cpantesters_dashboard"

OPS_PATHS = frozenset({"/status", "/metrics"})
"""The operators' pages that ``OPS_LOGIN=on`` puts behind the dashboard's login."""


def _under_prefix(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _guarded(path: str, ops_login: bool) -> bool:
    return _under_prefix(path) or (ops_login and path in OPS_PATHS)


class BasicAuthGuard:
    """Checks the Basic credentials against one user and one werkzeug password hash."""

    def __init__(self, user: str, password_hash: str):
        self.user = user.encode()
        self.password_hash = password_hash
        self._verified = cachetools.TTLCache(maxsize=1000, ttl=AUTH_CACHE_SECONDS)  # keys of checks that passed
        self._lock = threading.Lock()

    def _cache_key(self, user: str, password: str) -> bytes:
        return hashlib.sha256(f"{self.password_hash}\0{user}\0{password}".encode()).digest()

    def check(self, user: str | None, password: str | None) -> bool:
        if user is None or password is None:
            return False
        key = self._cache_key(user, password)
        with self._lock:
            if key in self._verified:
                return True
        # Both comparisons always run, so the time does not tell a wrong user from a wrong password.
        user_ok = hmac.compare_digest(user.encode(), self.user)
        password_ok = check_password_hash(self.password_hash, password)
        if user_ok and password_ok:
            with self._lock:
                self._verified[key] = True
            return True
        return False


def same_origin() -> bool:
    """True unless the browser says the request comes from another site.

    ``Sec-Fetch-Site`` (every current browser) decides when present; otherwise ``Origin``
    must name this host. A request with neither is not from a browser page (curl, scripts
    holding the credentials), except a GET, which a link or an image can trigger: that
    needs a same-origin ``Referer``.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        return urllib.parse.urlsplit(origin).netloc == request.host
    if origin == "null":
        return False
    if request.method in SAFE_METHODS:
        referer = request.headers.get("Referer")
        return referer is not None and urllib.parse.urlsplit(referer).netloc == request.host
    return True


def _challenge():
    return json_response(
        {"error": "operator login required"},
        401,
        {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
    )


def init_app(app: Flask, config: settings_module.Settings) -> None:
    """Mount rq-dashboard at /dashboard when credentials are configured; refuse it otherwise."""
    if not (config.ADMIN_USER and config.ADMIN_PASSWORD_HASH):

        @app.before_request
        def dashboard_disabled():
            if _guarded(request.path, config.ops_login):
                what = "the dashboard" if _under_prefix(request.path) else request.path
                message = f"{what} is disabled: set ADMIN_USER and ADMIN_PASSWORD_HASH"
                return json_response({"error": message}, 404)
            return None

        return

    guard = BasicAuthGuard(config.ADMIN_USER, config.ADMIN_PASSWORD_HASH)
    app.extensions[EXTENSION_KEY] = guard
    # rq-dashboard reads its serializer from a module-level object, and its Redis from the app config.
    rq_dashboard.web.config.serializer = SERIALIZER
    app.config["RQ_DASHBOARD_REDIS_URL"] = config.REDIS_URL
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    if "static" not in app.view_functions:
        # Its base template asks the app's 'static' endpoint for favicon.ico; our app has no static folder.
        static_folder = rq_dashboard.blueprint.static_folder

        def dashboard_app_static(filename):
            return send_from_directory(static_folder, filename)

        app.add_url_rule(f"{PREFIX}/app-static/<path:filename>", "static", dashboard_app_static)

    @app.before_request
    def guard_dashboard():
        if not _guarded(request.path, config.ops_login):
            return None
        auth = request.authorization
        if auth is None or auth.type != "basic" or not guard.check(auth.username, auth.password):
            return _challenge()
        state_changing = request.method not in SAFE_METHODS or request.endpoint in STATE_CHANGING_ENDPOINTS
        if state_changing and not same_origin():
            logger.warning("dashboard refused cross-site %s %s", request.method, request.path)
            return json_response({"error": "cross-site request refused"}, 403)
        if state_changing:
            logger.info("dashboard action user=%s %s %s", auth.username, request.method, request.path)
        return None
