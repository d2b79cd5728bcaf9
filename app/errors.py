"""Every error is JSON: ``{"error": ...}`` on the legacy Metabase API (the Perl client
shows the message only when Content-Type is exactly ``application/json``), and
``{"errors": [{"message", "path"}]}`` on the v3 API. Never an HTML page or a traceback.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, json, request
from werkzeug.exceptions import HTTPException

from intake.pipeline import Conflict, Forbidden, Unauthorized
from schemas.errors import InvalidReport
from schemas.v3 import V3ValidationError
from storage.errors import DATABASE_UNAVAILABLE, Unavailable

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
V3_PREFIXES = ("/v3",)

DOMAIN_STATUS = {
    InvalidReport: 400,
    Unauthorized: 401,
    Forbidden: 403,
    Conflict: 409,
    Unavailable: 503,
}


def json_response(payload, status: int, headers: dict | None = None) -> Response:
    """A JSON answer whose Content-Type is exactly ``application/json`` (no charset)."""
    response = Response(json.dumps(payload), status=status, headers=headers)
    response.headers["Content-Type"] = JSON_TYPE
    return response


def error_response(message: str, status: int, path: str = "/") -> Response:
    """The error shape of the API the request was for."""
    if request.path.startswith(V3_PREFIXES):
        return json_response({"errors": [{"message": message, "path": path}]}, status)
    return json_response({"error": message}, status)


def _domain_error(exc: Exception) -> Response:
    status = next(code for kind, code in DOMAIN_STATUS.items() if isinstance(exc, kind))
    if isinstance(exc, V3ValidationError) and request.path.startswith(V3_PREFIXES):
        return json_response({"errors": exc.errors}, status)
    path = getattr(exc, "path", "/")
    return error_response(str(exc), status, path)


def too_large_message() -> str:
    """The 413 message, the same words as nginx's (``deploy/nginx/cpantesters.conf``)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    return f"request body too large: the limit is {limit / 1048576:g} MiB"


def _http_error(exc: HTTPException) -> Response:
    message = too_large_message() if exc.code == 413 else exc.description or exc.name
    response = error_response(message, exc.code or 500)
    if exc.code == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _database_unavailable(exc: Exception) -> Response:
    """A query whose connection died (a database restart) where no view turned it into
    :class:`Unavailable`: a 503, as when the connection cannot be opened, never a 500."""
    logger.warning("database unavailable on %s %s: %s", request.method, request.path, str(exc).splitlines()[0][:200])
    return error_response("database unavailable", 503)


def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response("internal error; the report was not stored", 500)


def init_app(app: Flask) -> None:
    for kind in DOMAIN_STATUS:
        app.register_error_handler(kind, _domain_error)
    for kind in DATABASE_UNAVAILABLE:
        app.register_error_handler(kind, _database_unavailable)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
