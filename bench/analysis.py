"""Failure-analysis benchmark: one release with 10,000 parsed reports in MariaDB, analysed
from an empty cache (the counting queries, their aggregation, then the statistics).

    .venv/bin/python -m bench.analysis [--reports 10000] [--prereqs 30] [--repeat 5]
        [--unshared | --real-shaped] [--database NAME] [--keep] [--reuse]

Prints the machine yardstick, the load time, and the analysis time of each repeat (each
from a fresh connection pool), split into its stages: the counting (reading the release's
``release_factor_count`` rows, or with ``--from-facts`` counting its reports' facts as
before migration 0123), and the statistics. Target: under 500 ms for 10,000 reports.

``--real-shaped`` makes the reports as ``bench.scale_data --facts`` does: its generator picks
the tester (6,000, a few sending most reports) and perl of each report, and each tester's
report text (their own ``perl -V``, paths and environment, ``bench.legacy_synth``) is parsed
by the project's parser; each tester also has three snapshots of installed prerequisites.
``--keep`` keeps the database and ``--reuse`` analyses a kept one without loading it again.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from storage.failure_analysis import recount, release_counts  # noqa: E402
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


def real_shaped_reports(count: int, prereqs: int, seed: int = 1):
    """Reports of one release shaped as production's: tester, perl and grade from
    ``bench.scale_data``'s generator; config, environment and reporter parsed from the
    tester's own report text; prerequisites from one of three snapshots per tester, with
    FAIL exactly when Foo::Bar < 1.05 (other FAILs of the generator become PASS)."""
    from bench.legacy_synth import _text_report
    from bench.scale_data import Generator
    from schemas.reportparse import parse_report_text

    gen = Generator(rows=count, dists=2, largest_share=1.0, seed=seed)
    modules = [f"Mod{n}::Util" for n in range(prereqs)]
    parsed_texts: dict[tuple[int, str], ParsedReport] = {}
    snapshots: dict[int, list[list[Prerequisite]]] = {}
    picks = random.Random(seed)

    def snapshot(rng: random.Random) -> list[Prerequisite]:
        foo = rng.choice(["1.03", "1.04", "1.05", "1.06", "1.10", "1.9"])
        return [Prerequisite("runtime", "Foo::Bar", "1.0", foo)] + [
            Prerequisite("runtime", m, "0", rng.choice(["0.01", "0.02", "1.00", "2.5"])) for m in modules
        ]

    for _id, _guid, grade, _dist, _position, perl, tester_index, _moment in gen.reports():
        tester = gen.testers[tester_index]
        rng = random.Random(tester_index)
        if tester_index not in snapshots:
            snapshots[tester_index] = [snapshot(rng) for _ in range(3)]
        parsed = parsed_texts.get((tester_index, perl))
        if parsed is None:
            text = _text_report(tester, perl, DIST, VERSION, "pass", rng)
            parsed = parsed_texts[(tester_index, perl)] = parse_report_text(text)
        prerequisites = picks.choice(snapshots[tester_index])
        if is_below(prerequisites[0].have, "1.05"):
            grade = "fail"
        elif grade == "fail":
            grade = "pass"
        osname, archname, osvers = tester.os
        row = report_row(dist=DIST, version=VERSION, grade=grade, perl=perl, platform=(archname, osname, osvers))
        row["creator"] = tester.resource
        yield row, dataclasses.replace(parsed, prerequisites=prerequisites)


def load(engine, count: int, prereqs: int, unshared: bool = False, real_shaped: bool = False) -> None:
    batch: list = []
    reports = (
        real_shaped_reports(count, prereqs) if real_shaped else synthetic_reports(count, prereqs, unshared=unshared)
    )
    for item in reports:
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


def analyse_release(engine, stages: dict[str, list[float]] | None = None, from_facts: bool = False) -> dict:
    """The release's analysis as the read API makes it; each stage's ms appended to ``stages``.
    ``from_facts``: counted from the reports' facts (:func:`recount`), not read from
    ``release_factor_count``."""
    marks = [time.perf_counter()]
    with engine.connect() as conn:
        counted = (recount if from_facts else release_counts)(conn, DIST, VERSION)
    marks.append(time.perf_counter())
    counts, buckets = with_major_minor(counted.counts, [f for f in counted.ordered if f.startswith("prereq ")])
    result = analyse(counts, counted.fail, counted.passed, counted.ordered | buckets).as_dict()
    marks.append(time.perf_counter())
    if stages is not None:
        for stage, begun, ended in zip(STAGES, marks, marks[1:], strict=False):
            stages.setdefault(stage, []).append((ended - begun) * 1000)
    return result


STAGES = ("counting", "statistics")


def _time_statements(engine, statements: dict[str, list[float]]) -> None:
    """Record each statement's wall time (from sending it to its last row read) by its
    first words, in ``statements``."""
    started: dict[int, float] = {}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany):
        started[id(cursor)] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany):
        begun = started.pop(id(cursor), None)
        if begun is not None:
            key = " ".join(statement.split())[:70]
            statements.setdefault(key, []).append((time.perf_counter() - begun) * 1000)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--prereqs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", default="cpt_bench_analysis")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--reuse", action="store_true", help="analyse the kept database without loading it")
    parser.add_argument(
        "--from-facts", action="store_true", help="count from the reports' facts, not release_factor_count"
    )
    shapes = parser.add_mutually_exclusive_group()
    shapes.add_argument(
        "--unshared", action="store_true", help="every report its own prerequisite list (the worst case)"
    )
    shapes.add_argument(
        "--real-shaped", action="store_true", help="6,000 testers' own perl -V and environments, as scale_data's"
    )
    args = parser.parse_args(argv)
    print(yardstick())
    name = args.database
    if args.reuse:
        engine = create_engine(f"mysql://root@127.0.0.1:3306/{name}")
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(test_report)).scalar()
        print(f"reusing {name}: {stored} reports")
    else:
        url = fresh_database(name)
        upgrade(url)
        engine = create_engine(url)
        started = time.perf_counter()
        load(engine, args.reports, args.prereqs, args.unshared, args.real_shaped)
        if args.real_shaped:
            shape = "real-shaped: 6,000 testers' own perl -V and environments, 3 snapshots of installs each"
        elif args.unshared:
            shape = "every report its own list"
        else:
            shape = "lists shared as testers' installs are"
        loaded = time.perf_counter() - started
        print(f"loaded {args.reports} reports x {args.prereqs + 1} prerequisites ({shape}) in {loaded:.1f} s")
    timings, cpu = [], []
    stages: dict[str, list[float]] = {}
    statements: dict[str, list[float]] = {}
    _time_statements(engine, statements)
    for attempt in range(args.repeat):
        engine.dispose()  # every attempt from a fresh pool: nothing cached in the process
        started, cpu_started = time.perf_counter(), time.process_time()
        result = analyse_release(engine, stages, args.from_facts)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
        if attempt == 0:
            top = result["factors"][0]
            print(
                f"top factor: {top['factor']} V={top['cramers_v']} q={top['q_value']:.3g}; {len(result['factors'])} factors"
            )
    for statement, figures in statements.items():
        print(f"  query {statement!r} ms: " + ", ".join(f"{t:.0f}" for t in figures))
    print("analysis ms: " + ", ".join(f"{t:.0f}" for t in timings) + f" (median {statistics.median(timings):.0f})")
    # The process's own CPU (pymysql's decoding, the counting, scipy), not the server's: on
    # a loaded machine the wall time above also holds the waits for a core.
    print("  client CPU ms: " + ", ".join(f"{t:.0f}" for t in cpu) + f" (median {statistics.median(cpu):.0f})")
    for stage in STAGES:
        figures = stages[stage]
        print(
            f"  {stage:20} ms: "
            + ", ".join(f"{t:.0f}" for t in figures)
            + f" (median {statistics.median(figures):.0f})"
        )
    if not args.from_facts:
        # The answer from release_factor_count must be the one counted from the facts.
        same = analyse_release(engine) == analyse_release(engine, from_facts=True)
        print(f"same answer as counted from the facts: {'yes' if same else 'NO'}")
    engine.dispose()
    if not args.keep and not args.reuse:
        drop_database(name)


if __name__ == "__main__":
    main()
