"""Stored reports shaped like the real ones, for the processing tests and the benchmark."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from rq import SimpleWorker

from queueing.contract import SERIALIZER, report_queue
from schemas.translate import index_columns, iso_z
from storage.reports import insert_reports, store_report
from storage.tables import cpanstats, release_data, release_summary, test_report


def statements_running(engine: sa.Engine, statement: str = "") -> int:
    """How many other sessions on this database are in a statement (``statement...``, if
    given): on a test that holds a lock, the ones waiting for it. Always 0 on SQLite."""
    if engine.dialect.name != "mysql":
        return 0
    query = (
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
        " WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND INFO LIKE :q"
    )
    with engine.connect() as conn:
        return conn.execute(sa.text(query), {"q": statement + "%"}).scalar_one()


def held_mid_transaction(engine: sa.Engine) -> bool:
    """Whether a started job now waits for the lock a test holds. On SQLite the job's
    transaction waits at its BEGIN IMMEDIATE for the test's: nothing to observe, and
    nothing it could have written yet."""
    return engine.dialect.name != "mysql" or statements_running(engine) > 0


FIXTURE = Path(__file__).parent / "fixtures" / "v3-perl5-valid.json"
PERL6_FIXTURE = Path(__file__).parent / "fixtures" / "v3-perl6-valid.json"

# Real tester names, perls and platforms from the legacy fixtures.
TESTERS = [
    ("Slaven Rezić", "srezic@cpan.org"),
    ("Andreas J. König", "andreas.koenig.gmwojprw@franz.ak.mind.de"),
    ("Chris Williams (BINGOS)", "chris@bingosnet.co.uk"),
    ("Christian Walde", "mithaldu@yahoo.de"),
    ("Nigel Horne", "njh@bandsman.co.uk"),
    ("Squeeks (SQUEEK)", "squeek@cpan.org"),
]
PERLS = ["5.8.9", "5.16.0", "5.12.3", "5.16.0 RC0", "5.8.8 patch 34559", "5.22.2", "5.39.2", "5.36.1", "5.9.5"]
PLATFORMS = [
    ("i386-freebsd", "freebsd", "8.0-release"),
    ("MSWin32-x86-multi-thread", "MSWin32", "5.2"),
    ("darwin-2level", "darwin", "16.4.0"),
    ("x86_64-linux-gnu-thread-multi", "linux", "6.1.0"),
]
GRADES = ["pass", "fail", "na", "unknown"]


def _template(path: Path = FIXTURE) -> dict:
    return json.loads(path.read_text())


_BASE = None


def report_row(
    guid: str | None = None,
    dist: str = "CPAN-Testers-WWW-Statistics",
    version: str = "1.06",
    perl: str = "5.22.2",
    grade: str = "pass",
    tester: tuple[str, str | None] = TESTERS[0],
    platform: tuple[str, str, str] = PLATFORMS[0],
    created: datetime | None = None,
    language: str = "Perl 5",
    state: str = "pending",
) -> dict:
    """A ``test_report`` row (``report`` as a dict) as the intake stores it."""
    global _BASE
    if _BASE is None:
        _BASE = _template()
    doc = copy.deepcopy(_BASE)
    guid = guid or str(uuid.uuid4())
    created = created or datetime(2026, 11, 29, 23, 58, 7)
    doc["id"] = guid
    doc["created"] = iso_z(created)
    doc["reporter"] = {"name": tester[0], "email": tester[1]}
    doc["distribution"] = {"name": dist, "version": version}
    doc["environment"]["language"].update(name=language, version=perl, archname=platform[0])
    doc["environment"]["system"].update(osname=platform[1], osversion=platform[2])
    doc["result"]["grade"] = grade
    return {
        "guid": guid,
        "created": created,
        "state": state,
        "creator": None,
        "submission_sha256": hashlib.sha256(guid.encode()).hexdigest(),
        "report": doc,
        **index_columns(doc),
    }


def store(engine: sa.Engine, **kwargs) -> str:
    row = report_row(**kwargs)
    store_report(engine, row)
    return row["guid"]


def store_many(engine: sa.Engine, rows: list[dict]) -> None:
    """Bulk insert (the benchmark's 10,000 reports) through storage.reports."""
    for start in range(0, len(rows), 500):
        with engine.begin() as conn:
            insert_reports(conn, rows[start : start + 500])


def run_jobs(redis_connection) -> None:
    """Run every queued job in this process, as the tests run jobs inline."""
    queue = report_queue(redis_connection)
    SimpleWorker([queue], connection=redis_connection, serializer=SERIALIZER).work(burst=True)


def summary(engine: sa.Engine) -> dict:
    """``{(dist, version, oncpan, distmat, perlmat, patched): (pass, fail, na, unknown)}``."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(release_summary)).mappings()
        return {
            (r["dist"], r["version"], r["oncpan"], r["distmat"], r["perlmat"], r["patched"]): (
                r["pass"],
                r["fail"],
                r["na"],
                r["unknown"],
            )
            for r in rows
        }


def recount(engine: sa.Engine) -> dict:
    """The summary recomputed from release_data: what the incremental rows must equal."""
    t = release_data.c
    key = [t.dist, t.version, t.oncpan, t.distmat, t.perlmat, t.patched]
    query = sa.select(*key, sa.func.sum(t["pass"]), sa.func.sum(t.fail), sa.func.sum(t.na), sa.func.sum(t.unknown))
    with engine.connect() as conn:
        return {tuple(r[:6]): tuple(int(v) for v in r[6:]) for r in conn.execute(query.group_by(*key))}


def table_count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def states(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(test_report.c.guid, test_report.c.state)).all())


def stats_rows(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(cpanstats)).mappings())
