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
import weakref
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from schemas import summary_rules
from storage.clock import utc_now
from storage.engine import create_engine, normalise_url
from storage.release_factors import REPORT_COLUMNS, ReportColumns
from storage.reports import read_document
from storage.tables import cpanstats, perl_version, release_data, release_summary, test_report, uploads
from storage.upserts import insert_missing, upsert

logger = logging.getLogger(__name__)

COUNTS = ("pass", "fail", "na", "unknown")
SUMMARY_KEY = ("dist", "version", "oncpan", "distmat", "perlmat", "patched")
DONE_STATES = ("done", "skipped")


class Outcome(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"
    MISSING = "missing"


def processing_engine(url: str, **kwargs) -> sa.Engine:
    """The workers' engine: READ COMMITTED on MySQL (set once per connection: fresh reads
    after a lock wait, fewer gap locks between workers), the usual pragmas on SQLite.

    Pass ``read_timeout`` and ``idle_timeout`` (see :func:`storage.engine.create_engine`)
    so that a worker cut off mid-transaction neither hangs nor holds its locks for long."""
    if normalise_url(url).drivername.startswith("mysql"):
        kwargs.setdefault("isolation_level", "READ COMMITTED")
    return create_engine(url, **kwargs)


RETRYABLE_MYSQL_ERRORS = {1213, 1205}
"""Deadlock found when trying to get lock; lock wait timeout exceeded."""

TRANSACTION_ATTEMPTS = 8
"""Times one transaction is tried when it meets a deadlock before giving up."""


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or lock timeout: the whole transaction may simply be run again."""
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    args = getattr(exc.orig, "args", ())
    if args and args[0] in RETRYABLE_MYSQL_ERRORS:
        return True
    return "database is locked" in str(exc.orig)


deadlock_retry = retry(
    retry=retry_if_exception(is_retryable),
    stop=stop_after_attempt(TRANSACTION_ATTEMPTS),
    wait=wait_random_exponential(multiplier=0.02, max=1),
    reraise=True,
    before_sleep=lambda state: logger.info("deadlock, retrying attempt=%d", state.attempt_number),
)
"""Run a whole transaction again when InnoDB picked it as a deadlock victim."""


_SEEN_PERLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per engine, perl versions whose ``perl_version`` row was read committed. Rows are
never deleted while workers run; disposing of the engine forgets them."""

SEEN_PERLS_LIMIT = 10_000


def _seen_perls(engine: sa.Engine) -> set[str]:
    seen = _SEEN_PERLS.get(engine)
    if seen is None:
        seen = _SEEN_PERLS[engine] = set()
        sa.event.listen(engine, "engine_disposed", lambda _engine: seen.clear())
    if len(seen) > SEEN_PERLS_LIMIT:
        seen.clear()
    return seen


class Batch:
    """The work of one transaction over one or many reports, in a few statements each
    for the whole batch: documents, perls, uploads, cpanstats, release_data, then the
    summary deltas in key order (a fixed lock order) and the states."""

    def __init__(self, conn: sa.Connection, skip_done: bool = False):
        self.conn = conn
        self.skip_done = skip_done
        self.unchanged: set[str] = set()
        self.deltas: dict[tuple, dict] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.documents: dict[int, dict] = {}
        """The documents read for processing, by ``test_report.id``: the enrichment after
        the commit parses them without reading them again."""
        self.columns: dict[int, ReportColumns] = {}
        """Their columns, by ``test_report.id``: the enrichment counts them in their
        release's failure-analysis counts without reading them again."""

    # -- perl_version and uploads ------------------------------------------------------

    def ensure_perls(self, versions: set[str]) -> None:
        """Create the ``perl_version`` rows of perls never seen before (perls this
        process has seen committed are not looked up again)."""
        seen = _seen_perls(self.conn.engine)
        versions = versions - seen
        if not versions:
            return
        known = set(
            self.conn.execute(sa.select(perl_version.c.version).where(perl_version.c.version.in_(sorted(versions))))
            .scalars()
            .all()
        )
        seen.update(known)  # read committed rows: they are never deleted
        missing = []
        for version in sorted(versions - known):
            row = summary_rules.perl_version(version)
            missing.append({"version": row.version, "perl": row.perl, "patch": row.patch, "devel": row.devel})
        if missing:
            insert_missing(self.conn, perl_version, missing, ["version"])

    def uploads_of(self, releases: list[tuple[str, str]]) -> dict[tuple[str, str], sa.Row]:
        """The ``uploads`` rows of releases (provisional ones are created for the missing).

        Read with a shared lock, so the uploads command's type change waits for the
        reports being counted under the old type, and reports after it see the new one.
        """

        def read(keys):
            query = (
                sa.select(uploads.c.uploadid, uploads.c.type, uploads.c.dist, uploads.c.version)
                .where(sa.tuple_(uploads.c.dist, uploads.c.version).in_(keys))
                .order_by(uploads.c.uploadid)
                .with_for_update(read=True)
            )
            found = {}
            for row in self.conn.execute(query):
                found.setdefault((row.dist, row.version), row)  # the first, should there be two
            return found

        found = read(releases)
        missing = [key for key in releases if key not in found]
        if missing:
            logger.info("creating %d provisional uploads, e.g. dist=%s version=%s", len(missing), *missing[0])
            provisional = {"type": summary_rules.PROVISIONAL_UPLOAD, "author": "", "filename": "", "released": 0}
            insert_missing(
                self.conn,
                uploads,
                [{**provisional, "dist": dist, "version": version} for dist, version in missing],
                ["dist", "version"],
            )
            found.update(read(missing))
        return found

    # -- the reports ---------------------------------------------------------------------

    def load(self, guids: list[str]) -> dict[str, dict]:
        """The stored rows of ``guids`` in one query: the columns processing reads, and
        the document through :func:`storage.reports.read_document` (packed or plain)."""
        t = test_report.c
        columns = (t.id, t.guid, t.state, t.created, t.language, t.report_z, t.report, *(t[c] for c in REPORT_COLUMNS))
        query = sa.select(*columns).where(t.guid.in_(guids))
        rows = {}
        for row in self.conn.execute(query).mappings():
            if self.skip_done and row["state"] in DONE_STATES:  # left as it is: no document needed
                rows[row["guid"].lower()] = dict(row)
                continue
            document = read_document(self.conn, row)
            self.documents[row["id"]] = document
            self.columns[row["id"]] = ReportColumns(*(row[c] for c in REPORT_COLUMNS))
            rows[row["guid"].lower()] = {**row, "report": document}
        return rows

    def process(self, guids: list[str]) -> None:
        counted = []
        loaded = self.load(guids)
        for guid in guids:
            row = loaded.get(guid)
            if row is None:
                self.outcomes[guid] = Outcome.MISSING
            elif self.skip_done and row["state"] in DONE_STATES:
                self.outcomes[guid] = Outcome(row["state"])
                self.unchanged.add(guid)
            elif not summary_rules.is_counted(row["language"]):
                self.uncount(row["guid"])
                self.outcomes[guid] = Outcome.SKIPPED
            else:
                counted.append(row)
                self.outcomes[guid] = Outcome.DONE
        if counted:
            self.count(counted)

    def count(self, rows: list[dict]) -> None:
        self.ensure_perls({row["perl"] for row in rows})
        releases = self.uploads_of(sorted({(row["dist"], row["version"]) for row in rows}))
        values = []
        for row in rows:
            upload = releases[(row["dist"], row["version"])]
            values.append((summary_rules.cpanstats_values(row, upload.uploadid), upload.type))
        stats_ids, had = self.upsert_stats([v for v, _ in values])
        wanted = {}
        for stats, upload_type in values:
            flags = summary_rules.release_flags(stats["version"], stats["perl"], upload_type)
            stats_id = stats_ids[stats["guid"]]
            wanted[stats_id] = {
                "dist": stats["dist"],
                "version": stats["version"],
                "id": stats_id,
                "guid": stats["guid"],
                "oncpan": flags.oncpan,
                "distmat": flags.distmat,
                "perlmat": flags.perlmat,
                "patched": flags.patched,
                **summary_rules.grade_counts(stats["state"]),
                "uploadid": stats["uploadid"],
            }
        new = [wanted[i] for i in sorted(wanted) if i not in had]
        if new:
            self.conn.execute(release_data.insert(), new)
        for stats_id in sorted(wanted):
            row = wanted[stats_id]
            if stats_id in had and had[stats_id] != row:
                self.conn.execute(
                    release_data.update()
                    .where(release_data.c.id == stats_id, release_data.c.guid == had[stats_id]["guid"])
                    .values(row)
                )
                self.add_delta(had[stats_id], -1)
            if had.get(stats_id) != row:
                self.add_delta(row, +1)

    def upsert_stats(self, values: list[dict]) -> tuple[dict[str, int], dict[int, dict]]:
        """Upsert the ``cpanstats`` rows on their GUIDs. Returns their ids (the same id on
        re-runs) and the ``release_data`` rows they already have, read in one query (the
        upsert holds the ``cpanstats`` row locks, so the read is of committed rows)."""
        upsert(
            self.conn,
            cpanstats,
            values,
            ["guid"],
            lambda new: [(name, new[name]) for name in values[0] if name != "guid"],
            shape=tuple(values[0]),
        )
        guids = [v["guid"] for v in values]
        data = [column.label(f"rd_{column.name}") for column in release_data.c]
        query = (
            sa.select(cpanstats.c.guid, cpanstats.c.id, *data)
            .select_from(cpanstats.outerjoin(release_data, release_data.c.id == cpanstats.c.id))
            .where(cpanstats.c.guid.in_(guids))
        )
        ids, had = {}, {}
        for row in self.conn.execute(query).mappings():
            ids[row["guid"]] = row["id"]
            if row["rd_id"] is not None:
                had[row["rd_id"]] = {column.name: row[f"rd_{column.name}"] for column in release_data.c}
        return ids, had

    def release_rows(self, stats_ids: list[int]) -> dict[int, dict]:
        query = sa.select(release_data).where(release_data.c.id.in_(stats_ids))
        return {r["id"]: dict(r) for r in self.conn.execute(query).mappings()}

    def uncount(self, guid: str) -> None:
        """Take a report out of the statistics (a Perl 6 report that upstream counted)."""
        stats_id = self.conn.execute(sa.select(cpanstats.c.id).where(cpanstats.c.guid == guid)).scalar()
        if stats_id is None:
            return
        had = self.release_rows([stats_id]).get(stats_id)
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
        """Add the deltas to ``release_summary`` in key order (a fixed lock order): every
        increment in one multi-row upsert, then any decrement."""
        increments, others = [], []
        for key in sorted(self.deltas):
            delta = self.deltas[key]
            if not any(delta[name] for name in COUNTS):
                continue
            keyed = dict(zip(SUMMARY_KEY, key, strict=True))
            if all(delta[name] >= 0 for name in COUNTS) and delta["id"]:
                increments.append(summary_values(keyed, delta))
            else:
                others.append((keyed, delta))
        if increments:
            add_to_summary(self.conn, increments)
        for keyed, delta in others:
            apply_summary_delta(self.conn, keyed, delta)
        self.deltas.clear()

    def finish(self, now: datetime) -> None:
        self.apply_deltas()
        for outcome in (Outcome.DONE, Outcome.SKIPPED):
            guids = sorted(g for g, o in self.outcomes.items() if o is outcome and g not in self.unchanged)
            if guids:
                self.conn.execute(
                    test_report.update()
                    .where(test_report.c.guid.in_(guids))
                    .values(state=outcome.value, state_changed=now)
                )


def summary_values(key: dict, delta: dict) -> dict:
    values = {**key, **{name: delta[name] for name in COUNTS}}
    values.update(id=delta["id"], guid=delta["guid"], uploadid=delta["uploadid"])
    return values


def add_to_summary(conn: sa.Connection, rows: list[dict]) -> None:
    """Upsert ``release_summary`` rows adding their counts (``count = count + n``) and
    keeping the newest report's id and guid."""
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

    upsert(conn, release_summary, rows, list(SUMMARY_KEY), assignments, shape="add counts")


def apply_summary_delta(conn: sa.Connection, key: dict, delta: dict) -> None:
    """Add ``delta`` (counts, and the newest id/guid) to one ``release_summary`` row;
    a row whose counts all reach 0 is removed."""
    if not any(delta[name] for name in COUNTS):
        return
    if all(delta[name] >= 0 for name in COUNTS) and delta["id"]:
        add_to_summary(conn, [summary_values(key, delta)])
        return
    where = [release_summary.c[name] == value for name, value in key.items()]
    conn.execute(
        release_summary.update().where(*where).values({name: release_summary.c[name] + delta[name] for name in COUNTS})
    )
    conn.execute(release_summary.delete().where(*where, *[release_summary.c[name] == 0 for name in COUNTS]))


def process_reports(conn: sa.Connection, guids: Iterable[str], now: datetime | None = None) -> dict[str, Outcome]:
    """Process reports inside the caller's transaction; returns each GUID's outcome."""
    batch = Batch(conn)
    batch.process(sorted({g.lower() for g in guids}))
    batch.finish(now or utc_now())
    return batch.outcomes


def process_pending(
    conn: sa.Connection, guids: Iterable[str], now: datetime | None = None
) -> tuple[dict[str, Outcome], set[str], dict[int, dict], dict[int, ReportColumns]]:
    """Like :func:`process_reports`, but a report already done (or skipped) is left as it
    is (the report job's rule: its state is read in the same query as the others' rows).
    Returns the outcomes (a left report's is its state), the GUIDs left unchanged, and
    the documents and the columns of the reports processed, by ``test_report.id``."""
    batch = Batch(conn, skip_done=True)
    batch.process(sorted({g.lower() for g in guids}))
    batch.finish(now or utc_now())
    return batch.outcomes, batch.unchanged, batch.documents, batch.columns


def mark_failed(conn: sa.Connection, guid: str, now: datetime | None = None) -> None:
    conn.execute(
        test_report.update()
        .where(test_report.c.guid == guid.lower(), test_report.c.state == "pending")
        .values(state="failed", state_changed=now or utc_now())
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
