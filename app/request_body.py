"""Request bodies: read whole within the limit (:func:`read_body`), and what is left of
one drained before answering (:class:`DrainBody`), so that the client reads the answer.

The Perl client (HTTP::Tiny) writes the whole body before it reads anything. When the app
answers without reading the body (a 413 over the limit, a 401, a 429, a 404) and gunicorn
closes the connection, the unread bytes make the kernel reset it: the client shows
``Internal Exception`` instead of the JSON error. gunicorn itself drains only 64 KiB.

:class:`DrainBody` wraps the WSGI app: once the app has answered, it reads and drops the
rest of the body (Content-Length or chunked, gunicorn decodes both), up to ``max_bytes``
and ``seconds``, then hands the answer to gunicorn. Past either bound it gives up (the
client may then see a reset): a body that large or that slow is not a tester's report.
"""

from __future__ import annotations

import logging
import time

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

logger = logging.getLogger(__name__)

DRAIN_MAX_BYTES = 64 * 1024 * 1024
"""Most bytes read past the app's answer (four times the 15 MiB limit)."""

DRAIN_SECONDS = 20.0
"""Longest time spent draining, under gunicorn's 30 s worker timeout."""

STEP = 256 * 1024


def read_body(request: Request) -> bytes:
    """The whole body of ``request``; 413 when it is over the limit.

    werkzeug refuses a Content-Length over the limit, but reads a chunked body only up to
    the limit and stops there without a word: such a body must be refused, never decoded
    from its first ``MAX_CONTENT_LENGTH`` bytes.
    """
    data = request.get_data(cache=False)
    limit = request.max_content_length
    unknown_length = request.content_length is None
    if limit is not None and unknown_length and len(data) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return data


class DrainBody:
    """WSGI middleware: drain the unread request body once the app has answered."""

    def __init__(self, app, max_bytes: int = DRAIN_MAX_BYTES, seconds: float = DRAIN_SECONDS):
        self.app = app
        self.max_bytes = max_bytes
        self.seconds = seconds

    def __call__(self, environ, start_response):
        answer = self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") in ("POST", "PUT", "PATCH"):
            self.drain(environ)
        return answer

    def drain(self, environ) -> None:
        stream = environ.get("wsgi.input")
        if stream is None or not (environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING")):
            return
        deadline = time.monotonic() + self.seconds
        drained = 0
        try:
            while drained < self.max_bytes and time.monotonic() < deadline:
                data = stream.read(min(STEP, self.max_bytes - drained))
                if not data:
                    break
                drained += len(data)
        except Exception as exc:  # the client went away, or sent a broken chunk (gunicorn's errors)
            logger.info("request body drain stopped path=%s after=%d: %s", environ.get("PATH_INFO"), drained, exc)
            return
        if drained:
            logger.info("request body drained path=%s bytes=%d", environ.get("PATH_INFO"), drained)
