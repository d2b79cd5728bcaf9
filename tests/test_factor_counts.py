"""The failure analysis's counts (``release_factor_count``) are kept by the enrichment, once
per report, and give the answer a count from the facts gives."""

from __future__ import annotations

import random
import threading

import sqlalchemy as sa

from queueing.contract import enqueue_report
from schemas.failure_analysis import analyse, with_major_minor
from schemas.module_version import is_below
from schemas.reportparse.model import ParsedReport, Prerequisite
from scripts import backlog
from storage.factor_counts import forget_counts
from storage.failure_analysis import recount, release_analysis, release_counts
from storage.processing import processing_engine
from storage.report_facts import enrich_guids, store_facts
from storage.tables import release_factor_count, report_facts, test_report
from tests.processing_helpers import report_row, run_jobs, store_many
from tests.test_enrichment import stored_rows
from tests.test_failure_analysis_storage import DIST, VERSION, store_release

FOO_VERSIONS = ["1.03", "1.04", "1.05", "1.10", "1.9", ""]


def varied_facts(rng: random.Random) -> ParsedReport:
    """Facts with everything the counting rules look at: a module listed in several phases
    (and twice in one), empty values, environment values kept as places in the text."""
    foo = rng.choice(FOO_VERSIONS)
    prerequisites = [
        Prerequisite("runtime", "Foo::Bar", "1.0", foo),
        Prerequisite("test", "Foo::Bar", "0", rng.choice(FOO_VERSIONS)),
        Prerequisite("runtime", "Baz", "0", rng.choice(["0.01", "2.5", "n/a"])),
    ]
    if rng.random() < 0.3:
        prerequisites.append(Prerequisite("runtime", "Baz", "1", rng.choice(["0.01", "3.0"])))
    environment, spans = {}, {}
    if rng.random() < 0.8:
        environment = {name: "x" for name in ("LANG", "LC_ALL", "HOME", "AUTOMATED_TESTING") if rng.random() < 0.5}
        if rng.random() < 0.5:
            environment["PERL5LIB"] = "/home/t/lib"
            spans["PERL5LIB"] = (10, 21)
    return ParsedReport(
        user_agent=rng.choice(["CPAN::Reporter 1.2020", "App::cpanminus::reporter 0.18", None]),
        prerequisites=prerequisites if rng.random() < 0.9 else [],
        config={"useithreads": rng.choice(["define", "undef", ""]), "cc": rng.choice(["cc", "gcc"]), "osname": "x"},
        environment=environment,
        environment_spans=spans,
    )


def varied_release(engine, count: int, seed: int = 3, unparsed: float = 0.0) -> dict[int, ParsedReport]:
    """Store a release of ``count`` varied reports; returns the facts stored, by report id."""
    rng = random.Random(seed)
    rows, parsed = [], []
    for _ in range(count):
        platform = rng.choice([("x86_64-linux", "linux", "6.1"), ("amd64-freebsd", "freebsd", "14"), ("", "", "")])
        grade = rng.choice(["pass", "pass", "fail", "na", "unknown"])
        rows.append(report_row(dist=DIST, version=VERSION, grade=grade, perl=rng.choice(["5.16.3", "5.36.0", ""]),
                               platform=platform))  # fmt: skip
        rows[-1]["creator"] = rng.choice(["metabase:user:aaaa", "metabase:user:bbbb", None])
        parsed.append(None if rng.random() < unparsed else varied_facts(rng))
    store_many(engine, rows)
    with engine.connect() as conn:
        ids = {guid: i for guid, i in conn.execute(sa.select(test_report.c.guid, test_report.c.id))}
    stored = {ids[row["guid"]]: facts for row, facts in zip(rows, parsed, strict=True) if facts}
    store_facts(engine, stored)
    return stored


def plain(counted) -> tuple:
    values = {factor: {value: list(c) for value, c in found.items()} for factor, found in counted.counts.items()}
    return counted.fail, counted.passed, values, set(counted.ordered)


def from_table_and_from_facts(engine) -> tuple[tuple, tuple]:
    with engine.connect() as conn:
        return plain(release_counts(conn, DIST, VERSION)), plain(recount(conn, DIST, VERSION))


def count_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(sa.select(release_factor_count)))


def test_the_enrichment_counts_what_a_count_from_the_facts_finds(backend):
    engine = backend.engine()
    varied_release(engine, 120)
    kept, counted = from_table_and_from_facts(engine)
    assert kept == counted
    assert kept[2]["prereq Foo::Bar"] and kept[2]["env PERL5LIB"] and kept[2]["config useithreads"]
    engine.dispose()


