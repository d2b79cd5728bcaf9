"""The viewer's ASGI front: what the viewer's gunicorn workers serve (``wsgi_viewer:viewer``).

A cached page view is the read side's hot path: with the answer already rendered, what a
view costs is the HTTP server's own work. Served by gunicorn's gthread worker, that was
~70 % of a view's CPU in pure-Python request parsing and thread hand-offs
(bench/RESULTS.md). Here the viewer workers are uvicorn's gunicorn worker (C HTTP parser,
libuv event loop), and this front answers fresh cached pages on the event loop itself
(:func:`app.viewer.cached_answer`, the same bytes the Flask route sends); everything else,
a miss, ``/openapi.json``, goes to the Flask app in a thread pool (``VIEWER_THREADS``),
where it may wait for the database without holding up the loop; the read API goes to
child processes (``VIEWER_API_PROCESSES``, :mod:`app.route_process`), so that its CPU
work does not hold the loop's GIL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from a2wsgi.wsgi import Body, build_environ
from flask import Flask

from app.read_api import READ_API_PREFIX
from app.route_process import ChildApp
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
    """The Flask app as an ASGI app, each request in a thread of a bounded pool: read-API
    requests (``/v3/``) in a pool of their own, calling ``api_app`` (the read-API child
    processes, :mod:`app.route_process`), the rest (page renders, ``/openapi.json``) in
    one of ``threads`` calling ``app``.

    Unlike a chunk-by-chunk bridge (a2wsgi's), a usual answer crosses from its thread to
    the event loop once, whole: while the loop is busy serving cached pages, every
    hand-off waits for a turn of it, and three or four per answer made read-API answers
    wait for the page traffic."""

    def __init__(self, app, threads: int, api_app, api_threads: int):
        self.app, self.api_app = app, api_app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="viewer-route")
        self.api_executor = ThreadPoolExecutor(max_workers=api_threads, thread_name_prefix="viewer-read-api")

    def route_for(self, path: str) -> tuple[ThreadPoolExecutor, object]:
        """The pool and the WSGI app that answer a request for ``path``."""
        if path.startswith(READ_API_PREFIX):
            return self.api_executor, self.api_app
        return self.executor, self.app

    async def __call__(self, scope, receive, send) -> None:
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, Body(loop, receive))
        executor, app = self.route_for(scope["path"])
        answer = await loop.run_in_executor(executor, _call_wsgi, app, environ)
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        if answer.rest is None:
            await send({"type": "http.response.body", "body": b"".join(answer.chunks)})
            return
        try:
            for chunk in answer.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            # the rest in the general pool: a read-API thread may be waiting for the child
            # this answer holds, which it gives back when closed
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
        settings = self.services.settings
        processes = settings.VIEWER_API_PROCESSES
        self.api_processes = ChildApp(settings, settings.VIEWER_API_NICE, processes) if processes else None
        self.routes = RoutesInThreads(flask, settings.VIEWER_THREADS, self.api_processes or flask, max(1, processes))

    def close(self) -> None:
        """Let the read-API child processes go (the worker is stopping)."""
        if self.api_processes is not None:
            self.api_processes.stop()

    def start_revalidation(self) -> bool:
        """Start this process's page cache revalidation thread (from a gunicorn worker's
        ``post_worker_init``, after the fork)."""
        return self.services.revalidator.start()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            self.close()
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
    """Nothing to set up per process (gunicorn's hooks start the page cache's
    revalidation; the read-API children start on first use), but the protocol is
    answered so that uvicorn says so; it returns at shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
