"""scripts/migrate_legacy.py against a real legacy MariaDB database (the fixture rows plus
synthetic ones), into both of our backends."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from scripts import migrate_legacy
from storage import legacy_migration as steps
from storage.reports import load_report
from storage.tables import cpanstats, legacy_migration_error, metabase_user, report_block, test_report
from tests import backends, legacy_fixtures
from tests.legacy_fixtures import cpanstats_rows, metabase_rows
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent
BAD_GUIDS = {
    "0badbad0-0000-11e3-0000-000000000001": zlib.compress(b"not json at all"),
    "0badbad0-0000-11e3-0000-000000000002": zlib.compress(
        json.dumps(
            {
                "CPAN::Testers::Fact::LegacyReport": {
                    "metadata": {"core": {"resource": "cpan:///distfile/A/B-1.0.tar.gz"}},
                    "content": {"grade": "great", "osname": "x", "perl_version": "5.1.1", "textreport": "t"},
                }
            }
        ).encode()
    ),
}
SYNTHETIC_ROWS = 600


def _legacy_database(synthetic: int = 0) -> str:
    if not backends.reachable(backends.MARIADB_HOST, backends.MARIADB_PORT):
        if backends.services_required():
            pytest.fail("MariaDB is not reachable and CPT_REQUIRE_SERVICES is set")
        pytest.skip("MariaDB not reachable on 127.0.0.1: no legacy database")
    name = legacy_fixtures.create_legacy_database(backends.MARIADB_HOST, backends.MARIADB_PORT, backends.MARIADB_USER)
    import pymysql

    conn = pymysql.connect(
        host=backends.MARIADB_HOST,
        port=backends.MARIADB_PORT,
        user=backends.MARIADB_USER,
        database=name,
        autocommit=True,
    )
    with conn.cursor() as cursor:
        for guid, blob in BAD_GUIDS.items():
            cursor.execute(
                "INSERT INTO metabase (guid, id, updated, report) VALUES (%s, 1, '1376821046', %s)", (guid, blob)
            )
        if synthetic:
            from bench.legacy_synth import load_legacy

            load_legacy(cursor, synthetic, seed=7, batch=200)
    conn.close()
    return name


def _url(name: str) -> str:
    return f"mysql://{backends.MARIADB_USER}@{backends.MARIADB_HOST}:{backends.MARIADB_PORT}/{name}"


@pytest.fixture(scope="module")
def legacy_url():
    name = _legacy_database(synthetic=SYNTHETIC_ROWS)
    yield _url(name)
    legacy_fixtures.drop_database(backends.MARIADB_HOST, backends.MARIADB_PORT, backends.MARIADB_USER, name)


@pytest.fixture
def own_legacy_url():
    """A legacy database of the fixture rows only, for a test that changes it."""
    name = _legacy_database()
    yield _url(name)
    legacy_fixtures.drop_database(backends.MARIADB_HOST, backends.MARIADB_PORT, backends.MARIADB_USER, name)


def run(legacy_url: str, backend, *args: str) -> int:
    return migrate_legacy.main(
        ["--legacy-url", legacy_url, "--database-url", backend.database_url, "--redis-url", backend.redis_url, *args]
    )


def snapshot(engine: sa.Engine) -> dict[str, str]:
    """Every stored report, as a hash of all its columns."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(test_report).order_by(test_report.c.guid)).mappings().all()
    return {row["guid"]: hashlib.sha256(repr(sorted(dict(row).items())).encode()).hexdigest() for row in rows}


def test_migration_copies_tables_users_and_every_report_then_verify_passes(backend, legacy_url, tmp_path, capsys):
    errors = tmp_path / "errors.jsonl"
    assert (
        run(legacy_url, backend, "migrate", "--workers", "2", "--batch", "100", "--quiet", "--errors", str(errors)) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    total = 17 + len(BAD_GUIDS) + SYNTHETIC_ROWS
    assert summary["legacy_rows"] == total
    assert summary["migrated_this_run"] == total - len(BAD_GUIDS)
    assert summary["rejected_total"] == len(BAD_GUIDS)
    reported = [json.loads(line) for line in errors.read_text().splitlines()]
    assert {r["guid"] for r in reported} == set(BAD_GUIDS)
    engine = backend.engine()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(test_report)).scalar() == total - len(BAD_GUIDS)
        assert conn.execute(sa.select(sa.func.count()).select_from(legacy_migration_error)).scalar() == 2
        assert conn.execute(sa.select(sa.func.count()).select_from(cpanstats)).scalar() >= len(cpanstats_rows())
        ids = dict(conn.execute(sa.select(cpanstats.c.guid, cpanstats.c.id)).all())
        assert ids["0cbce1be-07f0-11e3-9db1-878205732d18"] == 33578672  # legacy ids are public URLs: kept
        srezic = (
            conn.execute(sa.select(metabase_user).where(metabase_user.c.resource.like("%314402c4%"))).mappings().one()
        )
        assert (srezic["fullname"], srezic["secret_hash"]) == ("Slaven Rezić (SREZIC)", None)
        states = dict(conn.execute(sa.select(test_report.c.guid, test_report.c.state)).all())
        assert states["0cbce1be-07f0-11e3-9db1-878205732d18"] == "done"  # has a legacy cpanstats row
        assert states["4fe9f782-4594-11df-b067-2bba90befd91"] == "pending"  # has none
    capsys.readouterr()
    assert run(legacy_url, backend, "verify", "--sample", "200", "--seed", "1") == 0
    assert "verify: OK" in capsys.readouterr().out
    engine.dispose()


