"""Processing benchmark: drain time of a 10,000-report backlog with 1, 2 and 4 workers,
and the receipt-to-cpanstats lag under a steady submission rate.

    .venv/bin/python -m bench.processing                        # drain, one job per report
    .venv/bin/python -m bench.processing --batch 100            # drain, backlog-tool batch jobs
    .venv/bin/python -m bench.processing --fork --workers 2     # RQ's forking Worker
    .venv/bin/python -m bench.processing --lag --rate 200 --seconds 20 --workers 2
    .venv/bin/python -m bench.processing --lag --workers 2 --burn 2    # beside two busy loops: a slow day
    .venv/bin/python -m bench.processing --database cpt_scale_1m --mysql 127.0.0.1:3399:bench --workers 2

Runs against a throwaway MariaDB database (created and dropped here), or with ``--database``
an existing one (a ``bench.scale_data`` set, issue 21): its new reports (fresh GUIDs each
run) are added to it, and nothing in it is reset or dropped. One Redis database
(``--redis``, flushed: use your own number). Reports are real-shaped: the captured v3 fixture
with the dists, perls, grades and testers varied. Drain time counts from starting the
worker processes (start-up included) to the last report being done. The lag counts from
a report's receipt (four feeder processes store and queue them, as the web app does) to
the moment a reader of the database first sees it done (polled every 20 ms). Both print
the workers' CPU per report and the machine's yardstick.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pymysql
import redis as redis_lib
import sqlalchemy as sa

from bench.machine import yardstick
from queueing.contract import enqueue_report, report_queue
from storage.engine import create_engine
from storage.migrate import upgrade
from storage.reports import store_report
from storage.tables import cpanstats, perl_version, release_data, release_summary, test_report, uploads
from tests.processing_helpers import GRADES, PERLS, PLATFORMS, TESTERS, report_row, store_many

ROOT = Path(__file__).resolve().parent.parent
DISTS = [f"Bench-Dist-{i:03d}" for i in range(300)]


def rows(count: int, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    start = datetime(2026, 11, 29, 12, 0, 0)
    out = []
    for i in range(count):
        out.append(
            report_row(
                guid=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                dist=rnd.choice(DISTS),
                version=rnd.choice(["1.00", "1.01", "1.02_01", "2.0"]),
                perl=rnd.choice(PERLS),
                grade=rnd.choices(GRADES, weights=[80, 12, 5, 3])[0],
                tester=rnd.choice(TESTERS),
                platform=rnd.choice(PLATFORMS),
                created=start.replace(minute=i // 6000 % 60, second=i // 100 % 60),
            )
        )
    return out


def server_spec(mysql: str) -> dict:
    """``host[:port[:user]]`` as pymysql's keyword arguments (port 3306, user root by default)."""
    host, port, user = (mysql.split(":") + ["", ""])[:3]
    return {"host": host, "port": int(port or 3306), "user": user or "root"}


class Bench:
    def __init__(self, mysql: str, redis_url: str, database: str | None = None, prefix: str = "cpt_bench_"):
        """A throwaway database of its own (``prefix`` and 8 hex; dropped by :meth:`close`),
        or with ``database`` an existing one, which :meth:`reset` and :meth:`close` leave as
        they found it."""
        self.existing = database is not None
        self.name = database or f"{prefix}{uuid.uuid4().hex[:8]}"
        self.admin = server_spec(mysql)
        if not self.existing:
            conn = pymysql.connect(**self.admin)
            with conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            conn.close()
        self.database_url = f"mysql://{self.admin['user']}@{self.admin['host']}:{self.admin['port']}/{self.name}"
        if not self.existing:
            upgrade(self.database_url)
        self.engine = create_engine(self.database_url)
        self.redis_url = redis_url
        self.redis = redis_lib.Redis.from_url(redis_url)

    def close(self) -> None:
        self.engine.dispose()
        if self.existing:
            return
        conn = pymysql.connect(**self.admin)
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        conn.close()

    def seed(self, fixed: int) -> int:
        """``fixed`` on a throwaway database (every run the same reports); a new seed on an
        existing one, whose reports from an earlier run are still there (their GUIDs would
        be duplicates, found done at once)."""
        return random.SystemRandom().getrandbits(32) if self.existing else fixed

    def backlog(self, count: int, seed: int = 1) -> list[str]:
        """Store ``count`` pending reports (no job queued yet); their GUIDs."""
        data = rows(count, self.seed(seed))
        store_many(self.engine, data)
        return [r["guid"] for r in data]

    def reset(self) -> None:
        """Empty the Redis database; on a throwaway database also the processed figures,
        every report pending again. An existing database is left as it is: a phase on it
        brings reports of its own (:meth:`backlog`)."""
        self.redis.flushdb()
        if self.existing:
            return
        with self.engine.begin() as conn:
            for table in (release_summary, release_data, cpanstats, uploads, perl_version):
                conn.execute(table.delete())
            conn.execute(test_report.update().values(state="pending", state_changed=None))

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(test_report).where(test_report.c.state == "pending")
            ).scalar_one()

    def start_workers(self, count: int, fork: bool, burst: bool) -> list[subprocess.Popen]:
        env = {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "LOG_LEVEL": "WARNING"}
        extra = (["--fork"] if fork else []) + (["--burst"] if burst else [])
        return [
            subprocess.Popen([sys.executable, "-m", "workers.run", *extra], cwd=ROOT, env=env) for _ in range(count)
        ]


