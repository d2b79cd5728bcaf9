"""System test: the shipped nginx site (``deploy/nginx/cpantesters.conf``, loaded as it is,
with generated addresses only) in front of the real gunicorn groups of the Procfile (web,
viewer, readapi) on the embedded backend.

What the proxy must do: answer repeated views from its cache, never keep a not-found,
answer ``304``, serve stale pages when the viewer is slow or down, pass submissions
through untouched, refuse oversized bodies and floods from one address with JSON errors,
and show a changed tester name or a later author within ``VIEWER_SHARED_MAX_AGE``.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import settings
from scripts import local_nginx
from storage.tables import metabase_user
from tests import captures, processes
from tests.backends import free_port
from tests.helpers import auth_header, register_profile, with_new_guid
from tests.polling import wait_for
from tests.viewer_helpers import add_upload, add_user, make_document, store_document

ROOT = Path(__file__).resolve().parent.parent
FROM_CACHE = ("HIT", "STALE", "UPDATING")
SHARED_MAX_AGE = 2
"""The viewer's VIEWER_SHARED_MAX_AGE here: short, so that expiry is seen within the test."""

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(local_nginx.nginx_binary() is None, reason="nginx is not installed"),
]


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    @property
    def cache(self) -> str | None:
        return self.headers.get("x-cache-status")

    def json(self):
        return json.loads(self.body)


