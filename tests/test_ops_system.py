"""System test, as an operator sees it: the real gunicorn web process and a real worker
process; a report flows, /status and /metrics say so, the dashboard opens only after
logging in, and the alarm turns critical when the worker is stopped."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from werkzeug.security import generate_password_hash

from tests import captures, processes
from tests.helpers import register_profile
from tests.polling import wait_for

pytestmark = pytest.mark.system


PASSWORD = "operator $ecret"


def get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def wait_until(predicate, timeout: float = 30, what: str = "condition"):
    wait_for(predicate, timeout, what, interval=0.2)


def test_an_operator_sees_reports_flow_and_is_alerted_when_the_worker_stops(backend, tmp_path):
    if backend.name != "embedded":
        pytest.skip("one backend is enough to start the real processes")
    engine = backend.engine()
    register_profile(engine)
    engine.dispose()
    spool = tmp_path / "spool"
    env = dict(DATABASE_URL=backend.database_url, REDIS_URL=backend.redis_url, SPOOL_DIR=spool,
               ADMIN_USER="ops", ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD))  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.run", "--name", f"ops-system-{os.getpid()}"],
        cwd=processes.ROOT,
        env=processes.environment(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with processes.gunicorn(workers=1, **env) as port:
            base = f"http://127.0.0.1:{port}"
            assert get(f"{base}/healthz")[0] == 200
            assert get(f"{base}/readyz")[0] == 200
            recorded = captures.load("01-ok")[0]
            assert b" 201 " in processes.send_raw(port, recorded.raw).split(b"\r\n", 1)[0]

            def status():
                return json.loads(get(f"{base}/status?format=json")[2])

            wait_until(lambda: status()["processed_total"] == 1 and status()["waiting"] == 0, what="processing")
            figures = status()
            assert figures["workers_alive"] == 1 and figures["queued"] == 0 and figures["stored"] == 1
            assert sum(figures["history"]["submitted"]) == 1 and sum(figures["history"]["processed"]) == 1

            code, headers, body = get(f"{base}/metrics")
            assert "cpt_reports_processed_total 1.0" in body.decode()

            assert get(f"{base}/dashboard/")[0] == 401
            token = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
            code, headers, body = get(f"{base}/dashboard/0/data/workers.json", {"Authorization": f"Basic {token}"})
            assert code == 200 and len(json.loads(body)["workers"]) == 1

            check_env = processes.environment(**env, ALERT_SMTP_URL="", ALERT_WEBHOOK_URL="")
            command = [sys.executable, "-m", "scripts.check_pipeline", "--quiet-minutes", "5"]
            ok = subprocess.run(command, cwd=processes.ROOT, env=check_env, capture_output=True, text=True, timeout=60)
            assert ok.returncode == 0, ok.stdout + ok.stderr
            assert ok.stdout.startswith("PIPELINE OK - reports flow")

            worker.terminate()
            worker.wait(timeout=20)
            wait_until(lambda: status()["workers_alive"] == 0, what="the worker to deregister")
            bad = subprocess.run(command, cwd=processes.ROOT, env=check_env, capture_output=True, text=True, timeout=60)
            assert bad.returncode == 2
            assert bad.stdout.startswith("PIPELINE CRITICAL - no live worker")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
