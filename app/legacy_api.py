"""The legacy Metabase API the testers' unchanged Perl clients talk to.

Mounted under ``/api/v1/`` and ``/beta/`` and at the root (a client configured with a
bare host posts to ``/submit/...``).
"""

from __future__ import annotations

import logging
import time

from flask import request, url_for
from flask_smorest import Api, Blueprint

from app import throttle
from app.credentials import basic_credentials
from app.errors import json_response
from app.openapi import GuidSchema, LegacyErrorSchema, MessageSchema, MetabaseFactSchema, json_body
from app.request_body import read_body
from app.services import services
from schemas.metabase import decode_registration, is_guid
from schemas.metabase_view import default_distfile, to_metabase_struct
from schemas.text import clean_profile_text
from storage import users
from storage.errors import DATABASE_UNAVAILABLE, Unavailable
from storage.reports import load_report
from storage.uploads import upload_path

logger = logging.getLogger(__name__)

PREFIXES = {"api_v1": "/api/v1", "beta": "/beta", "root": ""}

legacy = Blueprint("legacy", __name__, description="The Metabase API of the Perl clients")

FACT_TYPE = {
    "in": "path",
    "name": "fact_type",
    "required": True,
    "schema": {"type": "string", "enum": ["CPAN-Testers-Report"]},
}


def _errors(*answers: tuple[int, str]):
    """Document the ``{"error": ...}`` answers a route gives."""

    def decorate(view):
        for status, description in reversed(answers):
            view = legacy.alt_response(status, schema=LegacyErrorSchema, description=description)(view)
        return view

    return decorate


@legacy.route("/submit/<fact_type>", methods=["POST"], parameters=[FACT_TYPE])
@legacy.doc(
    summary="Submit a CPAN-Testers-Report (any Content-Type; the body is parsed as JSON)",
    security=[{"profile": []}],
    requestBody=json_body(MetabaseFactSchema),
)
@legacy.alt_response(201, schema=GuidSchema, description="stored and queued", success=True)
@_errors(
    (400, "malformed or invalid report"),
    (401, "unknown profile or wrong secret"),
    (403, "report creator is not the authenticated profile"),
    (409, "a different report already has this GUID"),
    (413, "body over the size limit"),
    (503, "report storage unavailable"),
)
def submit(fact_type: str):
    """Store a report, queue it, answer 201 with its GUID."""
    started = time.perf_counter()
    # The body is JSON whatever the Content-Type says (client 0.012 sends octet-stream).
    credentials = basic_credentials(request)
    with throttle.guard(credentials):
        body = read_body(request)
        receipt = services().intake.submit_metabase(body, credentials, url_type=fact_type)
    logger.info(
        "submission guid=%s outcome=%s queued=%s ms=%.1f",
        receipt.guid,
        receipt.outcome.value,
        receipt.queued,
        (time.perf_counter() - started) * 1000,
    )
    location = url_for(".guid", guid=receipt.guid)
    return json_response({"guid": receipt.guid}, 201, {"Location": location})


@legacy.route("/register", methods=["POST"])
@legacy.doc(
    summary="Register a tester profile: [Metabase-User-Profile, Metabase-User-Secret]",
    requestBody=json_body(MetabaseFactSchema(many=True)),
)
@legacy.alt_response(200, schema=MessageSchema, description="registered", success=True)
@_errors((400, "invalid profile, or already registered"))
def register():
    """Store a tester profile; never replace a stored secret."""
    registration = decode_registration(read_body(request))
    try:
        result = users.register(
            services().engine,
            registration.profile_guid,
            clean_profile_text(registration.fullname),
            clean_profile_text(registration.email) if registration.email else None,
            registration.secret,
        )
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("registration failed: database unavailable") from exc
    if result is users.Registered.ALREADY:
        return json_response({"error": "already registered"}, 400)
    logger.info("registration profile=%s outcome=%s", registration.profile_guid, result.value)
    return json_response({"message": "accepted"}, 200)


@legacy.route("/guid/<guid>")
@legacy.doc(summary="A known profile ({guid}) or report ({fact})")
@legacy.alt_response(200, description="known", success=True)
@_errors((404, "unknown GUID"))
def guid(guid: str):
    """200 for a known user or report (the report as a Metabase fact), else 404."""
    not_found = json_response({"error": f"{guid} not found"}, 404)
    if not is_guid(guid):
        return not_found
    engine = services().engine
    try:
        with engine.connect() as conn:
            if users.find_user(conn, guid) is not None:
                return json_response({"guid": guid.lower()}, 200)
            row = load_report(conn, guid)
            if row is None:
                return not_found
            distfile = (
                row["distfile"] or upload_path(conn, row["dist"], row["version"]) or default_distfile(row["report"])
            )
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("database unavailable") from exc
    return json_response({"fact": to_metabase_struct(row["report"], distfile, row["creator"])}, 200)


def init_app(api: Api) -> None:
    for name, prefix in PREFIXES.items():
        api.register_blueprint(legacy, url_prefix=prefix, name=f"legacy_{name}")
