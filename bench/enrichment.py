"""Report-text parsing benchmark: parse time per real report, a 40,000-line output, the
backfill rate with worker processes, and the disk the parsed facts take per report.

    .venv/bin/python -m bench.enrichment                          # all of it, 10,000 reports, 2 workers
    .venv/bin/python -m bench.enrichment --reports 2000 --workers 2
    .venv/bin/python -m bench.enrichment --parse-only

Parse: each whole real fixture report (tests/report_texts.py) parsed 20 times, the best
time kept; then a real report whose test output is 10,000 / 20,000 / 40,000 lines long.
Backfill: a throwaway MariaDB database holding the real legacy rows and ``--reports``
synthetic ones (bench/legacy_synth.py: real reports with each tester's own environment,
perls and PIDs), the backfill queued by ``scripts.backlog --enrich`` on the low-priority
queue of one Redis database (``--redis``, flushed: use your own number), then ``--workers``
``workers.run --burst`` processes started and timed until they exit. Disk: data + index
bytes of the fact tables (``ANALYZE TABLE``, information_schema) per report, and per
prerequisite when no two reports share a prerequisite list (5,000 lists of 20).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_lib
import sqlalchemy as sa
from rq.job import Job
from rq.registry import FailedJobRegistry

from bench.machine import yardstick
from bench.report_storage import HOST, PORT, USER, create_database, documents, drop_database
from queueing.contract import SERIALIZER, low_queue
from schemas.reportparse import parse_report_text
from storage.engine import create_engine
from storage.legacy_migration import table_bytes
from storage.reports import insert_reports
from storage.tables import report_facts
from tests.report_texts import real_report, whole_reports

ROOT = Path(__file__).resolve().parent.parent
FACT_TABLES = (
    "fact_string",
    "fact_set",
    "prereq_set",
    "prereq_set_item",
    "report_facts",
    "analysis_release",
    "release_factor_count",
)


def best_seconds(text: str, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        parse_report_text(text)
        best = min(best, time.perf_counter() - started)
    return best


def long_output(lines: int) -> str:
    """A real report whose test output is ``lines`` lines long."""
    text = real_report("collector/report-cpan-reporter-1.2020.txt")
    head, marker, tail = text.partition("All tests successful.")
    body = "\n".join(f"t/generated/{i:05d}-some-long-test-file-name-here.t ............ ok" for i in range(lines))
    return head + body + "\n" + marker + tail


def parse_figures(runs: int = 20) -> dict:
    reports = whole_reports()
    times = sorted(best_seconds(r.text, runs) for r in reports)
    sizes = sorted(len(r.text) for r in reports)
    long = {}
    for lines in (10_000, 20_000, 40_000):
        text = long_output(lines)
        long[f"{lines}_lines"] = {"mb": round(len(text) / 1e6, 2), "seconds": round(best_seconds(text, 3), 3)}
    return {
        "real_reports": len(reports),
        "median_report_bytes": statistics.median(sizes),
        "parse_ms_median": round(statistics.median(times) * 1000, 3),
        "parse_ms_p90": round(times[int(len(times) * 0.9)] * 1000, 3),
        "parse_ms_max": round(times[-1] * 1000, 3),
        "long_output": long,
    }


def backfill_figures(count: int, workers: int, redis_url: str, keep: bool) -> dict:
    name = create_database()
    url = f"mysql://{USER}@{HOST}:{PORT}/{name}"
    engine = create_engine(url)
    redis = redis_lib.Redis.from_url(redis_url)
    redis.flushdb()
    try:
        stored = 0
        batch: list[dict] = []
        for row in documents(count):
            batch.append(row)
            if len(batch) >= 500:
                with engine.begin() as conn:
                    insert_reports(conn, batch)
                stored += len(batch)
                batch.clear()
        if batch:
            with engine.begin() as conn:
                insert_reports(conn, batch)
            stored += len(batch)
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING"}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "scripts.backlog", "--enrich", "--no-progress", "--max-queued", "1000000"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        queued_seconds = time.perf_counter() - started
        started = time.perf_counter()
        procs = [
            subprocess.Popen([sys.executable, "-m", "workers.run", "--burst"], cwd=ROOT, env=env)
            for _ in range(workers)
        ]
        for proc in procs:
            proc.wait()
        drain_seconds = time.perf_counter() - started
        failed = FailedJobRegistry(queue=low_queue(redis)).get_job_ids()
        if failed:
            job = Job.fetch(failed[0], connection=redis, serializer=SERIALIZER)
            print(f"# {len(failed)} failed jobs, e.g. {job.latest_result().exc_string[-2000:]}", file=sys.stderr)
        with engine.connect() as conn:
            enriched = conn.execute(sa.select(sa.func.count()).select_from(report_facts)).scalar_one()
            for table in FACT_TABLES:
                conn.exec_driver_sql(f"ANALYZE TABLE {table}").all()
            sizes = table_bytes(conn, FACT_TABLES)
        return {
            "reports": stored,
            "enriched": enriched,
            "workers": workers,
            "queue_seconds": round(queued_seconds, 2),
            "drain_seconds": round(drain_seconds, 2),
            "reports_per_second": round(enriched / drain_seconds),
            "fact_bytes_per_report": round(sum(sizes.values()) / max(enriched, 1)),
            "bytes_per_report_by_table": {k: round(v / max(enriched, 1)) for k, v in sorted(sizes.items())},
        }
    finally:
        engine.dispose()
        redis.flushdb()
        if not keep:
            drop_database(name)


def prereq_worst_case(lists: int = 5000, per_list: int = 20) -> dict:
    """Bytes per prerequisite when no report shares its prerequisite list with another
    (every ``have`` different): ``lists`` lists of ``per_list`` prerequisites stored."""
    import random

    from schemas.reportparse import Prerequisite
    from storage.report_facts import _prereq_digest, intern_prereq_sets, intern_strings

    rng = random.Random(7)
    modules = [f"Bench::Module{i}" for i in range(400)]
    wanted = {}
    for _ in range(lists):
        listed = [
            Prerequisite(
                rng.choice(("runtime", "build", "configure")),
                name,
                "0",
                f"{rng.randint(0, 9)}.{rng.randint(0, 99):02d}",
            )
            for name in rng.sample(modules, per_list)
        ]
        wanted[_prereq_digest(listed)] = listed
    name = create_database()
    engine = create_engine(f"mysql://{USER}@{HOST}:{PORT}/{name}")
    try:
        strings = intern_strings(
            engine, {s for listed in wanted.values() for p in listed for s in (p.phase, p.name, p.need, p.have)}
        )
        items = list(wanted.items())
        for start in range(0, len(items), 250):
            intern_prereq_sets(engine, dict(items[start : start + 250]), strings)
        with engine.connect() as conn:
            for table in ("prereq_set", "prereq_set_item"):
                conn.exec_driver_sql(f"ANALYZE TABLE {table}").all()
            sizes = table_bytes(conn, ("prereq_set", "prereq_set_item"))
        total = lists * per_list
        return {
            "prerequisites": total,
            "bytes_per_prerequisite": round(sizes["prereq_set_item"] / total, 1),
            "bytes_per_list": round(sizes["prereq_set"] / lists, 1),
        }
    finally:
        engine.dispose()
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=10_000, help="synthetic reports besides the real ones")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis", default=os.environ.get("CPT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/3"))
    parser.add_argument("--parse-only", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    args = parser.parse_args()
    print(f"# {yardstick()}", flush=True)
    print(json.dumps({"parse": parse_figures()}, indent=1), flush=True)
    if not args.parse_only:
        print(json.dumps({"unshared_prerequisites": prereq_worst_case()}, indent=1), flush=True)
        print(json.dumps({"backfill": backfill_figures(args.reports, args.workers, args.redis, args.keep)}, indent=1))


if __name__ == "__main__":
    main()
