"""The facts parsed from report texts: write them (idempotently), find the reports whose
facts are missing or stale, and read them back for the v3 answer.

A report's facts are one ``report_facts`` row and its ``report_prereq`` rows, written
in one transaction that first locks (upserts) the ``report_facts`` row, so two runs on one
report serialise and the second one's rows replace the first's. Strings and sets are
interned before that transaction, each in a short transaction of its own, and are never
deleted: an id once read stays valid, and each process remembers the ids it has met (a
tester's environment repeats in every report it sends, so after warm-up enriching a report
costs one transaction and no look-up). An interned string or set that no report ends up
using (a failed write) is harmless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from schemas.reportparse import PARSER_VERSION, FailedFile, ParsedReport, Prerequisite, parse_report_text
from schemas.reportparse.model import prerequisite_order
from schemas.reportparse.shape import report_text
from schemas.text import storable
from storage.processing import deadlock_retry
from storage.reports import read_document
from storage.tables import fact_set, fact_set_item, fact_string, report_facts, report_prereq, test_report
from storage.upserts import insert_missing, upsert

logger = logging.getLogger(__name__)

SET_COLUMNS = ("config_set", "env_set", "perl_set", "toolchain_set", "failed_set")
COUNT_COLUMNS = ("tests", "failures", "skipped", "todo_pass", "todo_fail", "duration")
LOOKUP_CHUNK = 500
"""Digests per ``IN (...)`` look-up."""
CACHE_ENTRIES = 200_000
"""Interned ids a process remembers per engine and kind (strings, sets): tens of MB at most."""


def digest(value: str) -> bytes:
    return hashlib.md5(value.encode("utf-8", "surrogatepass"), usedforsecurity=False).digest()


class _Ids(OrderedDict):
    """digest -> id, least recently used forgotten first."""

    def get_id(self, key: bytes) -> int | None:
        found = self.get(key)
        if found is not None:
            self.move_to_end(key)
        return found

    def put(self, key: bytes, value: int) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > CACHE_ENTRIES:
            self.popitem(last=False)


@dataclass
class _Caches:
    strings: _Ids
    sets: _Ids


_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _caches(engine: sa.Engine) -> _Caches:
    """Per engine: interned rows are never deleted while it lives (a test that empties the
    tables disposes of its engine, which forgets them)."""
    caches = _CACHES.get(engine)
    if caches is None:
        caches = _CACHES[engine] = _Caches(_Ids(), _Ids())

        def forget(_engine) -> None:
            caches.strings.clear()
            caches.sets.clear()

        sa.event.listen(engine, "engine_disposed", forget)
    return caches


def _chunks(items: Sequence, size: int = LOOKUP_CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _read_ids(conn: sa.Connection, table: sa.Table, digests: Sequence[bytes]) -> dict[bytes, int]:
    found: dict[bytes, int] = {}
    for chunk in _chunks(digests):
        query = sa.select(table.c.digest, table.c.id).where(table.c.digest.in_(list(chunk)))
        found.update((bytes(d), i) for d, i in conn.execute(query))
    return found


def intern_strings(engine: sa.Engine, values: Iterable[str]) -> dict[str, int]:
    """The ``fact_string`` id of each value, inserting the new ones (committed on return)."""
    cache = _caches(engine).strings
    ids: dict[str, int] = {}
    wanted: dict[bytes, str] = {}
    for value in set(values):
        key = digest(value)
        known = cache.get_id(key)
        if known is None:
            wanted[key] = value
        else:
            ids[value] = known
    if not wanted:
        return ids
    digests = sorted(wanted)  # one insertion order everywhere: no deadlock between workers
    with engine.begin() as conn:
        found = _read_ids(conn, fact_string, digests)
        missing = [d for d in digests if d not in found]
        if missing:
            insert_missing(
                conn, fact_string, [{"digest": d, "value": storable(wanted[d])} for d in missing], ["digest"]
            )
            found.update(_read_ids(conn, fact_string, missing))
    for key, value in wanted.items():
        cache.put(key, found[key])
        ids[value] = found[key]
    return ids


def _set_digest(pairs: dict[str, str]) -> bytes:
    return digest(json.dumps(sorted(pairs.items()), ensure_ascii=False, separators=(",", ":")))


def intern_sets(engine: sa.Engine, sets: Iterable[dict[str, str]], strings: dict[str, int]) -> dict[bytes, int]:
    """The ``fact_set`` id of each non-empty set of pairs, by :func:`_set_digest`, creating
    the new ones with their items in one transaction (so a stored set has all its items).
    ``strings`` must hold the ids of every name and value."""
    cache = _caches(engine).sets
    ids: dict[bytes, int] = {}
    wanted: dict[bytes, dict[str, str]] = {}
    for pairs in sets:
        if not pairs:
            continue
        key = _set_digest(pairs)
        known = cache.get_id(key)
        if known is None:
            wanted[key] = pairs
        else:
            ids[key] = known
    if not wanted:
        return ids
    digests = sorted(wanted)
    with engine.begin() as conn:
        found = _read_ids(conn, fact_set, digests)
        missing = [d for d in digests if d not in found]
        if missing:
            insert_missing(conn, fact_set, [{"digest": d} for d in missing], ["digest"])
            found.update(_read_ids(conn, fact_set, missing))
            items = [
                {"set_id": found[d], "name_id": strings[name], "value_id": strings[value]}
                for d in missing
                for name, value in sorted(wanted[d].items())
            ]
            insert_missing(conn, fact_set_item, items, ["set_id", "name_id"])
    for key in wanted:
        cache.put(key, found[key])
        ids[key] = found[key]
    return ids


def _sets_of(parsed: ParsedReport) -> dict[str, dict[str, str]]:
    return {
        "config_set": parsed.config,
        "env_set": parsed.environment,
        "perl_set": parsed.perl_variables,
        "toolchain_set": parsed.toolchain,
        "failed_set": {f.file: f.failed for f in parsed.failed_files},
    }


def _strings_of(parsed: ParsedReport) -> Iterable[str]:
    if parsed.user_agent:
        yield parsed.user_agent
    for p in parsed.prerequisites:
        yield from (p.phase, p.name, p.need, p.have)
    for pairs in _sets_of(parsed).values():
        for name, value in pairs.items():
            yield name
            yield value


def store_facts(engine: sa.Engine, parsed_by_id: dict[int, ParsedReport]) -> None:
    """Write the facts of reports (by ``test_report.id``), replacing what they had."""
    if not parsed_by_id:
        return
    strings = intern_strings(engine, (s for parsed in parsed_by_id.values() for s in _strings_of(parsed)))
    set_ids = intern_sets(engine, (s for parsed in parsed_by_id.values() for s in _sets_of(parsed).values()), strings)
    rows, prereqs = [], []
    for report_id in sorted(parsed_by_id):
        parsed = parsed_by_id[report_id]
        row = {
            "report_id": report_id,
            "parser": PARSER_VERSION,
            "user_agent": strings[parsed.user_agent] if parsed.user_agent else None,
            "build_offset": parsed.build_offset,
            **{c: getattr(parsed, c) for c in COUNT_COLUMNS},
        }
        for column, pairs in _sets_of(parsed).items():
            row[column] = set_ids[_set_digest(pairs)] if pairs else None
        rows.append(row)
        for p in parsed.prerequisites:
            prereqs.append(
                {
                    "report_id": report_id,
                    "phase": strings[p.phase],
                    "module": strings[p.name],
                    "need": strings[p.need],
                    "have": strings[p.have],
                }
            )
    write_rows(engine, rows, prereqs)


def write_rows(engine: sa.Engine, rows: list[dict], prereqs: list[dict]) -> None:
    """One transaction: lock/replace the ``report_facts`` rows (in id order), then replace
    their ``report_prereq`` rows. Retried from the start on a deadlock."""
    ids = [row["report_id"] for row in rows]

    @deadlock_retry
    def run() -> None:
        with engine.begin() as conn:
            upsert(
                conn, report_facts, rows, ["report_id"], lambda new: [(c, new[c]) for c in rows[0] if c != "report_id"]
            )
            for chunk in _chunks(ids):
                conn.execute(report_prereq.delete().where(report_prereq.c.report_id.in_(list(chunk))))
            if prereqs:
                conn.execute(report_prereq.insert(), prereqs)

    run()


# -- which reports, and enriching them -------------------------------------------------------


def _stale(query: sa.Select, parser: int) -> sa.Select:
    return query.outerjoin(report_facts, report_facts.c.report_id == test_report.c.id).where(
        sa.or_(report_facts.c.report_id.is_(None), report_facts.c.parser < parser)
    )


def stale_count(conn: sa.Connection, low: int, high: int, parser: int = PARSER_VERSION) -> int:
    """How many reports with ids ``low..high`` have no facts, or facts of an older parser."""
    query = sa.select(sa.func.count()).select_from(test_report).where(test_report.c.id.between(low, high))
    return conn.execute(_stale(query, parser)).scalar_one()


def stale_ids(conn: sa.Connection, low: int, high: int, parser: int = PARSER_VERSION) -> list[int]:
    """The ids counted by :func:`stale_count`, in order."""
    query = sa.select(test_report.c.id).select_from(test_report).where(test_report.c.id.between(low, high))
    return list(conn.execute(_stale(query, parser).order_by(test_report.c.id)).scalars())


def id_bounds(conn: sa.Connection) -> tuple[int | None, int | None]:
    return tuple(conn.execute(sa.select(sa.func.min(test_report.c.id), sa.func.max(test_report.c.id))).one())


def _documents(engine: sa.Engine, where) -> dict[int, dict]:
    t = test_report.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.id, t.report, t.report_z).where(where)).mappings().all()
        return {row["id"]: read_document(conn, row) for row in rows}


def parse_documents(documents: dict[int, dict]) -> dict[int, ParsedReport]:
    """Each document's text parsed (pure; the part of enrichment that costs CPU)."""
    return {report_id: parse_report_text(report_text(doc)) for report_id, doc in documents.items()}


