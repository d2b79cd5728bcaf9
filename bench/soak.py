"""Soak: the whole system for ``--minutes`` under steady load, checked for growth and loss.

    .venv/bin/python -m bench.soak [--minutes 30] [--warmup 5] [--rate 100] [--sample-seconds 60]

Runs the Procfile's processes on a fresh MariaDB database and Redis DB: with ``--servers
private`` (the default) on a ``mariadbd`` and a ``redis-server`` of the run's own
(``bench.private_servers``: a throwaway data directory, own ports, no persistence; stopped
at the end, on a failure or SIGTERM too), so that a restart of the machine's shared MariaDB
by a CI run, or a neighbour's load on its Redis, is not measured as the system's; with
``--servers shared`` on 127.0.0.1:3306 and Redis DB ``BENCH_REDIS_DB`` (else
``CPT_TEST_REDIS_DB``, else 11; flushed). The system: web, viewer and readapi (gunicorn),
two workers (``--workers``) and the sweeper. Submits the real captured report at ``--rate``
per second (a fresh GUID each, spread over 200 dists, a new version each minute) while the
viewer and the read API are read at ``--reads`` per second each. Every ``--sample-seconds``
it records the RSS and open file descriptors of every process (the private servers' too,
recorded but not held flat), the Redis DB's keys and bytes in three parts (backlog,
history, other: ``bench.soak_probe.REDIS_PARTS``) and the database connections. At the
end it waits for the workers to process every report.

Passes (exit 0) when: no submission or read failed, no process logged an error or
restarted, every acknowledged report is stored and processed, nothing of a report is left
in Redis once all are processed (``LEFTOVER_PATTERNS``), and no metric (``--check-growth
all``, the default; ``processes``: not Redis's) grew by more than ``--max-growth`` % from
the first samples after the warm-up to the last ones (means of three; a count of
descriptors or connections may grow by ``COUNT_SLACK``; of Redis, the part that is
neither the backlog nor the per-minute history is held: ``REDIS_HELD``). The samples are written to
``samples.json`` beside the processes' logs. ``tests/test_soak_smoke.py`` runs it for two
minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pymysql
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import subprocess  # noqa: E402

from bench.machine import yardstick  # noqa: E402
from bench.private_servers import add_servers_option, bench_servers, database  # noqa: E402
from bench.soak_load import Load  # noqa: E402
from bench.soak_probe import Probe  # noqa: E402
from bench.viewer import start_gunicorn, stop  # noqa: E402
from storage import users  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests import captures  # noqa: E402
from tests.polling import wait_for  # noqa: E402

REDIS_DB = int(os.environ.get("BENCH_REDIS_DB") or os.environ.get("CPT_TEST_REDIS_DB") or "11")
GROUPS = {
    "web": ("gunicorn.conf.py", "wsgi:app"),
    "viewer": ("gunicorn_viewer.conf.py", "wsgi_viewer:viewer"),
    "readapi": ("gunicorn_readapi.conf.py", "wsgi_readapi:read_api"),
}
LOG_ERRORS = re.compile(rb"\b(ERROR|CRITICAL)\b|Traceback")


def start_system(env: dict, logs: Path, workers: int) -> tuple[dict, dict]:
    """The Procfile's processes; returns (role -> Popen, group -> port)."""
    roots, ports = {}, {}
    for group, (conf, app) in GROUPS.items():
        roots[group], ports[group] = start_gunicorn(conf, app, env, logs / f"{group}.log")
    commands = {f"worker {n}": ["-m", "workers.run"] for n in range(1, workers + 1)}
    commands["sweeper"] = ["-m", "scripts.sweeper"]
    for role, command in commands.items():
        log = open(logs / f"{role.replace(' ', '-')}.log", "wb")  # noqa: SIM115 - lives with the process
        roots[role] = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=log, stderr=log)
    return roots, ports


def count(mysql: dict, database: str, where: str = "1") -> int:
    conn = pymysql.connect(database=database, **mysql)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM test_report WHERE {where}")
            return cursor.fetchone()[0]
    finally:
        conn.close()


