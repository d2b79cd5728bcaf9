"""The viewer's read API answered by child processes (``VIEWER_API_PROCESSES``), so that
its CPU work never holds the GIL the page loop needs: same answers, a child that dies is
replaced, a list left half-read leaves the child ready for the next request."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal

import pytest

from app import create_viewer_app
from app.route_process import ChildApp
from app.viewer_front import ViewerFront
from tests.asgi_client import asgi_request, collected, http_scope, no_body
from tests.viewer_helpers import add_bulk_uploads, add_upload


@pytest.fixture
def front(config):
    application = create_viewer_app(dataclasses.replace(config, VIEWER_API_PROCESSES=1, VIEWER_API_NICE=3))
    front = ViewerFront(application)
    yield front
    front.close()
    application.extensions["cpantesters_viewer"].engine.dispose()


def api_environ(path: str) -> dict:
    """A WSGI environ for ``GET path``, as the front passes it on."""
    return {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8001", "SERVER_PROTOCOL": "HTTP/1.1",
    }  # fmt: skip


def the_child(front: ViewerFront):
    (child,) = front.api_processes.started()
    return child.process


def test_read_api_answers_come_from_a_child_process_and_match_the_routes(front, writer):
    add_upload(writer, "Yancy", "1.004", "PREACTION")
    path = "/v3/upload/dist/Yancy"
    answer = asgi_request(front, path)
    expected = front.routes.app.test_client().get(path)
    assert answer.status == 200 and answer.body == expected.data
    assert dict(answer.headers)["access-control-allow-origin"] == "*"
    child = the_child(front)
    assert child.pid != os.getpid() and child.is_alive()


def test_the_read_api_children_run_at_the_configured_niceness(front, writer):
    add_upload(writer, "Yancy", "1.004", "PREACTION")
    asgi_request(front, "/v3/upload/dist/Yancy")
    assert os.getpriority(os.PRIO_PROCESS, the_child(front).pid) == os.getpriority(os.PRIO_PROCESS, 0) + 3


def test_pages_and_openapi_are_not_sent_to_the_children(front):
    assert asgi_request(front, "/openapi.json").status == 200
    assert asgi_request(front, "/cpan/report/00000000-0000-0000-0000-000000000001").status == 404
    assert front.api_processes.started() == []


def test_a_killed_child_is_replaced_and_the_request_still_answered(front, writer):
    add_upload(writer, "Yancy", "1.004", "PREACTION")
    first = asgi_request(front, "/v3/upload/dist/Yancy")
    child = the_child(front)
    killed = child.pid
    os.kill(killed, signal.SIGKILL)
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL
    again = asgi_request(front, "/v3/upload/dist/Yancy")
    assert again.status == 200 and again.body == first.body
    assert the_child(front).pid != killed


def test_a_request_arriving_while_a_list_streams_gets_its_own_answer(front, writer):
    """Bug: a child belonged to a thread, and a request run on that thread while the
    child was still streaming a list wrote into the same pipe: both answers broke."""
    add_bulk_uploads(writer, "BULK", 3000)
    add_upload(writer, "Yancy", "1.004", "PREACTION")

    async def both() -> tuple[list[dict], list[dict]]:
        streamed, small = [], []

        async def slow_reader(message):  # a client reading the long list slowly
            streamed.append(message)
            await asyncio.sleep(0.02)

        async def reader(message):
            small.append(message)

        long_list = asyncio.create_task(front(http_scope("/v3/upload/author/BULK"), no_body, slow_reader))
        while len(streamed) < 3:  # the list is under way
            await asyncio.sleep(0.01)
        await front(http_scope("/v3/upload/dist/Yancy"), no_body, reader)
        assert not long_list.done()
        await long_list
        return streamed, small

    streamed, small = asyncio.run(both())
    assert [row["dist"] for row in json.loads(collected(small).body)] == ["Yancy"]
    assert len(json.loads(collected(streamed).body)) == 3000


def test_a_list_left_half_read_leaves_the_child_ready_for_the_next_request(config, writer):
    add_bulk_uploads(writer, "BULK", 3000)
    add_upload(writer, "Yancy", "1.004", "PREACTION")
    children = ChildApp(config, nice=0)
    try:
        body = children(api_environ("/v3/upload/author/BULK"), lambda status, headers: None)
        next(iter(body))  # a client that went away after the first chunk
        body.close()
        statuses = []
        answer = children(api_environ("/v3/upload/dist/Yancy"), lambda status, headers: statuses.append(status))
        assert statuses == ["200 OK"]
        assert [row["dist"] for row in json.loads(b"".join(answer))] == ["Yancy"]
    finally:
        children.stop()


def test_when_no_child_can_start_the_read_api_answers_a_json_503(config):
    broken = dataclasses.replace(config, DATABASE_URL="nosuchdriver://nowhere/db")
    children = ChildApp(broken, nice=0)
    statuses: list[tuple] = []
    try:
        body = b"".join(
            children(api_environ("/v3/upload"), lambda status, headers: statuses.append((status, dict(headers))))
        )
    finally:
        children.stop()
    ((status, headers),) = statuses
    assert status.startswith("503") and headers["Content-Type"] == "application/json"
    assert json.loads(body)["errors"][0]["message"]


def test_with_no_api_processes_the_viewer_answers_the_read_api_itself(config, writer):
    application = create_viewer_app(dataclasses.replace(config, VIEWER_API_PROCESSES=0))
    front = ViewerFront(application)
    add_upload(writer, "Yancy", "1.004", "PREACTION")
    answer = asgi_request(front, "/v3/upload/dist/Yancy")
    assert answer.status == 200 and json.loads(answer.body)[0]["dist"] == "Yancy"
    assert front.api_processes is None
    application.extensions["cpantesters_viewer"].engine.dispose()


def test_closing_the_front_ends_its_children(front, writer):
    add_upload(writer, "Yancy", "1.004", "PREACTION")
    asgi_request(front, "/v3/upload/dist/Yancy")
    child = the_child(front)
    front.close()
    assert not child.is_alive()
