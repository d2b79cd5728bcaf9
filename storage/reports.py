"""Queries on ``test_report``: store a report idempotently, read it back, find pending ones.

The v3 document is serialised here and nowhere else, so that how it is kept on disk
can change without touching any reader. New rows keep it packed (``storage/report_codec``):
its large blocks once in ``report_block`` by SHA-256, the rest compressed in ``report_z``
(``report`` is then empty); rows written before keep plain JSON in ``report``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime

import cachetools
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from storage import report_codec
from storage.tables import report_block, test_report


class Stored(enum.Enum):
    """What storing a submission did."""

    CREATED = "created"
    DUPLICATE = "duplicate"  # the same submission again: nothing new
    CONFLICT = "conflict"  # a different submission under a known GUID


def encode_document(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def decode_document(text: str) -> dict:
    return json.loads(text)


class BlockCache:
    """A small LRU of immutable blocks, bounded in bytes (content-addressed, so safe across
    databases); shared by the threads of a process."""

    def __init__(self, max_bytes: int):
        self._lru = cachetools.LRUCache(maxsize=max_bytes, getsizeof=len)
        self._lock = threading.Lock()

    def get(self, digest: bytes):
        with self._lock:
            return self._lru.get(digest)

    def put(self, digest: bytes, value) -> None:
        with self._lock, contextlib.suppress(ValueError):  # ValueError: larger than the whole cache
            self._lru[digest] = value


_COMPRESSED_BLOCKS = BlockCache(16 * 1024 * 1024)
_BLOCK_TEXTS = BlockCache(32 * 1024 * 1024)
"""Bounded: a long-running process (a worker, a migration) stays at a flat size."""

SIGHTINGS_LIMIT = 400_000
"""Chunk digests a process remembers having met once (about 40 MB at most): a chunk met
again becomes a shared block, one met once stays inline (report_codec.pack)."""
_SIGHTINGS = report_codec.RecentDigests(SIGHTINGS_LIMIT)


def _packed_values(rows: list[dict], known: report_codec.RecentDigests) -> tuple[list[dict], dict[bytes, bytes]]:
    """The rows' column values with the documents packed, and the blocks they refer to
    that are not ``known`` to be stored already."""
    values, blocks = [], {}
    for row in rows:
        report_z, row_blocks = report_codec.pack(row["report"], _COMPRESSED_BLOCKS, _SIGHTINGS, known)
        values.append({**row, "report": "", "report_z": report_z})
        blocks.update(row_blocks)
    for digest, body in blocks.items():
        _COMPRESSED_BLOCKS.put(digest, body)
    return values, blocks


_KNOWN_BLOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per engine, digests known to be committed in ``report_block``. Blocks are never
deleted, so a block seen once needs no look-up again: most submissions repeat a
tester's blocks and then touch ``report_block`` not at all."""

KNOWN_BLOCKS_LIMIT = 400_000
"""Digests remembered per engine (about 40 MB at most); the least recently met are
forgotten first, and a forgotten block costs one look-up when it is met again."""


def _known_blocks(engine: sa.Engine) -> report_codec.RecentDigests:
    known = _KNOWN_BLOCKS.get(engine)
    if known is None:
        known = _KNOWN_BLOCKS[engine] = report_codec.RecentDigests(KNOWN_BLOCKS_LIMIT)
    return known


def _store_blocks(conn: sa.Connection, blocks: dict[bytes, bytes]) -> list[bytes]:
    """Insert the blocks not stored yet, in digest order (two writers never deadlock).

    Returns the digests this transaction wrote: they are known only once it commits.
    """
    known = _known_blocks(conn.engine)
    digests = sorted(d for d in blocks if d not in known)
    if not digests:
        return []
    stored = set(conn.execute(sa.select(report_block.c.digest).where(report_block.c.digest.in_(digests))).scalars())
    known.update(stored)
    missing = [{"digest": d, "body": blocks[d]} for d in digests if d not in stored]
    if not missing:
        return []
    if conn.dialect.name == "mysql":
        stmt = mysql_insert(report_block).on_duplicate_key_update(digest=report_block.c.digest)
    else:
        stmt = sqlite_insert(report_block).on_conflict_do_nothing(index_elements=["digest"])
    conn.execute(stmt, missing)
    return [m["digest"] for m in missing]


_INSERT_SQL: dict[tuple[str, ...], str] = {}
"""The single-row INSERT's SQL on MySQL, by column set (a handful, fixed by the code)."""


def _insert_one(conn: sa.Connection, values: dict) -> None:
    """INSERT one ``test_report`` row. On MySQL the statement is compiled once and sent as
    driver SQL: building and cache-keying a Core statement per submission was half of
    SQLAlchemy's share of the intake's CPU (bench/RESULTS.md, "where each app's CPU goes"). No column of ``test_report`` converts its value on
    MySQL, and SQLAlchemy still wraps the driver's errors (a duplicate GUID stays an
    IntegrityError, an outage stays an OperationalError that spools)."""
    if conn.dialect.name != "mysql":
        conn.execute(test_report.insert(), values)
        return
    columns = tuple(values)
    sql = _INSERT_SQL.get(columns)
    if sql is None:
        sql = _INSERT_SQL[columns] = str(test_report.insert().compile(dialect=conn.dialect, column_keys=list(columns)))
    conn.exec_driver_sql(sql, values)