def test_the_analysis_reads_the_counts_when_every_report_is_counted(backend):
    engine = backend.engine()
    varied_release(engine, 40)
    with engine.begin() as conn:  # counts the analysis must have read: the facts say nothing
        conn.execute(report_facts.update().values(prereq_set=None, config_set=None, env_set=None, env_spans=None))
    kept, counted = from_table_and_from_facts(engine)
    assert kept[2]["prereq Foo::Bar"] and "prereq Foo::Bar" not in counted[2]
    engine.dispose()


def test_reports_without_facts_are_counted_from_their_columns_beside_the_counts(backend):
    engine = backend.engine()
    varied_release(engine, 80, unparsed=0.3)
    kept, counted = from_table_and_from_facts(engine)
    assert kept == counted
    engine.dispose()


def test_writing_the_same_facts_again_changes_no_count(backend):
    engine = backend.engine()
    stored = varied_release(engine, 30)
    before = count_rows(engine)
    store_facts(engine, stored)
    store_facts(engine, dict(list(stored.items())[:5]))
    assert count_rows(engine) == before
    engine.dispose()


def test_new_facts_move_a_report_from_its_old_values_to_its_new_ones(backend):
    engine = backend.engine()
    stored = varied_release(engine, 30)
    rng = random.Random(99)
    store_facts(engine, {report_id: varied_facts(rng) for report_id in list(stored)[:12]})
    kept, counted = from_table_and_from_facts(engine)
    assert kept == counted
    engine.dispose()


def test_facts_that_go_away_take_their_counts_with_them(backend):
    engine = backend.engine()
    stored = varied_release(engine, 20)
    store_facts(engine, {report_id: ParsedReport() for report_id in stored})
    kept, counted = from_table_and_from_facts(engine)
    assert kept == counted
    assert set(kept[2]) == {"perl", "osname", "archname", "tester"}
    rows = count_rows(engine)
    assert {row[1] for row in rows} <= {0, 1, 2, 3, 4} and all(any(row[4:]) for row in rows)  # none left at zero
    engine.dispose()


def test_reprocessing_and_reenriching_a_report_count_it_once(backend, db):
    guids = stored_rows(db, 3)
    assert backlog.main(["--guid", guids[0], "--guid", guids[1], "--process", "--no-progress"]) == 0
    assert backlog.main(["--enrich", "--process", "--no-progress"]) == 0
    before = count_rows(db)
    assert backlog.main(["--guid", guids[0], "--process", "--no-progress"]) == 0  # reprocessed: enriched again
    assert backlog.main(["--enrich", "--guid", guids[0], "--guid", guids[2], "--process", "--no-progress"]) == 0
    enrich_guids(db, guids)
    assert count_rows(db) == before
    (total,) = [row for row in before if row[1] == 0]
    assert sum(total[4:]) == 3
    with db.connect() as conn:
        dist, version = conn.execute(sa.select(test_report.c.dist, test_report.c.version)).first()
        assert plain(release_counts(conn, dist, version)) == plain(recount(conn, dist, version))


def test_the_processing_job_counts_its_reports_by_the_columns_it_read(backend, db):
    guids = stored_rows(db, 4)
    redis = backend.redis()
    for guid in guids:
        enqueue_report(redis, guid)
    run_jobs(redis)
    (total,) = [row for row in count_rows(db) if row[1] == 0]
    assert sum(total[4:]) == 4
    with db.connect() as conn:
        dist, version = conn.execute(sa.select(test_report.c.dist, test_report.c.version)).first()
        assert plain(release_counts(conn, dist, version)) == plain(recount(conn, dist, version))
        assert conn.execute(sa.select(sa.func.count()).where(report_facts.c.counted == sa.true())).scalar() == 4


