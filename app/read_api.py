"""The v3 read API MetaCPAN and other tools consume (spec 2.2): ``/v3/summary``,
``/v3/release`` and ``/v3/upload``, served by the read-API app (the Procfile's ``readapi``,
its own gunicorn group) from the processed tables.

Shapes and error forms are upstream's: lists are streamed (``[``, rows, ``]``) and an
empty list is a ``404`` ``No results found``; every list takes ``since`` (as upstream's)
and ``limit`` (upstream: /v3/release only); errors are ``{"errors": [{"message",
"path"}]}``. Release counts are summed over every perl, as upstream does since 2026-04.
The query parameters are validated by marshmallow schemas, which also document them in
``/openapi.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from app import openapi
from app.errors import JSON_TYPE, json_response
from app.read_side import read_api_cache_control, read_services, read_until_found
from schemas import fast_json
from schemas.v3 import GRADES, validation_errors
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

read_api = Blueprint("read_api", __name__, url_prefix="/v3")

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


SUMMARY_ARGS, RELEASE_ARGS, UPLOAD_ARGS = SummaryQuerySchema(), ReleaseQuerySchema(), UploadQuerySchema()
"""Built once per process: making a marshmallow schema costs more than loading with it."""


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


def _errors(message: str, status: int, path: str = "/"):
    return json_response({"errors": [{"message": message, "path": path}]}, status)


def _not_found(message: str) -> Response:
    """An empty answer (upstream's ``404``), cached as briefly as a list: it may fill up."""
    return _cached(_errors(message, 404))


def _cached(response: Response) -> Response:
    response.headers["Cache-Control"] = read_api_cache_control(read_services().settings)
    return response


def _args(schema: Schema) -> dict:
    raw = {}
    for name, field in schema.fields.items():
        if name not in request.args:
            continue
        raw[name] = request.args.getlist(name) if isinstance(field, fields.List) else request.args.get(name)
    try:
        args = schema.load(raw)
    except ValidationError as exc:
        raise BadQuery(validation_errors(exc.messages, prefix="")) from exc
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


@read_api.get("/summary")
@read_api.get("/summary/<dist>")
@read_api.get("/summary/<dist>/<path:version>")
def summary(dist: str | None = None, version: str | None = None):
    """The cpanstats rows of a dist (and version), or of some perls/OSes."""
    args = _args(SUMMARY_ARGS)
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


def _release_args(dist: str | None, author: str | None) -> dict:
    args = _args(RELEASE_ARGS)
    if "since" in args and not (dist or author):
        raise BadQuery([{"message": '"since" parameter not allowed', "path": "/"}])
    return args


@read_api.get("/release")
@read_api.get("/release/dist/<dist>")
@read_api.get("/release/author/<author>")
def release(dist: str | None = None, author: str | None = None):
    """Pass/fail/na/unknown counts per release, summed over every perl."""
    args = _release_args(dist, author)
    query = release_query(
        dist=dist, author=author, since=args.get("since"), maturity=args.get("maturity"), limit=args.get("limit")
    )
    return stream_list(query, release_row)


@read_api.get("/release/dist/<dist>/<path:version>")
def release_version(dist: str, version: str):
    """One release's counts as a single object (summed; upstream showed one raw row)."""
    args = _release_args(dist, None)
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


@read_api.get("/analysis/<dist>/<path:version>")
def analysis(dist: str, version: str):
    """Why does a release fail? Each candidate factor's FAIL/PASS counts by value, ranked
    by Cramér's V, with Benjamini-Hochberg corrected p-values (schemas/failure_analysis.py)."""
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


@read_api.get("/upload")
@read_api.get("/upload/dist/<dist>")
@read_api.get("/upload/author/<author>")
def upload(dist: str | None = None, author: str | None = None):
    """CPAN uploads, oldest first."""
    args = _args(UPLOAD_ARGS)
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


# --- OpenAPI -----------------------------------------------------------------------


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _list_of(schema: str, description: str) -> dict:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}}
        },
    }


