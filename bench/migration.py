"""Legacy migration speed end to end, against MariaDB's batched insert of the same rows.

    .venv/bin/python -m bench.migration [--rows 1000000] [--workers N] [--batch 1000] [--keep]

1. Builds a synthetic legacy database of ``--rows`` Metabase cache rows (bench/legacy_synth.py:
   many testers with their own environment and perl -V, varied dists, grades, output,
   PIDs and dates; ISO and epoch ``updated``; double-encoded old rows) plus their
   legacy cpanstats rows and profiles. Not timed.
2. Runs ``scripts/migrate_legacy.py migrate`` on it into a fresh database, sampling the
   memory (RSS) of every process of the run twice a second.
3. Baseline, in the same run: the same rows, converted beforehand (not timed), inserted as
   plain v3 JSON rows into a fresh ``test_report`` with batched multi-row INSERTs (500).
4. Where the time goes: one process doing read / convert / pack+insert on a sample.
Drops its databases unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pymysql

from bench.legacy_synth import load_legacy_parallel
from schemas.legacy import convert_row
from scripts.migrate_legacy import DEFAULT_WORKERS
from storage.engine import create_engine
from storage.legacy import latest_profile_rows, legacy_engine, metabase_rows_query
from storage.migrate import upgrade
from storage.reports import encode_document, insert_reports
from storage.tables import test_report
from tests import legacy_fixtures

HOST, PORT, USER = "127.0.0.1", 3306, "root"
ROOT = Path(__file__).resolve().parent.parent


def url(name: str) -> str:
    return f"mysql://{USER}@{HOST}:{PORT}/{name}"


def admin(sql: str) -> None:
    conn = pymysql.connect(host=HOST, port=PORT, user=USER, autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def new_database() -> str:
    name = f"cpt_benchmig_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    upgrade(url(name))
    return name


def build_legacy(rows: int) -> str:
    name = legacy_fixtures.create_legacy_database(
        HOST, PORT, USER, f"cpt_benchmig_legacy_{uuid.uuid4().hex[:8]}", rows=False
    )
    connect = {"host": HOST, "port": PORT, "user": USER, "database": name}
    load_legacy_parallel(connect, rows, seed=20261130, batch=1000, processes=os.cpu_count() or 2)
    return name


def mariadb_process() -> psutil.Process | None:
    """The local MariaDB server, to count the CPU it spends on the run (None if not found)."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("mariadbd", "mysqld"):
            return proc
    return None


