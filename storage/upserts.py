"""The one place that knows how each dialect spells an upsert.

MySQL/MariaDB: ``INSERT ... ON DUPLICATE KEY UPDATE`` (assignments run left to right and
later ones see the earlier ones' results); SQLite: ``INSERT ... ON CONFLICT (key) DO
UPDATE`` (every assignment sees the old row). Callers write assignments that mean the same
on both: an assignment never reads a column assigned before it.

Nothing here reports whether a row was inserted or updated: pymysql's dialect sets
CLIENT.FOUND_ROWS, so ``rowcount`` cannot tell an insert from a no-op. Read the row back.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite

Assignments = Callable[[sa.ColumnCollection], list[tuple[str, sa.ColumnElement]]]
"""Given the proposed row (``inserted``/``excluded``), the ``(column, new value)`` pairs to set."""


_STATEMENTS: dict[tuple, sa.Insert] = {}
"""Built upsert statements by dialect, table, key and shape (see :func:`upsert`)."""

KEEP = "keep existing rows"
"""The shape of an upsert without assignments."""


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    values: dict | Sequence[dict],
    key: Sequence[str],
    assignments: Assignments | None = None,
    *,
    shape: Hashable | None = None,
) -> None:
    """Insert ``values``; on a conflict on the unique ``key`` apply ``assignments``
    (or leave the existing row alone when there are none).

    ``shape`` names what ``assignments`` produce (for example the tuple of the columns
    they set): the statement is then built once per shape and reused, where building it
    again costs more CPU than the database spends on a one-row upsert. Without a shape
    (and with assignments), it is built on every call."""
    if assignments is None:
        shape = KEEP
    cache_key = (conn.dialect.name, table, tuple(key), shape) if shape is not None else None
    stmt = _STATEMENTS.get(cache_key) if cache_key else None
    if stmt is None:
        stmt = _statement(conn.dialect.name, table, key, assignments)
        if cache_key:
            _STATEMENTS[cache_key] = stmt
    # The rows as parameters, not in the statement: its compiled form is then cached
    # (a statement with its VALUES inline is compiled again for every call); pymysql
    # sends an executemany of an INSERT as one multi-row statement.
    conn.execute(stmt, values if isinstance(values, dict) else list(values))


def _statement(dialect: str, table: sa.Table, key: Sequence[str], assignments: Assignments | None) -> sa.Insert:
    if dialect == "mysql":
        stmt = mysql.insert(table)
        if assignments is None:
            # A no-op update that keeps the row (INSERT IGNORE would also swallow other errors).
            first = key[0]
            return stmt.on_duplicate_key_update([(first, table.c[first])])
        return stmt.on_duplicate_key_update(assignments(stmt.inserted))
    if dialect == "sqlite":
        stmt = sqlite.insert(table)
        if assignments is None:
            # Any unique key, as MySQL's ON DUPLICATE KEY: a copied legacy table's ``key``
            # need not be one of its unique indexes.
            return stmt.on_conflict_do_nothing()
        return stmt.on_conflict_do_update(index_elements=list(key), set_=dict(assignments(stmt.excluded)))
    raise NotImplementedError(dialect)  # pragma: no cover - only the two dialects above are supported


def insert_missing(conn: sa.Connection, table: sa.Table, values: dict | Sequence[dict], key: Sequence[str]) -> None:
    """Insert rows whose ``key`` is not there yet; leave existing rows untouched."""
    upsert(conn, table, values, key)


def insert_int_rows(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[int | None]],
    key: Sequence[str] | None = None,
    chunk: int = 2000,
) -> None:
    """Insert rows of integers as literal multi-row ``INSERT`` statements (the report facts'
    id rows: tens per report, where escaping each value in Python would cost more than the
    database's work). With ``key``, a row whose key exists is left as it is. Values go
    through ``int()``, so nothing but digits reaches the SQL text."""
    if not rows:
        return
    prefix = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
    suffix = ""
    if key and conn.dialect.name == "mysql":
        suffix = f" ON DUPLICATE KEY UPDATE {key[0]} = {key[0]}"
    elif key:
        suffix = f" ON CONFLICT ({', '.join(key)}) DO NOTHING"
    for start in range(0, len(rows), chunk):
        values = ",".join(
            "(" + ",".join("NULL" if v is None else str(int(v)) for v in row) + ")"
            for row in rows[start : start + chunk]
        )
        conn.exec_driver_sql(prefix + values + suffix)
