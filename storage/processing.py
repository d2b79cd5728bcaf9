"""Turn stored reports into their summary rows: ``cpanstats``, ``uploads``,
``perl_version``, ``release_data`` and ``release_summary`` (spec 4.4-4.8, 5.2).

Exactly once without any "already processed?" flag: the ``cpanstats`` row is upserted on
the GUID, and a report counts in ``release_summary`` through its one ``release_data`` row
(keyed by its ``cpanstats`` id). Processing a report compares the ``release_data`` row it
should have with the one it has and moves only the difference into ``release_summary``,
with atomic ``count = count + n`` upserts. So a second run changes nothing, two workers on
one release add up exactly, and a change of flags (a release going to BackPAN) moves the
report from one summary row to the other.

Two runs for one GUID serialise on the ``cpanstats`` row (its upsert takes the row lock
before ``release_data`` is read). MySQL connections run READ COMMITTED (see
:func:`processing_engine`), so a read after a wait sees what the other transaction committed.
"""

from __future__ import annotations

import enum
import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa

from schemas import processing as rules
from storage.engine import create_engine
from storage.reports import load_report
from storage.tables import cpanstats, perl_version, release_data, release_summary, test_report, uploads
from storage.upserts import insert_missing, upsert

logger = logging.getLogger(__name__)

COUNTS = ("pass", "fail", "na", "unknown")
SUMMARY_KEY = ("dist", "version", "oncpan", "distmat", "perlmat", "patched")


