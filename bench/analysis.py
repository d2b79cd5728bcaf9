"""Failure-analysis benchmark: one release with 10,000 parsed reports in MariaDB, analysed
from an empty cache (the counts' three grouped queries, then the statistics).

    .venv/bin/python -m bench.analysis [--reports 10000] [--prereqs 30] [--repeat 5] [--unshared]

Prints the machine yardstick, the load time, and the analysis time of each repeat (the
first from a fresh connection pool). Target: under 500 ms for 10,000 reports.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.databases import drop_database, fresh_database  # noqa: E402
from bench.machine import yardstick  # noqa: E402
from schemas.failure_analysis import analyse, with_major_minor  # noqa: E402
from schemas.module_version import is_below  # noqa: E402
from schemas.reportparse.model import ParsedReport, Prerequisite  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.failure_analysis import release_counts  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.report_facts import store_facts  # noqa: E402
from storage.tables import test_report  # noqa: E402
from tests.processing_helpers import report_row, store_many  # noqa: E402

DIST, VERSION = "Big-Release", "1.00"


def synthetic_reports(count: int, prereqs: int, seed: int = 1, unshared: bool = False):
    """Reports of one release: FAIL exactly when Foo::Bar < 1.05, many other prerequisites,
    perls, testers and environments as noise.

    As on a real smoker, a tester's installed modules change only now and then: each of the
    400 testers has three snapshots of installed versions, and a report takes one of its
    tester's (so about 1,200 distinct prerequisite lists). ``unshared`` gives every report a
    list of its own instead: the worst case, which no real release comes near.
    """
    rng = random.Random(seed)
    modules = [f"Mod{n}::Util" for n in range(prereqs)]

    def snapshot() -> list[Prerequisite]:
        foo = rng.choice(["1.03", "1.04", "1.05", "1.06", "1.10", "1.9"])
        return [Prerequisite("runtime", "Foo::Bar", "1.0", foo)] + [
            Prerequisite("runtime", m, "0", rng.choice(["0.01", "0.02", "1.00", "2.5"])) for m in modules
        ]

    testers = {str(uuid.UUID(int=rng.getrandbits(128))): [snapshot() for _ in range(3)] for _ in range(400)}
    names = sorted(testers)
    for _ in range(count):
        tester = rng.choice(names)
        prerequisites = snapshot() if unshared else rng.choice(testers[tester])
        foo = prerequisites[0].have
        grade = "fail" if is_below(foo, "1.05") else rng.choice(["pass"] * 9 + ["na"])
        facts = ParsedReport(
            user_agent=rng.choice(["CPAN::Reporter 1.2020", "App::cpanminus::reporter 0.18"]),
            prerequisites=prerequisites,
            config={"useithreads": rng.choice(["define", "undef"]), "cc": rng.choice(["cc", "gcc", "clang"])},
            environment={"LANG": "C"} if rng.random() < 0.5 else {"HOME": "/home/t"},
        )
        row = report_row(
            dist=DIST,
            version=VERSION,
            grade=grade,
            perl=rng.choice(["5.16.3", "5.24.4", "5.30.3", "5.36.0", "5.38.2"]),
        )
        row["creator"] = "metabase:user:" + tester
        yield row, facts


def load(engine, count: int, prereqs: int, unshared: bool = False) -> None:
    batch: list = []
    for item in synthetic_reports(count, prereqs, unshared=unshared):
        batch.append(item)
        if len(batch) == 1000:
            _store(engine, batch)
            batch = []
    if batch:
        _store(engine, batch)


def _store(engine, batch) -> None:
    rows = [row for row, _ in batch]
    store_many(engine, rows)
    guids = [row["guid"] for row in rows]
    with engine.connect() as conn:
        ids = {
            g: i
            for g, i in conn.execute(
                sa.select(test_report.c.guid, test_report.c.id).where(test_report.c.guid.in_(guids))
            )
        }
    store_facts(engine, {ids[row["guid"]]: facts for row, facts in batch})


def analyse_release(engine) -> dict:
    with engine.connect() as conn:
        counted = release_counts(conn, DIST, VERSION)
    counts, buckets = with_major_minor(counted.counts, [f for f in counted.ordered if f.startswith("prereq ")])
    return analyse(counts, counted.fail, counted.passed, counted.ordered | buckets).as_dict()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--prereqs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--unshared", action="store_true", help="every report its own prerequisite list (the worst case)"
    )
    args = parser.parse_args(argv)
    print(yardstick())
    name = "cpt_bench_analysis"
    url = fresh_database(name)
    upgrade(url)
    engine = create_engine(url)
    started = time.perf_counter()
    load(engine, args.reports, args.prereqs, args.unshared)
    shape = "every report its own list" if args.unshared else "lists shared as testers' installs are"
    loaded = time.perf_counter() - started
    print(f"loaded {args.reports} reports x {args.prereqs + 1} prerequisites ({shape}) in {loaded:.1f} s")
    timings = []
    for attempt in range(args.repeat):
        engine.dispose()  # every attempt from a fresh pool: nothing cached in the process
        started = time.perf_counter()
        result = analyse_release(engine)
        timings.append((time.perf_counter() - started) * 1000)
        if attempt == 0:
            top = result["factors"][0]
            print(
                f"top factor: {top['factor']} V={top['cramers_v']} q={top['q_value']:.3g}; {len(result['factors'])} factors"
            )
    print("analysis ms: " + ", ".join(f"{t:.0f}" for t in timings) + f" (median {statistics.median(timings):.0f})")
    engine.dispose()
    if not args.keep:
        drop_database(name)


if __name__ == "__main__":
    main()
