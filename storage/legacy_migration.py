"""Move the legacy databases into ours: the cpanstats tables as they are, the tester
profiles, and every Metabase cache row as a v3 ``test_report`` row.

Every step is idempotent (rows already in our database are never touched) and records
its progress in ``legacy_migration`` in the same transaction as its rows, so a run
killed at any point goes on where it stopped. The operator command is
``scripts/migrate_legacy.py``; this module holds the steps, importable without it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from schemas.legacy import LegacyRowError, convert_row, email_address, legacy_name
from storage import tables
from storage.clock import utc_now
from storage.legacy import (
    COPIED_TABLES,
    latest_profile_rows,
    legacy_cpanstats_guids,
    metabase,
    metabase_rows_query,
    testers_email,
)
from storage.processing import deadlock_retry
from storage.reports import BlockAudit, audit_blocks, insert_reports
from storage.upserts import insert_missing

logger = logging.getLogger(__name__)

HEX = "0123456789abcdef"
RANGES: list[tuple[str, str | None, str | None]] = [
    (f"reports:{digit}", None if i == 0 else digit, None if i == len(HEX) - 1 else HEX[i + 1])
    for i, digit in enumerate(HEX)
]
"""The GUID space in 16 ranges ``(name, lower inclusive, upper exclusive)``, shared out
among the worker processes; the first and last are open so no GUID falls outside."""

TABLE_KEYS = {
    "perl_version": ["version"],
    "uploads": ["uploadid"],
    "cpanstats": ["id"],
    "release_data": ["id", "guid"],
    "release_summary": ["dist", "version", "oncpan", "distmat", "perlmat", "patched"],
}


def _progress(conn: sa.Connection, name: str) -> sa.RowMapping | None:
    return (
        conn.execute(sa.select(tables.legacy_migration).where(tables.legacy_migration.c.name == name))
        .mappings()
        .first()
    )


def _save_progress(conn: sa.Connection, name: str, **values) -> None:
    values["updated"] = utc_now()
    if _progress(conn, name) is None:
        conn.execute(tables.legacy_migration.insert().values(name=name, **values))
    else:
        conn.execute(tables.legacy_migration.update().where(tables.legacy_migration.c.name == name).values(**values))


def progress_rows(conn: sa.Connection) -> list[sa.RowMapping]:
    return list(conn.execute(sa.select(tables.legacy_migration).order_by(tables.legacy_migration.c.name)).mappings())


# ---------------------------------------------------------------------------- tables and users


def copy_table(legacy: sa.Engine, ours: sa.Engine, name: str, batch: int = 5000, dry_run: bool = False) -> int:
    """Copy one legacy cpanstats table as it is (ids kept), streaming; returns rows read.

    Foreign keys are not checked during the copy: the legacy rows are copied as they are,
    even where upstream left them dangling (perl versions missing from perl_version).
    """
    ours_table = tables.metadata.tables[name]
    with ours.connect() as conn:
        state = _progress(conn, f"table:{name}")
    if state is not None and state["done"]:
        return 0
    legacy_table = sa.Table(name, sa.MetaData(), autoload_with=legacy)
    columns = [c.name for c in legacy_table.c if c.name in ours_table.c]
    seen = 0
    with legacy.connect() as source:
        result = source.execution_options(stream_results=True, yield_per=batch).execute(
            sa.select(*[legacy_table.c[c] for c in columns])
        )
        for chunk in result.mappings().partitions(batch):
            rows = [dict(row) for row in chunk]
            seen += len(rows)
            if not dry_run:
                _insert_unchecked(ours, ours_table, rows, TABLE_KEYS[name])
    if not dry_run:
        with ours.begin() as conn:
            _save_progress(conn, f"table:{name}", done=True, migrated=seen)
    return seen


def _insert_unchecked(ours: sa.Engine, table: sa.Table, rows: list[dict], key: list[str]) -> None:
    """insert_missing with the foreign keys unchecked, in its own transaction."""
    with ours.connect() as conn:
        if conn.dialect.name == "sqlite":  # a PRAGMA that only works outside a transaction
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        else:
            conn.exec_driver_sql("SET SESSION foreign_key_checks=0")
            conn.commit()
        try:
            with conn.begin():
                insert_missing(conn, table, rows, key)
        finally:
            if conn.dialect.name == "sqlite":
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")
            else:
                conn.exec_driver_sql("SET SESSION foreign_key_checks=1")
                conn.commit()


def copy_users(legacy: sa.Engine, ours: sa.Engine, dry_run: bool = False) -> int:
    """``testers_email`` -> ``metabase_user``: the latest row per profile, without a secret
    (the profile adopts the first one it presents). Existing users are left alone."""
    with legacy.connect() as conn:
        profiles = latest_profile_rows(conn)
    rows = [
        {"resource": p.resource[:50], "fullname": p.fullname[:255], "email": p.email}
        for p in profiles.values()
        if p.resource.startswith("metabase:user:")
    ]
    if not dry_run:
        with ours.begin() as conn:
            for start in range(0, len(rows), 1000):
                insert_missing(conn, tables.metabase_user, rows[start : start + 1000], ["resource"])
            _save_progress(conn, "users", done=True, migrated=len(rows))
    return len(rows)


# ---------------------------------------------------------------------------- reports


@dataclass
class RangeResult:
    name: str
    read: int = 0
    migrated: int = 0
    skipped: int = 0
    failed: int = 0
    queued: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


def migrate_range(
    legacy: sa.Engine,
    ours: sa.Engine,
    name: str,
    lower: str | None,
    upper: str | None,
    batch: int = 1000,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
    enqueue: Callable[[list[str]], int] | None = None,
    profiles: dict | None = None,
    force_state: str | None = None,
) -> RangeResult:
    """Convert the ``metabase`` rows of one GUID range, a page at a time, resuming after
    the last GUID this range committed. Each page commits its reports, its errors and
    its checkpoint in one transaction; GUIDs already in ``test_report`` are skipped, so
    neither a rerun nor a report that came through the API meanwhile is changed.

    A report is stored ``done`` where the legacy ``cpanstats`` has its row, ``pending``
    otherwise; ``force_state`` overrides that (``pending``: have the workers rebuild it)."""
    result = RangeResult(name)
    with ours.connect() as conn:
        state = _progress(conn, name)
    if state is not None and state["done"] and not dry_run:
        return result
    after = state["last_guid"] if state is not None else None
    if profiles is None:
        with legacy.connect() as conn:
            profiles = latest_profile_rows(conn)
    while True:
        query = metabase_rows_query(after, upper, batch)
        if lower is not None and after is None:
            query = query.where(metabase.c.guid >= lower)
        with legacy.connect() as conn:
            rows = conn.execute(query).all()
            done_guids = legacy_cpanstats_guids(conn, [r.guid for r in rows])
        if not rows:
            break
        after = rows[-1].guid
        guids = [r.guid.lower() for r in rows]
        with ours.connect() as conn:
            existing = set(
                conn.execute(sa.select(tables.test_report.c.guid).where(tables.test_report.c.guid.in_(guids))).scalars()
            )
        converted, errors = [], []
        for row in rows:
            guid = row.guid.lower()
            if guid in existing:
                result.skipped += 1
                continue
            state_value = force_state or ("done" if row.guid in done_guids or guid in done_guids else "pending")
            try:
                converted.append(convert_row(row.guid, row.updated, row.report, profiles, row.id, state_value).row)
            except LegacyRowError as exc:
                errors.append((exc.guid or guid, exc.reason))
            except Exception as exc:  # a converter bug on one row must not stop days of migration
                logger.exception("legacy row conversion crashed guid=%s", guid)
                errors.append((guid, f"converter error: {exc.__class__.__name__}: {exc}"))
        result.read += len(rows)
        result.migrated += len(converted)
        result.failed += len(errors)
        result.errors.extend(errors)
        if not dry_run:
            _write_page(ours, name, converted, errors, after)
            if enqueue is not None:
                result.queued += enqueue([r["guid"] for r in converted if r["state"] == "pending"])
        for guid, reason in errors:
            logger.warning("legacy row not migrated guid=%s reason=%s", guid, reason)
        if on_batch is not None:
            on_batch(len(rows))
        if len(rows) < batch:
            break
    if not dry_run:
        with ours.begin() as conn:
            _save_progress(conn, name, done=True)
    return result


@deadlock_retry
def _write_page(ours: sa.Engine, name: str, converted: list[dict], errors: list[tuple[str, str]], after: str) -> None:
    """One page's reports, errors and checkpoint in one transaction (run again whole if
    InnoDB picks it as a deadlock victim)."""
    with ours.begin() as conn:
        insert_reports(conn, converted)
        if errors:
            insert_missing(
                conn,
                tables.legacy_migration_error,
                [{"guid": g[:64], "reason": r, "created": utc_now()} for g, r in errors],
                ["guid"],
            )
        previous = _progress(conn, name)
        _save_progress(
            conn,
            name,
            last_guid=after,
            migrated=(previous["migrated"] if previous else 0) + len(converted),
            failed=(previous["failed"] if previous else 0) + len(errors),
        )


def legacy_counts(legacy: sa.Engine) -> dict[str, int]:
    counts = {}
    with legacy.connect() as conn:
        for name in ("metabase", "testers_email", *COPIED_TABLES):
            counts[name] = conn.execute(sa.text(f"SELECT COUNT(*) FROM `{name}`")).scalar()
    return counts


def error_rows(ours: sa.Engine) -> list[tuple[str, str]]:
    with ours.connect() as conn:
        query = sa.select(tables.legacy_migration_error.c.guid, tables.legacy_migration_error.c.reason)
        return [tuple(row) for row in conn.execute(query.order_by(tables.legacy_migration_error.c.guid))]


# ---------------------------------------------------------------------------- verify


@dataclass
class Verification:
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (legacy, ours)
    sampled: int = 0
    rejected: int = 0  # legacy rows in the error report (a difference only if upstream counted them)
    blocks: BlockAudit | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _tester_matches(legacy_conn: sa.Connection, tester: str, row: sa.RowMapping) -> bool:
    """The legacy ``tester`` (``addr (Name)``, ``"Name" <addr>``, a bare address or a name)
    names the profile of our report: its address, or one the profile used before."""
    address = email_address(tester)
    if address is None:
        return legacy_name(tester).strip('"') == row["reporter"]
    if row["reporter_email"] and address.lower() == row["reporter_email"].lower():
        return True
    if not row["creator"]:
        return False
    query = sa.select(sa.func.count()).where(
        testers_email.c.resource == row["creator"], testers_email.c.email.like(f"%{address}%")
    )
    return bool(legacy_conn.execute(query).scalar())


def verify(legacy: sa.Engine, ours: sa.Engine, sample: int = 1000, seed: int | None = None) -> Verification:
    """Check our data against the legacy tables, not against the converter: every legacy
    table's row count, and for a random sample of legacy reports that upstream processed,
    the grade, dist, version, perl, osname and tester of the legacy ``cpanstats`` row
    against our ``test_report`` row of the same GUID. Also that every block a report
    refers to is stored (``audit_blocks``)."""
    found = Verification()
    rng = random.Random(seed)
    legacy_count = legacy_counts(legacy)
    errors = dict(error_rows(ours))
    with ours.connect() as conn:
        for name in COPIED_TABLES:
            mine = conn.execute(sa.select(sa.func.count()).select_from(tables.metadata.tables[name])).scalar()
            found.counts[name] = (legacy_count[name], mine)
            if mine < legacy_count[name]:
                found.differences.append(f"{name}: {legacy_count[name]} legacy rows, {mine} here")
        reports = conn.execute(sa.select(sa.func.count()).select_from(tables.test_report)).scalar()
        users = conn.execute(sa.select(sa.func.count()).select_from(tables.metabase_user)).scalar()
    found.counts["metabase -> test_report"] = (legacy_count["metabase"], reports)
    if reports + len(errors) < legacy_count["metabase"]:
        found.differences.append(
            f"test_report: {legacy_count['metabase']} legacy rows, {reports} here + {len(errors)} rejected"
        )
    with legacy.connect() as conn:
        profiles = conn.execute(sa.select(sa.func.count(sa.distinct(testers_email.c.resource)))).scalar()
    found.counts["testers_email -> metabase_user"] = (profiles, users)
    if users < profiles:
        found.differences.append(f"metabase_user: {profiles} legacy profiles, {users} here")
    found.rejected = len(errors)
    with ours.connect() as conn:
        found.blocks = audit_blocks(conn)
    for digest in found.blocks.missing[:20]:
        found.differences.append(f"report_block {digest.hex()}: referred to by a report, not stored")

    cpanstats = sa.table(
        "cpanstats", *[sa.column(c) for c in ("guid", "state", "dist", "version", "perl", "osname", "tester")]
    )
    attempts = 0
    checked: set[str] = set()
    with legacy.connect() as lconn, ours.connect() as oconn:
        while found.sampled < sample and attempts < sample * 4:
            attempts += 1
            point = f"{rng.getrandbits(128):032x}"
            point = f"{point[:8]}-{point[8:12]}-{point[12:16]}-{point[16:20]}-{point[20:]}"
            guid = lconn.execute(
                sa.select(metabase.c.guid).where(metabase.c.guid >= point).order_by(metabase.c.guid).limit(1)
            ).scalar()
            if guid is None:
                guid = lconn.execute(sa.select(metabase.c.guid).order_by(metabase.c.guid).limit(1)).scalar()
            if guid is None or guid.lower() in checked:
                if guid is None:
                    break
                continue
            checked.add(guid.lower())
            stats = lconn.execute(sa.select(cpanstats).where(cpanstats.c.guid == guid)).mappings().first()
            if stats is None:
                continue  # never processed upstream: nothing independent to compare with
            found.sampled += 1
            mine = (
                oconn.execute(sa.select(tables.test_report).where(tables.test_report.c.guid == guid.lower()))
                .mappings()
                .first()
            )
            if mine is None:
                reason = errors.get(guid.lower())
                found.differences.append(f"{guid}: not in test_report" + (f" (rejected: {reason})" if reason else ""))
                continue
            for legacy_column, column in (
                ("state", "grade"),
                ("dist", "dist"),
                ("version", "version"),
                ("perl", "perl"),
                ("osname", "osname"),
            ):
                if str(stats[legacy_column]) != str(mine[column]):
                    found.differences.append(f"{guid}: {column} {mine[column]!r} != legacy {stats[legacy_column]!r}")
            if not _tester_matches(lconn, stats["tester"], mine):
                found.differences.append(
                    f"{guid}: tester {mine['reporter']!r} <{mine['reporter_email']}> != legacy {stats['tester']!r}"
                )
    with ours.begin() as conn:
        _save_progress(
            conn,
            "verify",
            done=found.ok,
            migrated=found.sampled,
            failed=len(found.differences),
            detail="\n".join(found.differences[:100]) or None,
        )
    return found


# ---------------------------------------------------------------------------- drop


class NotVerified(RuntimeError):
    pass


def table_bytes(conn: sa.Connection, names: Iterable[str]) -> dict[str, int]:
    """Data + index bytes of tables of the connection's database, from information_schema."""
    query = sa.text(
        "SELECT table_name, COALESCE(data_length, 0) + COALESCE(index_length, 0) FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_name IN :names"
    ).bindparams(sa.bindparam("names", expanding=True))
    return {name: int(size) for name, size in conn.execute(query, {"names": list(names)})}


