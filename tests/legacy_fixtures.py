"""The real legacy rows in ``tests/fixtures/legacy`` as raw column values, and a throwaway
legacy MariaDB database loaded with them.

The fixtures come in three dumps (see PROVENANCE in ``../shared/fixtures/upstream``):
YAML files written by Perl (double-quoted binary strings, one of them with raw Latin-1
bytes), a MySQL ``INTO OUTFILE`` dump of one ``report`` blob with its first byte lost,
and ``INSERT`` statements.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
LEGACY_FILES = ("metabase-schema.sql", "metabase.sql", "testers_email.sql")
CPANSTATS_FILES = ("cpanstats.sql", "uploads.sql")

_YAML_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
}


def _yaml_double_quoted(text: str, start: int) -> tuple[str, int]:
    """Decode a YAML double-quoted scalar starting after its opening quote (with line folding)."""
    out: list[str] = []
    i = start
    while True:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1]
            if nxt == "\n":  # escaped line break: join, drop the next line's indentation
                i += 2
                while text[i] in " \t":
                    i += 1
                continue
            if nxt in "xuU":
                size = {"x": 2, "u": 4, "U": 8}[nxt]
                out.append(chr(int(text[i + 2 : i + 2 + size], 16)))
                i += 2 + size
                continue
            out.append(_YAML_ESCAPES[nxt])
            i += 2
            continue
        if ch == "\n":  # folded line break: one space, or the empty lines as newlines
            while out and out[-1] in " \t":
                out.pop()
            i += 1
            breaks = 0
            while True:
                while text[i] in " \t":
                    i += 1
                if text[i] == "\n":
                    breaks += 1
                    i += 1
                else:
                    break
            out.append("\n" * breaks if breaks else " ")
            continue
        out.append(ch)
        i += 1


def read_perl_yaml(path: Path) -> list[dict]:
    """The mappings of a YAML stream as Perl's YAML dumps a row: binary strings as bytes."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    docs: list[dict] = []
    i = 0
    key_re = re.compile(r"(?m)^(---\s*\n)?([A-Za-z_]+): ?")
    while True:
        match = key_re.search(text, i)
        if match is None:
            return docs
        if match.group(1) or not docs:
            docs.append({})
        key = match.group(2)
        i = match.end()
        if text[i] == '"':
            value, i = _yaml_double_quoted(text, i + 1)
            docs[-1][key] = value.encode("latin-1")
        else:
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            plain = text[i:end].strip()
            docs[-1][key] = None if plain in ("~", "") else plain
            i = end


def read_outfile_blob(path: Path) -> bytes:
    """A blob dumped with ``SELECT ... INTO OUTFILE`` whose leading ``x`` (0x78) was lost."""
    raw = path.read_bytes()
    unescaped = re.sub(rb"\\(.)", lambda m: {b"0": b"\0", b"t": b"\t", b"n": b"\n"}.get(m.group(1), m.group(1)), raw)
    return b"x" + unescaped


_SQL_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'|(-?\d+)|(NULL)", re.S)
_SQL_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "b": "\b"}


def read_insert_rows(path: Path) -> list[tuple[str, list[str] | None, tuple]]:
    """``(table, columns or None, values)`` for every single-row ``INSERT`` in a dump."""
    rows = []
    text = path.read_text("utf-8")
    head = re.compile(r"INSERT INTO `(\w+)`\s*(?:\(([^)]*)\))?\s*VALUES\s*\(")
    for match in head.finditer(text):
        values = []
        i = match.end()
        while True:
            while text[i] in " ,\n":
                i += 1
            if text[i] == ")":
                break
            item = _SQL_STRING.match(text, i)
            if item.group(1) is not None:
                values.append(re.sub(r"\\(.)", lambda m: _SQL_ESCAPES.get(m.group(1), m.group(1)), item.group(1)))
            elif item.group(2) is not None:
                values.append(int(item.group(2)))
            else:
                values.append(None)
            i = item.end()
        columns = [c.strip() for c in match.group(2).split(",")] if match.group(2) else None
        rows.append((match.group(1), columns, tuple(values)))
    return rows


