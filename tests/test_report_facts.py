"""Storing the facts parsed from report texts (storage/report_facts.py), on both backends."""

from __future__ import annotations

import sqlalchemy as sa

from schemas.reportparse import PARSER_VERSION, parse_report_text
from schemas.reportparse.shape import report_text
from storage import report_facts as facts
from storage.reports import read_document, store_report
from storage.tables import fact_set, fact_string, prereq_set, prereq_set_item, report_facts, test_report
from tests.processing_helpers import report_row, table_count
from tests.report_texts import real_report

CPANPLUS = "collector/report-cpanplus-0.9908.txt"
CPAN_REPORTER = "collector/report-cpan-reporter-1.2020.txt"
FAILED = "backend-generate/c9bb8cac-109c-11e3-9d5d-466d772db441"


def metabase_row(text: str, **kwargs) -> dict:
    """A stored row whose document is what the Metabase translation makes: text only."""
    row = report_row(**kwargs)
    doc = row["report"]
    doc["result"] = {"grade": doc["result"]["grade"], "output": {"uncategorized": text}}
    doc["distribution"].pop("prerequisites", None)
    for part in (doc["environment"], doc["environment"]["language"], doc["environment"]["system"]):
        for key in ("user_agent", "toolchain", "variables", "build"):
            part.pop(key, None)
    return row


def stored(engine, name: str, **kwargs) -> tuple[int, str]:
    row = metabase_row(real_report(name), **kwargs)
    store_report(engine, row)
    with engine.connect() as conn:
        report_id = conn.execute(sa.select(test_report.c.id).where(test_report.c.guid == row["guid"])).scalar_one()
    return report_id, row["guid"]


def prereq_rows(engine) -> int:
    """Rows of the report_prereq view: one per (report, prerequisite)."""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT COUNT(*) FROM report_prereq")).scalar_one()


def loaded(engine, report_id: int):
    with engine.connect() as conn:
        row = conn.execute(sa.select(test_report).where(test_report.c.id == report_id)).mappings().one()
        return facts.load_facts(conn, report_id, report_text(read_document(conn, row)))


def test_stored_facts_read_back_as_parsed(backend):
    engine = backend.engine()
    for name in (CPANPLUS, CPAN_REPORTER, FAILED):
        report_id, guid = stored(engine, name)
        assert facts.enrich_guids(engine, [guid]) == 1
        expected, found = parse_report_text(real_report(name)), loaded(engine, report_id)
        assert sorted(found.prerequisites, key=repr) == sorted(expected.prerequisites, key=repr)
        assert found.environment == expected.environment
        assert found.perl_variables == expected.perl_variables
        assert found.toolchain == expected.toolchain
        assert found.config == expected.config
        assert found.failed_files == expected.failed_files
        assert (found.user_agent, found.build_offset, found.tests, found.failures, found.skipped) == (
            expected.user_agent,
            expected.build_offset,
            expected.tests,
            expected.failures,
            expected.skipped,
        )
        assert (found.todo_pass, found.todo_fail, found.duration) == (
            expected.todo_pass,
            expected.todo_fail,
            expected.duration,
        )
    engine.dispose()


def test_a_report_without_facts_reads_as_none(backend):
    engine = backend.engine()
    report_id, _ = stored(engine, CPANPLUS)
    assert loaded(engine, report_id) is None
    engine.dispose()


def test_enriching_again_changes_nothing(backend):
    engine = backend.engine()
    report_id, guid = stored(engine, CPANPLUS)
    facts.enrich_guids(engine, [guid])
    tables = (fact_string, fact_set, prereq_set, prereq_set_item, report_facts)
    before = {t.name: table_count(engine, t) for t in tables}
    first = loaded(engine, report_id)
    facts.enrich_guids(engine, [guid])
    engine.dispose()  # a new process: nothing remembered
    engine = backend.engine()
    facts.enrich_ids(engine, [report_id])
    assert {t.name: table_count(engine, t) for t in tables} == before
    assert loaded(engine, report_id) == first
    engine.dispose()


def test_enriching_again_replaces_what_a_report_had(backend):
    engine = backend.engine()
    report_id, guid = stored(engine, CPANPLUS)
    facts.enrich_guids(engine, [guid])
    with engine.begin() as conn:
        conn.execute(report_facts.update().values(tests=1, prereq_set=None, env_set=None))
    facts.enrich_guids(engine, [guid])
    found = loaded(engine, report_id)
    assert found.tests == 3706
    assert found.environment == parse_report_text(real_report(CPANPLUS)).environment
    assert sorted(found.prerequisites, key=repr) == sorted(
        parse_report_text(real_report(CPANPLUS)).prerequisites, key=repr
    )
    engine.dispose()


