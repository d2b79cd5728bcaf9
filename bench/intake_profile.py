"""Where each app's CPU goes under gunicorn, sampled: py-spy records every web worker of
the reference and of ours while wrk sends the real capture, and the samples are sorted
into stages, then turned into milliseconds of CPU per report.

    .venv/bin/python -m bench.intake_profile [--seconds 15] [--connections 16] [--workers 4]

Only samples of a thread holding the GIL are taken (``py-spy --gil``): Python at work, not
waiting on a socket. Time spent in C with the GIL released (zstd, fsync waits, sockets) is
in the process CPU but not in the samples, so a stage's milliseconds are its share of the
samples times the process CPU per report: an estimate, good for comparing stages and apps
in one run. Each sample goes to the deepest stage marker on its stack. Needs wrk, py-spy
(requirements-dev.txt), MariaDB and Redis on 127.0.0.1, and the right to trace processes
(root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from bench import intake, server_stats
from bench.machine import yardstick
from queueing.contract import QUEUE_NAME

STAGES = (
    # (stage, a frame that marks it), the later in this list the deeper it is looked for
    ("gunicorn: HTTP parsing and writing", "gunicorn/"),
    ("Flask, middleware and hooks", "flask/app.py"),
    ("the view (credentials, body, answer)", "app/legacy_api.py"),
    ("the view (credentials, body, answer)", "bench/reference_app.py"),
    ("intake pipeline (authentication, the row)", "intake/pipeline.py"),
    ("Flask, middleware and hooks", "prometheus_flask_exporter/"),
    ("decode and validate (JSON, marshmallow, hash)", "schemas/metabase.py"),
    ("translate to v3 (text repair)", "schemas/translate.py"),
    ("pack (chunks, compression)", "storage/report_codec.py"),
    ("SQL: SQLAlchemy and the transaction", "sqlalchemy/"),
    ("SQL: pymysql", "pymysql/"),
    ("enqueue: RQ and Redis", "queueing/contract.py"),
    ("enqueue: RQ and Redis", "rq/"),
    ("enqueue: RQ and Redis", "redis/"),
)
FRAME = re.compile(r"\((.*?):\d+\)")


def stage_of(stack: str) -> str:
    """The deepest stage whose marker appears in a sample's stack (outermost frame first)."""
    chosen, depth = "other", -1
    files = FRAME.findall(stack)
    for stage, marker in STAGES:
        for position in range(len(files) - 1, depth, -1):
            if marker in files[position]:
                chosen, depth = stage, position
                break
    return chosen


def read_samples(paths: list[Path]) -> tuple[collections.Counter, collections.Counter, int]:
    """Samples by stage and by function (inclusive), and the total, from py-spy raw files."""
    stages, functions, total = collections.Counter(), collections.Counter(), 0
    for path in paths:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            stack, count = line.rsplit(" ", 1)
            count = int(count)
            total += count
            stages[stage_of(stack)] += count
            for name in {re.sub(r":\d+\)", ")", frame) for frame in stack.split(";")}:
                functions[name] += count
    return stages, functions, total


def profile(app: intake.App, bench_args, seconds: int, out: Path) -> dict:
    """wrk for ``seconds`` + 6 s; py-spy on every worker for ``seconds`` in the middle."""
    workers = [pid for pid in app.pids() if pid != app.process.pid]
    figures: dict = {}
    load = threading.Thread(
        target=lambda: figures.update(intake.run_wrk(app.port, *bench_args(seconds + 6))),
    )
    meter = server_stats.CpuMeter({app.name: lambda: workers})
    load.start()
    time.sleep(3)
    meter.start()
    spies = [
        subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--gil"]
            + ["--nonblocking", "--format", "raw", "-o", str(out / f"{app.name}-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in workers
    ]
    for spy in spies:
        spy.wait()
    cpu = meter.stop()[app.name]
    load.join()
    served = figures["requests"] * seconds / (seconds + 6)  # about the profiled window's share
    return {**figures, "cpu_ms": 1000 * cpu / max(served, 1), "files": sorted(out.glob(f"{app.name}-*.txt"))}


def report(name: str, result: dict, top: int) -> dict[str, float]:
    stages, functions, total = read_samples(result["files"])
    print(
        f"\n{name}: {result['rps']:.1f} req/s, p99 {result['p99']:.1f} ms; {total} samples;"
        f" workers' CPU {result['cpu_ms']:.2f} ms/report"
    )
    per_stage = {}
    for stage, count in stages.most_common():
        per_stage[stage] = result["cpu_ms"] * count / max(total, 1)
        print(f"  {stage:48} {100 * count / max(total, 1):5.1f} %  {per_stage[stage]:5.2f} ms")
    print(f"  the {top} functions holding the most samples (inclusive):")
    skip = ("<frozen runpy>", "gunicorn/__main__", "gunicorn/app/", "gunicorn/arbiter", "workers/base.py")
    shown = 0
    for function, count in functions.most_common():
        if any(part in function for part in skip):
            continue
        print(f"    {100 * count / max(total, 1):5.1f} %  {function[:110]}")
        shown += 1
        if shown == top:
            break
    return per_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15, help="profiled seconds per app")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if not shutil.which("py-spy") or not shutil.which("wrk"):
        raise SystemExit("needs py-spy (pip install -r requirements-dev.txt) and wrk on the PATH")

    _recorded, original_guid, body_path, redis_url = intake.prepare_run("bench-intake-profile-")
    work = body_path.parent
    print(f"yardstick: {yardstick()}; load average {os.getloadavg()[0]:.2f}")
    print(f"{args.workers} sync workers each, {args.connections} connections, {args.seconds} s profiled per app")
    run_id = iter(range(1, 1000))

    def wrk_args(seconds: int) -> tuple:
        return args.connections, seconds, str(body_path), original_guid, next(run_id)

    reference = intake.App("reference", "bench.reference_app:app", intake.REFERENCE_DB, "reference_report",
                           "reference", args.workers, work, redis_url)  # fmt: skip
    ours = intake.App("ours", "wsgi:app", intake.OURS_DB, "test_report", QUEUE_NAME, args.workers, work, redis_url)
    results = {}
    try:
        with ExitStack() as stack:
            for app in (reference, ours):
                app.start(stack)
                intake.run_wrk(app.port, *wrk_args(5))  # warm
                results[app.name] = profile(app, wrk_args, args.seconds, work)
        stages = {name: report(name, result, args.top) for name, result in results.items()}
    finally:
        intake.drop_databases()
    gap = results["ours"]["cpu_ms"] - results["reference"]["cpu_ms"]
    print(f"\nours - reference: {gap:+.2f} ms of workers' CPU per report; by stage:")
    for stage in dict.fromkeys([*stages["ours"], *stages["reference"]]):
        difference = stages["ours"].get(stage, 0) - stages["reference"].get(stage, 0)
        print(f"  {stage:48} {difference:+5.2f} ms")


if __name__ == "__main__":
    main()
