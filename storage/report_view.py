"""The report viewer's queries: a stored report with what is shown beside it.

A page view makes one round trip for a GUID (two for a numeric ``cpanstats`` id): the
report joined to its release's ``uploads`` row (the author) and its tester's
``metabase_user`` row (the name shown), all by primary or unique keys. During a
migration, a report not in ``test_report`` yet is read from the legacy cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from schemas.metabase import is_guid
from storage.legacy import legacy_fallback, legacy_guid_of_id
from storage.reports import read_document
from storage.tables import cpanstats, metabase_user, test_report, uploads

MAX_NUMERIC_ID = 2**32 - 1
"""cpanstats.id is an unsigned INT: longer digit strings cannot name a report."""


@dataclass
class ViewedReport:
    """A stored report (``row["report"]`` its v3 document) with the details that can
    change after it was stored: the author from ``uploads`` and the tester's profile."""

    row: dict
    author: str | None  # PAUSE id from uploads
    upload_filename: str | None
    tester_name: str | None  # from metabase_user, the profile's current name
    tester_email: str | None


GUID_OF_NUMERIC_ID = sa.select(cpanstats.c.guid).where(cpanstats.c.id == sa.bindparam("id"))
UPLOAD_OF_RELEASE = (
    sa.select(uploads.c.author, uploads.c.filename)
    .where(uploads.c.dist == sa.bindparam("dist"), uploads.c.version == sa.bindparam("version"))
    .limit(1)
)
PROFILE_OF_CREATOR = sa.select(metabase_user.c.fullname, metabase_user.c.email).where(
    metabase_user.c.resource == sa.bindparam("resource")
)
REPORT_WITH_DETAILS = (
    sa.select(
        *(test_report.c[name] for name in ("id", "guid", "dist", "version", "grade", "creator", "distfile", "report")),
        test_report.c.report_z,
        uploads.c.author,
        uploads.c.filename.label("upload_filename"),
        metabase_user.c.fullname,
        metabase_user.c.email,
    )
    .select_from(
        test_report.outerjoin(
            uploads, sa.and_(uploads.c.dist == test_report.c.dist, uploads.c.version == test_report.c.version)
        ).outerjoin(metabase_user, metabase_user.c.resource == test_report.c.creator)
    )
    .where(test_report.c.guid == sa.bindparam("guid"))
)
"""A stored report with its author (uploads: unique on dist, version) and its tester's
profile (unique resource) in one round trip. Built once: a view only binds values."""


def guid_of(conn: sa.Connection, ident: str, legacy_url: str | None = None) -> str | None:
    """The GUID a report id names: a GUID itself, or a numeric cpanstats id (ours, else
    the legacy database's during a migration); None for anything else."""
    if is_guid(ident):
        return ident.lower()
    if not ident.isdigit() or len(ident) > 10 or int(ident) > MAX_NUMERIC_ID:
        return None
    guid = conn.execute(GUID_OF_NUMERIC_ID, {"id": int(ident)}).scalar()
    if guid is None:
        guid = legacy_guid_of_id(legacy_url, int(ident))
    return guid.lower() if guid else None


def find_report(conn: sa.Connection, ident: str, legacy_url: str | None = None) -> ViewedReport | None:
    """The report named by a GUID or a numeric cpanstats id, with its document, or None.

    With ``legacy_url`` (a migration is running), a report not in ``test_report`` yet is
    read from the legacy Metabase cache, and a numeric id not in our ``cpanstats`` yet
    from the legacy ``cpanstats``; the legacy database is only asked about what we lack,
    so its being down never affects migrated reports.
    """
    guid = guid_of(conn, ident, legacy_url)
    if guid is None:
        return None
    stored = conn.execute(REPORT_WITH_DETAILS, {"guid": guid}).first()
    if stored is not None:
        row = dict(stored._mapping)
        row["report"] = read_document(conn, row)
        return ViewedReport(row, stored.author or None, stored.upload_filename or None, stored.fullname, stored.email)
    row = legacy_fallback(legacy_url, guid)
    if row is None:
        return None
    upload = conn.execute(UPLOAD_OF_RELEASE, {"dist": row["dist"], "version": row["version"]}).first()
    tester = conn.execute(PROFILE_OF_CREATOR, {"resource": row["creator"]}).first() if row.get("creator") else None
    return ViewedReport(
        row=dict(row),
        author=(upload.author or None) if upload else None,
        upload_filename=(upload.filename or None) if upload else None,
        tester_name=tester.fullname if tester else None,
        tester_email=tester.email if tester else None,
    )
