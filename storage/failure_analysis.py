"""Count a release's FAIL and PASS reports per candidate factor, for the failure analysis.

Read from ``release_factor_count`` (``storage/factor_counts.py``), which the enrichment
keeps up to date: a few thousand rows for a release of 10,000 reports. The release's
reports not counted there yet are counted here from the indexed columns and the parsed
report facts, as :func:`recount` counts a whole release: the report columns (perl, osname,
archname, tester), and the facts rows (reporter, ``perl -V`` fields, environment and
prerequisites, as ids of sets that many reports share), each distinct set and string
resolved once. The rules of what counts are in ``storage/release_factors.py``.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from operator import itemgetter

import sqlalchemy as sa

from storage.fact_codec import unpack_pairs, unpack_triples
from storage.factor_counts import release_coverage, release_rows, uncounted
from storage.release_factors import CONFIG_FLAGS, ENVIRONMENT_ALLOWLIST, Kind, factor_name, ordered
from storage.tables import fact_set, fact_string, prereq_set_item, report_facts, test_report

LOOKUP_CHUNK = 5000
"""Ids per ``IN (...)`` look-up: a release's 2,000 environments in one round trip (each
costs a few ms on a loaded server), well under SQLite's 32,766 bound parameters."""

__all__ = ["CONFIG_FLAGS", "ENVIRONMENT_ALLOWLIST", "release_analysis", "release_counts", "recount"]

logger = logging.getLogger(__name__)

COUNTED_GRADES = ("fail", "pass")
FAIL, PASS = 0, 1


class ReleaseCounts:
    """FAIL/PASS counts per factor and value for one release, and the release's totals."""

    def __init__(self) -> None:
        self.fail = 0
        self.passed = 0
        self.counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        self.ordered: set[str] = {"perl"}

    def add(self, factor: str, value, grade: str, reports: int) -> None:
        if value is None or value == "":
            return
        self.counts[factor][str(value)][FAIL if grade == "fail" else PASS] += reports

    def merge(self, other: ReleaseCounts) -> None:
        """Add ``other``'s counts (another set of the release's reports) to these."""
        self.fail += other.fail
        self.passed += other.passed
        for factor, values in other.counts.items():
            for value, (fails, passes) in values.items():
                entry = self.counts[factor][value]
                entry[FAIL] += fails
                entry[PASS] += passes
        self.ordered |= other.ordered


def _release(dist: str, version: str):
    return sa.and_(
        test_report.c.dist == dist, test_report.c.version == version, test_report.c.grade.in_(COUNTED_GRADES)
    )