def test_every_real_fixture_row_reads_back_like_a_new_report(backend, legacy_url, capsys):
    assert run(legacy_url, backend, "migrate", "--workers", "1", "--quiet", "--skip-tables") == 0
    engine = backend.engine()
    with engine.connect() as conn:
        for row in metabase_rows():
            stored = load_report(conn, row["guid"])
            assert stored["report"]["id"] == row["guid"]
            assert stored["created"].strftime("%Y-%m-%dT%H:%M:%SZ") == stored["report"]["created"]
            assert stored["dist"] == stored["report"]["distribution"]["name"]
    engine.dispose()


def test_rerunning_a_finished_migration_changes_nothing(backend, legacy_url, capsys):
    assert run(legacy_url, backend, "migrate", "--workers", "1", "--quiet", "--skip-tables") == 0
    engine = backend.engine()
    before = snapshot(engine)
    with engine.begin() as conn:  # forget the checkpoints: every row is read and skipped
        conn.execute(sa.delete(steps.tables.legacy_migration))
    capsys.readouterr()
    assert run(legacy_url, backend, "migrate", "--workers", "2", "--quiet", "--skip-tables") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["migrated_this_run"] == 0
    assert summary["already_there"] == len(before)
    assert snapshot(engine) == before
    engine.dispose()


def test_a_report_that_arrived_through_the_api_is_not_touched(backend, legacy_url):
    guid = "0cbce1be-07f0-11e3-9db1-878205732d18"
    engine = backend.engine()
    row = next(r for r in metabase_rows() if r["guid"] == guid)
    from schemas.legacy import convert_row
    from storage.reports import store_report

    mine = convert_row(guid, row["updated"], row["report"], {}).row
    mine["reporter"] = "Sent again through the API"
    store_report(engine, mine)
    before = snapshot(engine)[guid]
    assert run(legacy_url, backend, "migrate", "--workers", "1", "--quiet", "--skip-tables") == 0
    assert snapshot(engine)[guid] == before
    engine.dispose()


