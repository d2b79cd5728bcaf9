"""``release_factor_count``: each release's FAIL/PASS counts per factor and value, added to
by the enrichment as it writes a report's facts, and read by the failure analysis.

Exactly once, as ``release_summary`` is: a report's ``report_facts.counted`` says whether
its contribution is in the counts. Writing a report's facts again takes its old
contribution away and adds the new one (nothing at all when its facts did not change), in
the same transaction and under the facts row's lock (see
:func:`storage.report_facts.write_rows`); a report not counted yet only adds.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from schemas.reportparse import ParsedReport
from storage.fact_codec import unpack_pairs, unpack_triples
from storage.release_factors import REPORT_COLUMNS, FactInputs, Known, ReportColumns, add_report, fact_keys
from storage.tables import analysis_release, fact_set, prereq_set_item, release_factor_count, report_facts, test_report
from storage.upserts import insert_missing

LOOKUP_CHUNK = 500
"""Ids per ``IN (...)`` look-up."""


def _chunks(items: Sequence, size: int = LOOKUP_CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_RELEASES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per engine, (dist, version) -> analysis_release id (rows are never deleted)."""

RELEASES_LIMIT = 100_000


def _release_cache(engine: sa.Engine) -> dict:
    cache = _RELEASES.get(engine)
    if cache is None:
        cache = _RELEASES[engine] = {}
        sa.event.listen(engine, "engine_disposed", lambda _engine: cache.clear())
    if len(cache) > RELEASES_LIMIT:
        cache.clear()
    return cache


def intern_releases(engine: sa.Engine, releases: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The ``analysis_release`` id of each (dist, version), inserting the new ones (committed
    on return). The database compares them as it compares ``test_report``'s columns (on
    MariaDB, "Foo" is "foo"), so a release is counted as the analysis finds its reports."""
    cache = _release_cache(engine)
    ids = {}
    wanted = []
    for release in set(releases):
        known = cache.get(release)
        if known is None:
            wanted.append(release)
        else:
            ids[release] = known
    if not wanted:
        return ids
    wanted.sort()  # one insertion order everywhere
    r = analysis_release.c
    with engine.begin() as conn:
        insert_missing(conn, analysis_release, [{"dist": d, "version": v} for d, v in wanted], ["dist", "version"])
        for dist, version in wanted:
            found = conn.execute(sa.select(r.id).where(r.dist == dist, r.version == version)).scalar_one()
            cache[(dist, version)] = ids[(dist, version)] = found
    return ids


# -- a report's contribution, new and old ---------------------------------------------------


@dataclass
class Counting:
    """What a report adds to its release's counts."""

    release_id: int
    grade: str
    columns: list[tuple[int, int]]
    facts: list[tuple[int, int, int]]


def parsed_inputs(parsed: ParsedReport, strings: dict[str, int]) -> FactInputs:
    """The facts of a parsed report as the factors read them (what :func:`stored_inputs`
    reads back from its stored rows)."""
    return FactInputs(
        strings[parsed.user_agent] if parsed.user_agent else None,
        tuple((strings[name], strings[value]) for name, value in parsed.config.items()),
        frozenset(strings[name] for name in parsed.environment) if parsed.environment else None,
        tuple((strings[p.phase], strings[p.name], strings[p.need], strings[p.have]) for p in parsed.prerequisites),
    )


def report_columns(engine: sa.Engine, report_ids: list[int]) -> dict[int, ReportColumns]:
    """The columns the analysis counts of each report (they never change once stored).
    Plain SQL with the ids as literal integers: this runs for every batch a worker
    enriches, where building the statement would cost more than the database's work."""
    found = {}
    select = f"SELECT id, {', '.join(REPORT_COLUMNS)} FROM {test_report.name} WHERE id IN "
    with engine.connect() as conn:
        for chunk in _chunks(report_ids):
            rows = conn.exec_driver_sql(select + "(" + ",".join(str(int(i)) for i in chunk) + ")")
            found.update((report_id, ReportColumns(*values)) for report_id, *values in rows)
    return found


IDENTITY = ("user_agent", "config_set", "env_set", "prereq_set")
"""The ``report_facts`` columns a report's counts depend on (and the names in ``env_spans``)."""


def identity(row) -> tuple:
    spans = row["env_spans"]
    names = tuple(sorted(name for name, _s, _e in unpack_triples(bytes(spans)))) if spans else ()
    return (*(row[c] for c in IDENTITY), names)