@dataclass
class Stack:
    """nginx on ``port`` in front of the three gunicorn groups (``ports``)."""

    port: int
    ports: dict
    groups: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    tmp: Path | None = None

    def request(self, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None,
                port: int | None = None, source: str | None = None, timeout: float = 30) -> Answer:  # fmt: skip
        """One request to nginx (or ``port``), from the loopback address ``source`` if given;
        ``socket.timeout`` if no answer comes within ``timeout`` seconds."""
        conn = http.client.HTTPConnection(
            "127.0.0.1", port or self.port, timeout=timeout, source_address=(source, 0) if source else None
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def start_group(self, name: str) -> None:
        conf, app = {
            "web": ("gunicorn.conf.py", "wsgi:app"),
            "viewer": ("gunicorn_viewer.conf.py", "wsgi_viewer:viewer"),
            "readapi": ("gunicorn_readapi.conf.py", "wsgi_readapi:read_api"),
        }[name]
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the group
        self.groups[name] = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", conf, app],
            cwd=ROOT,
            env=processes.environment(PORT=self.ports[name], **self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signalled as a whole
        )
        processes.wait_for_port(self.ports[name])

    def signal_group(self, name: str, sig: int) -> None:
        os.killpg(self.groups[name].pid, sig)

    def stop_group(self, name: str) -> None:
        process = self.groups.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(embedded, tmp_path_factory):
    embedded.reset()
    tmp = tmp_path_factory.mktemp("nginx-stack")
    stack = Stack(port=free_port(), ports={name: free_port() for name in local_nginx.UPSTREAMS}, tmp=tmp)
    stack.env = {
        "HOST": "127.0.0.1",
        "DATABASE_URL": embedded.database_url,
        "REDIS_URL": embedded.redis_url,
        "SPOOL_DIR": str(tmp / "spool"),
        "WEB_CONCURRENCY": "2",
        "VIEWER_WORKERS": "1",
        "READ_API_WORKERS": "1",
        "VIEWER_SHARED_MAX_AGE": str(SHARED_MAX_AGE),
        "READ_API_MAX_AGE": "2",
        "AUTH_FAILURE_LIMIT": "3",
        "LOG_LEVEL": "WARNING",
    }
    with ExitStack() as cleanup:
        for name in local_nginx.UPSTREAMS:
            stack.start_group(name)
        cleanup.callback(lambda: [stack.stop_group(name) for name in list(stack.groups)])
        nginx = local_nginx.start(tmp / "nginx", stack.port, stack.ports)
        cleanup.callback(local_nginx.stop, nginx)
        yield stack


@pytest.fixture
def writer(embedded):
    engine = embedded.engine()
    yield engine
    engine.dispose()


def test_a_second_view_is_a_cache_hit_in_every_form(stack, writer):
    guid = store_document(writer, make_document(), creator=None)
    for form in ("", "?raw=1", "?json=1"):
        first = stack.request(f"/cpan/report/{guid}{form}", headers={"Accept-Encoding": "gzip"})
        second = stack.request(f"/cpan/report/{guid}{form}", headers={"Accept-Encoding": "gzip"})
        assert (first.status, first.cache) == (200, "MISS"), form
        assert (second.status, second.cache) == (200, "HIT"), form
        assert second.body == first.body and second.headers["etag"] == first.headers["etag"]
        assert second.headers["content-encoding"] == "gzip"
    page = gzip.decompress(stack.request(f"/report/{guid}", headers={"Accept-Encoding": "gzip"}).body).decode()
    assert "Subject: PASS Yancy-1.004 5.24.3 OpenBSD" in page


def test_a_client_without_gzip_gets_the_cached_page_unzipped(stack, writer):
    guid = store_document(writer, make_document(), creator=None)
    zipped = stack.request(f"/cpan/report/{guid}", headers={"Accept-Encoding": "gzip"})
    plain = stack.request(f"/cpan/report/{guid}")
    assert plain.cache == "HIT" and "content-encoding" not in plain.headers
    assert plain.body == gzip.decompress(zipped.body)
    assert plain.headers["content-type"] == "text/html; charset=utf-8"
    assert plain.headers["access-control-allow-origin"] == "*"


def test_a_report_not_found_is_never_cached_so_it_shows_the_moment_it_is_stored(stack, writer):
    doc = make_document()
    guid = doc["id"]
    missing_page = stack.request(f"/cpan/report/{guid}")
    missing_json = stack.request(f"/cpan/report/{guid}?json=1")
    assert missing_page.status == 404 and missing_page.headers["cache-control"] == "no-store"
    assert missing_json.status == 200 and missing_json.json() == {"success": 0}
    store_document(writer, doc, creator=None)
    page, as_json = stack.request(f"/cpan/report/{guid}"), stack.request(f"/cpan/report/{guid}?json=1")
    assert page.status == 200 and page.cache == "MISS"
    assert as_json.json()["success"] == "1" and as_json.cache == "MISS"


def test_304_through_the_proxy_for_both_encodings(stack, writer):
    guid = store_document(writer, make_document(), creator=None)
    for accept in ({"Accept-Encoding": "gzip"}, {}):
        etag = stack.request(f"/report/{guid}", headers=accept).headers["etag"]
        again = stack.request(f"/report/{guid}", headers={**accept, "If-None-Match": etag})
        assert again.status == 304 and again.body == b"", accept
        assert stack.request(f"/report/{guid}", headers={**accept, "If-None-Match": '"other"'}).status == 200


def test_a_changed_tester_name_and_a_later_author_show_within_the_shared_max_age(stack, writer):
    """The stated bound: the proxy refreshes a page VIEWER_SHARED_MAX_AGE after it fetched
    it (in the background, on the next view), so such a change shows within that."""
    creator = "metabase:user:00000000-0000-0000-0000-0000000000aa"
    add_user(writer, creator, "Doug Bell", "doug@example.com")
    doc = make_document(**{"distribution.name": "Later-Author", "distribution.path": None})
    guid = store_document(writer, doc, creator=creator)
    path = f"/cpan/report/{guid}"
    first = stack.request(path)
    assert "From: Doug Bell" in first.body.decode() and "metacpan.org/release/Later-Author" in first.body.decode()
    with writer.begin() as conn:
        conn.execute(metabase_user.update().where(metabase_user.c.resource == creator).values(fullname="Douglas"))
    add_upload(writer, "Later-Author", "1.004", "NEWAUTHOR")
    cached = stack.request(path)
    assert cached.cache in FROM_CACHE and cached.body == first.body  # the proxy's copy
    # the bound: the page's lifetime, then one view to start the refresh and its render
    fresh = wait_for(
        lambda: "From: Douglas" in (page := stack.request(path).body.decode()) and page,
        SHARED_MAX_AGE + 5,
        "the changed name to show",
    )
    assert "metacpan.org/release/NEWAUTHOR/Later-Author-1.004" in fresh


def test_a_slow_viewer_gets_its_pages_served_stale_at_once(stack, writer):
    guid = store_document(writer, make_document(), creator=None)
    path = f"/report/{guid}"
    cached = stack.request(path)
    stack.signal_group("viewer", signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        stale = wait_for(
            lambda: (a := stack.request(path)).cache in ("STALE", "UPDATING") and a,
            SHARED_MAX_AGE + 10,
            "the page to be served stale",
        )
        assert stale.status == 200 and stale.body == cached.body
        again = stack.request(path, timeout=1)  # not held up by the viewer
        assert again.body == cached.body and again.cache in ("STALE", "UPDATING")
    finally:
        stack.signal_group("viewer", signal.SIGCONT)


def test_a_dead_viewer_gets_its_pages_served_stale(stack, writer):
    guid = store_document(writer, make_document(), creator=None)
    path = f"/report/{guid}?json=1"
    cached = stack.request(path)
    stack.stop_group("viewer")
    try:
        stale = wait_for(
            lambda: (a := stack.request(path)).cache in ("STALE", "UPDATING") and a,
            SHARED_MAX_AGE + 10,
            "the page to be served stale",
        )
        assert stale.status == 200 and stale.body == cached.body
        never_seen = stack.request("/report/00000000-0000-0000-0000-000000000abc")
        assert never_seen.status == 502  # nothing to serve stale
    finally:
        stack.start_group("viewer")
    assert stack.request(f"/report/{guid}").status == 200


def test_the_read_api_is_cached_briefly_with_json_errors(stack, writer):
    add_upload(writer, "Cached-Dist", "1.0", "SOMEONE")
    first, second = stack.request("/v3/upload/dist/Cached-Dist"), stack.request("/v3/upload/dist/Cached-Dist")
    assert (first.cache, second.cache) == ("MISS", "HIT")
    assert [row["author"] for row in second.json()] == ["SOMEONE"]
    missing = stack.request("/v3/upload/dist/No-Such-Dist")
    assert missing.status == 404 and missing.headers["content-type"] == "application/json"
    assert missing.json() == {"errors": [{"message": 'Distribution "No-Such-Dist" not found', "path": "/"}]}


def raw_answer(port: int, raw: bytes) -> tuple[int, str | None, bytes, str | None]:
    """Status, Content-Type, body and X-Cache-Status of a raw request's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        response = b""
        while b"\r\n\r\n" not in response or not raw.startswith(b"HEAD") and not _whole(response):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        pytest.fail("a submission answer came chunked")
    return int(lines[0].split()[1]), headers.get("content-type"), body, headers.get("x-cache-status")


def _whole(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    return length is not None and len(body) >= int(length.group(1))


def test_the_real_clients_requests_pass_uncached_with_their_exact_status_and_json_body(stack, embedded):
    """The captured register flow through the proxy, then every captured submission through
    the proxy and straight to gunicorn: the same status, Content-Type and body."""
    embedded.reset()
    flow = [raw_answer(stack.port, r.raw) for r in captures.load("04-register-flow")]
    assert [status for status, *_ in flow] == [401, 404, 200, 201]
    assert all(cache is None for *_, cache in flow)
    assert all(content_type == "application/json" for _, content_type, *_ in flow[:1] + flow[2:])
    assert "error" in json.loads(flow[0][2])
    for recorded in captures.submissions():
        proxied = raw_answer(stack.port, recorded.raw)
        direct = raw_answer(stack.ports["web"], recorded.raw)
        assert proxied[:3] == direct[:3], recorded.scenario
        assert proxied[1] == "application/json" and proxied[3] is None
        json.loads(proxied[2])


def test_a_relay_sending_many_reports_at_once_from_one_address_is_not_limited(stack, embedded, writer):
    """Many testers' reports from one address, 24 at once (each tester's own are spaced out
    to the per-tester rate, see below)."""
    testers = [_tester_submission(writer, f"0e0e0e0e-0000-4000-8000-0000000{n:05d}") for n in range(12)]
    path = captures.load("01-ok")[0].path

    def submit(n):
        headers, body = testers[n % len(testers)]
        return stack.request(path, "POST", headers, body()).status

    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(submit, range(48)))
    assert statuses == [201] * 48


def submission_head(length: int, path: str = "/api/v1/submit/CPAN-Testers-Report") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_body_over_the_limit_gets_a_json_413_in_the_shape_of_its_api(stack):
    limit = settings.Settings().MAX_SUBMISSION_BYTES
    legacy = raw_answer(stack.port, submission_head(limit + 1) + b"{}")
    assert legacy[:2] == (413, "application/json")
    assert "too large" in json.loads(legacy[2])["error"]
    v3 = raw_answer(stack.port, submission_head(limit + 1, "/v3/report") + b"{}")
    assert v3[:2] == (413, "application/json")
    assert "too large" in json.loads(v3[2])["errors"][0]["message"]


def test_the_shipped_body_limit_is_the_apps_default_limit():
    text = local_nginx.SITE.read_text()
    size = re.search(r"^\s*client_max_body_size (\d+)m;", text, re.M)
    assert size and int(size.group(1)) * 1024 * 1024 == settings.Settings().MAX_SUBMISSION_BYTES


def test_more_requests_at_once_from_one_address_than_the_limit_get_a_json_503(stack):
    limit = int(re.search(r"limit_conn cpantesters_per_address (\d+);", local_nginx.SITE.read_text()).group(1))
    # submissions whose bodies never come: each holds its slot
    heads = [(submission_head(100), None)] * limit
    refused = held_until_refused(stack, heads, submission_head(2) + b"{}", "the request over the limit to be refused")
    assert refused[1] == "application/json" and "too many requests" in json.loads(refused[2])["error"]
    wait_for(lambda: raw_answer(stack.port, submission_head(2) + b"{}")[0] != 503, 10, "the slots to be free again")


def test_each_apps_openapi_document_is_reached_through_the_proxy(stack):
    documents = {
        "/openapi.json": "/api/v1/submit/{fact_type}",
        "/openapi/read-api.json": "/v3/summary/{dist}",
        "/openapi/viewer.json": "/report/{ident}",
    }
    for address, served_path in documents.items():
        answer = stack.request(address)
        assert answer.status == 200 and served_path in answer.json()["paths"], address


def test_the_release_analysis_reaches_the_read_api_and_the_viewer(stack):
    api, page = stack.request("/v3/analysis/No-Such/1.0"), stack.request("/dist/No-Such/1.0/analysis")
    assert api.status == 404 and api.json()["errors"][0]["message"] == "No PASS or FAIL report of No-Such 1.0"
    assert page.status == 404 and page.headers["content-type"].startswith("text/html")


def test_status_and_dashboard_are_never_cached(stack):
    for path in ("/status?format=json", "/dashboard/"):
        answer = stack.request(path)
        assert "x-cache-status" not in answer.headers, path


def test_the_apps_see_the_address_nginx_gives_so_a_client_cannot_claim_another(stack, writer):
    """X-Forwarded-For through nginx and ProxyFix: the auth-failure throttle counts each
    client's own address (not nginx's for all), whatever X-Forwarded-For it sends itself."""
    guid = "0e0e0e0e-0000-4000-8000-00000000f00d"
    register_profile(writer, guid=guid)
    recorded = captures.load("01-ok")[0]
    headers = {k: v for k, v in recorded.headers if k.lower() not in ("host", "content-length", "authorization")}
    headers.update(auth_header(guid, "a wrong secret"))

    def attempt(claimed: str, source: str = "127.0.0.1") -> int:
        body, _ = with_new_guid(recorded.body)
        return stack.request(recorded.path, "POST", {**headers, "X-Forwarded-For": claimed}, body, source=source).status

    assert [attempt(f"198.51.100.{n}") for n in range(3)] == [401, 401, 401]
    assert attempt("203.0.113.99") == 429  # the same client (127.0.0.1) under another claimed address
    assert attempt("198.51.100.0", source="127.0.0.2") == 401  # another client: its own count, not nginx's


OVER_LIMIT_REPORT = 17 * 1024 * 1024
"""A tester's 17 MB report: over the 15 MiB limit of nginx and of the web app."""


