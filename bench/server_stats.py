"""What the servers did during a benchmark phase: CPU per process group, InnoDB waits.

A phase's figures mean little without knowing who spent the machine's two cores (the
apps, MariaDB, Redis or wrk) and whether InnoDB stalled: these are read before and after
each phase and printed beside its latency figures.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql
import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

INNODB_SETTINGS = (
    "innodb_buffer_pool_size",
    "innodb_log_file_size",
    "innodb_log_buffer_size",
    "innodb_flush_log_at_trx_commit",
    "innodb_flush_method",
    "innodb_io_capacity",
    "sync_binlog",
    "log_bin",
)
INNODB_WAITS = (
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
    "Innodb_log_waits",
    "Innodb_buffer_pool_wait_free",
    "Innodb_data_fsyncs",
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a gunicorn master and its workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return found


@dataclass
class CpuMeter:
    """CPU seconds spent by named groups of processes between :meth:`start` and :meth:`stop`."""

    groups: dict[str, callable]  # name -> function returning the group's pids now

    def start(self) -> None:
        self._before = {name: self._sample(pids()) for name, pids in self.groups.items()}

    def stop(self) -> dict[str, float]:
        spent = {}
        for name, pids in self.groups.items():
            now = self._sample(pids())
            before = self._before[name]
            # A process that started during the phase counts from zero.
            spent[name] = sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())
        return spent

    @staticmethod
    def _sample(pids: list[int]) -> dict[int, float]:
        return {pid: cpu_seconds(pid) for pid in pids}


def mariadb_pid(mysql: dict) -> int:
    conn = pymysql.connect(**mysql)
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@pid_file")
        pid_file = cursor.fetchone()[0]
    conn.close()
    return int(Path(pid_file).read_text().split()[0])


def redis_pid(url: str) -> int:
    return int(redis.Redis.from_url(url).info("server")["process_id"])


def mariadb_variables(mysql: dict, names=INNODB_SETTINGS) -> dict[str, str]:
    conn = pymysql.connect(**mysql)
    with conn.cursor() as cursor:
        cursor.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN %s", (list(names),))
        found = dict(cursor.fetchall())
    conn.close()
    return found


def mariadb_status(mysql: dict, names=INNODB_WAITS) -> dict[str, int]:
    conn = pymysql.connect(**mysql)
    with conn.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN %s", (list(names),))
        found = {name: int(value) for name, value in cursor.fetchall()}
    conn.close()
    return found


def status_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


def wait_for_clean_pool(mysql: dict, max_seconds: float, dirty_pages: int = 64) -> str:
    """Wait until InnoDB holds at most ``dirty_pages`` unflushed pages, or ``max_seconds``.

    Returns what happened, for the phase's line: a phase that starts while the previous
    one's pages are still being written pays for them.
    """
    started = time.monotonic()
    conn = pymysql.connect(**mysql, autocommit=True)
    try:
        with conn.cursor() as cursor:
            while True:
                cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
                dirty = int(cursor.fetchone()[1])
                waited = time.monotonic() - started
                if dirty <= dirty_pages:
                    return f"flushed ({dirty} dirty pages) after {waited:.1f} s"
                if waited >= max_seconds:
                    return f"NOT flushed: {dirty} dirty pages after {waited:.0f} s"
                time.sleep(0.5)
    finally:
        conn.close()