def lock_facts(conn: sa.Connection, report_ids: list[int]) -> dict[int, dict]:
    """The current facts rows of these reports, locked until the commit. A report without
    one gets a placeholder first (parser 0, not counted; the upsert that follows fills it),
    so that there is a row to lock: two transactions writing the facts of one new report
    then take turns, and the second sees the first's row counted, never "not counted" twice
    (under READ COMMITTED a missing row locks nothing). When every placeholder went in (new
    reports: the workers' usual case) there is nothing to read: the rows are this
    transaction's own. Otherwise the rows are read with an exclusive lock (a duplicate
    placeholder only took a shared one)."""
    names = ("report_id", "counted", *IDENTITY, "env_spans")
    found = {}
    for chunk in _chunks(report_ids):
        ids = [int(i) for i in chunk]
        values = ",".join(f"({i},0)" for i in ids)
        if conn.dialect.name == "mysql":
            # IGNORE: its row count is the rows inserted (ON DUPLICATE KEY UPDATE's, with
            # pymysql's FOUND_ROWS, counts a duplicate too); (id, 0) has no other error to hide.
            insert, lock = f"INSERT IGNORE INTO {report_facts.name} (report_id, parser) VALUES {values}", " FOR UPDATE"
        else:  # SQLite: the writer holds the whole database
            insert, lock = (
                f"INSERT INTO {report_facts.name} (report_id, parser) VALUES {values} ON CONFLICT DO NOTHING",
                "",
            )
        if conn.exec_driver_sql(insert).rowcount == len(ids):
            found.update((i, {"report_id": i, "counted": False}) for i in ids)
            continue
        sql = f"SELECT {', '.join(names)} FROM {report_facts.name} WHERE report_id IN ({','.join(map(str, ids))}){lock}"
        found.update((row[0], dict(zip(names, row, strict=True))) for row in conn.exec_driver_sql(sql))
    return found


def stored_inputs(conn: sa.Connection, rows: dict[int, dict]) -> dict[int, FactInputs]:
    """The facts of stored ``report_facts`` rows as the factors read them (their sets and
    prerequisite lists read back): what those reports were counted with."""
    if not rows:
        return {}
    set_ids = sorted({row[c] for row in rows.values() for c in ("config_set", "env_set") if row[c] is not None})
    pairs: dict[int, list[tuple[int, int]]] = {}
    for chunk in _chunks(set_ids):
        query = sa.select(fact_set.c.id, fact_set.c.pairs).where(fact_set.c.id.in_(list(chunk)))
        pairs.update((set_id, unpack_pairs(bytes(packed))) for set_id, packed in conn.execute(query))
    lists = sorted({row["prereq_set"] for row in rows.values() if row["prereq_set"] is not None})
    items: dict[int, list[tuple[int, int, int, int]]] = {}
    i = prereq_set_item.c
    for chunk in _chunks(lists):
        query = sa.select(i.set_id, i.phase, i.module, i.need, i.have).where(i.set_id.in_(list(chunk)))
        for set_id, *item in conn.execute(query):
            items.setdefault(set_id, []).append(tuple(item))
    found = {}
    for report_id, row in rows.items():
        spans = row["env_spans"]
        variables = {name for name, _s, _e in unpack_triples(bytes(spans))} if spans else set()
        variables.update(name for name, _value in pairs.get(row["env_set"], ()) if row["env_set"] is not None)
        found[report_id] = FactInputs(
            row["user_agent"],
            tuple(pairs.get(row["config_set"], ())) if row["config_set"] is not None else (),
            frozenset(variables) if row["env_set"] is not None or spans else None,
            tuple(items.get(row["prereq_set"], ())) if row["prereq_set"] is not None else (),
        )
    return found


def count_changes(
    conn: sa.Connection, old: dict[int, dict], new: dict[int, dict], counting: dict[int, Counting], known: Known
) -> None:
    """In the transaction that wrote the reports' facts rows (``new``, by report id; ``old``
    as :func:`lock_facts` found them): move each counted report's changes into its
    release's counts. A report counted before gives back what its old facts added (nothing
    changes when they are the same facts), then adds what its new ones do."""
    deltas: dict[tuple, list[int]] = {}
    recounted = {
        i: old[i] for i in counting if old.get(i) and old[i]["counted"] and identity(old[i]) != identity(new[i])
    }
    before = stored_inputs(conn, recounted)
    for report_id, count in counting.items():
        was = old.get(report_id)
        if was is not None and was["counted"]:
            if report_id not in recounted:
                continue  # counted with these very facts
            keys = fact_keys(before[report_id], known)
            add_report(deltas, count.release_id, count.grade, count.columns, keys, sign=-1)
        add_report(deltas, count.release_id, count.grade, count.columns, count.facts)
    apply_deltas(conn, deltas)


