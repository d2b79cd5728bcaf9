"""The report page in a real headless browser (Debian's chromium): what a reader sees.

A hostile report is stored, the viewer app is served over HTTP, and chromium's DOM after
loading (scripts enabled) is checked: the title, the link, the text with its Unicode, and
that none of the report's markup became elements or ran.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from app import create_viewer_app
from tests.backends import free_port
from tests.report_texts import real_report
from tests.viewer_helpers import add_upload, make_document, store_document

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--virtual-time-budget=2000",
]

ARTIFACTS = Path(__file__).parent / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture
def served_viewer(config, backend):
    if backend.name != "embedded":
        pytest.skip("the browser check needs one backend only")
    application = create_viewer_app(config)
    server = make_server("127.0.0.1", free_port(), application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    application.extensions["cpantesters_viewer"].engine.dispose()


def dump_dom(url: str, tmp_path) -> str:
    result = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", url],
        capture_output=True,
        timeout=90,
        check=True,
    )
    return result.stdout.decode("utf-8")


def screenshot(url: str, name: str, tmp_path) -> Path:
    """A 1000x900 screenshot of ``url`` kept as ``tests/artifacts/<name>`` (the docs' pictures)."""
    ARTIFACTS.mkdir(exist_ok=True)
    subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'shot'}", "--window-size=1000,900",
         f"--screenshot={ARTIFACTS / name}", url],
        capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    return ARTIFACTS / name


def test_browser_shows_the_report_and_runs_none_of_its_markup(served_viewer, backend, tmp_path):
    attack = (
        '<script>document.title="pwned";document.body.setAttribute("data-pwned","1")</script><b id="injected">x</b>'
    )
    text = f"Test output ✓ 日本語 🐪\n{attack}\nAll tests successful."
    doc = make_document(**{"reporter.name": f"Slaven Rezić {attack}", "result.output.uncategorized": text})
    engine = backend.engine()
    add_upload(engine, "Yancy", "1.004", "PREACTION")
    guid = store_document(engine, doc, creator=None)
    engine.dispose()

    dom = dump_dom(f"{served_viewer}/cpan/report/{guid}", tmp_path)

    assert "<title>CPAN Testers Reports: PASS Yancy-1.004 5.24.3 OpenBSD</title>" in dom
    assert "pwned" not in dom.split("<pre", 1)[0]  # the title and body attributes are untouched
    assert 'data-pwned="1"' not in dom
    assert '<b id="injected"' not in dom and "<script" not in dom
    assert '<a id="release" href="https://metacpan.org/release/PREACTION/Yancy-1.004">Yancy-1.004</a>' in dom
    pre = html.unescape(dom.split('<pre id="report">', 1)[1].split("</pre>", 1)[0])
    assert "Subject: PASS Yancy-1.004 5.24.3 OpenBSD" in pre
    assert f"From: Slaven Rezić {attack} <doug@example.com>" in pre
    assert text in pre  # shown as text, Unicode intact


def test_browser_shows_report_not_found(served_viewer, tmp_path):
    dom = dump_dom(f"{served_viewer}/report/00000000-0000-0000-0000-000000000000", tmp_path)
    assert "<h1>Report not found</h1>" in dom


def test_browser_shows_the_unmet_prerequisites_above_the_report(served_viewer, backend, tmp_path):
    text = real_report("collector/report-cpanminus-reporter-0.12-with-report-prereqs.txt")
    doc = make_document(**{"result.output.uncategorized": text, "result.grade": "fail"})
    engine = backend.engine()
    guid = store_document(engine, doc)
    engine.dispose()
    url = f"{served_viewer}/report/{guid}"

    dom = dump_dom(url, tmp_path)

    assert dom.index('id="summary"') < dom.index('id="prerequisites"') < dom.index('id="report"')
    assert dom.count('<tr class="unmet">') == 5
    assert screenshot(url, "report-page.png", tmp_path).stat().st_size > 5000