def add_paths(spec) -> None:
    """Document the read API in ``/openapi.json`` (an ``openapi.SPEC_EXTENSIONS`` hook)."""
    spec.components.schema("Summary", schema=SummarySchema)
    spec.components.schema("Release", schema=ReleaseSchema)
    spec.components.schema("Upload", schema=UploadSchema)
    errors = openapi.v3_error
    summary_op = {
        "summary": "Test reports of a dist (and version), or of some perls / OS names",
        "parameters": [{"in": "query", "schema": SummaryQuerySchema}],
        "responses": {
            "200": _list_of("Summary", "the reports (streamed)"),
            "400": errors("bad parameter, or none of dist, perl, osname"),
            "404": errors("No results found"),
        },
    }
    for path, params in (
        ("/v3/summary", []),
        ("/v3/summary/{dist}", ["dist"]),
        ("/v3/summary/{dist}/{version}", ["dist", "version"]),
    ):
        spec.path(path=path, parameters=[_path_param(p) for p in params], operations={"get": summary_op})
    spec.path(
        path="/v3/analysis/{dist}/{version}",
        parameters=[_path_param("dist"), _path_param("version")],
        operations={
            "get": {
                "summary": "Why a release fails: each factor's FAIL/PASS counts, ranked by Cramer's V",
                "responses": {
                    "200": {
                        "description": "the analysis",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "404": errors("no PASS or FAIL report of the release"),
                },
            }
        },
    )
    release_op = {
        "summary": "Report counts per release, summed over every perl",
        "parameters": [{"in": "query", "schema": ReleaseQuerySchema}],
        "responses": {
            "200": _list_of("Release", "counts per release (streamed)"),
            "400": errors("bad parameter"),
            "404": errors("No results found"),
        },
    }
    for path, params in (
        ("/v3/release", []),
        ("/v3/release/dist/{dist}", ["dist"]),
        ("/v3/release/author/{author}", ["author"]),
    ):
        spec.path(path=path, parameters=[_path_param(p) for p in params], operations={"get": release_op})
    spec.path(
        path="/v3/release/dist/{dist}/{version}",
        parameters=[_path_param("dist"), _path_param("version")],
        operations={
            "get": {
                "summary": "One release's counts, summed over every perl",
                "parameters": [{"in": "query", "schema": ReleaseQuerySchema}],
                "responses": {
                    "200": {
                        "description": "the release's counts",
                        "content": {"application/json": {"schema": "Release"}},
                    },
                    "400": errors("bad parameter"),
                    "404": errors("Not found"),
                },
            }
        },
    )
    upload_op = {
        "summary": "CPAN uploads, oldest first",
        "parameters": [{"in": "query", "schema": UploadQuerySchema}],
        "responses": {
            "200": _list_of("Upload", "the uploads (streamed)"),
            "400": errors("bad parameter (a limit that is not a positive integer)"),
            "404": errors('No results found / Distribution "X" not found / Author "X" not found'),
        },
    }
    for path, params in (
        ("/v3/upload", []),
        ("/v3/upload/dist/{dist}", ["dist"]),
        ("/v3/upload/author/{author}", ["author"]),
    ):
        spec.path(path=path, parameters=[_path_param(p) for p in params], operations={"get": upload_op})
    viewer_op = {
        "summary": "A report (GUID or cpanstats id): HTML page, ?raw=1 without layout, ?json=1 legacy JSON",
        "parameters": [
            {"name": "json", "in": "query", "schema": {"type": "integer", "enum": [0, 1]}},
            {"name": "raw", "in": "query", "schema": {"type": "integer", "enum": [0, 1]}},
        ],
        "responses": {
            "200": {
                "description": 'the report; with ?json=1 also when not found ({"success": 0})',
                "content": {
                    "text/html": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            "304": {"description": "not modified (If-None-Match)"},
            "404": {"description": "Report not found (HTML)", "content": {"text/html": {"schema": {"type": "string"}}}},
        },
    }
    for path in ("/cpan/report/{id}", "/report/{id}"):
        spec.path(path=path, parameters=[_path_param("id")], operations={"get": viewer_op})


if add_paths not in openapi.SPEC_EXTENSIONS:
    openapi.SPEC_EXTENSIONS.append(add_paths)


def init_app(app: Flask) -> None:
    app.register_blueprint(read_api)
