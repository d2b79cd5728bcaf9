"""Start the Procfile's real processes (gunicorn, the sweeper) for system tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from tests.backends import free_port
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent


def stop(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """Ask a process to end (SIGTERM); kill it if it has not within ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a server's log file ("" before it has one)."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def environment(**values) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update({k: str(v) for k, v in values.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for_port(port: int, timeout: float = 30) -> None:
    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    wait_for(listening, timeout, f"something to listen on {port}", retry_on=(OSError,))


def wait_for_answer(port: int, timeout: float = 60) -> None:
    """Poll until a worker answers HTTP (gunicorn's master listens before its workers have
    booted, seconds later on a busy machine: a test's fault timers start after this)."""
    request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    wait_for(
        lambda: send_raw(port, request, 5).startswith(b"HTTP/"), timeout, f"a worker on {port}", retry_on=(OSError,)
    )


@contextmanager
def gunicorn(app: str = "wsgi:app", workers: int = 2, log_path: Path | None = None, **env):
    """Run ``gunicorn -c gunicorn.conf.py <app>`` as the Procfile does; yields its port."""
    with gunicorn_process(app, workers, log_path, **env) as (port, _process):
        yield port


@contextmanager
def gunicorn_process(
    app: str = "wsgi:app",
    workers: int = 2,
    log_path: Path | None = None,
    wait_answer: bool = True,
    cwd: Path = ROOT,
    **env,
):
    """:func:`gunicorn` yielding ``(port, master process)``; with ``wait_answer=False`` it
    yields once the port listens, before any worker has served a request (a cold start).
    ``cwd`` is the project's copy to serve (this one by default)."""
    port = free_port()
    with open(log_path or os.devnull, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
            cwd=cwd,
            env=environment(PORT=port, HOST="127.0.0.1", WEB_CONCURRENCY=workers, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port)
            if wait_answer:
                wait_for_answer(port)
            yield port, process
        finally:
            stop(process)


def send_raw(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Send exact request bytes over a socket and return the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if _complete(b"".join(chunks)):
                break
    return b"".join(chunks)


def _complete(response: bytes) -> bool:
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def send_whole_then_read(port: int, head: bytes, body: bytes, chunked: bool = False, timeout: float = 60) -> bytes:
    """Act as HTTP::Tiny does: write the request head and the *whole* body (as chunks of
    64 KiB when ``chunked``) before reading anything, then read the answer to its end.
    A server that answers and closes while the body is still coming makes this raise
    (``ConnectionResetError``/``BrokenPipeError``), as the Perl client then fails with
    ``Internal Exception``."""
    step = 64 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for start in range(0, len(body), step):
            part = body[start : start + step]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        chunks = []
        while not _complete(b"".join(chunks)):
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)