def metabase_rows() -> list[dict]:
    """Every real ``metabase.metabase`` row of the fixtures: guid, id, updated, report (bytes), fact."""
    rows = []
    for name in (
        "api-reports.yml",
        "4fe9f782-4594-11df-b067-2bba90befd91.yaml",
        "69952598-c015-11ee-98b0-b3c3213a625c.yaml",
    ):
        for doc in read_perl_yaml(FIXTURES / name):
            rows.append(
                {
                    "guid": doc["guid"],
                    "id": int(doc["id"]),
                    "updated": doc["updated"],
                    "report": doc["report"],
                    "fact": doc.get("fact"),
                    "source": name,
                }
            )
    for _table, columns, values in read_insert_rows(FIXTURES / "metabase.sql"):
        row = dict(zip(columns, values, strict=True))
        rows.append({**row, "report": row["report"].encode("utf-8"), "fact": None, "source": "metabase.sql"})
    return rows


def profile_rows() -> list[tuple]:
    return [values for _, _, values in read_insert_rows(FIXTURES / "testers_email.sql")]


def cpanstats_rows() -> list[dict]:
    return [dict(zip(cols, vals, strict=True)) for _, cols, vals in read_insert_rows(FIXTURES / "cpanstats.sql")]


# ---------------------------------------------------------------------------- a legacy database


def legacy_ddl() -> str:
    """The legacy DDL: the ``metabase`` database's tables and the cpanstats tables (schema 0.027)."""
    metabase = (FIXTURES / "metabase-schema.sql").read_text()
    metabase = re.sub(r"(?m)^(CREATE DATABASE|USE) .*$", "", metabase)
    cpanstats = (FIXTURES / "cpanstats-schema-0.027-MySQL.sql").read_text()
    return metabase + "\n" + cpanstats


def run_script(cursor, script: str) -> None:
    statement = []
    for line in script.splitlines():
        if line.startswith("--") or not line.strip():
            continue
        statement.append(line)
        if line.rstrip().endswith(";"):
            cursor.execute("\n".join(statement))
            statement = []


def create_legacy_database(host: str, port: int, user: str, name: str | None = None, rows: bool = True) -> str:
    """Create a legacy database (DDL + the fixture rows) on MariaDB; its name."""
    import pymysql

    name = name or f"cpt_legacy_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(host=host, port=port, user=user, charset="utf8mb4", autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET latin1")
            cursor.execute(f"USE `{name}`")
            run_script(cursor, legacy_ddl())
            if rows:
                insert_fixture_rows(cursor)
    finally:
        conn.close()
    return name


def insert_fixture_rows(cursor) -> None:
    """Every fixture row: metabase rows (raw blobs), profiles, cpanstats, uploads, perl versions."""
    cursor.execute("SET foreign_key_checks=0")
    for row in metabase_rows():
        cursor.execute(
            "INSERT INTO metabase (guid, id, updated, report, fact) VALUES (%s, %s, %s, %s, %s)",
            (row["guid"], row["id"], row["updated"], row["report"], row["fact"]),
        )
    for values in profile_rows():
        cursor.execute("INSERT INTO testers_email (id, resource, fullname, email) VALUES (%s, %s, %s, %s)", values)
    for name in CPANSTATS_FILES:
        for table, columns, values in read_insert_rows(FIXTURES / name):
            cols = ", ".join(columns)
            marks = ", ".join(["%s"] * len(values))
            cursor.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", values)
    cursor.execute(
        "INSERT IGNORE INTO perl_version (version, perl, patch, devel) SELECT DISTINCT perl, NULL, 0, 0 FROM cpanstats"
    )
    cursor.execute("SET foreign_key_checks=1")


def drop_database(host: str, port: int, user: str, name: str) -> None:
    import pymysql

    conn = pymysql.connect(host=host, port=port, user=user, autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()
