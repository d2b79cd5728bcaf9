"""System tests: the real gunicorn process from the Procfile, the raw bytes the Perl client
sent, and outages of MariaDB and Redis under load."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pymysql
import pytest
import requests
import sqlalchemy as sa

from intake.pipeline import SubmissionPipeline
from intake.spool import Spool
from queueing.contract import connect, report_queue
from storage.tables import test_report
from tests import backends, captures, processes
from tests.helpers import register_profile, with_new_guid
from tests.polling import wait_for
from tests.tcp_proxy import TcpProxy
from workers.sweeper import sweep


@pytest.fixture
def registered(backend):
    engine = backend.engine()
    register_profile(engine)
    yield engine
    engine.dispose()


@pytest.mark.system
def test_raw_recorded_bytes_over_a_socket_are_accepted_by_gunicorn(backend, registered, tmp_path):
    recorded = captures.load("01-ok")[0]
    with processes.gunicorn(DATABASE_URL=backend.database_url, REDIS_URL=backend.redis_url, SPOOL_DIR=tmp_path) as port:
        response = processes.send_raw(port, recorded.raw)
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 201")
    head, _, body = rest.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in b"\r\n" + head + b"\r\n"
    assert json.loads(body) == {"guid": "c3956594-9010-4467-89ed-364d4a882f04"}


@pytest.mark.system
def test_every_web_worker_is_connected_before_it_takes_a_first_request(backend, registered, tmp_path):
    """After a deploy the first testers' reports must not wait for a worker's start-up:
    the master has imported the code, and each worker connects in ``post_worker_init``."""
    log_path = tmp_path / "gunicorn.log"
    env = {"DATABASE_URL": backend.database_url, "REDIS_URL": backend.redis_url, "SPOOL_DIR": tmp_path}
    with processes.gunicorn_process(workers=2, log_path=log_path, wait_answer=False, LOG_LEVEL="INFO", **env):
        wait_for(lambda: log_path.read_text().count("worker warmed up") >= 2, 60, "both workers to warm up")
        log = log_path.read_text()
    assert log.count("worker warmed up") == 2
    assert "readyz 200" in log


@pytest.mark.system
def test_the_master_warms_the_code_once_and_keeps_no_connection_of_it(backend, registered, tmp_path):
    """What a process pays on its first app and first request is paid once in the master,
    so that workers booting together after a deploy are ready sooner; the connections the
    master opened for it are closed before any worker forks (none may be shared)."""
    log_path = tmp_path / "gunicorn.log"
    env = {"DATABASE_URL": backend.database_url, "REDIS_URL": backend.redis_url, "SPOOL_DIR": tmp_path}
    with processes.gunicorn_process(workers=1, log_path=log_path, LOG_LEVEL="INFO", **env) as (port, master):
        wait_for(lambda: "worker warmed up" in log_path.read_text(), 60, "the worker to warm up")
        servers = {backends.url_port(backend.database_url), backends.url_port(backend.redis_url)} - {None}
        held = [c for c in psutil.Process(master.pid).net_connections("tcp") if c.raddr and c.raddr.port in servers]
        answer = processes.send_raw(port, captures.load("01-ok")[0].raw)
    log = log_path.read_text()
    assert "master warmed up" in log and "readyz 200" in log
    assert held == []
    assert answer.startswith(b"HTTP/1.1 201")


@pytest.mark.system
def test_a_reload_after_a_deploy_runs_the_new_code(backend, tmp_path):
    """The master imports the code once (for warm workers); on HUP (``systemctl reload``)
    the workers it forks next must still run what was deployed since."""
    deployed = tmp_path / "deployed"
    files = subprocess.run(["git", "ls-files"], cwd=processes.ROOT, capture_output=True, text=True, check=True)
    for name in files.stdout.split():
        if (processes.ROOT / name).is_file():
            (deployed / name).parent.mkdir(parents=True, exist_ok=True)
            (deployed / name).write_bytes((processes.ROOT / name).read_bytes())
    env = {"DATABASE_URL": backend.database_url, "REDIS_URL": backend.redis_url, "SPOOL_DIR": tmp_path / "spool"}
    health = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with processes.gunicorn_process(workers=1, cwd=deployed, **env) as (port, master):
        assert b'"status": "ok"}' in processes.send_raw(port, health)
        ops = deployed / "app" / "ops.py"
        ops.write_text(ops.read_text().replace('{"status": "ok"}', '{"status": "ok, new code"}'))
        master.send_signal(signal.SIGHUP)
        wait_for(lambda: b"new code" in processes.send_raw(port, health), 60, "the reloaded workers", interval=0.2)
        assert b'"status": "ok, new code"' in processes.send_raw(port, health)


@pytest.mark.system
def test_register_flow_over_one_keep_alive_connection(backend, tmp_path):
    scenario = captures.load("04-register-flow")
    with processes.gunicorn(DATABASE_URL=backend.database_url, REDIS_URL=backend.redis_url, SPOOL_DIR=tmp_path) as port:
        statuses = [int(processes.send_raw(port, r.raw).split(b" ", 2)[1]) for r in scenario]
    assert statuses == [401, 404, 200, 201]


def _load(port: int, recorded, seconds: float, threads: int = 8) -> list[tuple[str, int]]:
    """Submit fresh copies of a real report for ``seconds``; return (guid, status) pairs."""
    stop = time.monotonic() + seconds
    headers = {k: v for k, v in recorded.headers if k.lower() not in ("host", "content-length")}
    results = []
    lock = threading.Lock()

    def run():
        session = requests.Session()
        while time.monotonic() < stop:
            body, guid = with_new_guid(recorded.body)
            try:
                status = session.post(
                    f"http://127.0.0.1:{port}{recorded.path}", data=body, headers=headers, timeout=30
                ).status_code
            except requests.RequestException:
                status = 0
            with lock:
                results.append((guid, status))

    with ThreadPoolExecutor(threads) as pool:
        for _ in range(threads):
            pool.submit(run)
    return results


def _stored_guids(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(test_report.c.guid)).scalars())


@pytest.mark.system
def test_a_mariadb_outage_under_load_loses_no_acknowledged_report(mariadb, tmp_path):
    mariadb.reset()
    engine = mariadb.engine()
    register_profile(engine)
    host, port = backends.MARIADB_HOST, backends.MARIADB_PORT
    proxy = TcpProxy(host, port)
    proxied_url = mariadb.database_url.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")
    spool_dir = tmp_path / "spool"
    recorded = captures.load("01-ok")[0]
    try:
        with processes.gunicorn(
            DATABASE_URL=proxied_url,
            REDIS_URL=mariadb.redis_url,
            SPOOL_DIR=spool_dir,
            DB_CONNECT_TIMEOUT=1,
            log_path=tmp_path / "web.log",
        ) as web_port:
            outage = threading.Timer(1.5, proxy.cut)
            recovery = threading.Timer(4.5, proxy.restore)
            outage.start()
            recovery.start()
            results = _load(web_port, recorded, seconds=7)
    finally:
        proxy.close()
    acknowledged = [guid for guid, status in results if status == 201]
    assert {status for _, status in results} <= {201, 503}
    assert Spool(spool_dir).count() > 0, "the outage should have sent submissions to the spool"
    drainer = SubmissionPipeline(engine, connect(mariadb.redis_url), Spool(spool_dir))
    counts = drainer.drain_spool()
    assert counts["rejected"] == 0 and counts["remaining"] == 0
    stored = _stored_guids(engine)
    assert len(stored) == len(set(stored))
    assert set(acknowledged) <= set(stored)
    engine.dispose()


@pytest.mark.system
def test_a_redis_outage_under_load_delays_nothing_and_the_sweeper_heals_it(mariadb, tmp_path):
    mariadb.reset()
    engine = mariadb.engine()
    register_profile(engine)
    proxy = TcpProxy(backends.REDIS_HOST, backends.REDIS_PORT)
    proxied_redis = re.sub(r":\d+/", f":{proxy.port}/", mariadb.redis_url)
    recorded = captures.load("01-ok")[0]
    try:
        with processes.gunicorn(
            DATABASE_URL=mariadb.database_url, REDIS_URL=proxied_redis, SPOOL_DIR=tmp_path / "spool"
        ) as web_port:
            threading.Timer(1.0, proxy.cut).start()
            threading.Timer(4.0, proxy.restore).start()
            results = _load(web_port, recorded, seconds=6)
    finally:
        proxy.close()
    acknowledged = {guid for guid, status in results if status == 201}
    assert {status for _, status in results} == {201}
    redis_connection = connect(mariadb.redis_url)
    queued_before = set(report_queue(redis_connection).get_job_ids())
    assert len(queued_before) < len(acknowledged), "some enqueues should have failed during the outage"
    sweep(engine, redis_connection, grace_seconds=0)
    queued = {job.removeprefix("report-") for job in report_queue(redis_connection).get_job_ids()}
    assert queued == acknowledged
    assert set(_stored_guids(engine)) == acknowledged
    engine.dispose()


def test_procfile_entries_exist_run_our_modules_and_need_only_port_from_the_environment():
    text = (processes.ROOT / "Procfile").read_text()
    entries = dict(line.split(": ", 1) for line in text.splitlines() if line.strip())
    assert {"release", "web", "viewer", "worker", "sweeper"} <= set(entries)
    for name, command in entries.items():
        assert set(re.findall(r"\$\{?(\w+)", command)) <= {"PORT"}, name
        words = command.split()
        if words[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(words[2]) is not None, name
        else:
            assert words[0] == "gunicorn" and (processes.ROOT / words[words.index("-c") + 1]).is_file(), name
            module, _, attribute = words[-1].partition(":")
            # Read, not imported: importing a wsgi module builds an app from the environment.
            source = importlib.util.find_spec(module).origin
            assert re.search(rf"^{attribute} = ", Path(source).read_text(), re.M), name


RESTART_ALLOWED = os.environ.get("CPT_ALLOW_SERVICE_RESTART", "") not in ("", "0")


def _mariadb_answers() -> bool:
    try:
        pymysql.connect(host=backends.MARIADB_HOST, port=backends.MARIADB_PORT, user=backends.MARIADB_USER).close()
        return True
    except pymysql.err.OperationalError:
        return False


def _server_pid_file() -> Path:
    conn = pymysql.connect(host=backends.MARIADB_HOST, port=backends.MARIADB_PORT, user=backends.MARIADB_USER)
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT @@pid_file")
        return Path(cursor.fetchone()[0])


_PID_FILE = Path("/run/mysqld/mysqld.pid")
"""The shared server's, read before it is stopped (it removes the file when it stops)."""