class MemorySampler(threading.Thread):
    """RSS of a process tree, twice a second: total and per process."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, int, int]] = []  # (seconds, total RSS, largest process RSS)
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                sizes = []
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        sizes.append(proc.memory_info().rss)
                self.samples.append((time.monotonic() - started, sum(sizes), max(sizes, default=0)))
            except psutil.Error:
                break
            self.stop.wait(0.5)


def migrate(legacy_name: str, ours_name: str, workers: int, batch: int) -> dict:
    command = [
        sys.executable, "-m", "scripts.migrate_legacy", "--legacy-url", url(legacy_name), "--database-url",
        url(ours_name), "migrate", "--workers", str(workers), "--batch", str(batch), "--quiet", "--skip-tables",
        "--errors", os.devnull,
    ]  # fmt: skip
    database = mariadb_process()
    database_cpu = sum(database.cpu_times()[:2]) if database else None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    sampler = MemorySampler(process.pid)
    sampler.start()
    out, _ = process.communicate()
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    python_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    database_cpu = sum(database.cpu_times()[:2]) - database_cpu if database else None
    sampler.stop.set()
    sampler.join()
    summary = json.loads(out)
    steady = [s for s in sampler.samples if s[0] > 5] or sampler.samples
    quarters = [steady[int(i * (len(steady) - 1) / 10)] for i in range(11)] if steady else []
    return {
        "seconds": round(elapsed, 1),
        "rows_per_second": round(summary["legacy_rows"] / elapsed),
        "migrated": summary["migrated_this_run"],
        "rejected": summary["rejected_this_run"],
        "cpu_us_per_row_migration_processes": round(python_cpu / summary["legacy_rows"] * 1e6),
        "cpu_us_per_row_mariadb": round(database_cpu / summary["legacy_rows"] * 1e6) if database else None,
        "cpu_busy_of_all_cores": round((python_cpu + (database_cpu or 0)) / elapsed / (os.cpu_count() or 1), 2),
        "rss_total_mib_every_tenth_of_the_run": [round(s[1] / 2**20) for s in quarters],
        "rss_largest_process_mib_every_tenth": [round(s[2] / 2**20) for s in quarters],
    }


def baseline(legacy_name: str, rows: int) -> dict:
    """Plain JSON rows, batched INSERT of 500, converted beforehand (only inserts timed)."""
    target = new_database()
    legacy, ours = legacy_engine(url(legacy_name)), create_engine(url(target))
    with legacy.connect() as conn:
        profiles = latest_profile_rows(conn)
    insert_seconds = 0.0
    done = 0
    after = None
    try:
        while True:
            with legacy.connect() as conn:
                page = conn.execute(metabase_rows_query(after, None, 2000)).all()
            if not page:
                break
            after = page[-1].guid
            values = [
                {**row, "report": encode_document(row["report"])}
                for row in (convert_row(r.guid, r.updated, r.report, profiles, r.id).row for r in page)
            ]
            for start in range(0, len(values), 500):
                began = time.perf_counter()
                with ours.begin() as conn:
                    conn.execute(test_report.insert(), values[start : start + 500])
                insert_seconds += time.perf_counter() - began
            done += len(values)
    finally:
        legacy.dispose()
        ours.dispose()
        admin(f"DROP DATABASE IF EXISTS `{target}`")
    return {"rows": done, "insert_seconds": round(insert_seconds, 1), "rows_per_second": round(done / insert_seconds)}


def breakdown(legacy_name: str, sample: int = 5000) -> dict:
    """One process, one page at a time: where the time of a migrated row goes."""
    target = new_database()
    legacy, ours = legacy_engine(url(legacy_name)), create_engine(url(target))
    timings = {"read legacy page": 0.0, "convert (decode, validate, v3)": 0.0, "pack + insert + commit": 0.0}
    with legacy.connect() as conn:
        profiles = latest_profile_rows(conn)
    after, done = None, 0
    try:
        while done < sample:
            began = time.perf_counter()
            with legacy.connect() as conn:
                page = conn.execute(metabase_rows_query(after, None, 1000)).all()
            timings["read legacy page"] += time.perf_counter() - began
            if not page:
                break
            after = page[-1].guid
            began = time.perf_counter()
            converted = [convert_row(r.guid, r.updated, r.report, profiles, r.id).row for r in page]
            timings["convert (decode, validate, v3)"] += time.perf_counter() - began
            began = time.perf_counter()
            with ours.begin() as conn:
                insert_reports(conn, converted)
            timings["pack + insert + commit"] += time.perf_counter() - began
            done += len(page)
    finally:
        legacy.dispose()
        ours.dispose()
        admin(f"DROP DATABASE IF EXISTS `{target}`")
    return {"rows": done, **{k: f"{v / done * 1e6:.0f} us/row" for k, v in timings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the databases (the legacy one can be reused)")
    parser.add_argument(
        "--legacy-db", help="reuse this synthetic legacy database (from --keep) instead of building one"
    )
    args = parser.parse_args()
    result: dict = {"rows": args.rows, "workers": args.workers, "batch": args.batch, "cpus": os.cpu_count()}
    began = time.monotonic()
    legacy_name = args.legacy_db or build_legacy(args.rows)
    result["build_legacy_seconds"] = None if args.legacy_db else round(time.monotonic() - began)
    result["legacy_database"] = legacy_name
    if args.legacy_db:
        with legacy_engine(url(legacy_name)).connect() as conn:
            args.rows = result["rows"] = conn.exec_driver_sql("SELECT COUNT(*) FROM metabase").scalar()
    ours_name = new_database()
    try:
        result["migration"] = migrate(legacy_name, ours_name, args.workers, args.batch)
        result["plain_json_batched_insert"] = baseline(legacy_name, args.rows)
        result["single_process_breakdown"] = breakdown(legacy_name)
        with create_engine(url(ours_name)).connect() as conn:
            from storage.legacy_migration import table_bytes

            conn.exec_driver_sql("ANALYZE TABLE test_report, report_block").all()
            sizes = table_bytes(conn, ["test_report", "report_block"])
        result["migrated_bytes_per_report"] = round(sum(sizes.values()) / args.rows)
        with legacy_engine(url(legacy_name)).connect() as conn:
            conn.exec_driver_sql("ANALYZE TABLE metabase").all()
            result["legacy_metabase_bytes_per_row"] = round(table_bytes(conn, ["metabase"])["metabase"] / args.rows)
    finally:
        if not args.keep:
            admin(f"DROP DATABASE IF EXISTS `{ours_name}`")
            if not args.legacy_db:
                admin(f"DROP DATABASE IF EXISTS `{legacy_name}`")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
