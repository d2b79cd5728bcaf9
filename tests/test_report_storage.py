"""Reports on disk: large repeated blocks kept once, the rest compressed, every reader
unaware of it (storage/report_codec.py behind storage/reports.py)."""

from __future__ import annotations

import copy
import json

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.legacy_synth import synth_reports
from schemas.legacy import convert_row
from storage import report_codec
from storage.reports import audit_blocks, encode_document, insert_reports, latest_reports, load_report, store_report
from storage.tables import report_block, test_report
from tests.legacy_fixtures import metabase_rows

DOCS = [convert_row(r["guid"], r["updated"], r["report"], {}).row for r in metabase_rows()]


def test_every_fixture_document_packs_and_unpacks_to_itself():
    for row in DOCS:
        original = copy.deepcopy(row["report"])
        packed, blocks = report_codec.pack(row["report"])
        assert row["report"] == original  # the caller's document is left alone
        assert report_codec.unpack(packed, blocks) == original
        assert len(packed) + sum(len(b) for b in blocks.values()) < len(encode_document(original).encode()) / 2


def test_the_same_perl_v_section_is_one_block_in_every_report_that_carries_it():
    by_guid = {row["guid"]: row["report"] for row in DOCS}
    # the same tester and perl 5.20.3, two different dists
    first, second = by_guid["166d274a-ff14-11e6-9865-4c569e5b62e3"], by_guid["1390cefa-ff14-11e6-9865-4c569e5b62e3"]
    _, blocks_one = report_codec.pack(first)
    _, blocks_two = report_codec.pack(second)
    shared = set(blocks_one) & set(blocks_two)
    assert any("Summary of my perl5" in report_codec.block_text(blocks_one[d]) for d in shared)


def test_chunk_boundaries_do_not_depend_on_what_comes_before():
    text = DOCS[0]["report"]["result"]["output"]["uncategorized"]
    tail = report_codec.chunks(text)[-3:]
    shifted = report_codec.chunks("an extra line of tester comments\n" * 7 + text)
    assert shifted[-3:] == tail


def test_a_large_chunk_met_once_stays_inline_and_becomes_a_block_when_met_again():
    by_guid = {row["guid"]: row["report"] for row in DOCS}
    first, second = by_guid["166d274a-ff14-11e6-9865-4c569e5b62e3"], by_guid["1390cefa-ff14-11e6-9865-4c569e5b62e3"]
    sightings = report_codec.RecentDigests(1000)
    packed_one, blocks_one = report_codec.pack(first, None, sightings)
    packed_two, blocks_two = report_codec.pack(second, None, sightings)
    assert blocks_one == {}  # nothing met before: all of it compressed with the rest
    assert any("Summary of my perl5" in report_codec.block_text(body) for body in blocks_two.values())
    assert report_codec.unpack(packed_one, {}) == first
    assert report_codec.unpack(packed_two, blocks_two) == second


def test_a_block_known_to_be_stored_is_referred_to_without_being_compressed_again():
    by_guid = {row["guid"]: row["report"] for row in DOCS}
    first, second = by_guid["166d274a-ff14-11e6-9865-4c569e5b62e3"], by_guid["1390cefa-ff14-11e6-9865-4c569e5b62e3"]
    _, blocks_one = report_codec.pack(first)
    packed, blocks_two = report_codec.pack(second, stored=set(blocks_one))
    shared = set(report_codec.block_digests(packed)) & set(blocks_one)
    assert shared and not shared & set(blocks_two)
    assert report_codec.unpack(packed, {**blocks_one, **blocks_two}) == second


def test_a_document_with_lone_surrogates_packs_and_unpacks_to_itself():
    doc = copy.deepcopy(DOCS[0]["report"])
    doc["reporter"]["name"] = "broken \ud800 client"
    doc["result"]["output"]["uncategorized"] += "\udcff tail"
    packed, blocks = report_codec.pack(doc)
    assert report_codec.unpack(packed, blocks) == doc


def test_sightings_stay_bounded_and_forget_the_oldest_first():
    sightings = report_codec.RecentDigests(4)
    for digest in (b"a", b"b", b"c", b"d", b"e"):
        assert not sightings.seen_before(digest)
    assert len(sightings.recent) + len(sightings.older) <= 4
    assert sightings.seen_before(b"e") and sightings.seen_before(b"d")
    assert not sightings.seen_before(b"a")


def test_format_one_documents_and_blocks_still_read_beside_format_two():
    doc = DOCS[0]["report"]
    old, old_blocks = report_codec.pack(doc, version=report_codec.FORMAT_V1)
    new, new_blocks = report_codec.pack(doc, cache=old_blocks)  # format 2 reusing zlib blocks
    assert old[0] == report_codec.FORMAT_V1 and new[0] == report_codec.FORMAT_V2
    assert report_codec.unpack(old, old_blocks) == doc
    assert report_codec.unpack(new, new_blocks) == doc
    fresh, fresh_blocks = report_codec.pack(doc)
    assert all(body.startswith(report_codec.ZSTD_MAGIC) for body in fresh_blocks.values())
    assert report_codec.unpack(old, fresh_blocks) == doc  # a zstd block serves a format-1 document