class Outcome(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"
    MISSING = "missing"


def processing_engine(url: str, **kwargs) -> sa.Engine:
    """The workers' engine: READ COMMITTED on MySQL (fresh reads after a lock wait, fewer
    gap locks between workers), the usual pragmas on SQLite."""
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "mysql":
        engine = engine.execution_options(isolation_level="READ COMMITTED")
    return engine


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Batch:
    """The work of one transaction: per-process caches and the summary deltas to apply."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn
        self.known_perls: set[str] = set()
        self.deltas: dict[tuple, dict] = {}
        self.outcomes: dict[str, Outcome] = {}

    # -- perl_version and uploads ------------------------------------------------------

    def ensure_perl(self, version: str) -> None:
        if version in self.known_perls:
            return
        found = self.conn.execute(sa.select(perl_version.c.version).where(perl_version.c.version == version)).first()
        if found is None:
            row = rules.perl_version(version)
            insert_missing(
                self.conn,
                perl_version,
                {"version": row.version, "perl": row.perl, "patch": row.patch, "devel": row.devel},
                ["version"],
            )
        self.known_perls.add(version)

    def upload_of(self, dist: str, version: str) -> sa.Row:
        """The ``uploads`` row of a release (a provisional one is created when missing).

        Read with a shared lock, so the uploads command's type change waits for the
        reports being counted under the old type, and reports after it see the new one.
        """
        query = (
            sa.select(uploads.c.uploadid, uploads.c.type)
            .where(uploads.c.dist == dist, uploads.c.version == version)
            .order_by(uploads.c.uploadid)
            .limit(1)
            .with_for_update(read=True)
        )
        found = self.conn.execute(query).first()
        if found is None:
            logger.warning("no upload for dist=%s version=%s: creating a provisional one", dist, version)
            insert_missing(
                self.conn,
                uploads,
                {
                    "type": rules.PROVISIONAL_UPLOAD,
                    "author": "",
                    "dist": dist,
                    "version": version,
                    "filename": "",
                    "released": 0,
                },
                ["dist", "version"],
            )
            found = self.conn.execute(query).first()
        return found

    # -- one report ----------------------------------------------------------------------

    def process(self, guid: str) -> Outcome:
        row = load_report(self.conn, guid)
        if row is None:
            outcome = Outcome.MISSING
        elif not rules.is_counted(row["language"]):
            self.uncount(row["guid"])
            outcome = Outcome.SKIPPED
        else:
            self.count(row)
            outcome = Outcome.DONE
        self.outcomes[guid.lower()] = outcome
        return outcome

    def count(self, row: dict) -> None:
        self.ensure_perl(row["perl"])
        upload = self.upload_of(row["dist"], row["version"])
        values = rules.cpanstats_values(row, upload.uploadid)
        stats_id = self.upsert_stats(values)
        flags = rules.release_flags(values["version"], values["perl"], upload.type)
        wanted = {
            "dist": values["dist"],
            "version": values["version"],
            "id": stats_id,
            "guid": values["guid"],
            "oncpan": flags.oncpan,
            "distmat": flags.distmat,
            "perlmat": flags.perlmat,
            "patched": flags.patched,
            **rules.grade_counts(values["state"]),
            "uploadid": upload.uploadid,
        }
        had = self.release_row(stats_id)
        if had == wanted:
            return
        if had is None:
            self.conn.execute(release_data.insert().values(wanted))
        else:
            self.conn.execute(
                release_data.update()
                .where(release_data.c.id == stats_id, release_data.c.guid == values["guid"])
                .values(wanted)
            )
            self.add_delta(had, -1)
        self.add_delta(wanted, +1)

    def upsert_stats(self, values: dict) -> int:
        """Upsert the ``cpanstats`` row on its GUID and return its id (the same id on re-runs)."""
        upsert(
            self.conn,
            cpanstats,
            values,
            ["guid"],
            lambda new: [(name, new[name]) for name in values if name != "guid"],
        )
        return self.conn.execute(sa.select(cpanstats.c.id).where(cpanstats.c.guid == values["guid"])).scalar_one()

    def release_row(self, stats_id: int) -> dict | None:
        found = self.conn.execute(sa.select(release_data).where(release_data.c.id == stats_id)).mappings().first()
        return dict(found) if found is not None else None

    def uncount(self, guid: str) -> None:
        """Take a report out of the statistics (a Perl 6 report that upstream counted)."""
        stats_id = self.conn.execute(sa.select(cpanstats.c.id).where(cpanstats.c.guid == guid)).scalar()
        if stats_id is None:
            return
        had = self.release_row(stats_id)
        if had is not None:
            self.conn.execute(release_data.delete().where(release_data.c.id == stats_id))
            self.add_delta(had, -1)
        self.conn.execute(cpanstats.delete().where(cpanstats.c.id == stats_id))
        logger.info("took guid=%s out of the statistics", guid)

    # -- release_summary -----------------------------------------------------------------

    def add_delta(self, release_row: dict, sign: int) -> None:
        key = tuple(release_row[name] for name in SUMMARY_KEY)
        delta = self.deltas.setdefault(key, {**dict.fromkeys(COUNTS, 0), "id": 0, "guid": "", "uploadid": None})
        for name in COUNTS:
            delta[name] += sign * release_row[name]
        if sign > 0 and release_row["id"] > delta["id"]:
            delta["id"], delta["guid"] = release_row["id"], release_row["guid"]
        if sign > 0 or delta["uploadid"] is None:
            delta["uploadid"] = release_row["uploadid"]

    def apply_deltas(self) -> None:
        """Add the deltas to ``release_summary``, in key order (a fixed lock order)."""
        for key in sorted(self.deltas):
            apply_summary_delta(self.conn, dict(zip(SUMMARY_KEY, key, strict=True)), self.deltas[key])
        self.deltas.clear()

    def finish(self, now: datetime) -> None:
        self.apply_deltas()
        for outcome in (Outcome.DONE, Outcome.SKIPPED):
            guids = sorted(g for g, o in self.outcomes.items() if o is outcome)
            if guids:
                self.conn.execute(
                    test_report.update()
                    .where(test_report.c.guid.in_(guids))
                    .values(state=outcome.value, state_changed=now)
                )


def apply_summary_delta(conn: sa.Connection, key: dict, delta: dict) -> None:
    """Add ``delta`` (counts, and the newest id/guid) to one ``release_summary`` row."""
    if not any(delta[name] for name in COUNTS):
        return
    if all(delta[name] >= 0 for name in COUNTS) and delta["id"]:
        values = {**key, **{name: delta[name] for name in COUNTS}}
        values.update(id=delta["id"], guid=delta["guid"], uploadid=delta["uploadid"])
        t = release_summary.c

        def assignments(new):
            newer = new.id > t.id
            # guid before id: MySQL evaluates left to right, and guid compares against the old id.
            return [
                ("guid", sa.case((newer, new.guid), else_=t.guid)),
                ("id", sa.case((newer, new.id), else_=t.id)),
                *[(name, t[name] + new[name]) for name in COUNTS],
                ("uploadid", new.uploadid),
            ]

        upsert(conn, release_summary, values, list(SUMMARY_KEY), assignments)
        return
    where = [release_summary.c[name] == value for name, value in key.items()]
    conn.execute(
        release_summary.update().where(*where).values({name: release_summary.c[name] + delta[name] for name in COUNTS})
    )
    conn.execute(release_summary.delete().where(*where, *[release_summary.c[name] == 0 for name in COUNTS]))


def process_reports(conn: sa.Connection, guids: Iterable[str], now: datetime | None = None) -> dict[str, Outcome]:
    """Process reports inside the caller's transaction; returns each GUID's outcome."""
    batch = Batch(conn)
    for guid in sorted({g.lower() for g in guids}):
        batch.process(guid)
    batch.finish(now or utcnow())
    return batch.outcomes


def mark_failed(conn: sa.Connection, guid: str, now: datetime | None = None) -> None:
    conn.execute(
        test_report.update()
        .where(test_report.c.guid == guid.lower(), test_report.c.state == "pending")
        .values(state="failed", state_changed=now or utcnow())
    )


def backlog_figures(conn: sa.Connection) -> dict:
    """How many reports wait for processing and since when: range reads of the
    ``(state, created)`` index, never a full-table count."""
    pending = test_report.c.state == "pending"
    count = conn.execute(sa.select(sa.func.count()).select_from(test_report).where(pending)).scalar_one()
    oldest = conn.execute(sa.select(sa.func.min(test_report.c.created)).where(pending)).scalar()
    return {"pending": count, "oldest_pending": oldest}


def outcome_counts(outcomes: dict[str, Outcome]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for outcome in outcomes.values():
        counts[outcome.value] += 1
    return dict(counts)
