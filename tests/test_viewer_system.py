"""System tests: the Procfile's ``viewer`` and ``readapi`` entries each run their own
gunicorn group on ``$PORT``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.backends import free_port
from tests.polling import wait_for
from tests.viewer_helpers import add_upload, make_document, store_document

ROOT = Path(__file__).resolve().parent.parent


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        entry, _, command = line.partition(":")
        if entry.strip() == name:
            return command.strip()
    raise AssertionError(f"no {name} entry in the Procfile")


def wait_for_url(url: str, timeout: float = 30) -> None:
    def answers() -> bool:
        with contextlib.suppress(urllib.error.HTTPError):  # an answer all the same
            urllib.request.urlopen(url, timeout=1).read()
        return True

    wait_for(answers, timeout, url, interval=0.2, retry_on=(OSError,))


@contextmanager
def procfile_entry(name: str, backend, **more):
    """Run the Procfile's ``name`` entry (through a shell, as honcho does) on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(PORT=str(port), HOST="127.0.0.1", DATABASE_URL=backend.database_url, REDIS_URL=backend.redis_url)
    env.update(more)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    process = subprocess.Popen(
        procfile_command(name),
        shell=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_url(f"http://127.0.0.1:{port}/openapi.json")
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


@pytest.mark.system
def test_procfile_viewer_serves_reports_on_port_in_its_own_process_group(backend):
    if backend.name != "embedded":
        pytest.skip("one backend is enough to start the real process")
    engine = backend.engine()
    guid = store_document(engine, make_document(), creator=None)
    engine.dispose()
    assert "gunicorn_viewer.conf.py" in procfile_command("viewer")
    with procfile_entry("viewer", backend, VIEWER_WORKERS="1") as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cpan/report/{guid}", timeout=10) as response:
            assert response.status == 200
            assert "Subject: PASS Yancy-1.004 5.24.3 OpenBSD" in response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/report/{guid}?json=1", timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
        # the viewer app carries neither the read API nor submission routes
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v3/upload/dist/Yancy", timeout=10)
        assert elsewhere.value.code == 404
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/submit/CPAN-Testers-Report", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (404, 405)


@pytest.mark.system
def test_procfile_readapi_serves_the_read_api_in_its_own_process_group(backend):
    if backend.name != "embedded":
        pytest.skip("one backend is enough to start the real process")
    engine = backend.engine()
    add_upload(engine, "Yancy", "1.004", "PREACTION")
    engine.dispose()
    assert "gunicorn_readapi.conf.py" in procfile_command("readapi")
    with procfile_entry("readapi", backend, READ_API_WORKERS="1") as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v3/upload/dist/Yancy", timeout=10) as response:
            assert [row["author"] for row in json.loads(response.read())] == ["PREACTION"]
        with pytest.raises(urllib.error.HTTPError) as none_yet:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v3/upload/dist/No-Such-Dist", timeout=10)
        assert none_yet.value.code == 404 and json.loads(none_yet.value.read())["errors"]
        with pytest.raises(urllib.error.HTTPError) as pages_elsewhere:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/report/00000000-0000-0000-0000-000000000001", timeout=10)
        assert pages_elsewhere.value.code == 404


def test_the_read_side_groups_run_threaded_workers_sized_by_the_settings(monkeypatch):
    monkeypatch.setenv("VIEWER_THREADS", "6")
    monkeypatch.setenv("READ_API_THREADS", "3")
    viewer, readapi = gunicorn_conf("gunicorn_viewer.conf.py"), gunicorn_conf("gunicorn_readapi.conf.py")
    assert (viewer.worker_class, viewer.threads) == ("gthread", 6)
    assert (readapi.worker_class, readapi.threads) == ("gthread", 3)


def gunicorn_conf(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / name)
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_neither_gunicorn_group_opens_the_shared_control_socket():
    """gunicorn 27's default control socket path is one per user: the web and the viewer
    masters overwrote each other's, and the first to stop removed it."""
    for name in ("gunicorn.conf.py", "gunicorn_viewer.conf.py", "gunicorn_readapi.conf.py"):
        assert gunicorn_conf(name).control_socket_disable is True, name