def test_a_testers_repeated_environment_is_stored_once(backend):
    engine = backend.engine()
    first, guid1 = stored(engine, CPAN_REPORTER)
    second, guid2 = stored(engine, CPAN_REPORTER)
    facts.enrich_guids(engine, [guid1])
    interned = (fact_string, fact_set, prereq_set, prereq_set_item)
    before = [table_count(engine, t) for t in interned]
    facts.enrich_guids(engine, [guid2])
    assert [table_count(engine, t) for t in interned] == before
    with engine.connect() as conn:
        rows = conn.execute(sa.select(report_facts).order_by(report_facts.c.report_id)).mappings().all()
    assert [r["report_id"] for r in rows] == [first, second]
    for column in (*facts.SET_COLUMNS[:4], "prereq_set"):
        assert rows[0][column] == rows[1][column] is not None
    assert table_count(engine, prereq_set_item) == 14
    assert prereq_rows(engine) == 2 * 14
    engine.dispose()


def test_stale_reports_have_no_facts_or_facts_of_an_older_parser(backend):
    engine = backend.engine()
    ids = [stored(engine, CPAN_REPORTER)[0] for _ in range(3)]
    low, high = min(ids), max(ids)
    with engine.connect() as conn:
        assert facts.stale_count(conn, low, high) == 3
    facts.enrich_ids(engine, ids[:2])
    with engine.connect() as conn:
        assert facts.stale_ids(conn, low, high) == ids[2:]
    with engine.begin() as conn:
        conn.execute(report_facts.update().where(report_facts.c.report_id == ids[0]).values(parser=PARSER_VERSION - 1))
    with engine.connect() as conn:
        assert facts.stale_ids(conn, low, high) == [ids[0], ids[2]]
    assert facts.enrich_stale(engine, low, high, batch=1) == 2
    with engine.connect() as conn:
        assert facts.stale_count(conn, low, high) == 0
    engine.dispose()


def test_a_report_with_nothing_to_parse_still_gets_a_facts_row(backend):
    engine = backend.engine()
    row = metabase_row("no reporter wrote this")
    store_report(engine, row)
    facts.enrich_guids(engine, [row["guid"]])
    with engine.connect() as conn:
        stored_row = conn.execute(sa.select(report_facts)).mappings().one()
    assert stored_row["parser"] == PARSER_VERSION
    assert all(stored_row[c] is None for c in (*facts.SET_COLUMNS, *facts.COUNT_COLUMNS, "user_agent", "prereq_set"))
    engine.dispose()


def test_long_and_non_ascii_values_are_interned(backend):
    engine = backend.engine()
    value = "ü🐪" + "x" * 70_000
    ids = facts.intern_strings(engine, [value, "", "Foo::Bar"])
    with engine.connect() as conn:
        assert facts.strings_by_id(conn, set(ids.values())) == {
            ids[value]: value,
            ids[""]: "",
            ids["Foo::Bar"]: "Foo::Bar",
        }
    engine.dispose()


def test_set_pairs_pack_into_eight_bytes_each():
    pairs = [(1, 2), (3, 4_000_000_000)]
    assert facts.unpack_pairs(facts.pack_pairs(pairs)) == pairs
    assert len(facts.pack_pairs(pairs)) == 16


def test_values_that_change_from_report_to_report_are_read_from_the_text(backend):
    engine = backend.engine()
    first, guid1 = stored(engine, CPAN_REPORTER)
    text = real_report(CPAN_REPORTER).replace("PERL5_CPAN_IS_RUNNING = 3987377", "PERL5_CPAN_IS_RUNNING = 42")
    row = metabase_row(text)
    store_report(engine, row)
    facts.enrich_guids(engine, [guid1, row["guid"]])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(report_facts).order_by(report_facts.c.report_id)).mappings().all()
    assert rows[0]["env_set"] == rows[1]["env_set"]  # the PIDs differ, the environment is kept once
    assert rows[0]["env_spans"] != rows[1]["env_spans"]
    found = loaded(engine, rows[1]["report_id"])
    assert found.environment["PERL5_CPAN_IS_RUNNING"] == "42"
    assert found.environment["PATH"].startswith("/home/sand/bin:")
    assert found.environment["LANG"] == "en_US.UTF-8"
    assert facts.in_text("PATH", "/usr/bin") and not facts.in_text("LANG", "C.UTF-8")
    engine.dispose()