def whole_body_answer(port: int, path: str, chunked: bool) -> tuple[int, str | None, dict]:
    """Status, Content-Type and JSON body of the answer to an over-limit submission written
    whole before reading, as HTTP::Tiny does (with Content-Length, or chunked)."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {OVER_LIMIT_REPORT}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Metabase::Client::Simple/0.012 HTTP-Tiny/0.082\r\n"
        f"Content-Type: application/octet-stream\r\n{framing}\r\n\r\n"
    ).encode()
    raw = processes.send_whole_then_read(port, head, b"x" * OVER_LIMIT_REPORT, chunked=chunked)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers.get("content-type"), json.loads(body)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("via", ["nginx", "gunicorn"])
def test_a_17_mb_report_written_whole_before_reading_gets_the_json_413(stack, via, chunked):
    port = stack.port if via == "nginx" else stack.ports["web"]
    status, content_type, body = whole_body_answer(port, "/api/v1/submit/CPAN-Testers-Report", chunked)
    assert (status, content_type) == (413, "application/json")
    assert "request body too large: the limit is 15 MiB" in body["error"]


@pytest.mark.parametrize("via", ["nginx", "gunicorn"])
def test_a_17_mb_v3_report_written_whole_before_reading_gets_the_json_413_in_the_v3_shape(stack, via):
    port = stack.port if via == "nginx" else stack.ports["web"]
    status, content_type, body = whole_body_answer(port, "/v3/report", chunked=False)
    assert (status, content_type) == (413, "application/json")
    assert "request body too large" in body["errors"][0]["message"]


def test_a_body_the_app_never_reads_is_drained_so_the_client_gets_the_json_answer(stack):
    """A 404 (or 401, 429) is answered without reading the body: gunicorn alone would close
    with megabytes unread and reset the connection under the client's feet."""
    body = b"x" * (12 * 1024 * 1024)  # within the limit, more than the sockets buffer
    head = (
        f"POST /api/v1/submit/No-Such/Thing HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    raw = processes.send_whole_then_read(stack.ports["web"], head, body)
    assert raw.startswith(b"HTTP/1.1 404") and b"\r\nContent-Type: application/json\r\n" in raw


def _tester_submission(writer, guid: str) -> tuple[dict, Callable[[], bytes]]:
    """A registered tester of the test's own: its headers, and a maker of its submissions
    (the captured report under this tester as creator, a fresh report GUID each)."""
    secret = f"secret-{guid[-4:]}"
    register_profile(writer, secret=secret, guid=guid)
    recorded = captures.load("01-ok")[0]
    headers = {k: v for k, v in recorded.headers if k.lower() not in ("host", "content-length", "authorization")}
    headers.update(auth_header(guid, secret))
    outer = json.loads(recorded.body)
    outer["metadata"]["core"]["creator"] = f"metabase:user:{guid}"
    body = json.dumps(outer).encode()
    return headers, lambda: with_new_guid(body)[0]


def delayed_requests(stack) -> int:
    """How many requests nginx has delayed for the per-tester rate so far (its error log
    has a line for each, at ``warn``)."""
    log = stack.tmp / "nginx" / "logs" / "error.log"
    return log.read_text(errors="replace").count("delaying request") if log.exists() else 0


def held_until_refused(stack, heads: list[tuple[bytes, str | None]], probe: bytes, what: str):
    """Hold one connection per ``(request head, source address)`` whose body never comes
    (each keeps its place in nginx), then send ``probe`` until nginx refuses it; returns
    that answer. The held connections are closed afterwards."""
    held = []
    try:
        for head, source in heads:
            sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10,
                                            source_address=(source, 0) if source else None)  # fmt: skip
            sock.sendall(head)
            held.append(sock)

        def one_more():
            answer = raw_answer(stack.port, probe)
            return answer if answer[0] == 503 else None

        return wait_for(one_more, 10, what)
    finally:
        for sock in held:
            sock.close()


