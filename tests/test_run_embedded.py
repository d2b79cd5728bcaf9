"""`make run` as a supervised service: under supervisord, a killed worker is started
again (its scheduler child does not outlive it), the embedded Redis killed outright comes
back and the system goes on, and stopping `make run` leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from scripts import local_nginx, run_embedded
from storage.engine import create_engine
from storage.tables import test_report
from tests import captures
from tests.backends import free_port
from tests.helpers import register_profile, with_new_guid
from tests.polling import wait_for
from tests.processes import ROOT, environment, wait_for_port

pytestmark = pytest.mark.system

DEADLINE = 90


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


class EmbeddedRun:
    def __init__(self, tmp_path: Path):
        self.var = tmp_path / "var"
        self.port = free_port()
        self.redis_port = free_port()
        self.log = open(tmp_path / "make-run.log", "wb")  # noqa: SIM115
        env = environment(SWEEP_INTERVAL=2, SWEEP_GRACE=1, OUTAGE_BACKOFF_MAX=1, WORKER_TTL=20, LOG_LEVEL="INFO")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts.run_embedded", "--var", str(self.var), "--port", str(self.port),
             "--redis-port", str(self.redis_port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.engine = None

    def ctl(self, *args: str) -> str:
        conf = str(self.var / "supervisord.conf")
        result = subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", conf, *args],
                                cwd=ROOT, capture_output=True, text=True, timeout=30)  # fmt: skip
        return result.stdout.strip()

    def pid(self, name: str) -> int:
        text = self.ctl("pid", name)
        return int(text) if text.isdigit() else 0

    def running(self, name: str) -> int:
        status = self.ctl("status", name)
        return self.pid(name) if " RUNNING " in f" {status} " else 0

    def submit(self) -> str:
        recorded = captures.load("01-ok")[0]
        body, guid = with_new_guid(recorded.body)
        headers = {k: v for k, v in recorded.headers if k.lower() not in ("host", "content-length")}
        response = requests.post(f"http://127.0.0.1:{self.port}{recorded.path}", data=body, headers=headers, timeout=90)
        assert response.status_code == 201, response.text
        return guid

    def answers(self) -> bool:
        """Whether the web process serves requests (its port opens before its workers boot)."""
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def state(self, guid: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(test_report.c.state).where(test_report.c.guid == guid)).scalar()

    def processed(self, guid: str, what: str) -> None:
        wait_for(lambda: self.state(guid) == "done", DEADLINE, what)

    def close(self) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()  # supervisord: stop every program's process group
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.engine is not None:
            self.engine.dispose()
        self.log.close()
        return self.process.returncode


@pytest.fixture
def embedded_run(tmp_path):
    run = EmbeddedRun(tmp_path)
    try:
        wait_for_port(run.port, timeout=DEADLINE)
        wait_for(run.answers, DEADLINE, "the web process to answer")
        run.engine = create_engine(f"sqlite:///{run.var / 'cpantesters.sqlite'}")
        register_profile(run.engine)
        yield run
    finally:
        run.close()


def test_make_run_restarts_a_killed_worker_without_leaving_its_scheduler_behind(embedded_run):
    run = embedded_run
    run.processed(run.submit(), "a report before the kill")
    worker = wait_for(lambda: run.running("worker"), 30, "the worker")
    scheduler = wait_for(lambda: children(worker), 30, "the worker's scheduler child")[0]

    os.kill(worker, signal.SIGKILL)
    replacement = wait_for(lambda: (p := run.running("worker")) and p != worker and p, 60, "a new worker")
    wait_for(lambda: not alive(scheduler), 30, "the dead worker's scheduler to end")
    assert replacement != worker
    assert run.running("web") and run.running("sweeper") and run.running("viewer")
    run.processed(run.submit(), "a report submitted after the kill")


def test_make_run_recovers_from_the_embedded_redis_being_killed(embedded_run):
    run = embedded_run
    run.processed(run.submit(), "a report before the kill")
    redis_pid = wait_for(lambda: run.running("redis"), 30, "the embedded Redis")
    worker = run.running("worker")

    os.kill(redis_pid, signal.SIGKILL)
    wait_for(lambda: (p := run.running("redis")) and p != redis_pid, 60, "the embedded Redis to be started again")
    run.processed(run.submit(), "a report submitted after the Redis kill")
    assert run.running("worker") == worker  # the worker rode through; nobody had to restart it


@pytest.mark.skipif(local_nginx.nginx_binary() is None, reason="nginx is not installed")
def test_make_run_puts_nginx_in_front_of_web_viewer_and_read_api_when_it_is_installed(embedded_run):
    proxy = f"http://127.0.0.1:{embedded_run.port + run_embedded.PORT_OFFSETS['nginx']}"
    wait_for(lambda: embedded_run.running("nginx"), 30, "nginx")
    guid = embedded_run.submit()

    def through_nginx(path: str, status: int) -> list:
        response = requests.get(proxy + path, timeout=30)  # nginx answers 502 until the app is up
        return [response] if response.status_code == status else []  # (a 404 Response is false)

    [page] = wait_for(lambda: through_nginx(f"/report/{guid}", 200), DEADLINE, "the viewer through nginx")
    assert page.headers["X-Cache-Status"] == "MISS" and "Subject: " in page.text
    [api] = wait_for(lambda: through_nginx("/v3/upload/dist/Nope", 404), DEADLINE, "the read API through nginx")
    assert api.json()["errors"][0]["message"] == 'Distribution "Nope" not found'


def test_stopping_make_run_leaves_no_process_behind(tmp_path):
    run = EmbeddedRun(tmp_path)
    try:
        wait_for_port(run.port, timeout=DEADLINE)
        worker = wait_for(lambda: run.running("worker"), 30, "the worker")
        scheduler = wait_for(lambda: children(worker), 30, "the worker's scheduler child")[0]
        wait_for(lambda: run.running("readapi"), 30, "the read API")
        pids = [run.pid(name) for name in ("redis", "web", "viewer", "readapi", "worker", "sweeper")] + [scheduler]
    finally:
        run.close()
    wait_for(lambda: not any(alive(p) for p in pids), 30, "every process to end")
