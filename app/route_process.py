"""Read-API requests of a viewer process, answered by a child process of its own.

A read-API answer is about 1.5 ms of Python CPU. Run in a thread of the viewer process,
it holds the GIL the event loop needs for cached pages: each time the loop let go of it to
poll, a read-API thread took it for a switch interval, and under a closed-loop read-API
client the cached pages of the process got half the throughput and twice the tail
latency (bench/RESULTS.md). In a child process the answer costs the same CPU, but the
kernel shares it out, at ``VIEWER_API_NICE``, instead of the GIL.

Each :class:`RouteProcess` is one child running the viewer's Flask app, answering one
request at a time over a pipe: the WSGI environ's strings go in (the read API only
answers GETs, so a request body is not passed on), then the status and headers come
back, then the body chunk by chunk (a long list streams through), then an end mark. A
thread of the front's read-API pool takes an idle child for a whole answer and waits on
its pipe, which costs no GIL.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import queue
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import settings as settings_module

logger = logging.getLogger(__name__)

GONE = (EOFError, OSError)
"""What a pipe to a child that died raises."""


class ChildGone(Exception):
    """The child process ended (killed, out of memory) or failed before it answered in full."""


def portable_environ(environ: dict) -> dict:
    """The parts of a WSGI environ that cross to the child: its strings (the request
    line, headers, server and client); the child supplies the ``wsgi.*`` objects."""
    return {key: value for key, value in environ.items() if isinstance(value, str)}


def serve(conn: Connection, config: settings_module.Settings, nice: int) -> None:
    """The child's main loop: answer each environ received on ``conn`` until the pipe
    closes (the viewer process ended or let the child go)."""
    from app import create_viewer_app  # here, not at import: the parent already has its app

    if nice:
        os.nice(nice)
    app = create_viewer_app(config)
    while True:
        try:
            environ = conn.recv()
        except GONE:
            return
        environ.update(
            {
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": environ.get("wsgi.url_scheme", "http"),
                "wsgi.input": io.BytesIO(b""),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": False,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
            }
        )
        _answer_one(app, environ, conn)


def _answer_one(app, environ: dict, conn: Connection) -> None:
    written: list[bytes] = []
    started: list[tuple] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
        started.append((status, headers))
        return written.append

    try:
        iterable = app(environ, start_response)
    except Exception:  # Flask answers its routes' errors itself; this is the app failing
        logger.exception("read-API request failed in its child process")
        conn.send(("failed",))
        return
    try:
        status, headers = started[-1]
        conn.send(("start", status, headers))
        for chunk in written:
            conn.send(chunk)
        for chunk in iterable:
            if chunk:
                conn.send(chunk)
    except Exception:  # a list failing half-way: the parent cuts the answer short, as in-process
        logger.exception("read-API answer failed in its child process")
        conn.send(("failed",))
        return
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    conn.send(None)


class RouteProcess:
    """One child process answering the viewer's Flask routes; used by one thread at a
    time. Started on first use and again after it died."""

    def __init__(self, config: settings_module.Settings, nice: int):
        self.config, self.nice = config, nice
        self.process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process with threads
        parent_end, child_end = context.Pipe()
        self.process = context.Process(
            target=serve, args=(child_end, self.config, self.nice), name="viewer-read-api", daemon=True
        )
        self.process.start()
        child_end.close()
        self._conn = parent_end

    def stop(self) -> None:
        """Close the pipe (the child then ends) and wait for the child a moment."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.process is not None:
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.kill()
            self.process = None

    def request(self, environ: dict) -> tuple[str, list[tuple[str, str]], Iterator[bytes]]:
        """Send one request; returns its status line, headers and body chunks (an
        iterator the caller reads to its end, or :meth:`stop` this child). A child that
        died before answering is started again for one more try (the read API only
        reads); :class:`ChildGone` if that fails too."""
        for attempt in (1, 2):
            if self._conn is None:
                self.start()
            try:
                self._conn.send(portable_environ(environ))
                first = self._conn.recv()
            except GONE:
                logger.warning("viewer read-API child process gone; starting another (try %d)", attempt)
                self.stop()
                continue
            if first[0] != "start":
                raise ChildGone("the read-API request failed in its child process")
            _, status, headers = first
            return status, headers, self._body()
        raise ChildGone("the read-API child process ended before answering")

    def _body(self) -> Iterator[bytes]:
        conn = self._conn
        while True:
            try:
                message = conn.recv()
            except GONE as exc:
                self.stop()
                raise ChildGone("the read-API child process ended in the middle of an answer") from exc
            if message is None:
                return
            if isinstance(message, tuple):  # ("failed",): the route raised half-way
                raise ChildGone("the read-API answer failed in its child process")
            yield message


CHILD_GONE_BODY = b'{"errors": [{"message": "the read API is restarting; try again", "path": "/"}]}'


class ChildApp:
    """A WSGI app that answers through ``processes`` :class:`RouteProcess` children: to
    the front it is the Flask app, so collecting and streaming an answer work as for a
    route run in a thread. A child is taken for a whole answer, a streamed list included,
    and given back when the answer is closed; a request waits while every child is busy."""

    def __init__(self, config: settings_module.Settings, nice: int, processes: int = 1):
        self.config, self.nice = config, nice
        self._children = [RouteProcess(config, nice) for _ in range(processes)]
        self._idle: queue.SimpleQueue[RouteProcess] = queue.SimpleQueue()
        for child in self._children:
            self._idle.put(child)

    def started(self) -> list[RouteProcess]:
        """The children whose process is running."""
        return [child for child in self._children if child.process is not None]

    def stop(self) -> None:
        """Let every child go (a worker shutting down)."""
        for child in self._children:
            child.stop()

    def __call__(self, environ: dict, start_response):
        child = self._idle.get()
        try:
            status, headers, body = child.request(environ)
        except ChildGone:
            self._idle.put(child)
            logger.exception("no read-API child process could answer %s", environ.get("PATH_INFO"))
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Retry-After", "1"), ("Access-Control-Allow-Origin", "*")],
            )
            return [CHILD_GONE_BODY]
        start_response(status, headers)
        return _ReadToTheEnd(body, lambda: self._idle.put(child))


class _ReadToTheEnd:
    """A child's answer body whose ``close`` reads what the caller left unread, so that
    the pipe is at the next answer's start (a client gone half-way through a list), and
    then gives the child back."""

    def __init__(self, body: Iterator[bytes], give_back: Callable[[], None]):
        self.body, self.give_back = body, give_back

    def __iter__(self) -> Iterator[bytes]:
        return self.body

    def close(self) -> None:
        if self.give_back is None:
            return
        try:
            for _ in self.body:
                pass
        except ChildGone:  # the child was let go; its next request starts another
            pass
        finally:
            self.give_back, give_back = None, self.give_back
            give_back()
