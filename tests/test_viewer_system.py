"""System test: the Procfile's ``viewer`` entry runs its own gunicorn group on ``$PORT``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.backends import free_port
from tests.viewer_helpers import make_document, store_document

ROOT = Path(__file__).resolve().parent.parent


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        entry, _, command = line.partition(":")
        if entry.strip() == name:
            return command.strip()
    raise AssertionError(f"no {name} entry in the Procfile")


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_procfile_viewer_serves_reports_on_port_in_its_own_process_group(backend, tmp_path):
    if backend.name != "embedded":
        pytest.skip("one backend is enough to start the real process")
    engine = backend.engine()
    guid = store_document(engine, make_document(), creator=None)
    engine.dispose()
    command = procfile_command("viewer")
    assert "gunicorn_viewer.conf.py" in command and "wsgi_viewer:viewer" in command
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        PORT=str(port),
        HOST="127.0.0.1",
        DATABASE_URL=backend.database_url,
        REDIS_URL=backend.redis_url,
        VIEWER_WORKERS="1",
    )
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    process = subprocess.Popen(
        command,
        shell=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/openapi.json")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cpan/report/{guid}", timeout=10) as response:
            assert response.status == 200
            assert "Subject: PASS Yancy-1.004 5.24.3 OpenBSD" in response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/report/{guid}?json=1", timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
        # the read API, answered by a worker's child process (app/route_process.py)
        with pytest.raises(urllib.error.HTTPError) as none_yet:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v3/upload/dist/No-Such-Dist", timeout=30)
        assert none_yet.value.code == 404 and json.loads(none_yet.value.read())["errors"]
        assert any("multiprocessing" in command for command in processes_in_group(process.pid).values())
        # the viewer app carries no submission routes: a flood of readers cannot take intake workers
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/submit/CPAN-Testers-Report", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (404, 405)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    deadline = time.monotonic() + 10
    while processes_in_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_in_group(process.pid) == {}  # the children went with their worker


def processes_in_group(pgid: int) -> dict[int, str]:
    """Live (not zombie) processes of process group ``pgid`` and their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found[int(entry.name)] = command
    return found


def test_viewer_workers_start_the_page_cache_revalidation(config, tmp_path):
    """``gunicorn_viewer.conf.py`` starts each worker's revalidation thread once the app is loaded."""
    import dataclasses
    import importlib.util
    from types import SimpleNamespace

    from app import create_viewer_app
    from app.viewer_front import ViewerFront

    spec = importlib.util.spec_from_file_location("gunicorn_viewer_conf", ROOT / "gunicorn_viewer.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    application = create_viewer_app(dataclasses.replace(config, VIEWER_REVALIDATE_SECONDS=2.0))
    services = application.extensions["cpantesters_viewer"]
    conf.post_worker_init(SimpleNamespace(wsgi=ViewerFront(application)))  # what a worker loads
    try:
        assert services.revalidator._thread is not None and services.revalidator._thread.is_alive()
    finally:
        services.revalidator.stop()
        services.engine.dispose()


def test_neither_gunicorn_group_opens_the_shared_control_socket():
    """gunicorn 27's default control socket path is one per user: the web and the viewer
    masters overwrote each other's, and the first to stop removed it."""
    import importlib.util

    for name in ("gunicorn.conf.py", "gunicorn_viewer.conf.py"):
        spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / name)
        conf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(conf)
        assert conf.control_socket_disable is True, name
