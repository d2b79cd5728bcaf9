"""``GET /openapi.json``: the OpenAPI document of both APIs, generated from the
marshmallow schemas by apispec (paths are declared here; bodies come from ``schemas/``)."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask
from marshmallow import Schema, fields

from app.errors import json_response
from schemas import metabase, v3

docs = Blueprint("openapi", __name__)


class LegacyErrorSchema(Schema):
    error = fields.String(required=True)


class GuidSchema(Schema):
    guid = fields.String(required=True)


class MessageSchema(Schema):
    message = fields.String(required=True)


class MetabaseFactSchema(metabase.FactSchema):
    """A Metabase fact: core metadata and a JSON-string content."""


def _json(schema, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def legacy_error(description: str) -> dict:
    return _json("LegacyError", description)


def v3_error(description: str) -> dict:
    return _json("Errors", description)


def build_spec(paths_extra: list | None = None) -> APISpec:
    """The OpenAPI 3 document for the legacy and v3 APIs."""
    spec = APISpec(
        title="CPAN Testers report intake",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Metabase-compatible submission API and the v3 report API."},
        components={"securitySchemes": {"profile": {"type": "http", "scheme": "basic"}}},
    )
    spec.components.schema("LegacyError", schema=LegacyErrorSchema)
    spec.components.schema("Guid", schema=GuidSchema)
    spec.components.schema("Message", schema=MessageSchema)
    spec.components.schema("MetabaseFact", schema=MetabaseFactSchema)
    spec.components.schema("NewReport", schema=v3.NewReportSchema)
    spec.components.schema("Report", schema=v3.ReportSchema)
    spec.components.schema("AcceptedReport", schema=v3.AcceptedReportSchema)
    spec.components.schema("Errors", schema=v3.ErrorsSchema)
    for prefix in ("/api/v1", "/beta", ""):
        spec.path(
            path=f"{prefix}/submit/CPAN-Testers-Report",
            operations={
                "post": {
                    "summary": "Submit a CPAN-Testers-Report (any Content-Type; the body is parsed as JSON)",
                    "security": [{"profile": []}],
                    "requestBody": {"content": {"application/json": {"schema": "MetabaseFact"}}},
                    "responses": {
                        "201": _json("Guid", "stored and queued"),
                        "400": legacy_error("malformed or invalid report"),
                        "401": legacy_error("unknown profile or wrong secret"),
                        "403": legacy_error("report creator is not the authenticated profile"),
                        "409": legacy_error("a different report already has this GUID"),
                        "413": legacy_error("body over the size limit"),
                        "503": legacy_error("report storage unavailable"),
                    },
                }
            },
        )
        spec.path(
            path=f"{prefix}/register",
            operations={
                "post": {
                    "summary": "Register a tester profile: [Metabase-User-Profile, Metabase-User-Secret]",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/MetabaseFact"}}
                            }
                        }
                    },
                    "responses": {
                        "200": _json("Message", "registered"),
                        "400": legacy_error("invalid profile, or already registered"),
                    },
                }
            },
        )
        spec.path(
            path=f"{prefix}/guid/{{guid}}",
            parameters=[{"name": "guid", "in": "path", "required": True, "schema": {"type": "string"}}],
            operations={
                "get": {
                    "summary": "A known profile ({guid}) or report ({fact})",
                    "responses": {"200": {"description": "known"}, "404": legacy_error("unknown GUID")},
                }
            },
        )
    spec.path(
        path="/v3/report",
        operations={
            "post": {
                "summary": "Submit a report in the v3 format",
                "security": [{"profile": []}],
                "requestBody": {"content": {"application/json": {"schema": "NewReport"}}},
                "responses": {
                    "201": _json("AcceptedReport", "stored and queued"),
                    "400": v3_error("invalid report"),
                    "401": v3_error("unknown profile or wrong secret"),
                },
            }
        },
    )
    spec.path(
        path="/v3/report/{id}",
        parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}],
        operations={
            "get": {
                "summary": "A stored report",
                "responses": {"200": _json("Report", "the v3 document"), "404": v3_error("unknown report")},
            }
        },
    )
    spec.path(
        path="/tail/log.txt",
        operations={
            "get": {
                "summary": "The last reports in the legacy log.txt line format",
                "responses": {
                    "200": {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
    )
    for extend in paths_extra or []:
        extend(spec)
    return spec


SPEC_EXTENSIONS: list = []
"""Functions ``(spec) -> None`` that other surfaces (viewer, read API) use to add their paths."""


@docs.get("/openapi.json")
def openapi_json():
    return json_response(build_spec(SPEC_EXTENSIONS).to_dict(), 200)


def init_app(app: Flask) -> None:
    app.register_blueprint(docs)
