"""Intake benchmark: the real captured submission (a fresh GUID per request) against
gunicorn + MariaDB + Redis, beside a bare reference app (parse, INSERT, COMMIT, enqueue)
under the same gunicorn settings, in the same run.

    .venv/bin/python -m bench.intake [--duration 15] [--runs 3] [--connections 16 64]
                                     [--workers 4] [--steady-minutes 5] [--flush-wait 30]

How it keeps the comparison fair:
- both servers start once and stay up, as in production; each phase is preceded by a
  warm-up at its own connection count, and start-up is measured on its own (``cold``);
- the order alternates (ABBA: reference, ours, ours, reference, ...) and each figure is the
  median of ``--runs`` phases;
- before every phase it waits until InnoDB has flushed its dirty pages (or ``--flush-wait``
  seconds have passed: the line says which), and prints the phase's InnoDB waits and
  the CPU each process group spent per accepted report;
- ``--steady-minutes`` runs ours alone at 64 connections for that long without a pause,
  printing p99 per minute, so that periodic stalls (flushing, checkpoints) show.

Every acknowledged report must be in the database afterwards, with its RQ job queued.
Needs wrk, MariaDB and Redis on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from http.client import HTTPConnection
from pathlib import Path

import pymysql
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import server_stats  # noqa: E402
from bench.databases import MYSQL, drop_database, fresh_database  # noqa: E402
from bench.machine import yardstick  # noqa: E402
from queueing.contract import QUEUE_NAME  # noqa: E402
from storage import users  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests import captures, processes  # noqa: E402

REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "12"))
"""Flushed at the start: give each concurrent benchmark its own."""
OURS_DB = f"cpt_bench_intake_{os.getpid()}"
REFERENCE_DB = f"cpt_bench_reference_{os.getpid()}"
"""Per run (dropped at the end), so that two benchmarks at once never count each other's rows."""
SCENARIO = "01-ok"
SUBMIT_PATH = "/api/v1/submit/CPAN-Testers-Report"


def count_rows(name: str, table: str) -> int:
    conn = pymysql.connect(database=name, **MYSQL)
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        count = cursor.fetchone()[0]
    conn.close()
    return count


def auth_header() -> str:
    token = base64.b64encode(f"{captures.PROFILE_GUID}:{captures.PROFILE_SECRET}".encode()).decode()
    return f"Basic {token}"