# -- the counts table ----------------------------------------------------------------------


COUNT_COLUMNS = ("release_id", "kind", "name_id", "value_id", "fails", "passes", "others")
CHUNK = 2000


def apply_deltas(conn: sa.Connection, deltas: dict[tuple, list[int]]) -> None:
    """Add ``deltas`` ((release id, kind, name id, value id) -> [fails, passes, others]) to
    the counts, in key order (a fixed lock order between workers), as literal multi-row
    upserts of integers (tens of rows per report: escaping each value in Python would cost
    more than the database's work); rows that reach zero are removed."""
    rows = sorted((*key, *counts) for key, counts in deltas.items() if any(counts))
    if not rows:
        return
    table = release_factor_count.name
    prefix = f"INSERT INTO {table} ({', '.join(COUNT_COLUMNS)}) VALUES "
    if conn.dialect.name == "mysql":
        suffix = " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = {c} + VALUES({c})" for c in COUNT_COLUMNS[4:])
    else:
        suffix = f" ON CONFLICT ({', '.join(COUNT_COLUMNS[:4])}) DO UPDATE SET " + ", ".join(
            f"{c} = {c} + excluded.{c}" for c in COUNT_COLUMNS[4:]
        )
    for start in range(0, len(rows), CHUNK):
        values = ",".join("(" + ",".join(str(int(v)) for v in row) + ")" for row in rows[start : start + CHUNK])
        conn.exec_driver_sql(prefix + values + suffix)
    taken = [row[:4] for row in rows if min(row[4:]) < 0]
    if taken:
        c = release_factor_count.c
        key = sa.tuple_(c.release_id, c.kind, c.name_id, c.value_id)
        for start in range(0, len(taken), CHUNK):
            conn.execute(
                release_factor_count.delete().where(
                    key.in_(taken[start : start + CHUNK]), c.fails == 0, c.passes == 0, c.others == 0
                )
            )


def release_rows(conn: sa.Connection, dist: str, version: str) -> list[tuple[int, int, int, int, int, int]]:
    """The count rows of a release: (kind, name id, value id, fails, passes, others)."""
    c, r = release_factor_count.c, analysis_release.c
    query = (
        sa.select(c.kind, c.name_id, c.value_id, c.fails, c.passes, c.others)
        .select_from(release_factor_count.join(analysis_release, r.id == c.release_id))
        .where(r.dist == dist, r.version == version)
    )
    return [tuple(row) for row in conn.execute(query)]


def uncounted():
    """The condition "the report is not counted" on a query that outer-joins report_facts."""
    return sa.or_(report_facts.c.report_id.is_(None), report_facts.c.counted == sa.false())


def release_coverage(conn: sa.Connection, dist: str, version: str) -> tuple[int, int]:
    """How many reports the release has (every grade), and how many of them are not counted
    (no facts yet, or facts written before the counts existed): one pass over the release's
    range of the (dist, version) index, each report's facts row found by its key."""
    t = test_report.c
    missing = sa.func.coalesce(sa.func.sum(sa.case((uncounted(), 1), else_=0)), 0)
    query = (
        sa.select(sa.func.count(), missing)
        .select_from(test_report.outerjoin(report_facts, report_facts.c.report_id == t.id))
        .where(t.dist == dist, t.version == version)
    )
    size, missing_count = conn.execute(query).one()
    return int(size), int(missing_count)


def forget_counts(engine: sa.Engine) -> None:
    """Empty ``release_factor_count`` and mark every report uncounted, in one transaction;
    the enrichment backfill then counts every report again. For counts that no longer
    match the facts (facts rows changed or deleted by hand; rules changed, see
    :data:`storage.release_factors.COUNTS_VERSION`). Meanwhile the analysis counts the
    uncounted reports from their facts. The facts rows are locked first, as a worker's
    enrichment locks them, then the counts: the same order, so the two never deadlock."""
    with engine.begin() as conn:
        conn.execute(report_facts.update().where(report_facts.c.counted == sa.true()).values(counted=False))
        conn.execute(release_factor_count.delete())
