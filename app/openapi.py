"""Each app's ``GET /openapi.json``, built by flask-smorest from the blueprints that app
registers through it: an app documents exactly the routes it serves, and every body and
parameter in its document is a marshmallow schema from ``schemas/`` (or the read API's
query schemas), the same one that validates it.

The submission bodies (legacy Metabase and v3) are parsed and validated by the intake
(``app/request_body.py``, ``schemas/``), not by flask-smorest: the Perl client sends JSON
as ``application/octet-stream`` with a stray ``Content_Type`` header, and a body parser
keyed on the Content-Type would refuse it. Their schemas are attached as documentation
only (``Blueprint.doc``), through the same apispec.
"""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api
from marshmallow import Schema, fields

from schemas import metabase, v3

OPENAPI_PATH = "/openapi.json"
"""Where every app serves its own document (nginx gives each app's a public address)."""


class LegacyErrorSchema(Schema):
    error = fields.String(required=True)


class GuidSchema(Schema):
    guid = fields.String(required=True)


class MessageSchema(Schema):
    message = fields.String(required=True)


class MetabaseFactSchema(metabase.FactSchema):
    """A Metabase fact: core metadata and a JSON-string content."""


class DocumentedApi(Api):
    """flask-smorest's ``Api`` with this project's error shapes.

    Its own ``HTTPException`` handler is replaced by ``app/errors.py``'s (registered after
    this ``Api``), and operations carry the error answers they really give instead of a
    generic ``default``."""

    DEFAULT_ERROR_RESPONSE_NAME = None
    ERROR_SCHEMA = v3.ErrorsSchema


def init_app(app: Flask, title: str, description: str) -> Api:
    """Serve ``/openapi.json`` on ``app``; register its documented blueprints with
    ``api.register_blueprint``. Call before ``app.errors.init_app`` (its error handlers
    must be the last registered)."""
    app.config.update(
        API_TITLE=title,
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH=OPENAPI_PATH.lstrip("/"),
    )
    api = DocumentedApi(app, spec_kwargs={"info": {"description": description}})
    api.spec.components.security_scheme("profile", {"type": "http", "scheme": "basic"})
    return api


def json_body(schema, description: str | None = None) -> dict:
    """A request body documented by ``schema`` (parsed by the view, not by flask-smorest)."""
    body = {"content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def text_answer(description: str, content_type: str = "text/plain") -> dict:
    return {"description": description, "content": {content_type: {"schema": {"type": "string"}}}}
