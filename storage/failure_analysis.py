"""Count a release's FAIL and PASS reports per candidate factor, for the failure analysis.

Read from the indexed columns and the parsed report facts, never the report documents: the
report columns (perl, osname, archname, tester), and the facts rows (reporter, ``perl -V``
fields, environment and prerequisites, as ids of sets that many reports share). Each
distinct set and string is resolved once, so a release's many reports cost little more
than their facts rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa

from storage.report_facts import unpack_pairs, unpack_triples
from storage.tables import fact_set, fact_string, prereq_set_item, report_facts, test_report

CONFIG_FLAGS = (
    "osvers",
    "useithreads",
    "usemultiplicity",
    "use64bitint",
    "use64bitall",
    "uselongdouble",
    "cc",
    "gccversion",
    "optimize",
)
"""``perl -V`` fields tested as factors (each its own factor, ``config <name>``)."""

ENVIRONMENT_ALLOWLIST = (
    "AUTHOR_TESTING",
    "AUTOMATED_TESTING",
    "EXTENDED_TESTING",
    "HARNESS_OPTIONS",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "NONINTERACTIVE_TESTING",
    "PERL5LIB",
    "PERL5OPT",
    "PERL_MM_USE_DEFAULT",
    "PERL_USE_UNSAFE_INC",
    "RELEASE_TESTING",
)
"""Environment variables whose presence (set or not) is a factor, ``env <NAME>``; their values
are not used (a path or a locale spelled a hundred ways says little, and may be private).
A report whose facts hold no environment variable at all (its reporter printed none) counts
as unknown for these factors, not as "unset"."""

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


def _release(dist: str, version: str):
    return sa.and_(
        test_report.c.dist == dist, test_report.c.version == version, test_report.c.grade.in_(COUNTED_GRADES)
    )


def _strings(conn: sa.Connection, ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    wanted = sorted(i for i in ids if i is not None)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = sa.select(fact_string.c.id, fact_string.c.value).where(fact_string.c.id.in_(chunk))
        found.update((string_id, value) for string_id, value in conn.execute(query))
    return found


def _fact_sets(conn: sa.Connection, set_ids: set[int]) -> dict[int, list[tuple[int, int]]]:
    """fact_set id -> its (name id, value id) pairs."""
    pairs: dict[int, list[tuple[int, int]]] = {}
    wanted = sorted(i for i in set_ids if i is not None)
    for start in range(0, len(wanted), 500):
        query = sa.select(fact_set.c.id, fact_set.c.pairs).where(fact_set.c.id.in_(wanted[start : start + 500]))
        pairs.update((set_id, unpack_pairs(bytes(packed))) for set_id, packed in conn.execute(query))
    return pairs


def _prerequisite_counts(where) -> sa.Select:
    """(module id, installed version id, grade, reports) of a release, counted in the database:
    its reports grouped by their (shared) prerequisite list, each list's items grouped by
    module so that a module listed in several phases counts once (MariaDB joins this as a
    lateral derived table, reading only the release's lists)."""
    facts, item = report_facts.c, prereq_set_item.c
    per_list = (
        sa.select(facts.prereq_set.label("set_id"), test_report.c.grade, sa.func.count().label("reports"))
        .select_from(test_report.join(report_facts, facts.report_id == test_report.c.id))
        .where(where, facts.prereq_set.is_not(None))
        .group_by(facts.prereq_set, test_report.c.grade)
        .subquery("per_list")
    )
    modules = (
        sa.select(item.set_id, item.module, sa.func.min(item.have).label("have"))
        .group_by(item.set_id, item.module)
        .subquery("modules")
    )
    return (
        sa.select(modules.c.module, modules.c.have, per_list.c.grade, sa.func.sum(per_list.c.reports))
        .select_from(per_list.join(modules, modules.c.set_id == per_list.c.set_id))
        .group_by(modules.c.module, modules.c.have, per_list.c.grade)
    )


@dataclass
class CountedRows:
    """What the database counted for a release, before it is aggregated into factors."""

    by_column: dict[str, list[tuple]]
    by_agent: dict[tuple, int]
    by_config: dict[tuple, int]
    by_environment: dict[tuple, int]
    prereq_rows: list
    sets: dict[int, list[tuple[int, int]]]
    strings: dict[int, str]


INDEXED_FACTORS = (
    ("perl", test_report.c.perl),
    ("osname", test_report.c.osname),
    ("archname", test_report.c.archname),
    ("tester", test_report.c.creator),
)


def count_rows(conn: sa.Connection, dist: str, version: str) -> CountedRows:
    """The database's part of :func:`release_counts`: every grouped query and look-up."""
    where = _release(dist, version)
    by_column = {}
    for factor, column in INDEXED_FACTORS:
        query = sa.select(column, test_report.c.grade, sa.func.count()).where(where)
        by_column[factor] = conn.execute(query.group_by(column, test_report.c.grade)).all()

    facts = report_facts.c
    release_facts = (
        sa.select(test_report.c.grade)
        .select_from(test_report.join(report_facts, report_facts.c.report_id == test_report.c.id))
        .where(where)
    )
    # Each factor family is counted on its own key, so a family is expanded once per
    # distinct set, not once per report (a tester's installs repeat across its reports).
    by_agent = _grouped(conn, release_facts, facts.user_agent)
    by_config = _grouped(conn, release_facts, facts.config_set)
    by_environment: dict[tuple, int] = defaultdict(int)
    for grade, env_set, env_spans in conn.execute(release_facts.add_columns(facts.env_set, facts.env_spans)):
        span_names = frozenset(name for name, _start, _end in unpack_triples(bytes(env_spans))) if env_spans else None
        by_environment[(env_set, span_names, grade)] += 1

    sets = _fact_sets(conn, {key[0] for key in by_config} | {key[0] for key in by_environment})
    prereq_rows = conn.execute(_prerequisite_counts(where)).all()
    string_ids = {key[0] for key in by_agent} | {i for key in by_environment for i in (key[1] or ())}
    string_ids |= {i for pairs in sets.values() for pair in pairs for i in pair}
    string_ids |= {i for module, have, _grade, _reports in prereq_rows for i in (module, have)}
    strings = _strings(conn, string_ids)
    return CountedRows(by_column, by_agent, by_config, by_environment, prereq_rows, sets, strings)


def aggregate(rows: CountedRows) -> ReleaseCounts:
    """The Python part of :func:`release_counts`: each distinct set expanded into its factors."""
    result = ReleaseCounts()
    for factor, _column in INDEXED_FACTORS:
        for value, grade, reports in rows.by_column[factor]:
            if factor == "perl":
                result.fail += reports if grade == "fail" else 0
                result.passed += reports if grade == "pass" else 0
            if factor == "tester":
                value = (value or "").removeprefix("metabase:user:")
            result.add(factor, value, grade, reports)

    strings, sets = rows.strings, rows.sets
    for (user_agent, grade), reports in rows.by_agent.items():
        result.add("reporter", strings.get(user_agent), grade, reports)
    for (config_set, grade), reports in rows.by_config.items():
        config = {strings.get(n): strings.get(v) for n, v in sets.get(config_set, ())}
        for flag in CONFIG_FLAGS:
            result.add(f"config {flag}", config.get(flag), grade, reports)
    for (env_set, span_names, grade), reports in rows.by_environment.items():
        if env_set is not None or span_names:
            present = {strings.get(n) for n, _v in sets.get(env_set, ())} | {strings.get(n) for n in span_names or ()}
            for name in ENVIRONMENT_ALLOWLIST:
                result.add(f"env {name}", "set" if name in present else "unset", grade, reports)
    for module, have, grade, reports in rows.prereq_rows:
        factor = f"prereq {strings.get(module)}"
        result.add(factor, strings.get(have), grade, int(reports))
        result.ordered.add(factor)
    return result


def release_counts(conn: sa.Connection, dist: str, version: str) -> ReleaseCounts:
    """Every candidate factor's FAIL/PASS counts for ``dist`` ``version`` (grades other than
    PASS and FAIL say nothing about failing and are left out).

    Two queries read the release's reports: their indexed columns, grouped; and their facts
    rows, grouped by the shared sets they refer to (a report's changing environment
    variables, kept as spans of its text, are read one row per report for their names only).
    Each distinct set and string is then read once.
    """
    return aggregate(count_rows(conn, dist, version))


def _grouped(conn: sa.Connection, release_facts: sa.Select, column) -> dict[tuple, int]:
    """(column value, grade) -> reports, grouped by the database."""
    query = (
        release_facts.add_columns(column, sa.func.count())
        .group_by(column, test_report.c.grade)
        .with_only_columns(column, test_report.c.grade, sa.func.count())
    )
    return {(value, grade): reports for value, grade, reports in conn.execute(query)}


def release_analysis(conn: sa.Connection, dist: str, version: str) -> dict:
    """The failure analysis of ``dist`` ``version`` as a JSON-ready dict (the counts from the
    tables above, every prerequisite also bucketed to major.minor, then the statistics)."""
    from schemas.failure_analysis import analyse, with_major_minor  # scipy: read side only

    counted = release_counts(conn, dist, version)
    counts, buckets = with_major_minor(counted.counts, [f for f in counted.ordered if f.startswith("prereq ")])
    result = analyse(counts, counted.fail, counted.passed, counted.ordered | buckets).as_dict()
    return {"dist": dist, "version": version, **result}
