"""The v3 read API MetaCPAN and other tools consume (spec 2.2): ``/v3/summary``,
``/v3/release`` and ``/v3/upload``, served by the read-API app (the Procfile's ``readapi``,
its own gunicorn group) from the processed tables.

Shapes and error forms are upstream's: lists are streamed (``[``, rows, ``]``) and an
empty list is a ``404`` ``No results found``; every list takes ``since`` (as upstream's)
and ``limit`` (upstream: /v3/release only); errors are ``{"errors": [{"message",
"path"}]}``. Release counts are summed over every perl, as upstream does since 2026-04.
The query parameters are validated by marshmallow schemas (through flask-smorest and
webargs), which also document them in this app's ``/openapi.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from flask import Response, request
from flask_smorest import Api, Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate
from webargs.flaskparser import FlaskParser

from app.errors import JSON_TYPE, json_response
from app.read_side import read_api_cache_control, read_services, read_until_found
from schemas import fast_json
from schemas.v3 import GRADES, ErrorsSchema, validation_errors
from storage.engine import abandon
from storage.errors import DATABASE_UNAVAILABLE, Unavailable
from storage.failure_analysis import release_analysis
from storage.read_queries import (
    release_query,
    release_row,
    summary_query,
    summary_row,
    upload_query,
    upload_row,
)

logger = logging.getLogger(__name__)


STREAM_BATCH = 200
"""Rows fetched from the database and sent per chunk of a streamed list."""


LIMIT = {"description": "at most this many rows (a positive integer)"}


class SummaryQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    since = fields.DateTime(metadata={"description": "reports on or after (ISO 8601, to the minute)"})
    grade = fields.String(validate=validate.OneOf(GRADES))
    perl = fields.List(fields.String(), metadata={"description": "repeatable"})
    osname = fields.List(fields.String(), metadata={"description": "repeatable"})
    perl_maturity = fields.String(validate=validate.OneOf(("stable", "dev")))
    limit = fields.Integer(
        strict=False, metadata={"description": "at most this many reports, the oldest first (a positive integer)"}
    )


class ReleaseQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    since = fields.DateTime(metadata={"description": "only with a dist or an author: latest report on or after"})
    maturity = fields.String(validate=validate.OneOf(("stable", "dev")))
    limit = fields.Integer(strict=False, metadata=LIMIT)
    precache = fields.Boolean(metadata={"description": "accepted for compatibility; answers are cached briefly"})


class UploadQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    since = fields.DateTime(metadata={"description": "released on or after (ISO 8601)"})
    limit = fields.Integer(
        strict=False, metadata={"description": "at most this many uploads, the oldest first (upstream ignores it)"}
    )
    maturity = fields.String(metadata={"description": "declared upstream, ignored"})


class SummarySchema(Schema):
    guid = fields.String(required=True)
    grade = fields.String(required=True, validate=validate.OneOf(GRADES))
    date = fields.String(required=True, metadata={"example": "2016-08-12T04:01:00Z"})
    reporter = fields.String(required=True)
    dist = fields.String(required=True)
    version = fields.String(required=True)
    platform = fields.String(required=True)
    perl = fields.String(required=True)
    osname = fields.String(required=True)
    osvers = fields.String(required=True)


class ReleaseSchema(Schema):
    dist = fields.String(required=True)
    version = fields.String(required=True)
    uploadid = fields.Integer(required=True)
    pass_ = fields.Integer(required=True, data_key="pass")
    fail = fields.Integer(required=True)
    na = fields.Integer(required=True)
    unknown = fields.Integer(required=True)
    total = fields.Integer(required=True)


class UploadSchema(Schema):
    dist = fields.String(required=True)
    version = fields.String(required=True)
    author = fields.String(required=True)
    filename = fields.String(required=True)
    released = fields.String(required=True, metadata={"example": "2016-11-19T03:03:20Z"})


class BadQuery(Exception):
    def __init__(self, errors: list[dict]):
        super().__init__(errors[0]["message"])
        self.errors = errors


class QueryParser(FlaskParser):
    """webargs' parser, its errors in upstream's v3 form (a ``400``, not webargs' ``422``)."""

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        raise BadQuery(validation_errors(error.messages.get("query", error.messages), prefix=""))


class ReadApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = QueryParser()


read_api = ReadApiBlueprint("read_api", __name__, url_prefix="/v3", description="The v3 read API (MetaCPAN's)")


def query(schema: type[Schema]):
    """Validate the query string with ``schema`` (the view gets the values as its first
    argument) and document it."""
    return read_api.arguments(schema, location="query", error_status_code=400)


def answers(schema, description: str, *errors: tuple[int, str]):
    """Document a view's ``200`` (``schema``) and its ``{"errors": [...]}`` answers."""

    def decorate(view):
        for status, text in reversed(errors):
            view = read_api.alt_response(status, schema=ErrorsSchema, description=text)(view)
        return read_api.alt_response(200, schema=schema, description=description, success=True)(view)

    return decorate


def _errors(message: str, status: int, path: str = "/"):
    return json_response({"errors": [{"message": message, "path": path}]}, status)


def _not_found(message: str) -> Response:
    """An empty answer (upstream's ``404``), cached as briefly as a list: it may fill up."""
    return _cached(_errors(message, 404))


def _cached(response: Response) -> Response:
    response.headers["Cache-Control"] = read_api_cache_control(read_services().settings)
    return response


def _positive_limit(args: dict) -> dict:
    if "limit" in args and args["limit"] < 1:
        raise BadQuery([{"message": 'The value for "limit" must be a positive integer', "path": "/"}])
    return args


def _first_batch(engine: sa.Engine, query: sa.Select) -> tuple[sa.Connection, sa.CursorResult, list]:
    try:
        conn = engine.connect()
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("database unavailable") from exc
    try:
        result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH).execute(query)
        return conn, result, result.fetchmany(STREAM_BATCH)
    except BaseException:
        abandon(conn)
        conn.close()
        raise