def run_wrk(port: int, connections: int, duration: int, body_file: str, original_guid: str, run_id: int) -> dict:
    env = dict(
        os.environ,
        BODY_FILE=body_file,
        ORIGINAL_GUID=original_guid.replace("-", "%-"),
        SUBMIT_PATH=SUBMIT_PATH,
        AUTH=auth_header(),
        RUN_ID=str(run_id),
    )
    out = subprocess.run(
        ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{duration}s", "--latency"]
        + ["--timeout", "30s", "-s", str(ROOT / "bench" / "submit.lua"), f"http://127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    requests_total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        # Anchored: the thread stats' "+/- Stdev" column also ends in "50%" or "99%".
        "p50": ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "requests": requests_total,
        "acknowledged": requests_total - (int(non2xx.group(1)) if non2xx else 0),
        "socket_errors": errors.group(1) if errors else "none",
    }


def ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


class App:
    """One of the two servers under test, kept running across phases."""

    def __init__(self, name, target, database, table, queue, workers, log_dir, redis_url, database_url=None):
        """``database_url`` defaults to ``database`` on the local server (``bench.scale_load``
        points the app at a large database on another server)."""
        self.name, self.target, self.database, self.table, self.queue = name, target, database, table, queue
        self.workers, self.log_dir, self.redis_url = workers, log_dir, redis_url
        self.database_url = database_url or f"mysql://root@127.0.0.1:3306/{database}"
        self.port = self.process = None
        self.acknowledged = 0

    def start(self, stack: ExitStack, wait_answer: bool = True) -> float:
        """Start gunicorn; returns seconds until its port listened (and a worker answered)."""
        started = time.perf_counter()
        self.port, self.process = stack.enter_context(
            processes.gunicorn_process(
                self.target,
                workers=self.workers,
                log_path=self.log_dir / f"{self.name}-{time.time():.0f}.log",
                wait_answer=wait_answer,
                DATABASE_URL=self.database_url,
                REDIS_URL=self.redis_url,
                SPOOL_DIR=self.log_dir / "spool",
                LOG_LEVEL="WARNING",
            )
        )
        return time.perf_counter() - started

    def pids(self) -> list[int]:
        return server_stats.process_tree(self.process.pid) if self.process else []

    def stored(self) -> int:
        return count_rows(self.database, self.table)


def first_requests(port: int, body: bytes, original_guid: str, count: int) -> list[float]:
    """``count`` concurrent submissions to a server none has reached yet: their latencies (ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    start_together = threading.Barrier(count)

    def submit() -> None:
        fresh = body.replace(original_guid.encode(), str(uuid.uuid4()).encode())
        headers = {"Authorization": auth_header(), "Content-Type": "application/octet-stream"}
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        start_together.wait()
        started = time.perf_counter()
        conn.request("POST", SUBMIT_PATH, body=fresh, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000
        conn.close()
        with lock:
            latencies.append(elapsed if response.status == 201 else float("nan"))

    threads = [threading.Thread(target=submit) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(latencies)


class Bench:
    def __init__(self, args, body_path: Path, original_guid: str, redis_url: str):
        self.args, self.body_path, self.original_guid, self.redis_url = args, body_path, original_guid, redis_url
        self.run_id = int(time.time()) & 0xFFFFFF
        mariadbd, redis_server = [server_stats.mariadb_pid(MYSQL)], [server_stats.redis_pid(redis_url)]
        self.shared = {"mariadbd": lambda: mariadbd, "redis": lambda: redis_server}

    def phase(self, app: App, connections: int, duration: int, label: str, warmup: bool = True) -> dict:
        """Warm up, wait for InnoDB to flush, then measure; ``warmup=False`` measures at once."""
        flushed = "not waited for"
        if warmup:
            if self.args.warmup:
                self.run_id += 1
                warm = run_wrk(
                    app.port, connections, self.args.warmup, str(self.body_path), self.original_guid, self.run_id
                )
                app.acknowledged += warm["acknowledged"]
            flushed = server_stats.wait_for_clean_pool(MYSQL, self.args.flush_wait)
        meter = server_stats.CpuMeter({app.name: app.pids, **self.shared})
        status_before = server_stats.mariadb_status(MYSQL)
        meter.start()
        self.run_id += 1
        figures = run_wrk(app.port, connections, duration, str(self.body_path), self.original_guid, self.run_id)
        cpu = meter.stop()
        waits = server_stats.status_delta(status_before, server_stats.mariadb_status(MYSQL))
        app.acknowledged += figures["acknowledged"]
        per_report = {name: 1000 * spent / max(figures["acknowledged"], 1) for name, spent in cpu.items()}
        figures.update(app=app.name, connections=connections, label=label, cpu_ms=per_report, waits=waits)
        print(
            f"{label:>7} {app.name:9} c={connections:3} {figures['rps']:7.1f} req/s  p50 {figures['p50']:7.1f} ms"
            f"  p99 {figures['p99']:7.1f} ms  socket errors {figures['socket_errors']}",
            flush=True,
        )
        print(
            "          CPU ms/report: "
            + ", ".join(f"{name} {value:.2f}" for name, value in per_report.items())
            + f"; InnoDB: {flushed}; waits "
            + ", ".join(f"{name.removeprefix('Innodb_')} {value}" for name, value in waits.items()),
            flush=True,
        )
        return figures


def summarise(results: list[dict], connections_list: list[int]) -> None:
    print("\nmedian of the alternating runs:")
    for connections in connections_list:
        medians = {}
        for name in ("reference", "ours"):
            runs = [r for r in results if r["app"] == name and r["connections"] == connections]
            medians[name] = {key: statistics.median(r[key] for r in runs) for key in ("rps", "p50", "p99")}
            cpu = statistics.median(sum(r["cpu_ms"].values()) for r in runs)
            own = statistics.median(r["cpu_ms"][name] for r in runs)
            print(
                f"  {name:9} c={connections:3} {medians[name]['rps']:7.1f} req/s  p50 {medians[name]['p50']:6.1f} ms"
                f"  p99 {medians[name]['p99']:6.1f} ms  CPU ms/report: app {own:.2f}, with MariaDB+Redis {cpu:.2f}"
                f"  ({len(runs)} runs)"
            )
        ref, ours = medians["reference"], medians["ours"]
        print(
            f"  c={connections}: throughput {ours['rps'] / ref['rps']:.2f}x the reference (target >= 1.0, stretch 1.3),"
            f" p99 {ours['p99'] / ref['p99']:.2f}x (target <= 1.2)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured phase")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load before each phase")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per connection count")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers for both apps")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--flush-wait", type=float, default=30, help="max seconds to wait for InnoDB to flush")
    parser.add_argument("--steady-minutes", type=int, default=0, help="then ours alone at 64 connections")
    parser.add_argument("--cold-requests", type=int, default=16, help="concurrent requests a second after a start")
    args = parser.parse_args()

    recorded, original_guid, body_path, redis_url = prepare_run("bench-intake-body-")

    print(f"yardstick: {yardstick()}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"MariaDB: {server_stats.mariadb_variables(MYSQL)}")
    print(
        f"machine: {os.cpu_count()} cores; gunicorn sync workers: {args.workers}; phases {args.duration}s"
        f" after {args.warmup}s warm-up; body {len(recorded.body)} bytes"
    )
    log_dir = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    reference = App("reference", "bench.reference_app:app", REFERENCE_DB, "reference_report", "reference",
                    args.workers, log_dir, redis_url)  # fmt: skip
    ours = App("ours", "wsgi:app", OURS_DB, "test_report", QUEUE_NAME, args.workers, log_dir, redis_url)
    bench = Bench(args, body_path, original_guid, redis_url)
    results = []
    with ExitStack() as stack:
        for app in (reference, ours):
            listened = app.start(stack, wait_answer=False)
            first = first_requests(app.port, recorded.body, original_guid, args.workers)
            time.sleep(1)  # a server started a moment ago, every worker booted
            rest = first_requests(app.port, recorded.body, original_guid, args.cold_requests)
            app.acknowledged += sum(1 for latency in first + rest if latency == latency)  # NaN: refused
            print(
                f"   cold {app.name:9} listening after {listened * 1000:.0f} ms; as it listens, {args.workers} concurrent"
                f" first requests: median {statistics.median(first):.0f} ms, max {max(first):.0f} ms; a second later,"
                f" {args.cold_requests} concurrent: median {statistics.median(rest):.0f} ms, max {max(rest):.0f} ms"
            )
        for connections in args.connections:
            for run in range(args.runs):
                order = (reference, ours) if run % 2 == 0 else (ours, reference)
                for app in order:
                    results.append(bench.phase(app, connections, args.duration, f"run {run + 1}"))
        warm_p99 = statistics.median(r["p99"] for r in results if r["app"] == "ours" and r["connections"] == 16)
        restart_and_measure(stack, ours, bench, args, warm_p99)
        if args.steady_minutes:
            steady(bench, ours, args.steady_minutes)
    summarise(results, args.connections)
    try:
        check_every_report_kept((reference, ours), redis_url)
    finally:
        drop_databases()


def prepare_run(prefix: str) -> tuple:
    """What every intake benchmark starts from: the captured submission (its recording,
    its original GUID, the body written to a file under a new ``prefix`` directory for
    wrk), fresh databases for both apps, and the flushed Redis URL."""
    recorded = captures.load(SCENARIO)[0]
    original_guid = json.loads(recorded.body)["metadata"]["core"]["guid"]
    body_path = Path(tempfile.mkdtemp(prefix=prefix)) / "submission.json"
    body_path.write_bytes(recorded.body)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    prepare_databases()
    redis.Redis.from_url(redis_url).flushdb()
    return recorded, original_guid, body_path, redis_url


def prepare_databases() -> None:
    ours_url = fresh_database(OURS_DB)
    upgrade(ours_url)
    engine = create_engine(ours_url)
    users.register(engine, captures.PROFILE_GUID, "CPAN Tester", "tester@example.com", captures.PROFILE_SECRET)
    engine.dispose()
    fresh_database(REFERENCE_DB)
    conn = pymysql.connect(database=REFERENCE_DB, **MYSQL)
    with conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE reference_report (id BIGINT AUTO_INCREMENT PRIMARY KEY, guid CHAR(36) NOT NULL UNIQUE,"
            " body LONGTEXT NOT NULL) CHARACTER SET utf8mb4"
        )
    conn.close()


def drop_databases() -> None:
    drop_database(OURS_DB, REFERENCE_DB)


def restart_and_measure(stack: ExitStack, ours: App, bench: Bench, args, warm_p99: float) -> None:
    """A phase at 16 connections right after a restart (a deploy): it starts as soon as the
    new master listens, before its workers have booted, with no warm-up."""
    print(f"          before the restart: InnoDB {server_stats.wait_for_clean_pool(MYSQL, args.flush_wait)}")
    ours.process.terminate()
    ours.process.wait(timeout=30)
    ours.start(stack, wait_answer=False)
    figures = bench.phase(ours, 16, args.duration, "restart", warmup=False)
    print(f"          right after a restart: p99 {figures['p99'] / warm_p99:.2f}x the warm p99 (target <= 1.5)")


def steady(bench: Bench, ours: App, minutes: int) -> None:
    print(f"\nours alone at 64 connections for {minutes} min, one wrk per minute back to back:")
    for minute in range(minutes):
        bench.run_id += 1
        figures = run_wrk(ours.port, 64, 60, str(bench.body_path), bench.original_guid, bench.run_id)
        ours.acknowledged += figures["acknowledged"]
        print(
            f"  minute {minute + 1}: {figures['rps']:7.1f} req/s  p50 {figures['p50']:7.1f} ms  p99 {figures['p99']:7.1f} ms"
            f"  socket errors {figures['socket_errors']}",
            flush=True,
        )


def check_every_report_kept(apps, redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    for app in apps:
        stored, queued = app.stored(), connection.llen(f"rq:queue:{app.queue}")
        print(f"{app.name}: acknowledged {app.acknowledged}, stored {stored}, jobs queued {queued}")
        assert stored >= app.acknowledged, f"{app.name}: {app.acknowledged - stored} acknowledged reports missing"
        assert queued >= app.acknowledged, f"{app.name}: {app.acknowledged - queued} reports without a job"


if __name__ == "__main__":
    main()
