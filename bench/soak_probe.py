"""What the soak records every sample: RSS and open file descriptors of every process of
the system, Redis memory, and the database connections; and how much each grew.

Processes are named by role (``web``, ``web worker 1``, ``worker 2``, ``sweeper``, ...):
each started process and the children it keeps (gunicorn's workers), found anew each
sample, so that a restarted worker shows as a new pid (``restarts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil
import pymysql
import redis


def _redis_db_bytes(connection: redis.Redis) -> tuple[int, int]:
    """Keys and bytes (``MEMORY USAGE`` of each key) of one Redis database: the server
    is shared, so its ``used_memory`` counts other databases too."""
    keys = total = 0
    batch = []
    for key in connection.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == 1000:
            keys, total = keys + len(batch), total + _usage(connection, batch)
            batch = []
    return keys + len(batch), total + _usage(connection, batch)


def _usage(connection: redis.Redis, keys: list) -> int:
    pipe = connection.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key)
    return sum(size or 0 for size in pipe.execute())


@dataclass
class Probe:
    """Samples the processes in ``roots`` (role -> Popen), one Redis DB and one database."""

    roots: dict
    redis_connection: redis.Redis
    mysql: dict
    database: str
    samples: list = field(default_factory=list)
    pids: dict = field(default_factory=dict)
    restarts: int = 0

    def processes(self) -> dict[str, psutil.Process]:
        found = {}
        for role, popen in self.roots.items():
            try:
                root = psutil.Process(popen.pid)
                found[role] = root
                children = sorted(root.children(recursive=True), key=lambda p: p.pid)
            except psutil.NoSuchProcess:
                continue
            for index, child in enumerate(children, 1):
                found[f"{role} child {index}"] = child
        return found

    def sample(self, elapsed: float) -> dict:
        """One sample: ``{"t": seconds, "<role> rss MB": ..., "<role> fds": ..., ...}``."""
        row = {"t": round(elapsed)}
        for role, process in self.processes().items():
            try:
                with process.oneshot():
                    row[f"{role} rss MB"] = round(process.memory_info().rss / 2**20, 1)
                    row[f"{role} fds"] = process.num_fds()
            except psutil.NoSuchProcess:
                continue
            if self.pids.setdefault(role, process.pid) != process.pid:
                self.restarts += 1
                self.pids[role] = process.pid
        info = self.redis_connection.info("memory")
        keys, size = _redis_db_bytes(self.redis_connection)
        row["redis server used MB"] = round(info["used_memory"] / 2**20, 1)
        row["redis db keys"] = keys
        row["redis db MB"] = round(size / 2**20, 2)
        row["db connections"] = self.connections()
        self.samples.append(row)
        return row

    def connections(self) -> int:
        conn = pymysql.connect(**self.mysql)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                    (self.database,),
                )
                return cursor.fetchone()[0]
        finally:
            conn.close()

    def growth(self, after: float, window: int = 3) -> dict[str, tuple[float, float, float]]:
        """Per metric: (mean of the first ``window`` samples at or after ``after`` s, mean of
        the last ``window``, growth in %). Means, not single samples: Redis holds the jobs
        of the last minute and the backlog of the moment, which swing from one sample to
        the next; a leak shows in the means as it does in single samples."""
        later = [s for s in self.samples if s["t"] >= after]
        if len(later) < 2:
            return {}
        size = max(1, min(window, len(later) // 2))
        head, tail = later[:size], later[-size:]
        found = {}
        for name in head[0]:
            if name in ("t", "redis server used MB") or any(name not in s for s in head + tail):
                continue  # the server's memory is every database's, not ours
            first = round(sum(s[name] for s in head) / size, 2)
            last = round(sum(s[name] for s in tail) / size, 2)
            found[name] = (first, last, (last - first) / first * 100 if first else 0.0)
        return found
