"""Intake, processing and memory at one data size (issue 21): what ``bench.scale --load`` adds.

The Procfile's own processes, pointed at a large database made by ``bench.scale_data``:

- **intake**: ``gunicorn -c gunicorn.conf.py wsgi:app`` (``--web-workers``, 4 = the
  config's two per CPU on the 2-core machine), loaded by ``wrk`` with ``bench/submit.lua``
  (the captured submission, a fresh GUID per request) as ``bench.intake`` does: a warm-up,
  InnoDB's dirty pages flushed, then ``--intake-seconds`` at each of ``--connections``;
  requests/s, p50 and p99;
- the **sweeper** (``python -m scripts.sweeper``) runs from the start to the end, as in
  production; the intake's reports are then processed by burst workers, so that the
  processing phases start from an empty queue;
- **processing** (``bench.processing`` on the existing database, its reports added with
  fresh GUIDs): the lag at ``--rate`` reports/s for ``--lag-seconds`` (one job per report,
  four feeder processes storing and queueing as the web app does), and the drain of a
  ``--drain``-report backlog, ``--workers`` SimpleWorkers each;
- one **sweeper pass** (``workers.sweeper.sweep``) over that backlog, every report with a
  live job (the pass reads every pending report and each one's job);
- **resident memory**: the gunicorn master and its largest worker after the intake, the
  workers after the lag and the largest one during the drain, the sweeper at the end.

Everything it adds stays in the database (the intake's reports, the lag's and the
drain's, all processed): a rerun measures on a slightly larger set.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench import intake as intake_bench
from bench import processing, server_stats
from queueing.contract import QUEUE_NAME
from storage import users
from storage.engine import create_engine
from tests import captures, processes
from workers.sweeper import sweep

ROOT = Path(__file__).resolve().parent.parent


def mib(process: psutil.Process) -> float:
    """Resident memory of one process, MiB."""
    return process.memory_info().rss / 2**20


def gunicorn_memory(master_pid: int) -> tuple[float, float]:
    """(master, largest worker) resident memory of a gunicorn group, MiB."""
    master = psutil.Process(master_pid)
    return mib(master), max((mib(child) for child in master.children()), default=0.0)


def wrk_row(connections: int, seconds: int, figures: dict) -> tuple[str, str]:
    """One table row of a measured wrk phase."""
    return (
        f"intake, {connections} connections, {seconds} s: requests/s, p50 / p99",
        f"{figures['rps']:.0f}/s, {figures['p50']:.1f} / {figures['p99']:.1f} ms"
        + ("" if figures["socket_errors"] == "none" else f" (socket errors: {figures['socket_errors']})"),
    )


class Load:
    """The processes under test on one database: a web group and a sweeper, kept up for all phases."""

    def __init__(self, url: str, database: str, mysql: dict, redis_url: str, log_dir: Path):
        self.url, self.database, self.mysql, self.redis_url, self.log_dir = url, database, mysql, redis_url, log_dir
        self.run_id = random.SystemRandom().getrandbits(30)  # submit.lua's GUIDs: never those of an earlier run
        self.rows: list[tuple[str, str]] = []

    def sweeper(self, stack: ExitStack) -> subprocess.Popen:
        with open(self.log_dir / "sweeper.log", "wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                [sys.executable, "-m", "scripts.sweeper"],
                cwd=ROOT,
                env=processes.environment(
                    DATABASE_URL=self.url, REDIS_URL=self.redis_url, SPOOL_DIR=self.log_dir / "spool", LOG_LEVEL="INFO"
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        stack.callback(processes.stop, process)
        return process

    def intake(self, stack: ExitStack, web_workers: int, connections: list[int], seconds: int, warmup: int) -> int:
        """Measure the web group; returns how many reports it acknowledged."""
        engine = create_engine(self.url)
        users.register(engine, captures.PROFILE_GUID, "CPAN Tester", "tester@example.com", captures.PROFILE_SECRET)
        engine.dispose()
        recorded = captures.load(intake_bench.SCENARIO)[0]
        original_guid = json.loads(recorded.body)["metadata"]["core"]["guid"]
        body_path = self.log_dir / "submission.json"
        body_path.write_bytes(recorded.body)
        app = intake_bench.App("web", "wsgi:app", self.database, "test_report", QUEUE_NAME, web_workers,
                               self.log_dir, self.redis_url, database_url=self.url)  # fmt: skip
        app.start(stack)
        for count in connections:
            self.run_id += 1
            warm = intake_bench.run_wrk(app.port, count, warmup, str(body_path), original_guid, self.run_id)
            app.acknowledged += warm["acknowledged"]
            flushed = server_stats.wait_for_clean_pool(self.mysql, 30)
            self.run_id += 1
            figures = intake_bench.run_wrk(app.port, count, seconds, str(body_path), original_guid, self.run_id)
            app.acknowledged += figures["acknowledged"]
            print(f"intake c={count}: {figures}; InnoDB before it {flushed}", flush=True)
            self.rows.append(wrk_row(count, seconds, figures))
        master, worker = gunicorn_memory(app.process.pid)
        self.rows.append(
            (
                f"web (gunicorn, {web_workers} sync workers) resident memory after the intake: master / largest worker",
                f"{master:.0f} / {worker:.0f} MiB",
            )  # fmt: skip
        )
        return app.acknowledged

    def processing(self, bench: processing.Bench, workers: int, rate: float, lag_seconds: float, drain: int) -> None:
        """Settle the intake's queue, then the lag and the drain (``bench.processing``)."""
        started = time.perf_counter()
        for proc in bench.start_workers(workers, fork=False, burst=True):
            proc.wait()
        print(f"intake's queue processed in {time.perf_counter() - started:.1f} s", flush=True)

        r = processing.lag(bench, workers, False, rate, lag_seconds, feeders=4)
        print(f"lag: {r}", flush=True)
        self.rows.append(
            (
                f"processing lag at {rate:.0f}/s offered, {workers} workers: fed / p50 / p95 / p99 / max",
                f"{r['achieved']:.0f}/s / {r['p50'] * 1000:.0f} / {r['p95'] * 1000:.0f} / {r['p99'] * 1000:.0f}"
                f" / {r['max'] * 1000:.0f} ms ({r['measured']:,} of {r['reports']:,} seen done)",
            )  # fmt: skip
        )
        self.rows.append(("worker CPU per report in the lag phase", f"{r['cpu_ms']:.2f} ms"))
        self.rows.append(("worker resident memory after the lag phase (largest)", f"{r['rss_mib']:.0f} MiB"))

        guids = bench.backlog(drain)
        passes: list[str] = []

        def timed_sweep() -> None:
            started = time.perf_counter()
            queued = sweep(bench.engine, bench.redis, 60)
            passes.append(f"{(time.perf_counter() - started) * 1000:.0f} ms ({queued} queued)")

        r = processing.drain(bench, guids, workers, False, 0, queued=timed_sweep)
        print(f"drain: {r}", flush=True)
        self.rows.append(
            (
                f"processing: drain of {drain:,} reports (one job per report), {workers} workers",
                f"{r['seconds']:.1f} s ({r['rate']:.0f}/s), {r['left']} left pending",
            )  # fmt: skip
        )
        self.rows.append(("worker CPU per report in the drain", f"{r['cpu_ms']:.2f} ms"))
        self.rows.append(("worker resident memory during the drain (largest)", f"{r['rss_mib']:.0f} MiB"))
        self.rows.append((f"sweeper pass over the {drain:,} pending reports, each with a live job", passes[0]))


