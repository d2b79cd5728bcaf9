"""The uploads command: a CPAN mirror's find-ls.gz fills ``uploads``, provisional rows are
upgraded in place, a release gone from the mirror becomes backpan, release rows follow."""

from __future__ import annotations

import gzip
import shutil
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from schemas.uploads import Release, parse_find_ls, parse_metacpan_hits
from scripts import uploads as command
from storage.tables import release_data, uploads
from tests.processing_helpers import recount, store, summary
from workers import jobs

FIXTURES = Path(__file__).parent / "fixtures" / "find-ls"
NOW = datetime(2026, 11, 30, 0, 0, 0)
STATS = "CPAN-Testers-WWW-Statistics"


def test_find_ls_lists_the_distribution_archives_with_their_dates():
    lines = (FIXTURES / "find-ls-1.txt").read_text().splitlines()
    assert list(parse_find_ls(lines, NOW)) == [
        Release("BARBIE", STATS, "1.06", "CPAN-Testers-WWW-Statistics-1.06.tar.gz", 1376784000),
        Release("BARBIE", STATS, "1.07_01", "CPAN-Testers-WWW-Statistics-1.07_01.tar.gz", 1795170180),
        Release("SREZIC", "Tk-Pod", "0.9943", "Tk-Pod-0.9943.tar.gz", 1583366400),
        Release("GARU", "Data-Printer", "0.39", "Data-Printer-0.39.tar.gz", 1704153600),
    ]


def test_metacpan_hits_become_releases():
    hits = [
        {"_source": {"author": "GARU", "archive": "Data-Printer-0.39.tar.gz", "date": "2024-01-02T00:00:00"}},
        {"_source": {"author": "GARU", "archive": "README", "date": "2024-01-02T00:00:00"}},
        {"_source": {"author": "GARU"}},
    ]
    assert list(parse_metacpan_hits(hits)) == [
        Release("GARU", "Data-Printer", "0.39", "Data-Printer-0.39.tar.gz", 1704153600)
    ]


def mirror(tmp_path, listing: str) -> str:
    (tmp_path / "indices").mkdir(exist_ok=True)
    with open(FIXTURES / listing, "rb") as src, gzip.open(tmp_path / "indices" / "find-ls.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return f"file://{tmp_path}/"


def upload_rows(db) -> dict:
    with db.connect() as conn:
        return {(r.dist, r.version): r for r in conn.execute(sa.select(uploads))}


def test_provisional_rows_are_upgraded_in_place_and_gone_releases_become_backpan(backend, db, tmp_path, capsys):
    old = [store(db, grade="pass"), store(db, grade="fail", perl="5.39.2")]
    for guid in old:
        jobs.process_report(guid)
    provisional = upload_rows(db)[(STATS, "1.06")]
    assert provisional.type == "unknown"

    assert command.main(["--mirror", mirror(tmp_path, "find-ls-1.txt")]) == 0
    rows = upload_rows(db)
    upgraded = rows[(STATS, "1.06")]
    assert upgraded.uploadid == provisional.uploadid
    assert (upgraded.type, upgraded.author, upgraded.filename, upgraded.released) == (
        "cpan",
        "BARBIE",
        "CPAN-Testers-WWW-Statistics-1.06.tar.gz",
        1376784000,
    )
    assert {k: r.type for k, r in rows.items()} == {
        (STATS, "1.06"): "cpan",
        (STATS, "1.07_01"): "cpan",
        ("Tk-Pod", "0.9943"): "cpan",
        ("Data-Printer", "0.39"): "cpan",
    }
    assert summary(db) == {(STATS, "1.06", 1, 1, 1, 1): (1, 0, 0, 0), (STATS, "1.06", 1, 1, 2, 1): (0, 1, 0, 0)}

    # The next listing no longer has 1.06: it went to BackPAN, and its reports move with it.
    assert command.main(["--mirror", mirror(tmp_path, "find-ls-2.txt")]) == 0
    rows = upload_rows(db)
    assert rows[(STATS, "1.06")].type == "backpan"
    assert rows[("Data-Printer", "1.000")].filename == "Data-Printer-1.000.tar.gz"  # the first file of the two
    assert summary(db) == {(STATS, "1.06", 2, 1, 1, 1): (1, 0, 0, 0), (STATS, "1.06", 2, 1, 2, 1): (0, 1, 0, 0)}
    assert summary(db) == recount(db)
    with db.connect() as conn:
        assert set(conn.execute(sa.select(release_data.c.oncpan)).scalars()) == {2}

    # Reports arriving later count under the new flag; running again changes nothing.
    jobs.process_report(store(db, grade="na"))
    capsys.readouterr()
    assert command.main(["--mirror", mirror(tmp_path, "find-ls-2.txt")]) == 0
    assert "'upgraded': 0, 'backpan': 0" in capsys.readouterr().out
    assert summary(db) == {
        (STATS, "1.06", 2, 1, 1, 1): (1, 0, 1, 0),
        (STATS, "1.06", 2, 1, 2, 1): (0, 1, 0, 0),
    }


def test_unreachable_sources_are_skipped(backend, db, tmp_path):
    assert (
        command.main(
            ["--mirror", f"file://{tmp_path}/nowhere/", "--metacpan", "--metacpan-url", "http://127.0.0.1:9/v1"]
        )
        == 1
    )
    assert upload_rows(db) == {}


def test_dry_run_changes_nothing(backend, db, tmp_path, capsys):
    assert command.main(["--mirror", mirror(tmp_path, "find-ls-1.txt"), "--dry-run"]) == 0
    assert "'added': 4" in capsys.readouterr().out
    assert upload_rows(db) == {}
