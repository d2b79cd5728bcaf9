"""Queries on ``test_report``: store a report idempotently, read it back, find pending ones.

The v3 document is serialised here and nowhere else, so that how it is kept on disk
can change without touching any reader.
"""

from __future__ import annotations

import enum
import json
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from storage.tables import test_report


class Stored(enum.Enum):
    """What storing a submission did."""

    CREATED = "created"
    DUPLICATE = "duplicate"  # the same submission again: nothing new
    CONFLICT = "conflict"  # a different submission under a known GUID


def encode_document(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def decode_document(text: str) -> dict:
    return json.loads(text)


def store_report(engine: sa.Engine, row: dict) -> Stored:
    """Insert one ``test_report`` row (with ``report`` as a dict) in its own transaction."""
    values = {**row, "report": encode_document(row["report"])}
    try:
        with engine.begin() as conn:
            # One cached statement with bound values: no per-request SQL compilation.
            conn.execute(test_report.insert(), values)
        return Stored.CREATED
    except IntegrityError:
        with engine.connect() as conn:
            known = conn.execute(
                sa.select(test_report.c.submission_sha256).where(test_report.c.guid == row["guid"])
            ).scalar()
        if known is None:
            raise
        return Stored.DUPLICATE if known == row["submission_sha256"] else Stored.CONFLICT


def insert_reports(conn: sa.Connection, rows: list[dict]) -> None:
    """Insert many ``test_report`` rows (``report`` as dicts) in the caller's transaction,
    leaving any row whose GUID is already stored exactly as it is (the legacy migration)."""
    if not rows:
        return
    values = [{**row, "report": encode_document(row["report"])} for row in rows]
    if conn.dialect.name == "mysql":
        stmt = mysql_insert(test_report).on_duplicate_key_update(guid=test_report.c.guid)
    else:
        stmt = sqlite_insert(test_report).on_conflict_do_nothing(index_elements=["guid"])
    conn.execute(stmt, values)  # executemany: pymysql packs it into multi-row INSERTs


def load_report(conn: sa.Connection, guid: str) -> dict | None:
    """The stored row of a report (``report`` decoded to the v3 document), or None."""
    row = conn.execute(sa.select(test_report).where(test_report.c.guid == guid.lower())).mappings().first()
    if row is None:
        return None
    return {**row, "report": decode_document(row["report"])}


def pending_guids(conn: sa.Connection, older_than: datetime, limit: int = 10_000) -> list[str]:
    """GUIDs of reports still waiting for processing, oldest first (index on state, created)."""
    query = (
        sa.select(test_report.c.guid)
        .where(test_report.c.state == "pending", test_report.c.created < older_than)
        .order_by(test_report.c.created)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def latest_reports(conn: sa.Connection, language: str, limit: int) -> list[sa.RowMapping]:
    """The newest reports of one language, newest first, without their documents."""
    columns = [c for c in test_report.c if c.name != "report"]
    query = sa.select(*columns).where(test_report.c.language == language).order_by(test_report.c.id.desc()).limit(limit)
    return list(conn.execute(query).mappings())