def stream_list(query: sa.Select, to_row: Callable, not_found: str = "No results found"):
    """Stream ``query`` as a JSON array; ``404`` when it has no row (upstream's behaviour).

    The rows come through a server-side cursor (MariaDB) in batches of
    :data:`STREAM_BATCH`: the first batch is sent as soon as the database has found it,
    whatever the list's length, and a process never holds more than one batch. A stream
    its client abandons (a disconnect, a HEAD) closes its connection instead of reading
    the rest of the rows to the end. Streamed lists carry no ``ETag``: it would need the
    whole answer before its first byte; their short ``Cache-Control`` lifetime lets the
    proxy in front serve repeats.
    """
    for engine in read_services().engines():  # a list empty on the replica: ask the primary
        conn, result, first = _first_batch(engine, query)
        if first:
            break
        result.close()
        conn.close()
    else:
        return _not_found(not_found)

    def chunks() -> Iterator[bytes]:
        finished = False
        try:
            # One orjson call per batch: a list of dicts, its brackets dropped.
            yield b"[" + fast_json.dumps([to_row(row) for row in first])[1:-1]
            while batch := result.fetchmany(STREAM_BATCH):
                yield b"," + fast_json.dumps([to_row(row) for row in batch])[1:-1]
            yield b"]"
            finished = True
        finally:
            if finished:
                result.close()
            else:
                abandon(conn)  # an unread server-side cursor: drop it, do not drain it
            conn.close()

    return _cached(Response(chunks(), content_type=JSON_TYPE))


@read_api.route("/summary")
@read_api.route("/summary/<dist>")
@read_api.route("/summary/<dist>/<path:version>")
@query(SummaryQuerySchema)
@answers(
    SummarySchema(many=True),
    "the reports (streamed)",
    (400, "bad parameter, or none of dist, perl, osname"),
    (404, "No results found"),
)
def summary(args: dict, dist: str | None = None, version: str | None = None):
    """Test reports of a dist (and version), or of some perls / OS names"""
    _positive_limit(args)
    if not (dist or version or args.get("perl") or args.get("osname")):
        return _errors("You must provide one of 'perl' or 'osname'", 400)
    query = summary_query(
        dist=dist,
        version=version,
        perls=args.get("perl"),
        osnames=args.get("osname"),
        grade=args.get("grade"),
        since=args.get("since"),
        perl_maturity=args.get("perl_maturity"),
        limit=args.get("limit"),
    )
    return stream_list(query, summary_row)


