"""The alarm command against the real services: each condition it must catch, its exit
codes and status line, and the e-mail and webhook it sends."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from rq import SimpleWorker, Worker

from monitoring.alarm import CRITICAL, OK, UNKNOWN, WARNING
from queueing import counters
from queueing.contract import SERIALIZER, report_queue
from scripts import check_pipeline
from storage.tables import test_report
from tests.backends import free_port
from tests.helpers import submit_captured
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def check(backend, tmp_path, capsys):
    """Run the check in-process against ``backend``; returns (exit code, status line)."""
    spool_dir = tmp_path / "spool"

    def run(*options, env=None):
        argv = ["--database-url", backend.database_url, "--redis-url", backend.redis_url,
                "--spool-dir", str(spool_dir), "--timeout", "2", *options]  # fmt: skip
        environ = {"ALERT_SMTP_URL": "", "ALERT_WEBHOOK_URL": "", **(env or {})}
        capsys.readouterr()
        code = check_pipeline.main(argv) if env is None else check_pipeline.run(argv, environ)
        out = capsys.readouterr().out.strip().splitlines()
        return code, out[0] if out else ""

    run.spool_dir = spool_dir
    return run


@pytest.fixture
def worker_alive(backend):
    """A worker registered in Redis as a live RQ worker registers itself (no jobs run)."""
    connection = backend.redis()
    worker = Worker([report_queue(connection)], connection=connection, name=f"test-worker-{os.getpid()}")
    worker.register_birth()
    yield worker
    worker.register_death()


QUIET_OFF = ("--quiet-minutes", "0")


def submit(backend, count: int) -> list[str]:
    """Submit reports through the real app, as the Perl client does."""
    import settings
    from app import create_app

    app = create_app(
        settings.load({}, DATABASE_URL=backend.database_url, REDIS_URL=backend.redis_url, SPOOL_DIR="/nonexistent")
    )
    guids = submit_captured(app, app.test_client(), count)
    app.extensions["cpantesters"].engine.dispose()
    return guids


def test_ok_when_reports_flow(check, worker_alive):
    code, line = check(*QUIET_OFF)
    assert code == OK
    assert line.startswith("PIPELINE OK - reports flow | ")
    assert "workers=1" in line and "waiting=0" in line


@pytest.mark.system
def test_critical_when_the_workers_are_stopped(check, backend):
    env = {**os.environ, "REDIS_URL": backend.redis_url, "DATABASE_URL": backend.database_url}
    worker = subprocess.Popen([sys.executable, "-m", "workers.run", "--name", f"check-test-{os.getpid()}"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        # Idle, not merely registered: RQ registers a worker before it installs its signal
        # handlers (and starts its scheduler in between), and a SIGTERM in that window
        # kills it without deregistering it, leaving a live-looking worker until its TTL.
        wait_for(lambda: _idle_workers(backend.redis()), 20, "the worker to start and wait for jobs")
        assert check(*QUIET_OFF)[0] == OK
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    code, line = check(*QUIET_OFF)
    assert code == CRITICAL
    assert line.startswith("PIPELINE CRITICAL - no live worker")


def _idle_workers(connection) -> int:
    return sum(1 for worker in Worker.all(connection=connection) if worker.get_state() == "idle")


def test_critical_when_the_queue_fills(check, backend, worker_alive):
    submit(backend, 3)
    assert check(*QUIET_OFF, "--queue-warning", "2", "--queue-critical", "10")[0] == WARNING
    code, line = check(*QUIET_OFF, "--queue-warning", "1", "--queue-critical", "3")
    assert code == CRITICAL
    assert "3 jobs queued (>= 3)" in line


def test_critical_when_a_report_waits_too_long(check, backend, worker_alive):
    (guid,) = submit(backend, 1)
    assert check(*QUIET_OFF)[0] == OK
    engine = backend.engine()
    with engine.begin() as conn:
        long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=40)
        conn.execute(sa.update(test_report).where(test_report.c.guid == guid).values(created=long_ago))
    engine.dispose()
    code, line = check(*QUIET_OFF)
    assert code == CRITICAL
    assert "a report has waited 24" in line and "(> 900s)" in line
    assert check(*QUIET_OFF, "--wait-warning", "60", "--wait-critical", "7200")[0] == WARNING


def broken_job(guid):
    raise RuntimeError(f"cannot process {guid}")


def test_critical_when_the_failed_registry_grows(check, backend, worker_alive):
    assert check(*QUIET_OFF)[0] == OK  # the first sample
    connection = backend.redis()
    queue = report_queue(connection)
    queue.enqueue("tests.test_check_pipeline.broken_job", "g-1")
    SimpleWorker([queue], connection=connection, serializer=SERIALIZER).work(burst=True)
    assert queue.failed_job_registry.count == 1
    code, line = check(*QUIET_OFF)
    assert code == CRITICAL
    assert "failed registry grew by 1 in 60 min (now 1)" in line
    assert check(*QUIET_OFF, "--failed-growth", "1")[0] == OK
    assert check(*QUIET_OFF, "--failed-window", "0")[0] == OK


def test_critical_when_the_spool_does_not_drain(check, worker_alive):
    check.spool_dir.mkdir()
    spooled = check.spool_dir / "20260101T000000-x.json"
    spooled.write_text("{}")
    assert check(*QUIET_OFF)[0] == OK  # just spooled: the sweeper has time
    old = time.time() - 900
    os.utime(spooled, (old, old))
    code, line = check(*QUIET_OFF)
    assert code == CRITICAL
    assert "1 spooled report(s) not drained for 900s (> 300s)" in line


def test_critical_when_nothing_was_submitted_for_an_unusual_time(check, backend, worker_alive):
    connection = backend.redis()
    connection.set(counters.last_key(counters.SUBMITTED), int(time.time()) - 3 * 60)
    assert check("--quiet-minutes", "5")[0] == OK
    code, line = check("--quiet-minutes", "2")
    assert code == CRITICAL
    assert "nothing submitted for 3 min (> 2 min)" in line
    submit(backend, 1)
    assert check("--quiet-minutes", "2")[0] == OK


def test_the_quiet_time_counts_from_the_first_check_when_nothing_was_ever_counted(check, backend, worker_alive):
    assert check("--quiet-minutes", "1")[0] == OK
    backend.redis().set("cpt:check:first_run", int(time.time()) - 120)
    assert check("--quiet-minutes", "1")[0] == CRITICAL


@pytest.mark.system
def test_critical_when_the_database_is_stopped(backend):
    # The shared MariaDB is not stopped: the check is pointed at a port where nothing answers.
    env = {**os.environ, "DATABASE_URL": f"mysql://root@127.0.0.1:{free_port()}/cpanstats",
           "REDIS_URL": backend.redis_url, "ALERT_SMTP_URL": "", "ALERT_WEBHOOK_URL": ""}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "scripts.check_pipeline", "--quiet-minutes", "0", "--timeout", "2"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == CRITICAL
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("PIPELINE CRITICAL - database unreachable (OperationalError")


def test_critical_when_redis_is_unreachable(check):
    code, line = check(*QUIET_OFF, "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert code == CRITICAL
    assert "redis unreachable" in line


def test_unknown_on_a_bad_option(check):
    assert check("--wait-critical", "soon")[0] == UNKNOWN


class SmtpSink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, sink
    controller.stop()


def test_a_change_of_state_is_sent_by_email_once_and_the_recovery_too(check, backend, smtp_server):
    controller, sink = smtp_server
    env = {"ALERT_SMTP_URL": f"smtp://127.0.0.1:{controller.port}", "ALERT_EMAIL_TO": "ops@example.org, b@example.org"}
    assert check(*QUIET_OFF, env=env)[0] == CRITICAL  # no worker
    assert check(*QUIET_OFF, env=env)[0] == CRITICAL  # still: no second mail
    (message,) = sink.messages
    assert message.rcpt_tos == ["ops@example.org", "b@example.org"]
    text = message.content.decode()
    assert "Subject: [cpantesters] PIPELINE CRITICAL - no live worker" in text
    assert '"workers_alive": 0' in text
    connection = backend.redis()
    worker = Worker([report_queue(connection)], connection=connection, name="mail-test-worker")
    worker.register_birth()
    try:
        assert check(*QUIET_OFF, env=env)[0] == OK
    finally:
        worker.register_death()
    assert len(sink.messages) == 2
    assert "Subject: [cpantesters] PIPELINE OK - reports flow" in sink.messages[1].content.decode()


@pytest.fixture
def webhook_server():
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            length = int(self.headers["Content-Length"])
            received.append((self.path, self.headers["Content-Type"], json.loads(self.rfile.read(length))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/alarm", received
    server.shutdown()
    server.server_close()


def test_an_alarm_is_posted_to_the_webhook(check, webhook_server):
    url, received = webhook_server
    code, line = check(*QUIET_OFF, env={"ALERT_WEBHOOK_URL": url})
    assert code == CRITICAL
    ((path, content_type, payload),) = received
    assert path == "/hooks/alarm" and content_type == "application/json"
    assert payload["state"] == "CRITICAL" and payload["exit_code"] == 2
    assert payload["text"] == line
    assert payload["figures"]["workers_alive"] == 0
    check(*QUIET_OFF, "--always-notify", env={"ALERT_WEBHOOK_URL": url})
    assert len(received) == 2


def test_a_failing_notification_does_not_change_the_verdict(check, capsys):
    env = {"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/", "ALERT_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
           "ALERT_EMAIL_TO": "ops@example.org"}  # fmt: skip
    argv = ["--database-url", "sqlite:///:memory:", "--redis-url", f"redis://127.0.0.1:{free_port()}/0"]
    code = check_pipeline.run([*argv, *QUIET_OFF], env)
    captured = capsys.readouterr()
    assert code == CRITICAL
    assert "webhook not posted" in captured.err and "e-mail not sent" in captured.err