def drain(bench: Bench, guids: list[str], workers: int, fork: bool, batch: int, queued=None) -> dict:
    """Queue ``guids`` (pending), then time ``workers`` burst workers until the queue is
    empty. ``queued``, if given, is called once the jobs are queued, before the workers
    start (``bench.scale_load`` times a sweeper pass there)."""
    bench.reset()
    queue = report_queue(bench.redis)
    started = time.perf_counter()
    if batch:
        for start in range(0, len(guids), batch):
            queue.enqueue("workers.jobs.process_batch", guids[start : start + batch], job_timeout=600)
    else:
        for guid in guids:
            enqueue_report(bench.redis, guid)
    enqueue_seconds = time.perf_counter() - started
    if queued:
        queued()
    started = time.perf_counter()
    procs = bench.start_workers(workers, fork, burst=True)
    cpu = rss = 0.0
    while any(proc.poll() is None for proc in procs):
        cpu = max(cpu, cpu_seconds(procs))  # read while they live: an exited process has no figures
        rss = max(rss, resident_mib(procs))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    left = bench.pending()
    return {
        "workers": workers,
        "seconds": seconds,
        "rate": len(guids) / seconds,
        "enqueue": enqueue_seconds,
        "left": left,
        "cpu_ms": cpu / len(guids) * 1000,
        "rss_mib": rss,
    }


