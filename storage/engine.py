"""Create the SQLAlchemy engine for MySQL/MariaDB (pymysql) or the embedded SQLite file."""

from __future__ import annotations

import logging
import os
import socket

import sqlalchemy as sa
from pymysql.constants import SERVER_STATUS
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


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def local_connection_without_tls(url: str | sa.URL) -> bool:
    """True for a MySQL URL to this host with no ``ssl_*`` option: such connections skip
    TLS (``ssl_disabled``). pymysql's default otherwise builds a TLS context, loading the
    system's CA bundle, for every new connection (37 ms of CPU on a quiet day, paid by
    each web worker before its first request) to protect a link that never leaves the
    host. A URL with ``ssl_ca``/``ssl_cert`` keeps verified TLS, and one to another host
    keeps pymysql's default (TLS when the server offers it)."""
    parsed = normalise_url(url) if isinstance(url, str) else url
    if not parsed.drivername.startswith("mysql"):
        return False
    return parsed.host in LOOPBACK_HOSTS and not any(key.startswith("ssl") for key in parsed.query)


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 30, 10, 3
"""TCP keepalive of the workers' connections: a peer that vanished without a word (a cut
link, a host powered off) is noticed after about a minute of silence, not the kernel's two
hours."""


def keepalive_options() -> dict[int, int]:
    """``setsockopt`` TCP options for :data:`KEEPALIVE_IDLE` and friends (where the OS has them)."""
    options = {}
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        if hasattr(socket, name):
            options[getattr(socket, name)] = value
    return options


def create_engine(
    url: str,
    *,
    connect_timeout: int = 3,
    read_timeout: float | None = None,
    idle_timeout: int | None = None,
    **kwargs,
) -> sa.Engine:
    """An engine with the pragmas, pooling and timeouts this service relies on.

    SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions, so that two
    writers queue for the lock instead of failing half-way (the seed's lock timeouts).

    On MySQL, ``read_timeout`` bounds every wait for the server (reads and writes; the
    socket also gets TCP keepalive), so a client whose link died raises instead of hanging.
    ``idle_timeout`` sets the session's ``wait_timeout``: the server closes a session that
    sent nothing for that long and rolls back its open transaction, which bounds how long a
    client cut off mid-transaction holds its row locks. The pool then replaces connections
    after half that time, so an idle pooled connection is never one the server has closed.
    """
    parsed = normalise_url(url)
    if parsed.drivername.startswith("sqlite"):
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _configure_sqlite(engine)
        return engine
    connect_args = {"connect_timeout": connect_timeout}
    if local_connection_without_tls(parsed):
        connect_args["ssl_disabled"] = True
    recycle = POOL_RECYCLE_SECONDS
    if read_timeout:
        connect_args["read_timeout"] = read_timeout
        connect_args["write_timeout"] = read_timeout
    if idle_timeout:
        connect_args["init_command"] = f"SET SESSION wait_timeout = {int(idle_timeout)}"
        recycle = min(recycle, max(1, int(idle_timeout) // 2))
    # No pool_pre_ping: it costs a round trip per request. A connection that died with the
    # server fails its first statement, SQLAlchemy then discards the whole pool, and that
    # one submission goes to the spool instead (still acknowledged, never lost).
    kwargs.setdefault("pool_reset_on_return", None)  # _rollback_if_in_transaction does it, when needed
    engine = sa.create_engine(parsed, pool_recycle=recycle, connect_args=connect_args, **kwargs)
    sa.event.listen(engine, "reset", _rollback_if_in_transaction)
    if read_timeout or idle_timeout:

        @sa.event.listens_for(engine, "connect")
        def _keepalive(dbapi_connection, _record):
            sock = getattr(dbapi_connection, "_sock", None)  # pymysql's socket (SO_KEEPALIVE already on)
            if sock is not None and sock.family != socket.AF_UNIX:
                for option, value in keepalive_options().items():
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)

    return engine


def _rollback_if_in_transaction(dbapi_connection, _record, reset_state) -> None:
    """Reset a connection coming back to the pool with a ROLLBACK only when the server says
    a transaction is open. SQLAlchemy's default sends one after every committed
    ``engine.begin()`` too: a round trip per submission and per job for nothing. pymysql
    keeps the server's status flags from the last reply, so asking costs no round trip."""
    if reset_state.terminate_only or reset_state.transaction_was_reset:
        return
    if dbapi_connection.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS:
        dbapi_connection.rollback()


MYSQL_UNAVAILABLE_CODES = {
    1040,  # too many connections
    1045,  # access denied: the account is being changed; nothing a job can do about it
    1053,  # server shutdown in progress
    1927,  # connection was killed
    2002,  # can't connect through the socket
    2003,  # can't connect to the server
    2005,  # unknown host
    2006,  # server has gone away
    2013,  # lost connection during a query (read_timeout included)
    2055,  # lost connection at a system error
    4031,  # disconnected by the server for inactivity
}
"""MySQL/MariaDB errors that say "the server cannot be reached or used now", not "this
statement or this data is wrong"."""


class DatabaseUnavailable(Exception):
    """The database could not be reached or used: an outage, not a fault of the work."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) means the database is unreachable right now.

    Deadlocks, lock wait timeouts, constraint violations and SQL errors are not: they are
    about the work, and retrying it or failing it is the caller's business.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DatabaseUnavailable | sa.exc.DisconnectionError | sa.exc.TimeoutError):
            return True
        if isinstance(exc, sa.exc.DBAPIError):
            if exc.connection_invalidated:
                return True
            exc = exc.orig
            continue
        args = getattr(exc, "args", ())
        if type(exc).__module__.startswith("pymysql") and args and isinstance(args[0], int):
            return args[0] in MYSQL_UNAVAILABLE_CODES
        if isinstance(exc, ConnectionError | TimeoutError | socket.timeout):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


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


def create_read_engine(url: str, *, connect_timeout: int = 3, pool_size: int = 5) -> sa.Engine:
    """An engine for the read side (viewer, read API), pooling ``pool_size`` connections:
    one per request thread, as a smaller pool opens and closes the surplus on every request
    (for pymysql each a new TLS context, ~20 % of the read API's CPU).

    On MySQL/MariaDB its connections run in autocommit: every read is one statement, and a
    connection goes back to the pool without the ``ROLLBACK`` round trip that ends an
    implicit transaction. On SQLite it is ``query_only`` and its transactions are a
    deferred ``BEGIN`` (the writers' engine takes ``BEGIN IMMEDIATE``), so that in WAL mode
    a page view never holds the write lock a submission is waiting for."""
    parsed = normalise_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return create_engine(
            url,
            connect_timeout=connect_timeout,
            pool_size=pool_size,
            isolation_level="AUTOCOMMIT",
            skip_autocommit_rollback=True,
        )
    engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_size=pool_size)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN")

    return engine


def abandon(conn: sa.Connection) -> None:
    """Close ``conn`` in the middle of a streamed (server-side cursor) result without reading
    the rest of it: the connection is dropped from the pool, not returned to it.

    pymysql would otherwise read every remaining row to the end before the connection
    could be used or closed (an abandoned list of 600,000 rows costs the whole of it); its
    pending result is marked finished, so that nothing reads from the closed socket later."""
    dbapi = conn.connection.dbapi_connection if not conn.invalidated else None
    pending = getattr(dbapi, "_result", None)
    if pending is not None and getattr(pending, "unbuffered_active", False):
        pending.unbuffered_active = False
    conn.invalidate()
