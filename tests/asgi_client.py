"""One HTTP request through an ASGI application, as uvicorn would make it, for tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class AsgiAnswer:
    status: int
    headers: list[tuple[str, str]]
    """Lower-case names, as ASGI sends them."""
    body: bytes
    body_messages: int
    """How many ``http.response.body`` messages carried the body (1: sent whole)."""


def http_scope(path: str, query: str = "", headers: dict | None = None, method: str = "GET") -> dict:
    """An ASGI HTTP scope for ``method path?query``, as uvicorn makes it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
        "server": ("127.0.0.1", 8001),
        "client": ("127.0.0.1", 50000),
    }


async def no_body() -> dict:
    """An ASGI ``receive`` for a request without a body."""
    return {"type": "http.request", "body": b"", "more_body": False}


def asgi_request(app, path: str, query: str = "", headers: dict | None = None, method: str = "GET") -> AsgiAnswer:
    """Call ``app`` with an HTTP scope for ``method path?query`` and collect its answer."""
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(app(http_scope(path, query, headers, method), no_body, send))
    return collected(sent)


def collected(sent: list[dict]) -> AsgiAnswer:
    """The answer made of the ASGI messages an app sent."""
    start, *body = sent
    assert start["type"] == "http.response.start" and not body[-1].get("more_body")
    return AsgiAnswer(
        status=start["status"],
        headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in start["headers"]],
        body=b"".join(message["body"] for message in body),
        body_messages=len([message for message in body if message["body"]]),
    )


def lifespan(app) -> list[str]:
    """Run the ASGI lifespan protocol through ``app``; the message types it sent back."""
    incoming = asyncio.Queue()
    sent: list[str] = []

    async def send(message):
        sent.append(message["type"])

    async def run():
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            incoming.put_nowait({"type": kind})
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, incoming.get, send)

    asyncio.run(run())
    return sent