def test_format_one_rows_written_before_the_change_still_read(backend):
    engine = backend.engine()
    row = DOCS[1]
    report_z, blocks = report_codec.pack(row["report"], version=report_codec.FORMAT_V1)
    with engine.begin() as conn:
        conn.execute(report_block.insert(), [{"digest": d, "body": b} for d, b in blocks.items()])
        conn.execute(test_report.insert(), {**row, "report": "", "report_z": report_z})
    with engine.connect() as conn:
        assert load_report(conn, row["guid"])["report"] == row["report"]
    engine.dispose()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
long_text = st.lists(
    st.sampled_from(
        ["ok 1\n", "Summary of my perl5\n", "  @INC:\n", "x" * 700 + "\n", "ünïcödé 🐪\n", "\n", "\x00\x1b\n"]
    ),
    min_size=0,
    max_size=80,
).map("".join)


@settings(max_examples=60, deadline=None)
@given(extra=json_values, text=long_text, other=long_text)
def test_any_document_round_trips(extra, text, other):
    doc = {"id": "x", "extra": extra, "result": {"output": {"uncategorized": text, "test": other}}, "list": [text]}
    packed, blocks = report_codec.pack(doc)
    assert report_codec.unpack(packed, blocks) == doc
    assert json.loads(json.dumps(report_codec.unpack(packed, blocks))) == doc


def test_stored_reports_read_back_exactly_and_share_their_blocks(backend):
    engine = backend.engine()
    for row in DOCS:
        store_report(engine, row)
    with engine.connect() as conn:
        for row in DOCS:
            stored = load_report(conn, row["guid"])
            assert stored["report"] == row["report"]
            assert stored["dist"] == row["dist"]
        blocks = conn.execute(sa.select(sa.func.count()).select_from(report_block)).scalar()
        refs = sum(
            len(report_codec.block_digests(bytes(z))) for z in conn.execute(sa.select(test_report.c.report_z)).scalars()
        )
        assert blocks < refs  # some blocks are shared
        assert {r["guid"] for r in latest_reports(conn, "Perl 5", 100)} == {r["guid"] for r in DOCS}
    engine.dispose()


def test_rows_written_as_plain_json_before_the_change_still_read(backend):
    engine = backend.engine()
    row = DOCS[0]
    with engine.begin() as conn:
        conn.execute(test_report.insert(), {**row, "report": encode_document(row["report"])})
    with engine.connect() as conn:
        assert load_report(conn, row["guid"])["report"] == row["report"]
    engine.dispose()


def test_batch_insert_packs_too_and_leaves_known_rows_alone(backend):
    engine = backend.engine()
    rows = [convert_row(r["guid"], r["updated"], r["report"], {}).row for r in synth_reports(60, seed=5, testers=4)]
    with engine.begin() as conn:
        insert_reports(conn, rows[:30])
    changed = {**rows[0], "reporter": "changed"}
    with engine.begin() as conn:
        insert_reports(conn, [changed, *rows[30:]])
    with engine.connect() as conn:
        for row in rows:
            assert load_report(conn, row["guid"])["report"] == row["report"]
        assert load_report(conn, rows[0]["guid"])["reporter"] == rows[0]["reporter"]
        blocks = conn.execute(sa.select(sa.func.count()).select_from(report_block)).scalar()
        refs = {
            d for z in conn.execute(sa.select(test_report.c.report_z)).scalars() for d in report_codec.block_digests(z)
        }
    assert blocks == len(refs)  # every block referred to, none twice
    engine.dispose()


def test_blocks_forgotten_by_a_small_known_set_are_looked_up_again_never_lost(backend, monkeypatch):
    from storage import reports

    monkeypatch.setattr(reports, "KNOWN_BLOCKS_LIMIT", 4)
    engine = backend.engine()
    rows = [convert_row(r["guid"], r["updated"], r["report"], {}).row for r in synth_reports(40, seed=11, testers=3)]
    for row in rows:
        store_report(engine, row)
    with engine.connect() as conn:
        for row in rows:
            assert load_report(conn, row["guid"])["report"] == row["report"]
        audit = audit_blocks(conn)
    assert audit.referenced > 4 and audit.missing == [] and audit.unreferenced == 0
    engine.dispose()


def test_downgrading_the_block_storage_puts_the_documents_back_as_plain_json(tmp_path):
    from alembic import command

    from storage.engine import create_engine
    from storage.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'downgrade.sqlite'}"
    upgrade(url)
    engine = create_engine(url)
    for row in DOCS[:5]:
        store_report(engine, row)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0106_legacy_migration")
    engine.dispose()
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT guid, report FROM test_report")).all())
        assert "report_block" not in sa.inspect(conn).get_table_names()
    assert {guid: json.loads(text) for guid, text in stored.items()} == {r["guid"]: r["report"] for r in DOCS[:5]}
    engine.dispose()
    upgrade(url)