def measure_load(
    url: str,
    database: str,
    mysql: dict,
    redis_url: str,
    *,
    web_workers: int = 4,
    connections: list[int] | None = None,
    intake_seconds: int = 15,
    warmup: int = 3,
    workers: int = 2,
    rate: float = 200,
    lag_seconds: float = 20,
    drain: int = 10_000,
) -> list[tuple[str, str]]:
    """The table rows of the intake, processing and memory figures on ``url``'s database.
    Flushes the Redis database of ``redis_url``: give it one of your own."""
    log_dir = Path(tempfile.mkdtemp(prefix="bench-scale-load-"))
    spec = f"{mysql['host']}:{mysql['port']}:{mysql['user']}"
    bench = processing.Bench(spec, redis_url, database)
    bench.reset()  # the Redis database only: the queue starts empty
    load = Load(url, database, mysql, redis_url, log_dir)
    try:
        with ExitStack() as stack:
            sweeper = load.sweeper(stack)
            acknowledged = load.intake(stack, web_workers, connections or [16], intake_seconds, warmup)
            queued = bench.redis.llen(f"rq:queue:{QUEUE_NAME}")
            print(f"intake: {acknowledged} acknowledged, {queued} jobs queued", flush=True)
            load.processing(bench, workers, rate, lag_seconds, drain)
            load.rows.append(("sweeper resident memory at the end", f"{mib(psutil.Process(sweeper.pid)):.0f} MiB"))
    finally:
        bench.close()
    print(f"logs in {log_dir}", flush=True)
    return load.rows
