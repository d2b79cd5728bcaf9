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

REDIS_PARTS = (
    ("backlog", ("rq:job:", "rq:execution", "rq:queue:", "rq:wip:", "rq:results:", "rq:started:",
                 "rq:scheduled:", "cpt:processing:taken:")),
    ("history", ("cpt:events:", "cpt:gauge:")),
)  # fmt: skip
"""How the soak splits a Redis database: ``backlog`` is the reports waiting or being
processed (their job hashes, executions, the queue and started registry, claims and
markers), which follow the load of the moment; ``history`` is the per-minute counters and
queue-depth samples, which grow until their retention (2 h) by design; ``other`` is
everything else (worker registrations, the scheduler, the failed and finished registries,
the job-duration histograms), which must stay flat."""


def redis_part(key: bytes) -> str:
    """The part of :data:`REDIS_PARTS` a key belongs to (``other`` if none)."""
    name = key.decode(errors="replace")
    return next((part for part, prefixes in REDIS_PARTS if name.startswith(prefixes)), "other")


def redis_db_usage(connection: redis.Redis, other_names: list | None = None) -> dict[str, tuple[int, int]]:
    """Keys and bytes (``MEMORY USAGE`` of each key) of one Redis database per part of
    :data:`REDIS_PARTS`: the server is shared, so its ``used_memory`` counts other
    databases too. The names of the ``other`` keys are appended to ``other_names``."""
    usage = {part: (0, 0) for part, _ in (*REDIS_PARTS, ("other", ()))}
    batch: list[bytes] = []
    for key in connection.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == 1000:
            _add_usage(connection, batch, usage, other_names)
            batch = []
    _add_usage(connection, batch, usage, other_names)
    return usage


def _add_usage(connection: redis.Redis, keys: list, usage: dict, other_names: list | None) -> None:
    if not keys:
        return
    pipe = connection.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key)
    for key, size in zip(keys, pipe.execute(), strict=True):
        part = redis_part(key)
        if part == "other" and other_names is not None:
            other_names.append(key.decode(errors="replace"))
        count, total = usage[part]
        usage[part] = (count + 1, total + (size or 0))


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
    other_keys: list = field(default_factory=list)

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
        usage = redis_db_usage(self.redis_connection, names := [])
        self.other_keys.append({"t": row["t"], "keys": sorted(names)})
        row["redis server used MB"] = round(info["used_memory"] / 2**20, 1)
        row["redis db keys"] = sum(keys for keys, _ in usage.values())
        row["redis db KB"] = round(sum(size for _, size in usage.values()) / 1024, 1)
        for part, (keys, size) in usage.items():
            row[f"redis {part} keys"] = keys
            row[f"redis {part} KB"] = round(size / 1024, 1)
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
