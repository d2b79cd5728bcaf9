"""A release's FAIL/PASS counts per factor come from the indexed columns and the parsed facts."""

from __future__ import annotations

import random

import sqlalchemy as sa

from schemas.failure_analysis import analyse, with_major_minor
from schemas.module_version import is_below
from schemas.reportparse.model import ParsedReport, Prerequisite
from storage.failure_analysis import release_counts
from storage.report_facts import store_facts
from storage.tables import test_report
from tests.processing_helpers import report_row, store_many

DIST, VERSION = "Foo-Widget", "0.42"


def store_release(engine, reports: list[tuple[dict, ParsedReport | None]]) -> None:
    """Store each (report_row kwargs, facts) pair as a report of ``DIST`` ``VERSION``."""
    rows = [report_row(dist=DIST, version=VERSION, **kwargs) for kwargs, _ in reports]
    store_many(engine, rows)
    with engine.connect() as conn:
        ids = {guid: report_id for guid, report_id in conn.execute(sa.select(test_report.c.guid, test_report.c.id))}
    store_facts(engine, {ids[row["guid"]]: facts for row, (_, facts) in zip(rows, reports, strict=True) if facts})


def facts(foo: str, threads: str = "define", env: dict | None = None) -> ParsedReport:
    return ParsedReport(
        user_agent="CPAN::Reporter 1.2020",
        prerequisites=[
            Prerequisite("runtime", "Foo::Bar", "1.0", foo),
            Prerequisite("test", "Foo::Bar", "1.0", foo),  # listed twice: counted once
        ],
        config={"useithreads": threads, "osname": "linux"},
        environment=env or {},
    )


def test_counts_per_factor_come_from_columns_and_facts(backend):
    engine = backend.engine()
    store_release(
        engine,
        [
            ({"grade": "fail", "perl": "5.16.3"}, facts("1.04", env={"LANG": "C", "PERL5LIB": "/x"})),
            ({"grade": "fail", "perl": "5.16.3"}, facts("1.04", env={"LANG": "C"})),
            ({"grade": "pass", "perl": "5.36.0"}, facts("1.10", threads="undef", env={"HOME": "/home/t"})),
            ({"grade": "na", "perl": "5.36.0"}, facts("1.10")),  # neither PASS nor FAIL
            ({"grade": "pass", "perl": "5.36.0"}, None),  # not parsed yet
            ({"grade": "pass", "perl": "5.36.0"}, facts("1.10", threads="undef")),  # no environment: unknown
        ],
    )
    with engine.connect() as conn:
        counted = release_counts(conn, DIST, VERSION)
    assert (counted.fail, counted.passed) == (2, 3)
    assert counted.counts["perl"] == {"5.16.3": [2, 0], "5.36.0": [0, 3]}
    assert counted.counts["prereq Foo::Bar"] == {"1.04": [2, 0], "1.10": [0, 2]}
    assert counted.counts["config useithreads"] == {"define": [2, 0], "undef": [0, 2]}
    assert counted.counts["env LANG"] == {"set": [2, 0], "unset": [0, 1]}
    assert counted.counts["env PERL5LIB"] == {"set": [1, 0], "unset": [1, 1]}
    assert counted.counts["reporter"] == {"CPAN::Reporter 1.2020": [2, 2]}
    assert "prereq Foo::Bar" in counted.ordered and "perl" in counted.ordered
    engine.dispose()


def test_a_planted_cause_stored_in_the_database_ranks_first(backend):
    engine = backend.engine()
    rng = random.Random(7)
    reports = []
    for _ in range(300):
        foo = rng.choice(["1.03", "1.04", "1.05", "1.10", "1.9"])
        perl = rng.choice(["5.16.3", "5.36.0"])
        grade = "fail" if is_below(foo, "1.05") else "pass"
        reports.append(({"grade": grade, "perl": perl}, facts(foo, threads=rng.choice(["define", "undef"]))))
    store_release(engine, reports)
    with engine.connect() as conn:
        counted = release_counts(conn, DIST, VERSION)
    counts, buckets = with_major_minor(counted.counts, [f for f in counted.ordered if f.startswith("prereq ")])
    analysis = analyse(counts, counted.fail, counted.passed, counted.ordered | buckets)
    assert analysis.factors[0].factor.startswith("prereq Foo::Bar") and analysis.factors[0].significant
    assert not next(f for f in analysis.factors if f.factor == "config useithreads").significant
    engine.dispose()


def test_values_are_counted_as_stored_on_every_backend(backend):
    """Counted in Python, not by the database's collation: MariaDB's GROUP BY would fold
    "Linux" into "linux" and SQLite's would not; now neither does."""
    engine = backend.engine()
    store_release(
        engine,
        [
            ({"grade": "fail", "platform": ("x86_64-linux", "Linux", "6.1")}, facts("1.04")),
            ({"grade": "pass", "platform": ("x86_64-linux", "linux", "6.1")}, facts("1.10")),
        ],
    )
    with engine.connect() as conn:
        counted = release_counts(conn, DIST, VERSION)
    assert counted.counts["osname"] == {"Linux": [1, 0], "linux": [0, 1]}
    engine.dispose()
