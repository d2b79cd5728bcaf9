"""Create the SQLAlchemy engine for MySQL/MariaDB (pymysql) or the embedded SQLite file."""

from __future__ import annotations

import logging
import os

import sqlalchemy as sa
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 15_000
"""How long a SQLite writer waits for the lock before failing (the seed's lock timeouts)."""

POOL_RECYCLE_SECONDS = 3600
"""Recycle MySQL connections before the server's wait_timeout closes them."""


def normalise_url(url: str) -> sa.URL:
    """Turn ``mysql://`` into ``mysql+pymysql://`` with utf8mb4, and make SQLite paths absolute."""
    parsed = make_url(url)
    if parsed.drivername in ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql"):
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        parsed = parsed.set(drivername="mysql+pymysql", query=query)
    elif parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        path = os.path.abspath(parsed.database)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        parsed = parsed.set(database=path)
    return parsed


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, connect_timeout: int = 3, **kwargs) -> sa.Engine:
    """An engine with the pragmas, pooling and timeouts this service relies on.

    SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions, so that two
    writers queue for the lock instead of failing half-way (the seed's lock timeouts).
    """
    parsed = normalise_url(url)
    if parsed.drivername.startswith("sqlite"):
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _configure_sqlite(engine)
        return engine
    connect_args = {"connect_timeout": connect_timeout}
    # No pool_pre_ping: it costs a round trip per request. A connection that died with the
    # server fails its first statement, SQLAlchemy then discards the whole pool, and that
    # one submission goes to the spool instead (still acknowledged, never lost).
    return sa.create_engine(
        parsed,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args=connect_args,
        **kwargs,
    )


def _configure_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # FULL: a 201 promises the report survives a power cut, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def max_allowed_packet(engine: sa.Engine) -> int | None:
    """The largest statement the database accepts, or None where there is no such limit."""
    if is_sqlite(engine):
        return None
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar())