def _stop_mariadb() -> None:
    """Shut the server down and wait until its process is gone: ``mariadb-admin shutdown``
    returns while the server may still be flushing, and starting it again then would be a
    no-op (it is seen running) that leaves no server at all."""
    global _PID_FILE
    _PID_FILE = _server_pid_file()
    pid = int(_PID_FILE.read_text().strip())
    subprocess.run(["mariadb-admin", "-uroot", "shutdown"], check=True, timeout=60)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 180, "MariaDB to stop", interval=0.2)


def _start_mariadb() -> None:
    """Start the shared server again. By its pid file: matched by its executable alone,
    any other ``mariadbd`` on the machine (a test's or a benchmark's own server) counts as
    this one running, and nothing is started (seen in CI: every later test lost it)."""
    start = [
        "start-stop-daemon",
        "--start",
        "--background",
        "--pidfile",
        str(_PID_FILE),
        "--exec",
        "/usr/sbin/mariadbd",
    ]
    subprocess.run(start, check=True)
    wait_for(_mariadb_answers, 60, "MariaDB to come back", interval=0.5)


@pytest.mark.skipif(
    not RESTART_ALLOWED, reason="stops the real MariaDB server: set CPT_ALLOW_SERVICE_RESTART=1 (CI does)"
)
@pytest.mark.system
def test_stopping_the_real_mariadb_under_load_loses_no_acknowledged_report(mariadb, tmp_path):
    mariadb.reset()
    engine = mariadb.engine()
    register_profile(engine)
    spool_dir = tmp_path / "spool"
    recorded = captures.load("01-ok")[0]
    try:
        with processes.gunicorn(
            DATABASE_URL=mariadb.database_url,
            REDIS_URL=mariadb.redis_url,
            SPOOL_DIR=spool_dir,
            DB_CONNECT_TIMEOUT=1,
            log_path=tmp_path / "web.log",
        ) as web_port:
            threading.Timer(1.5, _stop_mariadb).start()
            results = _load(web_port, recorded, seconds=6)
    finally:
        if not _mariadb_answers():
            _start_mariadb()
    acknowledged = [guid for guid, status in results if status == 201]
    assert {status for _, status in results} <= {201, 503}
    assert Spool(spool_dir).count() > 0, "the stopped server should have sent submissions to the spool"
    engine.dispose()
    engine = mariadb.engine()
    counts = SubmissionPipeline(engine, connect(mariadb.redis_url), Spool(spool_dir)).drain_spool()
    assert counts["rejected"] == 0 and counts["remaining"] == 0
    stored = _stored_guids(engine)
    assert len(stored) == len(set(stored))
    assert set(acknowledged) <= set(stored)
    engine.dispose()
