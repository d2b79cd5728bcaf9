"""/status in a real headless browser (Debian's chromium): the figures it shows, the chart
its inline script draws from them, and a screenshot kept in tests/artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from werkzeug.serving import make_server

import settings
from app import create_app
from queueing import counters
from queueing.contract import enqueue_report
from tests import backends

pytestmark = pytest.mark.browser


ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if backends.services_required():
            pytest.fail("chromium is not installed (apt-get install chromium) and CPT_REQUIRE_SERVICES is set")
        pytest.skip("chromium is not installed")
    return found


class Elements(HTMLParser):
    """id -> (attributes, text) of every element with an id, from the DOM chromium dumps."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, tuple[dict, str]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        element_id = attributes.get("id")
        if element_id:
            self.by_id[element_id] = (attributes, "")
        if tag not in ("polyline", "line", "meta", "link", "br"):
            self._open.append(element_id)

    def handle_startendtag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.by_id[attributes["id"]] = (attributes, "")

    def handle_endtag(self, tag):
        if tag not in ("polyline", "line", "meta", "link", "br") and self._open:
            self._open.pop()

    def handle_data(self, data):
        for element_id in self._open:
            if element_id:
                attributes, text = self.by_id[element_id]
                self.by_id[element_id] = (attributes, text + data)


@pytest.fixture
def served_app(embedded, tmp_path):
    embedded.reset()
    app = create_app(
        settings.load({}, DATABASE_URL=embedded.database_url, REDIS_URL=embedded.redis_url, SPOOL_DIR=str(tmp_path))
    )
    server = make_server("127.0.0.1", backends.free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    app.extensions["cpantesters"].engine.dispose()


def stalled_hour(connection) -> None:
    """Twenty submissions a minute for an hour; processing stopped fifteen minutes ago.

    Seeded and drawn on a clock that stands still (see the test): the page must show the
    same sixty minutes (a run that crossed a minute boundary once showed the newest minute
    empty)."""
    now = time.time()
    for minutes_ago in range(60):
        at = now - minutes_ago * 60
        counters.record(connection, counters.SUBMITTED, 20, at=at)
        if minutes_ago >= 15:
            counters.record(connection, counters.PROCESSED, 20, at=at)
    for i in range(300):
        enqueue_report(connection, f"00000000-0000-4000-8000-{i:012d}")


def run_chromium(*args, timeout=90) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=timeout)


def test_the_status_page_shows_the_figures_and_draws_the_last_hour(served_app, tmp_path, time_machine):
    app, base = served_app
    time_machine.move_to(time.time(), tick=False)  # the app's clock (in this process) stands still
    stalled_hour(app.extensions["cpantesters"].redis)
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    dumped = run_chromium(profile, "--virtual-time-budget=3000", "--dump-dom", f"{base}/status")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    parser = Elements()
    parser.feed(dumped.stdout)
    elements = parser.by_id

    assert elements["verdict"][1] == "CRITICAL"
    assert "no live worker" in elements["problems"][1]
    assert elements["queued"][1].strip() == "300"
    assert elements["workers-alive"][1].strip() == "0"
    assert "bad" in elements["workers-alive"][0]["class"]
    assert elements["waiting"][1].strip() == "0"
    assert elements["spooled"][1].strip() == "0"
    assert "no worker alive" in dumped.stdout

    chart = elements["chart"][0]
    assert chart.get("data-drawn") == "yes", "the inline script did not draw the chart"
    submitted = [int(v) for v in elements["line-submitted"][0]["data-values"].split(",")]
    processed = [int(v) for v in elements["line-processed"][0]["data-values"].split(",")]
    depth = [int(v) for v in elements["line-queue_depth"][0]["data-values"].split(",")]
    assert len(submitted) == len(processed) == len(depth) == 60
    assert submitted == [20] * 60
    assert processed == [20] * 45 + [0] * 15
    assert depth[-1] == 300
    assert depth[-15:] == sorted(depth[-15:]), "the backlog grows while processing is stalled"
    assert depth[-16] == 0  # before the stall the queue was empty (reconstructed from the counters)
    points = elements["line-queue_depth"][0]["points"].split()
    assert len(points) == 60
    assert float(points[-1].split(",")[1]) < float(points[0].split(",")[1])  # drawn higher at the end
    assert elements["axis-depth-max"][1] == "300"
    assert re.fullmatch(r"\d+/min", elements["axis-rate-max"][1])

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "status.png"
    screenshot.unlink(missing_ok=True)
    shot = run_chromium(profile, "--virtual-time-budget=3000", "--window-size=1000,1200",
                        f"--screenshot={screenshot}", f"{base}/status")  # fmt: skip
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000
