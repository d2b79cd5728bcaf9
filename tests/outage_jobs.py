"""A job for the outage tests: process a report, then kill Redis before the worker can
record the outcome (what RQ 3.0 died of: ``handle_execution_ended`` -> ``job.heartbeat``)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.polling import wait_for


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def process_then_kill_redis(guid: str, redis_pid: int, redis_port: int, marker: str) -> str:
    from workers.jobs import process_report

    outcome = process_report(guid)
    if not Path(marker).exists():  # only the first run: the re-run must be able to finish
        Path(marker).write_text(str(os.getpid()))
        os.kill(redis_pid, signal.SIGKILL)
        wait_for(lambda: not listening(redis_port), 10, "the killed Redis to stop listening", interval=0.05)
    return outcome
