"""HTTP plumbing of the read side: strong ETags, 304s, gzip, cache lifetimes and CORS.

Shared by the report viewer and the v3 read API (both served by the viewer app).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import zlib
from collections.abc import Iterable, Iterator

from flask import Flask, Response, request
from werkzeug.http import parse_accept_header, parse_etags, quote_etag

COMPRESS_MIN_BYTES = 1024
"""Smaller answers are sent as they are: gzip would save little and cost a few µs."""

GZIP_LEVEL = 1
"""Fast compression (nginx's default level): a 20 KB report shrinks about 4x in ~0.1 ms,
where level 6 gains a few percent more for several times the CPU."""

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Max-Age": "3600",
    "Access-Control-Allow-Headers": "Content-Type, X-Requested-With",
}
"""What api.cpantesters.org sends on every answer (spec 2.2)."""


def accepts_gzip() -> bool:
    return gzip_accepted(request.headers.get("Accept-Encoding"))


@functools.lru_cache(maxsize=256)
def gzip_accepted(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (werkzeug's reading of it;
    clients send a handful of distinct values, so each is parsed once)."""
    return parse_accept_header(accept_encoding)["gzip"] > 0


def _cache_control(max_age: int) -> str:
    return f"public, max-age={max_age}"


class Rendered:
    """An answer's exact bytes with their strong ETag, and (made once, on the first
    request that accepts it) their gzip representation: what the viewer's page cache keeps."""

    __slots__ = ("data", "tag", "_gz")

    def __init__(self, body: str | bytes):
        self.data = body.encode("utf-8") if isinstance(body, str) else body
        self.tag = hashlib.sha256(self.data).hexdigest()[:32]
        self._gz: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gz is None:  # a race only compresses twice: both results are identical
            self._gz = gzip.compress(self.data, compresslevel=GZIP_LEVEL, mtime=0)
        return self._gz


def cached_response(body: str | bytes, mimetype: str, max_age: int, status: int = 200) -> Response:
    """A complete answer with a strong ETag over its exact bytes, gzipped when large.

    The ETag is computed over the body the page shows (so it changes whenever the
    report, the author or the tester details shown change); the gzip representation
    gets its own tag, as strong ETags must differ between encodings. A matching
    ``If-None-Match`` gets a ``304`` with no body.
    """
    return rendered_response(Rendered(body), mimetype, max_age, status)


def rendered_response(rendered: Rendered, mimetype: str, max_age: int, status: int = 200) -> Response:
    """:func:`cached_response` of an already :class:`Rendered` body."""
    code, headers, data = answer(
        rendered,
        mimetype,
        max_age,
        request.headers.get("If-None-Match"),
        request.headers.get("Accept-Encoding"),
        status,
    )
    return Response(data, status=code, headers=headers)


def answer(
    rendered: Rendered,
    mimetype: str,
    max_age: int,
    if_none_match: str | None,
    accept_encoding: str | None,
    status: int = 200,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The status, headers and body of an answer, from the request's ``If-None-Match``
    and ``Accept-Encoding`` headers: what both the Flask route and the viewer's ASGI
    front for cached pages send (CORS headers are added by :func:`add_cors` or by
    :func:`app.viewer.cached_answer`)."""
    tag = rendered.tag
    compress = len(rendered.data) >= COMPRESS_MIN_BYTES and gzip_accepted(accept_encoding)
    if compress:
        tag += "-gz"
    headers = [("Cache-Control", _cache_control(max_age)), ("Vary", "Accept-Encoding")]
    if status == 200 and if_none_match and parse_etags(if_none_match).contains(tag):
        headers.append(("ETag", quote_etag(tag)))
        return 304, headers, b""
    data = rendered.data
    if compress:
        data = rendered.gzipped()
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Type", mimetype))
    if status == 200:
        headers.append(("ETag", quote_etag(tag)))
    return status, headers, data


def streamed_response(chunks: Iterable[str], mimetype: str, max_age: int) -> Response:
    """A chunked answer (large lists), gzipped on the fly for clients that take it."""
    headers = {"Cache-Control": _cache_control(max_age), "Vary": "Accept-Encoding"}
    encoded: Iterator[bytes] = (chunk.encode("utf-8") for chunk in chunks)
    if accepts_gzip():
        headers["Content-Encoding"] = "gzip"
        encoded = _gzip_stream(encoded)
    response = Response(encoded, status=200, headers=headers)
    response.headers["Content-Type"] = mimetype
    return response


def _gzip_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    try:
        for chunk in chunks:
            data = compressor.compress(chunk)
            if data:
                yield data
        yield compressor.flush()
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()


def add_cors(response: Response) -> Response:
    for name, value in CORS_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_cors)