def drop_legacy_cache(legacy: sa.Engine, ours: sa.Engine) -> int:
    """Drop the legacy ``metabase`` table after a verify that passed since the last
    migration step; returns the bytes it took (information_schema). Raises NotVerified."""
    with ours.connect() as conn:
        rows = {row["name"]: row for row in progress_rows(conn)}
    check = rows.get("verify")
    if check is None or not check["done"]:
        raise NotVerified("no successful verify recorded: run `verify` first")
    reports = [row for name, row in rows.items() if name.startswith("reports:")]
    if len(reports) < len(RANGES) or not all(row["done"] for row in reports):
        raise NotVerified("the report migration has not finished every GUID range")
    if any(row["updated"] > check["updated"] for row in rows.values() if row["name"] != "verify"):
        raise NotVerified("the migration ran again after the last verify: verify again")
    with legacy.connect() as conn:
        conn.exec_driver_sql("ANALYZE TABLE metabase")  # fresh sizes in information_schema
        size = table_bytes(conn, ["metabase"]).get("metabase", 0)
    with legacy.begin() as conn:
        conn.exec_driver_sql("DROP TABLE metabase")
    with ours.begin() as conn:
        _save_progress(conn, "dropped", done=True, migrated=size, detail=f"metabase table dropped, {size} bytes")
    return size