def enrich_ids(engine: sa.Engine, report_ids: Sequence[int]) -> int:
    """Parse and store the facts of these reports; returns how many were found."""
    if not report_ids:
        return 0
    documents = _documents(engine, test_report.c.id.in_(list(report_ids)))
    store_facts(engine, parse_documents(documents))
    return len(documents)


def enrich_guids(engine: sa.Engine, guids: Sequence[str]) -> int:
    """:func:`enrich_ids` by GUID."""
    if not guids:
        return 0
    documents = _documents(engine, test_report.c.guid.in_([g.lower() for g in guids]))
    store_facts(engine, parse_documents(documents))
    return len(documents)


def enrich_stale(engine: sa.Engine, low: int, high: int, batch: int = 250) -> int:
    """Enrich the reports of ids ``low..high`` whose facts are missing or stale (the
    backfill's unit of work), ``batch`` reports per transaction; returns how many."""
    with engine.connect() as conn:
        ids = stale_ids(conn, low, high)
    for chunk in _chunks(ids, batch):
        enrich_ids(engine, chunk)
    return len(ids)


# -- reading them back -----------------------------------------------------------------------


def _strings_by_id(conn: sa.Connection, ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    ordered = sorted(ids)
    for chunk in _chunks(ordered):
        query = sa.select(fact_string.c.id, fact_string.c.value).where(fact_string.c.id.in_(list(chunk)))
        found.update((i, v) for i, v in conn.execute(query))
    return found


def load_facts(conn: sa.Connection, report_id: int) -> ParsedReport | None:
    """The stored facts of a report as a :class:`ParsedReport`, or None when it has none
    yet (not enriched: the caller may parse its text instead)."""
    row = conn.execute(sa.select(report_facts).where(report_facts.c.report_id == report_id)).mappings().first()
    if row is None:
        return None
    prereq_rows = conn.execute(
        sa.select(report_prereq.c.phase, report_prereq.c.module, report_prereq.c.need, report_prereq.c.have).where(
            report_prereq.c.report_id == report_id
        )
    ).all()
    set_ids = {row[c] for c in SET_COLUMNS if row[c] is not None}
    items: dict[int, list[tuple[int, int]]] = {}
    if set_ids:
        query = sa.select(fact_set_item).where(fact_set_item.c.set_id.in_(sorted(set_ids)))
        for item in conn.execute(query):
            items.setdefault(item.set_id, []).append((item.name_id, item.value_id))
    wanted = {i for r in prereq_rows for i in r}
    wanted.update(i for pairs in items.values() for pair in pairs for i in pair)
    if row["user_agent"] is not None:
        wanted.add(row["user_agent"])
    text = _strings_by_id(conn, wanted)

    def pairs_of(column: str) -> dict[str, str]:
        found = items.get(row[column], []) if row[column] is not None else []
        return dict(sorted((text[n], text[v]) for n, v in found))

    prerequisites = sorted(
        (Prerequisite(text[p], text[m], text[n], text[h]) for p, m, n, h in prereq_rows),
        key=prerequisite_order,
    )
    config = pairs_of("config_set")
    return ParsedReport(
        user_agent=text[row["user_agent"]] if row["user_agent"] is not None else None,
        prerequisites=prerequisites,
        environment=pairs_of("env_set"),
        perl_variables=pairs_of("perl_set"),
        toolchain=pairs_of("toolchain_set"),
        config=config,
        build_offset=row["build_offset"],
        failed_files=[FailedFile(file, failed) for file, failed in pairs_of("failed_set").items()],
        **{c: row[c] for c in COUNT_COLUMNS},
    )