def store_report(engine: sa.Engine, row: dict) -> Stored:
    """Insert one ``test_report`` row (with ``report`` as a dict) in its own transaction."""
    (values,), blocks = _packed_values([row], _known_blocks(engine))
    try:
        with engine.begin() as conn:
            written = _store_blocks(conn, blocks)
            _insert_one(conn, values)
        _known_blocks(engine).update(written)
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
    # Packing a stored row again would store blocks no row refers to. (A submission of the
    # same GUID between this check and the INSERT can still leave a few: harmless, counted
    # by audit_blocks. Locking the GUIDs instead makes parallel migrations deadlock.)
    query = sa.select(test_report.c.guid).where(test_report.c.guid.in_([r["guid"] for r in rows]))
    stored = set(conn.execute(query).scalars())
    rows = [row for row in rows if row["guid"] not in stored]
    if not rows:
        return
    values, blocks = _packed_values(rows, _known_blocks(conn.engine))
    _store_blocks(conn, blocks)
    if conn.dialect.name == "mysql":
        stmt = mysql_insert(test_report).on_duplicate_key_update(guid=test_report.c.guid)
    else:
        stmt = sqlite_insert(test_report).on_conflict_do_nothing(index_elements=["guid"])
    conn.execute(stmt, values)  # executemany: pymysql packs it into multi-row INSERTs


@dataclass
class BlockAudit:
    """What the reports refer to against what ``report_block`` holds."""

    reports: int = 0
    referenced: int = 0  # distinct digests the packed reports refer to
    stored: int = 0  # rows in report_block
    missing: list[bytes] = field(default_factory=list)  # referred to, not stored: unreadable reports
    unreferenced: int = 0  # stored, referred to by no report: wasted disk


HEADER_BYTES = 3 + 32 * 63
"""Bytes of ``report_z`` read per report by :func:`audit_blocks`: the header of a report
with up to 63 blocks (the whole value is read for the rare larger one)."""


def audit_blocks(conn: sa.Connection, page: int = 5000) -> BlockAudit:
    """Check that every block a stored report refers to exists, and count the blocks no
    report refers to, reading the reports a page at a time (only their headers).
    Memory grows with the number of distinct blocks, not of reports."""
    audit = BlockAudit()
    referenced: set[bytes] = set()
    after = 0
    head = sa.func.substr(test_report.c.report_z, 1, HEADER_BYTES)
    while True:
        query = (
            sa.select(test_report.c.id, head)
            .where(test_report.c.id > after, test_report.c.report_z.is_not(None))
            .order_by(test_report.c.id)
            .limit(page)
        )
        rows = conn.execute(query).all()
        if not rows:
            break
        after = rows[-1][0]
        for report_id, header in rows:
            header = bytes(header)
            if report_codec.header_length(header) > len(header):
                query = sa.select(test_report.c.report_z).where(test_report.c.id == report_id)
                header = bytes(conn.execute(query).scalar())
            referenced.update(report_codec.block_digests(header))
        audit.reports += len(rows)
    audit.referenced = len(referenced)
    after = b""
    while True:
        query = sa.select(report_block.c.digest).where(report_block.c.digest > after)
        digests = [bytes(d) for d in conn.execute(query.order_by(report_block.c.digest).limit(page)).scalars()]
        if not digests:
            break
        after = digests[-1]
        audit.stored += len(digests)
        for digest in digests:
            if digest in referenced:
                referenced.discard(digest)
            else:
                audit.unreferenced += 1
    audit.missing = sorted(referenced)
    return audit


def load_report(conn: sa.Connection, guid: str) -> dict | None:
    """The stored row of a report (``report`` decoded to the v3 document), or None."""
    row = conn.execute(sa.select(test_report).where(test_report.c.guid == guid.lower())).mappings().first()
    if row is None:
        return None
    return {**row, "report": read_document(conn, row)}


def read_document(conn: sa.Connection, row) -> dict:
    """The v3 document of a ``test_report`` row (packed or plain JSON)."""
    if row["report_z"] is None:
        return decode_document(row["report"])
    report_z = bytes(row["report_z"])
    digests = report_codec.block_digests(report_z)
    texts = {d: text for d in digests if (text := _BLOCK_TEXTS.get(d)) is not None}
    missing = [d for d in digests if d not in texts]
    if missing:
        query = sa.select(report_block.c.digest, report_block.c.body).where(report_block.c.digest.in_(missing))
        for digest, body in conn.execute(query):
            texts[bytes(digest)] = report_codec.block_text(bytes(body))
            _BLOCK_TEXTS.put(bytes(digest), texts[bytes(digest)])
    return report_codec.unpack(report_z, texts, compressed=False)


def pending_page(
    conn: sa.Connection, older_than: datetime, limit: int = 10_000, after: tuple[datetime, int] | None = None
) -> list[tuple[str, datetime, int]]:
    """One page of ``(guid, created, id)`` of pending reports, oldest first, after the
    ``(created, id)`` of the previous page's last row: the whole backlog page by page."""
    query = sa.select(test_report.c.guid, test_report.c.created, test_report.c.id).where(
        test_report.c.state == "pending", test_report.c.created < older_than
    )
    if after is not None:
        created, row_id = after
        query = query.where(
            sa.or_(
                test_report.c.created > created, sa.and_(test_report.c.created == created, test_report.c.id > row_id)
            )
        )
    query = query.order_by(test_report.c.created, test_report.c.id).limit(limit)
    return [tuple(row) for row in conn.execute(query)]


def latest_reports(conn: sa.Connection, language: str, limit: int) -> list[sa.RowMapping]:
    """The newest reports of one language, newest first, without their documents."""
    columns = [c for c in test_report.c if c.name not in ("report", "report_z")]
    query = sa.select(*columns).where(test_report.c.language == language).order_by(test_report.c.id.desc()).limit(limit)
    return list(conn.execute(query).mappings())
