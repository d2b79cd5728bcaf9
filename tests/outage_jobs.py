"""A job for the outage tests: process a report, then kill Redis before the worker can
record the outcome (what RQ 3.0 died of: ``handle_execution_ended`` -> ``job.heartbeat``)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def process_then_kill_redis(guid: str, redis_pid: int, redis_port: int, marker: str) -> str:
    from workers.jobs import process_report

    outcome = process_report(guid)
    if not Path(marker).exists():  # only the first run: the re-run must be able to finish
        Path(marker).write_text(str(os.getpid()))
        os.kill(redis_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until nothing listens: the worker's next call fails
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", redis_port)) != 0:
                    break
            time.sleep(0.05)
    return outcome
