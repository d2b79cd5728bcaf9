"""The v3 report API: submit a report in the v3 format, read one back by GUID."""

from __future__ import annotations

import logging
import time

from flask import request
from flask_smorest import Api, Blueprint

from app import throttle
from app.credentials import basic_credentials
from app.errors import json_response
from app.openapi import json_body
from app.request_body import read_body
from app.services import services
from schemas.metabase import is_guid, parse_json
from schemas.reportparse.shape import report_text, with_facts
from schemas.v3 import AcceptedReportSchema, ErrorsSchema, NewReportSchema, ReportSchema
from storage.errors import DATABASE_UNAVAILABLE, Unavailable
from storage.legacy import legacy_fallback
from storage.report_facts import load_facts
from storage.reports import load_report

logger = logging.getLogger(__name__)

v3 = Blueprint("v3", __name__, url_prefix="/v3", description="The v3 report API: submit a report, read one back")

REPORT_ID = {"in": "path", "name": "guid", "required": True, "schema": {"type": "string", "format": "uuid"}}

NOT_FOUND = {"errors": [{"message": "Report ID not found", "path": "/id"}]}


@v3.route("/report", methods=["POST"])
@v3.doc(summary="Submit a report in the v3 format", security=[{"profile": []}], requestBody=json_body(NewReportSchema))
@v3.alt_response(201, schema=AcceptedReportSchema, description="stored and queued", success=True)
@v3.alt_response(400, schema=ErrorsSchema, description="invalid report")
@v3.alt_response(401, schema=ErrorsSchema, description="unknown profile or wrong secret")
def post_report():
    """Store a v3 report under a new GUID and queue it; 201 ``{"id": <guid>}``."""
    started = time.perf_counter()
    credentials = basic_credentials(request)
    with throttle.guard(credentials):
        data = parse_json(read_body(request))
        receipt = services().intake.submit_v3(data, credentials)
    logger.info(
        "submission guid=%s api=v3 outcome=%s queued=%s ms=%.1f",
        receipt.guid,
        receipt.outcome.value,
        receipt.queued,
        (time.perf_counter() - started) * 1000,
    )
    return json_response({"id": receipt.guid}, 201)


@v3.route("/report/<guid>", parameters=[REPORT_ID])
@v3.doc(summary="A stored report")
@v3.alt_response(200, schema=ReportSchema, description="the v3 document", success=True)
@v3.alt_response(404, schema=ErrorsSchema, description="unknown report")
def get_report(guid: str):
    """The stored v3 document with the facts parsed from its text merged in (a field the
    submitter sent wins), or 404 in the v3 error form."""
    if not is_guid(guid):
        return json_response(NOT_FOUND, 404)
    parsed = None
    try:
        with services().engine.connect() as conn:
            row = load_report(conn, guid)
            if row is not None:
                parsed = load_facts(conn, row["id"], report_text(row["report"]))
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("database unavailable") from exc
    if row is None:  # not migrated yet: the legacy Metabase cache, when configured
        row = legacy_fallback(services().settings.LEGACY_DATABASE_URL, guid)
    if row is None:
        return json_response(NOT_FOUND, 404)
    return json_response(with_facts(row["report"], parsed), 200)


def init_app(api: Api) -> None:
    api.register_blueprint(v3)