@pytest.mark.system
def test_sigkill_mid_run_then_rerun_resumes_without_duplicates_or_changes(backend, legacy_url, tmp_path):
    command = [
        sys.executable, "-m", "scripts.migrate_legacy", "--legacy-url", legacy_url, "--database-url",
        backend.database_url, "migrate", "--workers", "2", "--batch", "1", "--quiet", "--skip-tables",
        "--errors", str(tmp_path / "errors.jsonl"),
    ]  # fmt: skip
    # One row per page: hundreds of commits, so the run lasts long enough for the kill to
    # land mid-run however fast the conversion is (with 20 rows a page it once finished
    # between two polls).
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL)
    engine = backend.engine()

    def stored() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(test_report)).scalar()

    wait_for(lambda: stored() >= 30 or process.poll() is not None, 60, "30 reports migrated", interval=0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    partial = snapshot(engine)
    assert 0 < len(partial) < 17 + SYNTHETIC_ROWS, "the kill came too late to test anything"
    assert run(legacy_url, backend, "migrate", "--workers", "2", "--quiet", "--skip-tables") == 0
    final = snapshot(engine)
    assert len(final) == 17 + SYNTHETIC_ROWS
    assert {guid: final[guid] for guid in partial} == partial
    engine.dispose()


def test_dry_run_converts_everything_and_writes_nothing(backend, legacy_url, capsys):
    assert run(legacy_url, backend, "migrate", "--dry-run", "--workers", "1", "--quiet") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["migrated_this_run"] == 17 + SYNTHETIC_ROWS
    assert summary["rejected_this_run"] == len(BAD_GUIDS)
    assert snapshot(backend.engine()) == {}


def test_queue_pending_enqueues_the_reports_that_need_processing(backend, legacy_url, capsys):
    from queueing.contract import report_queue

    assert run(legacy_url, backend, "migrate", "--workers", "1", "--quiet", "--skip-tables", "--queue", "pending") == 0
    summary = json.loads(capsys.readouterr().out)
    engine = backend.engine()
    with engine.connect() as conn:
        pending = conn.execute(
            sa.select(sa.func.count()).select_from(test_report).where(test_report.c.state == "pending")
        ).scalar()
    assert summary["queued"] == pending > 0
    assert report_queue(backend.redis()).count == pending
    engine.dispose()


def test_verify_fails_on_a_difference_with_the_legacy_cpanstats(backend, own_legacy_url, capsys):
    assert run(own_legacy_url, backend, "migrate", "--workers", "1", "--quiet") == 0
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(
            test_report.update()
            .where(test_report.c.guid == "5ad79194-6cdc-1014-b4e3-38f2223f278b")
            .values(grade="pass")
        )
    capsys.readouterr()
    assert run(own_legacy_url, backend, "verify", "--sample", "50", "--seed", "3") == 1
    out = capsys.readouterr().out
    assert "5ad79194-6cdc-1014-b4e3-38f2223f278b: grade 'pass' != legacy 'na'" in out
    engine.dispose()


def test_verify_fails_when_a_block_a_report_refers_to_is_missing(backend, own_legacy_url, capsys):
    assert run(own_legacy_url, backend, "migrate", "--workers", "1", "--quiet") == 0
    capsys.readouterr()
    assert run(own_legacy_url, backend, "verify", "--sample", "20") == 0
    assert ", 0 missing, 0 unreferenced" in capsys.readouterr().out  # every stored block is used
    engine = backend.engine()
    with engine.begin() as conn:
        lost = conn.execute(sa.select(report_block.c.digest).limit(1)).scalar()
        conn.execute(report_block.delete().where(report_block.c.digest == lost))
    assert run(own_legacy_url, backend, "verify", "--sample", "20") == 1
    assert f"report_block {bytes(lost).hex()}: referred to by a report, not stored" in capsys.readouterr().out
    engine.dispose()


def test_drop_legacy_needs_a_successful_verify_and_reports_the_disk_freed(backend, own_legacy_url, capsys):
    assert run(own_legacy_url, backend, "migrate", "--workers", "1", "--quiet") == 0
    assert run(own_legacy_url, backend, "drop-legacy", "--yes") == 1  # no verify yet
    assert run(own_legacy_url, backend, "verify", "--sample", "20") == 0
    capsys.readouterr()
    assert run(own_legacy_url, backend, "drop-legacy", "--yes") == 0
    out = capsys.readouterr().out
    freed = int(out.split(": ")[1].split(" bytes")[0])
    assert freed > 50_000
    legacy = sa.create_engine(own_legacy_url.replace("mysql://", "mysql+pymysql://"))
    with legacy.connect() as conn:
        assert "metabase" not in sa.inspect(conn).get_table_names()
    legacy.dispose()


def test_v3_api_falls_back_to_the_legacy_cache_for_a_guid_not_migrated(backend, legacy_url, tmp_path):
    import settings
    from app import create_app

    guid = "69952598-c015-11ee-98b0-b3c3213a625c"
    common = {"DATABASE_URL": backend.database_url, "REDIS_URL": backend.redis_url, "SPOOL_DIR": str(tmp_path)}
    without = create_app(settings.load({}, **common)).test_client()
    assert without.get(f"/v3/report/{guid}").status_code == 404
    app = create_app(settings.load({}, LEGACY_DATABASE_URL=legacy_url, **common))
    response = app.test_client().get(f"/v3/report/{guid}")
    assert response.status_code == 200
    assert response.json["id"] == guid
    assert response.json["distribution"] == {
        "name": "TimeDate",
        "version": "2.33",
        "path": "ATOOMIC/TimeDate-2.33.tar.gz",
        # parsed from the report text on the fly (a report not in our tables has no facts)
        "prerequisites": [{"phase": "requires", "name": "ExtUtils::MakeMaker", "need": "0", "have": "7.70"}],
    }
    assert response.json["environment"]["user_agent"] == "CPANPLUS 0.9914"
    assert response.json["reporter"]["name"] == "Chris Williams (BINGOS)"
    assert app.test_client().get("/v3/report/00000000-0000-11e3-0000-000000000000").status_code == 404
    app.extensions["cpantesters"].engine.dispose()


def test_processing_a_migrated_report_updates_its_legacy_cpanstats_row_never_adds_one(backend, own_legacy_url, config):
    from workers import jobs

    jobs.configure(config)
    assert run(own_legacy_url, backend, "migrate", "--workers", "1", "--quiet") == 0
    engine = backend.engine()
    with engine.connect() as conn:
        before = {r.guid: r.id for r in conn.execute(sa.select(cpanstats.c.guid, cpanstats.c.id))}
    for guid in ("0cbce1be-07f0-11e3-9db1-878205732d18", "ffdb8ffc-07f1-11e3-a0a5-bfc8c70fa3a9"):
        jobs.process_report(guid)
    with engine.connect() as conn:
        after = {r.guid: r.id for r in conn.execute(sa.select(cpanstats.c.guid, cpanstats.c.id))}
        stats = conn.execute(sa.select(cpanstats).where(cpanstats.c.guid == "ffdb8ffc-07f1-11e3-a0a5-bfc8c70fa3a9"))
        row = stats.mappings().one()
    assert after == before
    assert (row["perl"], row["state"], row["dist"]) == ("5.16.0 RC0", "pass", "CPAN-Testers-WWW-Statistics")
    jobs.configure(None)
    engine.dispose()