def resident_mib(procs: list[subprocess.Popen]) -> float:
    """The largest resident memory (MiB) of the processes (and their children) now."""
    largest = 0
    for proc in procs:
        try:
            process = psutil.Process(proc.pid)
            for one in (process, *process.children(recursive=True)):
                largest = max(largest, one.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return largest / 2**20


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    """User + system CPU the processes (and their children) have used so far."""
    total = 0.0
    for proc in procs:
        try:
            process = psutil.Process(proc.pid)
            for one in (process, *process.children(recursive=True)):
                times = one.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _feed(database_url: str, redis_url: str, share: list[tuple[float, dict]], begin: float, out: str) -> None:
    """One feeder process: store and queue its share of the reports, each at its due time
    (``begin`` + offset, wall clock), as the web app does; write the receipt times."""
    engine = create_engine(database_url)
    connection = redis_lib.Redis.from_url(redis_url)
    receipts = {}
    for offset, row in share:
        pause = begin + offset - time.time()
        if pause > 0:
            time.sleep(pause)
        row["created"] = datetime.now(UTC).replace(tzinfo=None)
        received = time.time()
        store_report(engine, row)
        enqueue_report(connection, row["guid"])
        receipts[row["guid"]] = received
    Path(out).write_text(json.dumps(receipts))
    engine.dispose()


class DoneWatcher(threading.Thread):
    """Polls the database for the reports that are due and not done yet, and notes when
    each was first seen done: the lag as a reader of the database sees it. (A job's own
    end time would miss the reports another job took along: their jobs never run.)"""

    def __init__(self, engine: sa.Engine, schedule: list[tuple[float, str]], interval: float = 0.02):
        super().__init__(daemon=True)
        self.engine, self.schedule, self.interval = engine, sorted(schedule), interval
        self.done: dict[str, float] = {}
        self.finished = threading.Event()

    def run(self) -> None:
        due, outstanding = 0, set()
        while not self.finished.is_set():
            now = time.time()
            while due < len(self.schedule) and self.schedule[due][0] <= now:
                outstanding.add(self.schedule[due][1])
                due += 1
            waiting = sorted(outstanding)[:1000]
            if waiting:
                with self.engine.connect() as conn:
                    seen = conn.execute(
                        sa.select(test_report.c.guid).where(
                            test_report.c.guid.in_(waiting), test_report.c.state != "pending"
                        )
                    ).scalars()
                    at = time.time()
                    for guid in seen:
                        self.done[guid] = at
                        outstanding.discard(guid)
            if due == len(self.schedule) and not outstanding:
                return
            self.finished.wait(self.interval)


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of sorted ``values``."""
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def lag(bench: Bench, workers: int, fork: bool, rate: float, seconds: float, feeders: int) -> dict:
    bench.reset()
    procs = bench.start_workers(workers, fork, burst=False)
    time.sleep(3)  # workers up before the load starts
    total = int(rate * seconds)
    feed = rows(total, seed=bench.seed(7))
    begin = time.time() + 1.0  # the feeders' common start
    schedule = [(i / rate, row) for i, row in enumerate(feed)]
    watcher = DoneWatcher(bench.engine, [(begin + offset, row["guid"]) for offset, row in schedule])
    cpu_before = cpu_seconds(procs)
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as tmp:
        outs = [str(Path(tmp) / f"feeder-{n}.json") for n in range(feeders)]
        feeding = [
            context.Process(target=_feed, args=(bench.database_url, bench.redis_url, schedule[n::feeders], begin, out))
            for n, out in enumerate(outs)
        ]
        for process in feeding:
            process.start()
        watcher.start()
        for process in feeding:
            process.join()
        achieved = total / (time.time() - begin)
        receipts = {}
        for out in outs:
            receipts.update(json.loads(Path(out).read_text()))
    watcher.join(timeout=120)
    watcher.finished.set()
    cpu = cpu_seconds(procs) - cpu_before
    rss = resident_mib(procs)  # long-running workers, after the load
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait()
    lags = sorted(watcher.done[g] - received for g, received in receipts.items() if g in watcher.done)
    return {
        "workers": workers,
        "offered": rate,
        "achieved": achieved,
        "reports": total,
        "measured": len(lags),
        "p50": percentile(lags, 50),
        "p95": percentile(lags, 95),
        "p99": percentile(lags, 99),
        "max": lags[-1],
        "mean": statistics.mean(lags),
        "cpu_ms": cpu / max(1, len(lags)) * 1000,
        "rss_mib": rss,
    }


def burn(count: int) -> list[subprocess.Popen]:
    """``count`` busy-looping processes: a slow day on demand (each takes a core's share)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--fork", action="store_true", help="RQ's forking Worker instead of SimpleWorker")
    parser.add_argument("--batch", type=int, default=0, help="queue batch jobs of this many reports")
    parser.add_argument("--lag", action="store_true", help="measure lag under steady load instead of drain")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--feeders", type=int, default=4, help="processes storing and queueing the lag's reports")
    parser.add_argument("--burn", type=int, default=0, help="busy-looping processes beside the run (a slow day)")
    parser.add_argument("--mysql", default="127.0.0.1:3306", help="host:port[:user] of the server (user root)")
    parser.add_argument("--database", help="an existing database to add the reports to, never reset nor dropped")
    parser.add_argument("--database-prefix", default="cpt_bench_", help="name of the throwaway database, then 8 hex")
    parser.add_argument("--redis", default=os.environ.get("CPT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/3"))
    args = parser.parse_args(argv)
    print(f"machine: {yardstick()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    bench = Bench(args.mysql, args.redis, args.database, args.database_prefix)
    burners = burn(args.burn)
    try:
        kind = "fork Worker" if args.fork else "SimpleWorker"
        if args.lag:
            for workers in args.workers:
                r = lag(bench, workers, args.fork, args.rate, args.seconds, args.feeders)
                print(
                    f"lag {kind} workers={workers} offered={r['offered']:.0f}/s achieved={r['achieved']:.0f}/s "
                    f"reports={r['reports']} measured={r['measured']} p50={r['p50'] * 1000:.0f}ms "
                    f"p95={r['p95'] * 1000:.0f}ms p99={r['p99'] * 1000:.0f}ms max={r['max'] * 1000:.0f}ms "
                    f"worker CPU {r['cpu_ms']:.2f} ms/report, RSS {r['rss_mib']:.0f} MiB;"
                    f" load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            return
        guids = []
        mode = f"batch={args.batch}" if args.batch else "one job per report"
        for workers in args.workers:
            if not guids or bench.existing:  # a throwaway database's reports are made pending again
                guids = bench.backlog(args.reports)
            r = drain(bench, guids, workers, args.fork, args.batch)
            print(
                f"drain {kind} {mode} reports={len(guids)} workers={workers} seconds={r['seconds']:.1f} "
                f"rate={r['rate']:.0f}/s (enqueue {r['enqueue']:.1f}s) left={r['left']} "
                f"worker CPU {r['cpu_ms']:.2f} ms/report, RSS up to {r['rss_mib']:.0f} MiB;"
                f" load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        for burner in burners:
            burner.kill()
        bench.close()


if __name__ == "__main__":
    main()
