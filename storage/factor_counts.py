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
from collections.abc import Iterable

import sqlalchemy as sa

from storage.tables import analysis_release, release_factor_count, report_facts, test_report
from storage.upserts import insert_missing

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