def _strings(conn: sa.Connection, ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    wanted = sorted(i for i in ids if i is not None)
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        query = sa.select(fact_string.c.id, fact_string.c.value).where(fact_string.c.id.in_(chunk))
        found.update((string_id, value) for string_id, value in conn.execute(query))
    return found


def _fact_sets(conn: sa.Connection, set_ids: set[int]) -> dict[int, list[tuple[int, int]]]:
    """fact_set id -> its (name id, value id) pairs."""
    pairs: dict[int, list[tuple[int, int]]] = {}
    wanted = sorted(i for i in set_ids if i is not None)
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        query = sa.select(fact_set.c.id, fact_set.c.pairs).where(fact_set.c.id.in_(chunk))
        pairs.update((set_id, unpack_pairs(bytes(packed))) for set_id, packed in conn.execute(query))
    return pairs


def _prerequisite_counts(where) -> sa.Select:
    """(module id, installed version id, FAIL reports, PASS reports) of a release, counted in
    the database: its reports grouped by their (shared) prerequisite list, one row per list
    with its FAIL and PASS counts side by side, each list's items grouped by module so that a
    module listed in several phases counts once (MariaDB joins this as a lateral derived
    table, reading only the release's lists, each once). ``ORDER BY NULL``: MariaDB sorts
    every GROUP BY's rows otherwise, once per list here, for an order nobody reads."""
    facts, item, grade = report_facts.c, prereq_set_item.c, test_report.c.grade
    per_list = (
        sa.select(
            facts.prereq_set.label("set_id"),
            sa.func.sum(sa.case((grade == "fail", 1), else_=0)).label("fails"),
            sa.func.sum(sa.case((grade == "pass", 1), else_=0)).label("passes"),
        )
        .select_from(test_report.join(report_facts, facts.report_id == test_report.c.id))
        .where(where, facts.prereq_set.is_not(None))
        .group_by(facts.prereq_set)
        .order_by(sa.null())
        .subquery("per_list")
    )
    modules = (
        sa.select(item.set_id, item.module, sa.func.min(item.have).label("have"))
        .group_by(item.set_id, item.module)
        .order_by(sa.null())
        .subquery("modules")
    )
    return (
        sa.select(modules.c.module, modules.c.have, sa.func.sum(per_list.c.fails), sa.func.sum(per_list.c.passes))
        .select_from(per_list.join(modules, modules.c.set_id == per_list.c.set_id))
        .group_by(modules.c.module, modules.c.have)
        .order_by(sa.null())
    )


@dataclass
class CountedRows:
    """What the database returned for a release, before it is aggregated into factors."""

    reports: list
    """One row per report: (grade, perl, osname, archname, creator, user agent id, config
    set id, env set id, env spans)."""
    prereq_rows: list
    sets: dict[int, list[tuple[int, int]]]
    strings: dict[int, str]
    span_names: dict[bytes | None, frozenset[int]]
    """Each distinct ``env_spans`` value -> the ids of the variable names it holds."""


GRADE, PERL, OSNAME, ARCHNAME, CREATOR, USER_AGENT, CONFIG_SET, ENV_SET, ENV_SPANS = range(9)
"""Positions in a :attr:`CountedRows.reports` key."""


def count_rows(conn: sa.Connection, dist: str, version: str, only_uncounted: bool = False) -> CountedRows:
    """The database's part of :func:`recount`: two reads of the release's reports (their
    columns and facts ids, one row each; their prerequisite lists, counted per module and
    version by the database), then each distinct set and string once. ``only_uncounted``:
    only the reports not in ``release_factor_count`` yet."""
    where = _release(dist, version)
    if only_uncounted:
        where = sa.and_(where, uncounted())
    report, facts = test_report.c, report_facts.c
    per_report = (
        sa.select(
            report.grade,
            report.perl,
            report.osname,
            report.archname,
            report.creator,
            facts.user_agent,
            facts.config_set,
            facts.env_set,
            facts.env_spans,
        )
        .select_from(test_report.outerjoin(report_facts, facts.report_id == report.id))
        .where(where)
    )
    # One row per report: its changing environment variables, kept as spans of its text,
    # differ from report to report anyway (pymysql's decoding of each value is most of it).
    reports = conn.execute(per_report).all()
    sets = _fact_sets(conn, set(map(itemgetter(CONFIG_SET), reports)) | set(map(itemgetter(ENV_SET), reports)))
    prereq_rows = conn.execute(_prerequisite_counts(where)).all()
    span_names = {spans: frozenset(_span_names(spans)) for spans in set(map(itemgetter(ENV_SPANS), reports))}
    string_ids = set(map(itemgetter(USER_AGENT), reports)).union(*span_names.values())
    string_ids |= {i for pairs in sets.values() for pair in pairs for i in pair}
    string_ids |= {i for module, have, _fails, _passes in prereq_rows for i in (module, have)}
    strings = _strings(conn, string_ids)
    return CountedRows(reports, prereq_rows, sets, strings, span_names)


def _span_names(env_spans) -> tuple[int, ...]:
    """The name ids of packed (name id, start, end) triples."""
    return tuple(name for name, _start, _end in unpack_triples(bytes(env_spans))) if env_spans else ()


def _family(reports: list, *positions: int) -> Counter:
    """Reports counted per (grade, their values at ``positions``), by C code: a report's
    values are a tuple, and itemgetter, map and Counter never enter the interpreter's loop."""
    return Counter(map(itemgetter(GRADE, *positions), reports))


def aggregate(rows: CountedRows) -> ReleaseCounts:
    """The Python part of :func:`release_counts`: each distinct value and set expanded once
    into its factors (the cost grows with distinct sets, not with reports)."""
    result = ReleaseCounts()
    strings, sets = rows.strings, rows.sets
    for factor, position in (("perl", PERL), ("osname", OSNAME), ("archname", ARCHNAME), ("tester", CREATOR)):
        for (grade, value), reports in _family(rows.reports, position).items():
            if factor == "perl":
                result.fail += reports if grade == "fail" else 0
                result.passed += reports if grade == "pass" else 0
            if factor == "tester":
                value = (value or "").removeprefix("metabase:user:")
            result.add(factor, value, grade, reports)

    for (grade, user_agent), reports in _family(rows.reports, USER_AGENT).items():
        result.add("reporter", strings.get(user_agent), grade, reports)
    for (grade, config_set), reports in _family(rows.reports, CONFIG_SET).items():
        config = {strings.get(n): strings.get(v) for n, v in sets.get(config_set, ())}
        for flag in CONFIG_FLAGS:
            result.add(f"config {flag}", config.get(flag), grade, reports)

    # The variables present, per distinct environment set and distinct span names.
    names_of = rows.span_names.__getitem__
    by_environment = Counter(
        zip(
            map(itemgetter(GRADE), rows.reports),
            map(itemgetter(ENV_SET), rows.reports),
            map(names_of, map(itemgetter(ENV_SPANS), rows.reports)),
            strict=True,
        )
    )
    present_sets: dict[tuple, tuple[str, ...]] = {}
    env_counts: Counter = Counter()
    for (grade, env_set, names), reports in by_environment.items():
        if env_set is None and not names:
            continue  # no environment printed: unknown, not "unset"
        present = present_sets.get((env_set, names))
        if present is None:
            found = {strings.get(n) for n, _v in sets.get(env_set, ())} | {strings.get(n) for n in names}
            present = present_sets[(env_set, names)] = tuple(
                "set" if name in found else "unset" for name in ENVIRONMENT_ALLOWLIST
            )
        env_counts[(grade, present)] += reports
    for (grade, present), reports in env_counts.items():
        for name, value in zip(ENVIRONMENT_ALLOWLIST, present, strict=True):
            result.add(f"env {name}", value, grade, reports)

    for module, have, fails, passes in rows.prereq_rows:
        factor = f"prereq {strings.get(module)}"
        result.add(factor, strings.get(have), "fail", int(fails or 0))
        result.add(factor, strings.get(have), "pass", int(passes or 0))
        result.ordered.add(factor)
    return result


def recount(conn: sa.Connection, dist: str, version: str) -> ReleaseCounts:
    """Every candidate factor's FAIL/PASS counts for ``dist`` ``version``, counted from the
    reports' columns and facts alone (what ``release_factor_count`` holds, done again).

    Two queries read the release's reports: one row per report (its indexed columns and the
    ids of its facts), counted in Python by distinct row; and their prerequisite lists,
    counted per module and installed version by the database, once per distinct list. Each
    distinct set and string is then read once.
    """
    return aggregate(count_rows(conn, dist, version))


def from_count_rows(conn: sa.Connection, rows: list[tuple]) -> ReleaseCounts:
    """:class:`ReleaseCounts` from ``release_factor_count`` rows (their strings read once)."""
    result = ReleaseCounts()
    strings = _strings(conn, {i for row in rows for i in row[1:3] if i})
    for kind, name, value, fails, passes, _others in rows:
        if kind == Kind.TOTAL:
            result.fail += fails
            result.passed += passes
        elif fails or passes:
            factor = factor_name(kind, strings.get(name))
            entry = result.counts[factor][strings[value]]
            entry[FAIL] += fails
            entry[PASS] += passes
            if ordered(kind):
                result.ordered.add(factor)
    return result


def release_counts(conn: sa.Connection, dist: str, version: str) -> ReleaseCounts:
    """Every candidate factor's FAIL/PASS counts for ``dist`` ``version`` (grades other than
    PASS and FAIL say nothing about failing and are left out).

    Read from ``release_factor_count`` (a few thousand rows however many reports), plus the
    reports not counted there yet (not enriched yet, or enriched before the counts existed),
    counted from their facts. When the two do not add up to the release's reports, or a count
    is negative (the counts and the facts disagree: facts rows changed or deleted by hand,
    behind the enrichment's back), everything is counted from
    the facts, and a warning says so: ``scripts.backlog --enrich --recount`` repairs them.
    """
    rows = release_rows(conn, dist, version)
    counted = sum(fails + passes + others for kind, _n, _v, fails, passes, others in rows if kind == Kind.TOTAL)
    size, missing = release_coverage(conn, dist, version)
    if counted + missing != size or any(min(row[3:]) < 0 for row in rows):
        logger.warning(
            "release_factor_count of %s %s holds %d reports, %d more uncounted, of %d: counting from the facts",
            dist, version, counted, missing, size,
        )  # fmt: skip
        return recount(conn, dist, version)
    result = from_count_rows(conn, rows)
    if missing:
        result.merge(aggregate(count_rows(conn, dist, version, only_uncounted=True)))
    return result


def release_analysis(conn: sa.Connection, dist: str, version: str) -> dict:
    """The failure analysis of ``dist`` ``version`` as a JSON-ready dict (the counts from the
    tables above, every prerequisite also bucketed to major.minor, then the statistics)."""
    from schemas.failure_analysis import analyse, with_major_minor  # scipy: read side only

    counted = release_counts(conn, dist, version)
    counts, buckets = with_major_minor(counted.counts, [f for f in counted.ordered if f.startswith("prereq ")])
    result = analyse(counts, counted.fail, counted.passed, counted.ordered | buckets).as_dict()
    return {"dist": dist, "version": version, **result}