def missing(mysql: dict, database: str, guids: list[str]) -> list[str]:
    conn = pymysql.connect(database=database, **mysql)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT guid FROM test_report")
            stored = {row[0] for row in cursor.fetchall()}
    finally:
        conn.close()
    return [guid for guid in guids if guid not in stored]


def log_errors(logs: Path) -> list[str]:
    return [
        f"{path.name}: {line.decode(errors='replace')[:300]}"
        for path in sorted(logs.glob("*.log"))
        for line in path.read_bytes().splitlines()
        if LOG_ERRORS.search(line)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5, help="minutes before growth is measured")
    parser.add_argument("--rate", type=float, default=100, help="submissions per second")
    parser.add_argument("--reads", type=float, default=10, help="page views and read-API requests per second, each")
    parser.add_argument("--sample-seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-growth", type=float, default=5.0)
    parser.add_argument("--check-growth", choices=["all", "processes", "none"], default="all",
                        help="which metrics must stay flat: all, or only the processes' and the "
                        "database connections (a short smoke run: Redis holds the backlog)")  # fmt: skip
    add_servers_option(parser)
    args = parser.parse_args()
    print(f"yardstick: {yardstick()}", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    with bench_servers(args.servers, logs / "servers", REDIS_DB) as (mysql, redis_url, servers):
        return _run(args, logs, mysql, redis_url, servers)


def _run(args, logs: Path, mysql: dict, redis_url: str, servers: dict) -> int:
    name = f"cpt_bench_soak_{uuid.uuid4().hex[:6]}"
    url = database(mysql, name)
    redis_connection = redis.Redis.from_url(redis_url)
    redis_connection.flushdb()
    upgrade(url)
    engine = create_engine(url)
    users.register(engine, captures.PROFILE_GUID, "Soak Tester", "soak@example.com", captures.PROFILE_SECRET)
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(DATABASE_URL=url, REDIS_URL=redis_url, SPOOL_DIR=str(logs / "spool"), LOG_LEVEL="WARNING",
               WEB_CONCURRENCY="2", VIEWER_WORKERS="1", READ_API_WORKERS="1", PROXY_HOPS="0")  # fmt: skip
    roots: dict = {}
    try:
        roots, ports = start_system(env, logs, args.workers)
        probe = Probe({**roots, **servers}, redis_connection, dict(mysql), name)
        load = Load(ports["web"], ports["viewer"], ports["readapi"], args.rate, args.reads)
        print(f"{args.minutes} min at {args.rate}/s, reads {args.reads}/s each, sample every {args.sample_seconds}s,"
              f" warm-up {args.warmup} min; logs in {logs}", flush=True)  # fmt: skip
        started = time.monotonic()
        load.start()
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            row = probe.sample(elapsed)
            pending = count(mysql, name, "state = 'pending'")
            print(f"t={row['t']}s submitted={load.counts['submitted']} errors={len(load.errors)} "
                  f"pending={pending} {_short(row)}", flush=True)  # fmt: skip
            time.sleep(max(0.0, min(args.sample_seconds, args.minutes * 60 - (time.monotonic() - started))))
        probe.sample(time.monotonic() - started)
        load.stop()
        try:
            drained = wait_for(
                lambda: count(mysql, name, "state = 'pending'") == 0, max(120.0, args.minutes * 10), "the backlog", 1.0
            )
        except TimeoutError:
            drained = False
        left = leftovers(redis_connection) if drained else {}
        lost = missing(mysql, name, load.acked)
        errors = load.errors + log_errors(logs)
        growth = probe.growth(args.warmup * 60)
        (logs / "samples.json").write_text(json.dumps(probe.samples, indent=1))
        (logs / "redis_other_keys.json").write_text(json.dumps(probe.other_keys, indent=1))
        restarts = probe.restarts
    finally:
        for process in reversed(list(roots.values())):
            stop(process)
        database(mysql, name, drop=True)
        redis_connection.flushdb()
    return _report(args, load, probe, growth, errors, lost, drained, restarts, left)


def _short(row: dict) -> str:
    keys = ("web rss MB", "worker 1 rss MB", "redis db KB", "redis other KB", "db connections")
    return " ".join(f"{k.replace(' ', '_')}={row.get(k)}" for k in keys)


SERVERS = ("mariadbd", "redis-server")
"""The private servers' processes: recorded, not held flat (MariaDB's buffer pool fills up to
its size as it should; Redis's own memory is the ``redis db`` figures)."""

REDIS_HELD = ("redis other keys", "redis other KB")
"""The Redis figures held flat (see ``bench.soak_probe.REDIS_PARTS``): the backlog's follow
the load of the moment and are checked instead by :func:`leftovers` once it is drained;
the per-minute history grows until its 2-hour retention by design."""

LEFTOVER_PATTERNS = ("rq:job:report-*", "cpt:processing:taken:*", "rq:results:*")
"""What no report may leave in Redis once processed: its job (kept for no time,
``queueing.contract.REPORT_RESULT_TTL``), its claim or "taken along" marker, a result."""


def leftovers(connection: redis.Redis, deadline: float = 30.0) -> dict[str, int]:
    """Keys matching :data:`LEFTOVER_PATTERNS` still there after the backlog drained (a job
    finishing its bookkeeping after its commit gets up to ``deadline`` seconds)."""
    ends = time.monotonic() + deadline
    while True:
        found = {p: sum(1 for _ in connection.scan_iter(match=p, count=1000)) for p in LEFTOVER_PATTERNS}
        if not any(found.values()) or time.monotonic() > ends:
            return {p: n for p, n in found.items() if n}
        time.sleep(1.0)


COUNT_SLACK = 2
"""Descriptors and connections are small counts (5-14): one more is already +7-20 %. A
count that grew by at most this many is not taken for a leak (a leak keeps growing)."""


REDIS_KEY_SLACK = 2
"""Keys of the held part of Redis that come and go: locks with a TTL (RQ's registry
clean-up and scheduler locks) exist at one sample and not at the next. Up to this many
more keys, each under 1 KB, are not taken for a leak (one a minute would be 25 after a
30-minute run); ``redis_other_keys`` in ``samples.json`` names them."""


def _few(metric: str, first: float, last: float) -> bool:
    if metric == "redis other keys":
        return last - first <= REDIS_KEY_SLACK
    if metric == "redis other KB":
        return last - first <= REDIS_KEY_SLACK
    return (metric.endswith(" fds") or metric == "db connections") and last - first <= COUNT_SLACK


def _report(args, load, probe, growth, errors, lost, drained, restarts, left) -> int:
    seconds = args.minutes * 60
    print(f"\nsubmitted {load.counts['submitted']} ({load.counts['submitted'] / seconds:.1f}/s), "
          f"pages {load.counts['pages']}, read API {load.counts['api']}, errors {len(errors)}, "
          f"lost {len(lost)}, all processed: {bool(drained)}, process restarts: {restarts}")  # fmt: skip
    for error in errors[:20]:
        print("  error: " + error)
    worst = max(growth.items(), key=lambda item: item[1][2], default=(None, (0, 0, 0)))
    print(
        f"\ngrowth after the {args.warmup}-minute warm-up (first sample -> last), worst: {worst[0]} {worst[1][2]:+.1f} %"
    )
    print("| metric | after warm-up | end | growth |\n|---|---|---|---|")
    for metric, (first, last, percent) in growth.items():
        print(f"| {metric} | {first} | {last} | {percent:+.1f} % |")
    print(f"left in Redis once drained: {left or 'nothing'}")
    checked = {
        m: g
        for m, g in growth.items()
        if not m.startswith(SERVERS) and (not m.startswith("redis") or (args.check_growth == "all" and m in REDIS_HELD))
    }
    grew = [
        m for m, (first, last, percent) in checked.items() if percent > args.max_growth and not _few(m, first, last)
    ]
    if args.check_growth != "none" and not growth:
        grew = ["(no two samples after the warm-up)"]
    ok = not errors and not lost and drained and not restarts and not left
    ok = ok and (args.check_growth == "none" or not grew)
    print(f"\nverdict: {'PASS' if ok else 'FAIL'}" + (f" (grew over {args.max_growth} %: {grew})" if grew else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
