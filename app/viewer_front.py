"""The viewer's ASGI front: what the viewer's gunicorn workers serve (``wsgi_viewer:viewer``).

A cached page view is the read side's hot path: with the answer already rendered, what a
view costs is the HTTP server's own work. Served by gunicorn's gthread worker, that was
~70 % of a view's CPU in pure-Python request parsing and thread hand-offs
(bench/RESULTS.md). Here the viewer workers are uvicorn's gunicorn worker (C HTTP parser,
libuv event loop), and this front answers fresh cached pages on the event loop itself
(:func:`app.viewer.cached_answer`, the same bytes the Flask route sends); everything else,
a miss, the read API, ``/openapi.json``, goes to the Flask app in a thread pool
(``VIEWER_THREADS``), where it may wait for the database without holding up the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from a2wsgi.wsgi import Body, build_environ
from flask import Flask

from app.viewer import EXTENSION_KEY, ViewerServices, cached_answer

STREAM_AFTER_BYTES = 256 * 1024
"""An answer is collected in its thread and handed to the loop whole, up to this size;
a larger one (a long read-API list) is streamed on, a chunk per hand-off."""


def _request_header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """A request header's value, repeated fields joined as HTTP lists are (RFC 9110 5.3)."""
    values = [value for key, value in headers if key == name]
    return b", ".join(values).decode("latin-1") if values else None


class _Answer:
    """What a WSGI call answered, collected in its thread: the status, the headers, the
    first chunks of the body and, for a large answer, the rest still to be read."""

    __slots__ = ("status", "headers", "chunks", "rest", "iterable")

    def __init__(self):
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.rest: Iterator[bytes] | None = None
        self.iterable: Iterable[bytes] | None = None

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info=None):
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        return self.chunks.append  # the legacy write() callable

    def close(self) -> None:
        close = getattr(self.iterable, "close", None)
        if close is not None:
            close()


def _call_wsgi(app, environ: dict) -> _Answer:
    """Run a WSGI call up to its first :data:`STREAM_AFTER_BYTES` (in a pool thread)."""
    answer = _Answer()
    answer.iterable = app(environ, answer.start_response)
    size = 0
    try:
        iterator = iter(answer.iterable)
        for chunk in iterator:
            if chunk:
                answer.chunks.append(chunk)
                size += len(chunk)
            if size >= STREAM_AFTER_BYTES:
                answer.rest = iterator
                return answer
    except BaseException:  # a streamed body failing half-way still releases its connection
        answer.close()
        raise
    answer.close()
    return answer


class RoutesInThreads:
    """The Flask app as an ASGI app, each request in a thread of a bounded pool.

    Unlike a chunk-by-chunk bridge (a2wsgi's), a usual answer crosses from its thread to
    the event loop once, whole: while the loop is busy serving cached pages, every
    hand-off waits for a turn of it, and three or four per answer made read-API answers
    wait for the page traffic."""

    def __init__(self, app, threads: int):
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="viewer-route")

    async def __call__(self, scope, receive, send) -> None:
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, Body(loop, receive))
        answer = await loop.run_in_executor(self.executor, _call_wsgi, self.app, environ)
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        if answer.rest is None:
            await send({"type": "http.response.body", "body": b"".join(answer.chunks)})
            return
        try:
            for chunk in answer.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            while (chunk := await loop.run_in_executor(self.executor, next, answer.rest, None)) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await loop.run_in_executor(self.executor, answer.close)
        await send({"type": "http.response.body", "body": b""})


class ViewerFront:
    """The ASGI application of the viewer process group (see the module docstring).

    Built from the viewer's Flask app (:func:`app.create_viewer_app`): ``services`` are
    its per-process read services (page cache, engine, revalidator), ``routes`` the app
    run in threads."""

    def __init__(self, flask: Flask):
        self.services: ViewerServices = flask.extensions[EXTENSION_KEY]
        self.routes = RoutesInThreads(flask, self.services.settings.VIEWER_THREADS)

    def start_revalidation(self) -> bool:
        """Start this process's page cache revalidation thread (from a gunicorn worker's
        ``post_worker_init``, after the fork)."""
        return self.services.revalidator.start()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # a WebSocket: the viewer has none
            await send({"type": "websocket.close", "code": 1000})
            return
        headers = scope["headers"]
        cached = cached_answer(
            self.services,
            scope["method"],
            scope["path"],
            scope["query_string"].decode("latin-1"),
            _request_header(headers, b"if-none-match"),
            _request_header(headers, b"accept-encoding"),
        )
        if cached is None:
            await self.routes(scope, receive, send)
            return
        status, answer_headers, data = cached
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers],
            }
        )
        await send({"type": "http.response.body", "body": data})


async def _lifespan(receive, send) -> None:
    """Nothing to set up or tear down per process (gunicorn's hooks start the page
    cache's revalidation), but the protocol is answered so that uvicorn says so."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