def _release_args(args: dict, dist: str | None, author: str | None) -> dict:
    _positive_limit(args)
    if "since" in args and not (dist or author):
        raise BadQuery([{"message": '"since" parameter not allowed', "path": "/"}])
    return args


@read_api.route("/release")
@read_api.route("/release/dist/<dist>")
@read_api.route("/release/author/<author>")
@query(ReleaseQuerySchema)
@answers(ReleaseSchema(many=True), "counts per release (streamed)", (400, "bad parameter"), (404, "No results found"))
def release(args: dict, dist: str | None = None, author: str | None = None):
    """Report counts per release, summed over every perl"""
    args = _release_args(args, dist, author)
    query = release_query(
        dist=dist, author=author, since=args.get("since"), maturity=args.get("maturity"), limit=args.get("limit")
    )
    return stream_list(query, release_row)


@read_api.route("/release/dist/<dist>/<path:version>")
@query(ReleaseQuerySchema)
@answers(ReleaseSchema, "the release's counts", (400, "bad parameter"), (404, "Not found"))
def release_version(args: dict, dist: str, version: str):
    """One release's counts, summed over every perl

    A single object (upstream showed one raw row)."""
    args = _release_args(args, dist, None)
    query = release_query(dist=dist, version=version, since=args.get("since"), maturity=args.get("maturity"))
    try:
        row = read_until_found(lambda conn: conn.execute(query).first(), lambda row: row is not None)
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("database unavailable") from exc
    if row is None:
        return _not_found("Not found")
    response = _cached(Response(json.dumps(release_row(row)), content_type=JSON_TYPE))
    response.add_etag()
    return response.make_conditional(request)


@read_api.route("/analysis/<dist>/<path:version>")
@read_api.doc(
    responses={"200": {"description": "the analysis", "content": {"application/json": {"schema": {"type": "object"}}}}}
)
@read_api.alt_response(404, schema=ErrorsSchema, description="no PASS or FAIL report of the release")
def analysis(dist: str, version: str):
    """Why a release fails: each factor's FAIL/PASS counts, ranked by Cramer's V

    Each candidate factor's FAIL/PASS counts by value, with Benjamini-Hochberg corrected
    p-values (schemas/failure_analysis.py)."""
    try:
        result = read_until_found(
            lambda conn: release_analysis(conn, dist, version), lambda result: result["fail"] + result["pass"] > 0
        )
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("database unavailable") from exc
    if result["fail"] + result["pass"] == 0:
        return _not_found(f"No PASS or FAIL report of {dist} {version}")
    response = _cached(Response(json.dumps(result), content_type=JSON_TYPE))
    response.add_etag()
    return response.make_conditional(request)


@read_api.route("/upload")
@read_api.route("/upload/dist/<dist>")
@read_api.route("/upload/author/<author>")
@query(UploadQuerySchema)
@answers(
    UploadSchema(many=True),
    "the uploads (streamed)",
    (400, "bad parameter (a limit that is not a positive integer)"),
    (404, 'No results found / Distribution "X" not found / Author "X" not found'),
)
def upload(args: dict, dist: str | None = None, author: str | None = None):
    """CPAN uploads, oldest first"""
    _positive_limit(args)
    if dist is not None:
        not_found = f'Distribution "{dist}" not found'
    elif author is not None:
        not_found = f'Author "{author}" not found'
    else:
        not_found = "No results found"
    query = upload_query(dist=dist, author=author, since=args.get("since"), limit=args.get("limit"))
    return stream_list(query, upload_row, not_found)


@read_api.errorhandler(BadQuery)
def _bad_query(exc: BadQuery):
    return json_response({"errors": exc.errors}, 400)


def init_app(api: Api) -> None:
    api.register_blueprint(read_api)