def per_tester_limit() -> tuple[float, int]:
    """The shipped per-tester rate (requests/s) and burst."""
    text = local_nginx.SITE.read_text()
    rate = re.search(r"zone=cpantesters_per_tester:\w+ rate=(\d+)r/s;", text)
    burst = re.search(r"limit_req zone=cpantesters_per_tester burst=(\d+);", text)
    return float(rate.group(1)), int(burst.group(1))


def test_a_burst_from_one_tester_is_delayed_not_refused_and_another_tester_is_not_slowed(stack, writer):
    """A flooding tester's submissions wait in nginx, spaced out to the per-tester rate, and
    are all accepted; meanwhile another tester's submission goes straight through."""
    rate, _ = per_tester_limit()
    flooder, flood = _tester_submission(writer, "0e0e0e0e-0000-4000-8000-00000000f100")
    other, other_body = _tester_submission(writer, "0e0e0e0e-0000-4000-8000-00000000f101")
    path = captures.load("01-ok")[0].path
    burst = 30  # at 10/s the last one is answered 2.9 s after the first
    answered: list[int] = []

    def submit(_):
        status = stack.request(path, "POST", flooder, flood()).status
        answered.append(status)
        return status

    delayed_before = delayed_requests(stack)
    with ThreadPoolExecutor(burst) as pool:
        statuses = pool.map(submit, range(burst))
        wait_for(lambda: len(answered) >= 2, 30, "the burst to be under way")
        assert stack.request(path, "POST", other, other_body()).status == 201
        pending_when_other_answered = burst - len(answered)
        statuses = list(statuses)
    assert statuses == [201] * burst
    # spaced out to the rate by nginx (it logs each request it delays): delayed, not refused
    assert delayed_requests(stack) - delayed_before >= burst - 1 - rate
    assert pending_when_other_answered >= burst // 3  # the other tester did not wait behind them


def test_a_tester_with_more_requests_waiting_than_the_burst_gets_a_json_503(stack, writer):
    """Only past ``burst`` requests waiting at once (far more than the one at a time the Perl
    client sends) is a tester refused, with nginx's JSON error. The waiting requests are held
    open from several addresses, each under the per-address connection limit."""
    _, burst = per_tester_limit()
    headers, _ = _tester_submission(writer, "0e0e0e0e-0000-4000-8000-00000000f102")
    head = submission_head(100).replace(b"\r\n\r\n", f"\r\nAuthorization: {headers['Authorization']}\r\n\r\n".encode())
    per_address = 50
    # each waits in nginx's queue (30 more: the queue drains at the rate)
    heads = [(head, f"127.0.1.{n // per_address + 1}") for n in range(burst + 30)]
    probe = head.replace(b"Content-Length: 100", b"Content-Length: 2") + b"{}"
    refused = held_until_refused(stack, heads, probe, "the request over the burst to be refused")
    assert refused[1] == "application/json" and "too many requests" in json.loads(refused[2])["error"]
