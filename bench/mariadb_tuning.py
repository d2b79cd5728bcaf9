"""What a MariaDB setting does to the intake: ours under the server's current settings (A)
against ours under the given ones (B), alternating ABBA in one run, medians printed.

    .venv/bin/python -m bench.mariadb_tuning --set innodb_log_file_size=1073741824 \\
        [--set innodb_buffer_pool_size=1073741824 ...] [--connections 64] [--runs 4]

The settings are applied with ``SET GLOBAL`` (every one used here is dynamic in MariaDB
10.11) before each B phase and put back before each A phase and at the end, so the
shared server is left as it was found. Each phase is preceded by bench.intake's warm-up
and InnoDB flush wait. Needs wrk, MariaDB (root) and Redis on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pymysql

from bench import intake, server_stats
from bench.machine import yardstick
from queueing.contract import QUEUE_NAME


def apply(settings: dict[str, str]) -> None:
    conn = pymysql.connect(**intake.MYSQL, autocommit=True)
    with conn.cursor() as cursor:
        for name, value in settings.items():
            cursor.execute(f"SET GLOBAL {name} = %s", (int(value) if value.isdigit() else value,))
        # A buffer pool resize goes on in the background: measure once it is done.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_resize_status'")
            row = cursor.fetchone()
            if row is None or not row[1] or "Completed" in row[1] or "complete" in row[1].lower():
                break
            time.sleep(0.5)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="settings", action="append", required=True, metavar="NAME=VALUE")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", type=int, default=4, help="phases per side, alternating ABBA")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--flush-wait", type=float, default=30)
    args = parser.parse_args()
    tuned = dict(item.split("=", 1) for item in args.settings)
    baseline = server_stats.mariadb_variables(intake.MYSQL, tuple(tuned))

    _recorded, original_guid, body_path, redis_url = intake.prepare_run("bench-tuning-body-")
    print(f"yardstick: {yardstick()}")
    print(f"A: {baseline}\nB: {tuned}")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-tuning-"))
    ours = intake.App("ours", "wsgi:app", intake.OURS_DB, "test_report", QUEUE_NAME, args.workers, log_dir, redis_url)
    bench = intake.Bench(args, body_path, original_guid, redis_url)
    results: dict[str, list[dict]] = {"A": [], "B": []}
    try:
        with ExitStack() as stack:
            ours.start(stack)
            for run in range(args.runs):
                for side in "AB" if run % 2 == 0 else "BA":
                    apply(baseline if side == "A" else tuned)
                    results[side].append(bench.phase(ours, args.connections, args.duration, f"{side} {run + 1}"))
    finally:
        apply(baseline)
        intake.drop_databases()
    print(f"\nmedian of {args.runs} phases per side, c={args.connections}:")
    medians = {}
    for side, phases in results.items():
        medians[side] = {key: statistics.median(p[key] for p in phases) for key in ("rps", "p50", "p99")}
        fsyncs = statistics.median(p["waits"]["Innodb_data_fsyncs"] / max(p["acknowledged"], 1) for p in phases)
        mariadb = statistics.median(p["cpu_ms"]["mariadbd"] for p in phases)
        print(
            f"  {side}: {medians[side]['rps']:7.1f} req/s  p50 {medians[side]['p50']:6.1f} ms  p99 {medians[side]['p99']:6.1f} ms"
            f"  MariaDB CPU {mariadb:.2f} ms/report  fsyncs {fsyncs:.2f}/report"
        )
    print(
        f"  B/A: throughput {medians['B']['rps'] / medians['A']['rps']:.2f}x, p99 {medians['B']['p99'] / medians['A']['p99']:.2f}x"
    )


if __name__ == "__main__":
    main()
