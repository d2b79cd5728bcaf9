"""The legacy MySQL databases (the Metabase cache and the old cpanstats tables), read only.

Used by the migration (``scripts/migrate_legacy.py``) and by the fallback that serves a
report not yet migrated straight from the legacy cache (:func:`fetch_legacy_report`).
Text columns of the legacy Latin-1 tables hold UTF-8 bytes: they are read as bytes
(``CAST(... AS BINARY)``) and decoded here, never through the connection's charset.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import sqlalchemy as sa

from schemas.legacy import Converted, LegacyRowError, Profile, convert_row, profile_from_row
from storage.engine import create_engine
from storage.outage import Breaker

logger = logging.getLogger(__name__)

legacy_metadata = sa.MetaData()

metabase = sa.Table(
    "metabase",
    legacy_metadata,
    sa.Column("guid", sa.String(36), primary_key=True),
    sa.Column("id", sa.Integer, nullable=False),
    sa.Column("updated", sa.String(32)),
    sa.Column("report", sa.LargeBinary, nullable=False),
    sa.Column("fact", sa.LargeBinary),
)

testers_email = sa.Table(
    "testers_email",
    legacy_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("resource", sa.String(64), nullable=False),
    sa.Column("fullname", sa.String(255), nullable=False),
    sa.Column("email", sa.String(255)),
)

COPIED_TABLES = ("perl_version", "uploads", "cpanstats", "release_data", "release_summary")
"""Legacy cpanstats tables copied as they are, in foreign-key order."""


def binary(column) -> sa.ColumnElement:
    """A legacy text column as its stored bytes (MySQL); SQLite has no charsets to undo."""
    return sa.cast(column, sa.LargeBinary).label(column.name)


def legacy_engine(url: str) -> sa.Engine:
    return create_engine(url)


def profiles_query(resources=None) -> sa.Select:
    query = sa.select(
        testers_email.c.id,
        binary(testers_email.c.resource),
        binary(testers_email.c.fullname),
        binary(testers_email.c.email),
    )
    if resources is not None:
        query = query.where(testers_email.c.resource.in_(list(resources)))
    return query.order_by(testers_email.c.id)


def latest_profile_rows(conn: sa.Connection, resources=None) -> dict[str, Profile]:
    """One :class:`Profile` per resource, from its latest ``testers_email`` row (by id)."""
    profiles: dict[str, Profile] = {}
    for row_id, resource, fullname, email in conn.execute(profiles_query(resources)):
        del row_id  # rows come in id order: the last one seen wins
        profile = profile_from_row(resource, fullname, email)
        profiles[profile.resource] = profile
    return profiles


def metabase_rows_query(after: str | None, upper: str | None, limit: int) -> sa.Select:
    """A page of ``metabase`` rows by GUID (keyset pagination: constant cost per page)."""
    query = sa.select(metabase.c.guid, metabase.c.id, metabase.c.updated, metabase.c.report)
    if after is not None:
        query = query.where(metabase.c.guid > after)
    if upper is not None:
        query = query.where(metabase.c.guid < upper)
    return query.order_by(metabase.c.guid).limit(limit)


def fetch_legacy_report(conn: sa.Connection, guid: str) -> Converted | None:
    """The legacy cache row of ``guid`` converted to a v3 ``test_report`` row, or None.

    None too when the row can't be converted (logged): the caller answers 404 as for
    an unknown report.
    """
    row = conn.execute(
        sa.select(metabase.c.guid, metabase.c.id, metabase.c.updated, metabase.c.report).where(
            metabase.c.guid == guid.lower()
        )
    ).first()
    if row is None:
        return None

    def profile(resource: str) -> Profile | None:
        return latest_profile_rows(conn, [resource]).get(resource)

    stats = _legacy_cpanstats_guids(conn, [row.guid])
    try:
        return convert_row(row.guid, row.updated, row.report, profile, row.id, "done" if stats else "pending")
    except LegacyRowError as exc:
        logger.warning("legacy report not convertible guid=%s reason=%s", exc.guid, exc.reason)
        return None


def _legacy_cpanstats_guids(conn: sa.Connection, guids) -> set[str]:
    if not guids:
        return set()
    cpanstats = sa.table("cpanstats", sa.column("guid"))
    return {
        g.lower() for g in conn.execute(sa.select(cpanstats.c.guid).where(cpanstats.c.guid.in_(list(guids)))).scalars()
    }


def legacy_cpanstats_guids(conn: sa.Connection, guids) -> set[str]:
    """Which of ``guids`` have a row in the legacy ``cpanstats`` table (processed upstream)."""
    return _legacy_cpanstats_guids(conn, guids)


@lru_cache(maxsize=4)
def _fallback_engine(url: str) -> sa.Engine:
    return create_engine(url, connect_timeout=2, pool_size=2, max_overflow=2)


FALLBACK_RETRY_SECONDS = 30.0
"""After the legacy database failed to answer, the fallback is skipped this long: a
firewalled host would otherwise hold a reader thread for the connect timeout on every
not-found view, taking threads from the views of migrated reports."""


@lru_cache(maxsize=4)
def fallback_breaker(url: str) -> Breaker:
    """The circuit breaker of the legacy database at ``url`` (one per process)."""
    return Breaker(FALLBACK_RETRY_SECONDS)


def legacy_guid_of_id(url: str | None, report_id: int) -> str | None:
    """The GUID of a legacy ``cpanstats`` id (the viewer's numeric URLs) while the
    cpanstats rows are not copied yet; None when no URL is configured, the id is unknown
    or the legacy database does not answer (logged)."""
    if not url or fallback_breaker(url).open:
        return None
    stats = sa.table("cpanstats", sa.column("id"), sa.column("guid"))
    try:
        with _fallback_engine(url).connect() as conn:
            guid = conn.execute(sa.select(stats.c.guid).where(stats.c.id == report_id)).scalar()
    except sa.exc.SQLAlchemyError as exc:
        fallback_breaker(url).trip()
        logger.warning("legacy fallback unavailable id=%s error=%s", report_id, exc.__class__.__name__)
        return None
    return guid.lower() if isinstance(guid, str) else None


def legacy_fallback(url: str | None, guid: str) -> dict | None:
    """The v3 ``test_report`` row (``report`` = document) of a GUID not migrated yet, from
    the legacy cache at ``url``; None when no URL is configured, the row is unknown or the
    legacy database does not answer (logged; then not asked again for
    :data:`FALLBACK_RETRY_SECONDS`)."""
    if not url or fallback_breaker(url).open:
        return None
    try:
        with _fallback_engine(url).connect() as conn:
            converted = fetch_legacy_report(conn, guid)
    except sa.exc.SQLAlchemyError as exc:
        fallback_breaker(url).trip()
        logger.warning("legacy fallback unavailable guid=%s error=%s", guid, exc.__class__.__name__)
        return None
    return None if converted is None else converted.row