def test_two_writers_of_one_new_report_count_it_once(backend):
    """Each writer holds back its upsert until the other has read the report's facts row (or
    half a second): without the lock on a placeholder row, both would read "no facts, not
    counted" (READ COMMITTED, the workers' isolation, locks no missing row) and both would
    count the report."""
    engine = processing_engine(backend.database_url)
    store_many(engine, [report_row(dist=DIST, version=VERSION, grade="fail")])
    with engine.connect() as conn:
        report_id = conn.execute(sa.select(test_report.c.id)).scalar_one()
    facts = varied_facts(random.Random(1))
    store_facts(engine, {report_id: facts})  # interned: the writers below only write the row
    with engine.begin() as conn:
        conn.execute(release_factor_count.delete())
        conn.execute(report_facts.delete())
    have_read = {}

    def after(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("SELECT report_facts.report_id, report_facts.counted"):
            have_read[threading.get_ident()].set()

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO report_facts (report_id, parser, user_agent"):
            others = [read for ident, read in have_read.items() if ident != threading.get_ident()]
            for read in others:
                read.wait(0.5)

    barrier, errors = threading.Barrier(2), []

    def write():
        have_read[threading.get_ident()] = threading.Event()
        try:
            barrier.wait()
            store_facts(engine, {report_id: facts})
        except Exception as exc:  # reported below
            errors.append(exc)

    sa.event.listen(engine, "after_cursor_execute", after)
    sa.event.listen(engine, "before_cursor_execute", before)
    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    (total,) = [row for row in count_rows(engine) if row[1] == 0]
    assert total[4:] == (1, 0, 0)
    engine.dispose()


def test_reports_enriched_before_the_counts_are_counted_from_their_facts_until_the_backfill(backend, db):
    stored_rows(db, 3)
    assert backlog.main(["--enrich", "--process", "--no-progress"]) == 0
    before = count_rows(db)
    forget_counts(db)  # as migration 0123 leaves the reports already enriched
    assert count_rows(db) == []
    with db.connect() as conn:
        dist, version = conn.execute(sa.select(test_report.c.dist, test_report.c.version)).first()
        from_facts = plain(recount(conn, dist, version))
        assert plain(release_counts(conn, dist, version)) == from_facts
    assert backlog.main(["--enrich", "--process", "--no-progress"]) == 0
    assert count_rows(db) == before
    with db.connect() as conn:
        assert plain(release_counts(conn, dist, version)) == from_facts


def test_the_backfill_can_count_every_report_again(backend, db):
    stored_rows(db, 2)
    assert backlog.main(["--enrich", "--process", "--no-progress"]) == 0
    before = count_rows(db)
    with db.begin() as conn:
        conn.execute(release_factor_count.update().values(fails=release_factor_count.c.fails + 7))
    assert backlog.main(["--enrich", "--recount", "--process", "--no-progress"]) == 0
    assert count_rows(db) == before


def test_counts_that_disagree_with_the_facts_are_not_used(backend):
    engine = backend.engine()
    stored = varied_release(engine, 30)
    with engine.begin() as conn:  # by hand, behind the counts' back
        conn.execute(report_facts.delete().where(report_facts.c.report_id.in_(list(stored)[:4])))
    kept, counted = from_table_and_from_facts(engine)
    assert kept == counted
    engine.dispose()


def test_a_negative_count_is_not_used(backend):
    engine = backend.engine()
    varied_release(engine, 20)
    c = release_factor_count.c
    with engine.begin() as conn:
        conn.execute(release_factor_count.update().where(c.kind == 8).values(fails=-1, passes=c.passes + 1))
    kept, counted = from_table_and_from_facts(engine)
    assert kept == counted
    engine.dispose()


def test_a_release_is_counted_as_the_database_compares_its_name(backend):
    """On MariaDB "foo-widget" is "Foo-Widget" (the columns' collation), on SQLite it is not:
    the counts follow what a count from the facts finds on each backend."""
    engine = backend.engine()
    rows = [report_row(dist=DIST, version=VERSION, grade="fail"), report_row(dist=DIST.lower(), version=VERSION)]
    store_many(engine, rows)
    with engine.connect() as conn:
        ids = {guid: i for guid, i in conn.execute(sa.select(test_report.c.guid, test_report.c.id))}
    store_facts(engine, {ids[row["guid"]]: varied_facts(random.Random(5)) for row in rows})
    with engine.connect() as conn:
        for dist in (DIST, DIST.lower()):
            assert plain(release_counts(conn, dist, VERSION)) == plain(recount(conn, dist, VERSION))
    engine.dispose()


def test_a_planted_cause_gets_the_same_analysis_from_the_counts_as_from_the_facts(backend):
    engine = backend.engine()
    rng = random.Random(7)
    reports = []
    for _ in range(300):
        foo = rng.choice(["1.03", "1.04", "1.05", "1.10", "1.9"])
        perl = rng.choice(["5.16.3", "5.36.0"])
        grade = "fail" if is_below(foo, "1.05") else rng.choice(["pass"] * 9 + ["na"])
        facts = ParsedReport(
            user_agent="CPAN::Reporter 1.2020",
            prerequisites=[Prerequisite("runtime", "Foo::Bar", "1.0", foo)],
            config={"useithreads": rng.choice(["define", "undef"])},
            environment={"LANG": "C"} if rng.random() < 0.5 else {},
        )
        reports.append(({"grade": grade, "perl": perl}, facts))
    store_release(engine, reports)
    with engine.connect() as conn:
        answer = release_analysis(conn, DIST, VERSION)
        counted = recount(conn, DIST, VERSION)
    counts, buckets = with_major_minor(counted.counts, [f for f in counted.ordered if f.startswith("prereq ")])
    expected = analyse(counts, counted.fail, counted.passed, counted.ordered | buckets).as_dict()
    assert answer == {"dist": DIST, "version": VERSION, **expected}
    assert answer["factors"][0]["factor"].startswith("prereq Foo::Bar")
    engine.dispose()
