"""The facts parsed from report texts: write them (idempotently), find the reports whose
facts are missing or stale, and read them back for the v3 answer.

A report's facts are one ``report_facts`` row of ids and counts, upserted: writing a
report's facts again replaces them. What the ids point to is content-addressed and
interned first, each kind in a short transaction of its own: strings (``fact_string``),
sets of name/value pairs (``fact_set``, the pairs packed in the row) and prerequisite
lists (``prereq_set`` with one ``prereq_set_item`` row per prerequisite). Interned rows are
never deleted: an id once read stays valid, and each process remembers the ids it has met
(a tester's environment repeats in every report it sends, so after warm-up most of a
report's facts cost no look-up). An interned row no report ends up using (a failed write)
is harmless.

Writing a report's facts also counts the report in its release's failure-analysis counts,
in the same transaction (``storage/factor_counts.py``).
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import sqlalchemy as sa

from schemas.reportparse import PARSER_VERSION, FailedFile, ParsedReport, Prerequisite, parse_report_text
from schemas.reportparse.model import prerequisite_order
from schemas.reportparse.shape import report_text
from schemas.text import storable
from storage.fact_codec import pack_pairs, pack_triples, unpack_pairs, unpack_triples
from storage.factor_counts import Counting, count_changes, intern_releases, lock_facts, parsed_inputs, report_columns
from storage.processing import deadlock_retry
from storage.release_factors import FACTOR_STRINGS, Known, ReportColumns, column_values, fact_keys
from storage.reports import read_document
from storage.tables import fact_set, fact_string, prereq_set, prereq_set_item, report_facts, test_report
from storage.upserts import insert_int_rows, insert_missing, upsert

logger = logging.getLogger(__name__)

SET_COLUMNS = ("config_set", "env_set", "perl_set", "toolchain_set", "failed_set")
"""The ``report_facts`` columns that point to ``fact_set`` rows."""
COUNT_COLUMNS = ("tests", "failures", "skipped", "todo_pass", "todo_fail", "duration")
LOOKUP_CHUNK = 500
"""Digests per ``IN (...)`` look-up."""
CACHE_ENTRIES = 200_000
"""Interned ids a process remembers per engine and kind (strings, sets): tens of MB at most."""


def digest(value: str) -> bytes:
    return hashlib.md5(value.encode("utf-8", "surrogatepass"), usedforsecurity=False).digest()


class _Ids(OrderedDict):
    """key (a digest, or a string itself) -> id, least recently used forgotten first."""

    def get_id(self, key) -> int | None:
        found = self.get(key)
        if found is not None:
            self.move_to_end(key)
        return found

    def put(self, key, value: int) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > CACHE_ENTRIES:
            self.popitem(last=False)


@dataclass
class _Caches:
    strings: _Ids
    sets: _Ids
    prereqs: _Ids


_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _caches(engine: sa.Engine) -> _Caches:
    """Per engine: interned rows are never deleted while it lives (a test that empties the
    tables disposes of its engine, which forgets them)."""
    caches = _CACHES.get(engine)
    if caches is None:
        caches = _CACHES[engine] = _Caches(_Ids(), _Ids(), _Ids())

        def forget(_engine) -> None:
            caches.strings.clear()
            caches.sets.clear()
            caches.prereqs.clear()

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
    """The ``fact_string`` id of each value, inserting the new ones (committed on return).
    The process remembers ids by the strings themselves (no digest for a known one)."""
    cache = _caches(engine).strings
    ids: dict[str, int] = {}
    wanted: dict[bytes, str] = {}
    for value in set(values):
        known = cache.get_id(value)
        if known is None:
            wanted[digest(value)] = value
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
        cache.put(value, found[key])
        ids[value] = found[key]
    return ids


def _canonical(strings: Iterable[str]) -> str:
    """An unambiguous text of a sequence of strings (each prefixed with its length)."""
    return "".join(f"{len(item)}:{item}" for item in strings)


def _set_digest(pairs: dict[str, str]) -> bytes:
    return digest(_canonical(item for pair in sorted(pairs.items()) for item in pair))


def _intern(engine: sa.Engine, table: sa.Table, cache: _Ids, wanted: dict[bytes, object], create) -> dict[bytes, int]:
    """Ids of content-addressed rows by digest: cached, read, or created by ``create(conn,
    missing digests)`` in one transaction with the look-up (sorted digests: one insertion
    order everywhere, so two workers never deadlock)."""
    ids: dict[bytes, int] = {}
    unknown = []
    for key in wanted:
        known = cache.get_id(key)
        if known is None:
            unknown.append(key)
        else:
            ids[key] = known
    if not unknown:
        return ids
    unknown.sort()
    with engine.begin() as conn:
        found = _read_ids(conn, table, unknown)
        missing = [d for d in unknown if d not in found]
        if missing:
            create(conn, missing, found)
    for key in unknown:
        cache.put(key, found[key])
        ids[key] = found[key]
    return ids


def intern_sets(engine: sa.Engine, wanted: dict[bytes, dict[str, str]], strings: dict[str, int]) -> dict[bytes, int]:
    """The ``fact_set`` id of each set of pairs, by :func:`_set_digest` (the keys of
    ``wanted``). ``strings`` must hold the ids of every name and value."""

    def create(conn, missing, found):
        rows = []
        for key in missing:
            pairs = sorted((strings[name], strings[value]) for name, value in wanted[key].items())
            rows.append({"digest": key, "pairs": pack_pairs(pairs)})
        insert_missing(conn, fact_set, rows, ["digest"])
        found.update(_read_ids(conn, fact_set, missing))

    return _intern(engine, fact_set, _caches(engine).sets, wanted, create)


def _prereq_digest(prerequisites: list[Prerequisite]) -> bytes:
    listed = sorted((p.phase, p.name, p.need, p.have) for p in prerequisites)
    return digest(_canonical(item for row in listed for item in row))


def intern_prereq_sets(
    engine: sa.Engine, wanted: dict[bytes, list[Prerequisite]], strings: dict[str, int]
) -> dict[bytes, int]:
    """The ``prereq_set`` id of each prerequisite list, by :func:`_prereq_digest` (the
    keys of ``wanted``), created with its items in one transaction (a set that exists has
    all its items: a second creator's items are duplicates, left alone)."""

    def create(conn, missing, found):
        insert_missing(conn, prereq_set, [{"digest": key} for key in missing], ["digest"])
        found.update(_read_ids(conn, prereq_set, missing))
        items = sorted(
            (found[key], strings[p.phase], strings[p.name], strings[p.need], strings[p.have])
            for key in missing
            for p in wanted[key]
        )
        insert_int_rows(conn, prereq_set_item, PREREQ_COLUMNS, items, key=("set_id", "phase", "module"))

    return _intern(engine, prereq_set, _caches(engine).prereqs, wanted, create)


PREREQ_COLUMNS = ("set_id", "phase", "module", "need", "have")


VALUE_IN_TEXT_CHARS = 64
"""Environment values longer than this are read from the report text (see :func:`in_text`)."""
VOLATILE_MARKERS = ("IS_RUNNING", "IS_EXECUTING", "SMOKER_CURRENT")


def in_text(name: str, value: str) -> bool:
    """Whether an environment variable's value is kept as its place in the report text
    rather than interned: values that change from report to report (PIDs, the dist being
    smoked, build directories in PERL5LIB and PATH, other paths, long values). The rest of
    a tester's environment then repeats exactly and is stored once (``fact_set``)."""
    return (
        len(value) > VALUE_IN_TEXT_CHARS
        or "/" in value
        or "\\" in value
        or any(marker in name for marker in VOLATILE_MARKERS)
    )


def _spanned(parsed: ParsedReport) -> list[str]:
    """The environment variables of ``parsed`` kept as places in its text."""
    return [
        name for name, value in parsed.environment.items() if name in parsed.environment_spans and in_text(name, value)
    ]


@dataclass
class _Prepared:
    """What storing one report's facts needs, worked out once."""

    parsed: ParsedReport
    sets: dict[str, tuple[bytes, dict[str, str]] | None]  # column -> (digest, pairs)
    spanned: list[str]
    prereqs: bytes | None  # digest of the prerequisite list

    def strings(self) -> Iterable[str]:
        parsed = self.parsed
        if parsed.user_agent:
            yield parsed.user_agent
        for p in parsed.prerequisites:
            yield from (p.phase, p.name, p.need, p.have)
        for found in self.sets.values():
            if found is not None:
                for name, value in found[1].items():
                    yield name
                    yield value
        yield from self.spanned


def _prepare(parsed: ParsedReport) -> _Prepared:
    spanned = _spanned(parsed)
    skip = set(spanned)
    sets = {
        "config_set": parsed.config,
        "env_set": {k: v for k, v in parsed.environment.items() if k not in skip},
        "perl_set": parsed.perl_variables,
        "toolchain_set": parsed.toolchain,
        "failed_set": {f.file: f.failed for f in parsed.failed_files},
    }
    return _Prepared(
        parsed,
        {column: (_set_digest(pairs), pairs) if pairs else None for column, pairs in sets.items()},
        spanned,
        _prereq_digest(parsed.prerequisites) if parsed.prerequisites else None,
    )


def store_facts(
    engine: sa.Engine, parsed_by_id: dict[int, ParsedReport], columns: dict[int, ReportColumns] | None = None
) -> None:
    """Write the facts of reports (by ``test_report.id``), replacing what they had, and
    count them in their release's failure-analysis counts (``storage/factor_counts.py``),
    by their ``columns`` (read here unless given: a report's columns never change)."""
    if not parsed_by_id:
        return
    prepared = {report_id: _prepare(parsed) for report_id, parsed in parsed_by_id.items()}
    if columns is None or not all(report_id in columns for report_id in prepared):
        columns = report_columns(engine, sorted(prepared))
    values = {i: column_values(c.perl, c.osname, c.archname, c.creator) for i, c in columns.items()}
    strings = intern_strings(
        engine,
        chain(
            (s for p in prepared.values() for s in p.strings()),
            (value for found in values.values() for _kind, value in found),
            FACTOR_STRINGS,
        ),
    )
    releases = intern_releases(engine, {(c.dist, c.version) for c in columns.values()})
    set_ids = intern_sets(
        engine, {f[0]: f[1] for p in prepared.values() for f in p.sets.values() if f is not None}, strings
    )
    prereq_ids = intern_prereq_sets(
        engine, {p.prereqs: p.parsed.prerequisites for p in prepared.values() if p.prereqs is not None}, strings
    )
    known = Known.from_ids(strings)
    rows, counting = [], {}
    for report_id in sorted(prepared):  # in key order: a fixed lock order
        p = prepared[report_id]
        parsed = p.parsed
        row = {
            "report_id": report_id,
            "parser": PARSER_VERSION,
            "user_agent": strings[parsed.user_agent] if parsed.user_agent else None,
            "build_offset": parsed.build_offset,
            "prereq_set": prereq_ids[p.prereqs] if p.prereqs is not None else None,
            **{c: getattr(parsed, c) for c in COUNT_COLUMNS},
        }
        for column, found in p.sets.items():
            row[column] = set_ids[found[0]] if found is not None else None
        spans = sorted((strings[name], *parsed.environment_spans[name]) for name in p.spanned)
        row["env_spans"] = pack_triples(spans) if spans else None
        report = columns.get(report_id)
        row["counted"] = report is not None  # a report that is not there has no release
        if report is not None:
            counting[report_id] = Counting(
                releases[(report.dist, report.version)],
                report.grade,
                [(kind, strings[value]) for kind, value in values[report_id]],
                fact_keys(parsed_inputs(parsed, strings), known),
            )
        rows.append(row)
    write_rows(engine, rows, counting, known)


@deadlock_retry
def write_rows(
    engine: sa.Engine, rows: list[dict], counting: dict[int, Counting] | None = None, known: Known | None = None
) -> None:
    """Upsert the ``report_facts`` rows in one transaction (retried on a deadlock), and move
    the changes of the reports in ``counting`` into their releases' failure-analysis
    counts (:func:`storage.factor_counts.count_changes`), under their facts rows' locks."""
    with engine.begin() as conn:
        old = lock_facts(conn, [row["report_id"] for row in rows]) if counting else {}
        columns = tuple(rows[0])
        upsert(conn, report_facts, rows, ["report_id"], lambda new: [(c, new[c]) for c in columns if c != "report_id"],
               shape=columns)  # fmt: skip
        if counting:
            count_changes(conn, old, {row["report_id"]: row for row in rows}, counting, known)


# -- which reports, and enriching them -------------------------------------------------------


def _stale(query: sa.Select, parser: int) -> sa.Select:
    return query.outerjoin(report_facts, report_facts.c.report_id == test_report.c.id).where(
        sa.or_(report_facts.c.report_id.is_(None), report_facts.c.parser < parser, report_facts.c.counted == sa.false())
    )


def stale_count(conn: sa.Connection, low: int, high: int, parser: int = PARSER_VERSION) -> int:
    """How many reports with ids ``low..high`` have no facts, facts of an older parser, or
    facts not counted in the failure-analysis counts yet (written before them)."""
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


def enrich_documents(
    engine: sa.Engine, documents: dict[int, dict], columns: dict[int, ReportColumns] | None = None
) -> int:
    """Parse and store the facts of documents already read (by ``test_report.id``), with
    their reports' ``columns`` when those were read too."""
    store_facts(engine, parse_documents(documents), columns)
    return len(documents)


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


def strings_by_id(conn: sa.Connection, ids: set[int]) -> dict[int, str]:
    """The interned strings of these ids (what :func:`intern_strings` gave them)."""
    found: dict[int, str] = {}
    ordered = sorted(ids)
    for chunk in _chunks(ordered):
        query = sa.select(fact_string.c.id, fact_string.c.value).where(fact_string.c.id.in_(list(chunk)))
        found.update((i, v) for i, v in conn.execute(query))
    return found


def load_facts(conn: sa.Connection, report_id: int, text: str) -> ParsedReport | None:
    """The stored facts of a report as a :class:`ParsedReport`, or None when it has none
    yet (not enriched: the caller may parse its text instead). ``text`` is the report's
    text (``schemas.reportparse.shape.report_text``), where some values are read from."""
    row = conn.execute(sa.select(report_facts).where(report_facts.c.report_id == report_id)).mappings().first()
    if row is None:
        return None
    prereq_rows = []
    if row["prereq_set"] is not None:
        i = prereq_set_item.c
        query = sa.select(i.phase, i.module, i.need, i.have).where(i.set_id == row["prereq_set"])
        prereq_rows = [tuple(r) for r in conn.execute(query)]
    set_ids = sorted({row[c] for c in SET_COLUMNS if row[c] is not None})
    items: dict[int, list[tuple[int, int]]] = {}
    if set_ids:
        query = sa.select(fact_set.c.id, fact_set.c.pairs).where(fact_set.c.id.in_(set_ids))
        items = {set_id: unpack_pairs(bytes(packed)) for set_id, packed in conn.execute(query)}
    spans = unpack_triples(bytes(row["env_spans"])) if row["env_spans"] is not None else []
    wanted = {i for r in prereq_rows for i in r}
    wanted.update(i for pairs in items.values() for pair in pairs for i in pair)
    wanted.update(name for name, _start, _end in spans)
    if row["user_agent"] is not None:
        wanted.add(row["user_agent"])
    strings = strings_by_id(conn, wanted)

    def pairs_of(column: str) -> dict[str, str]:
        found = items.get(row[column], []) if row[column] is not None else []
        return dict(sorted((strings[n], strings[v]) for n, v in found))

    environment = pairs_of("env_set")
    environment.update((strings[name], text[start:end]) for name, start, end in spans if end <= len(text))
    return ParsedReport(
        user_agent=strings[row["user_agent"]] if row["user_agent"] is not None else None,
        prerequisites=sorted(
            (Prerequisite(strings[p], strings[m], strings[n], strings[h]) for p, m, n, h in prereq_rows),
            key=prerequisite_order,
        ),
        environment=dict(sorted(environment.items())),
        environment_spans={strings[name]: (start, end) for name, start, end in spans},
        perl_variables=pairs_of("perl_set"),
        toolchain=pairs_of("toolchain_set"),
        config=pairs_of("config_set"),
        build_offset=row["build_offset"],
        failed_files=[FailedFile(file, failed) for file, failed in pairs_of("failed_set").items()],
        **{c: row[c] for c in COUNT_COLUMNS},
    )
