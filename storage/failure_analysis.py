"""Count a release's FAIL and PASS reports per candidate factor, for the failure analysis.

Read from the indexed columns and the parsed report facts, never the report documents: the
report columns (perl, osname, archname, tester), and the facts rows (reporter, ``perl -V``
fields, environment and prerequisites, as ids of sets that many reports share). Each
distinct set and string is resolved once, so a release's many reports cost little more
than their facts rows.
"""

from __future__ import annotations

from collections import defaultdict

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


def _prereq_sets(conn: sa.Connection, set_ids: set[int]) -> dict[int, dict[int, int]]:
    """prereq_set id -> module id -> installed version id (a module listed in several phases once)."""
    modules: dict[int, dict[int, int]] = defaultdict(dict)
    wanted = sorted(i for i in set_ids if i is not None)
    item = prereq_set_item.c
    for start in range(0, len(wanted), 500):
        query = sa.select(item.set_id, item.module, item.have).where(item.set_id.in_(wanted[start : start + 500]))
        for set_id, module, have in conn.execute(query):
            modules[set_id].setdefault(module, have)
    return modules


def release_counts(conn: sa.Connection, dist: str, version: str) -> ReleaseCounts:
    """Every candidate factor's FAIL/PASS counts for ``dist`` ``version`` (grades other than
    PASS and FAIL say nothing about failing and are left out).

    Two queries read the release's reports: their indexed columns, grouped; and their facts
    rows, grouped by the shared sets they refer to (a report's changing environment
    variables, kept as spans of its text, are read one row per report for their names only).
    Each distinct set and string is then read once.
    """
    result = ReleaseCounts()
    where = _release(dist, version)
    columns = (test_report.c.perl, test_report.c.osname, test_report.c.archname, test_report.c.creator)
    count = sa.func.count().label("reports")
    for perl, osname, archname, creator, grade, reports in conn.execute(
        sa.select(*columns, test_report.c.grade, count).where(where).group_by(*columns, test_report.c.grade)
    ):
        if grade == "fail":
            result.fail += reports
        else:
            result.passed += reports
        result.add("perl", perl, grade, reports)
        result.add("osname", osname, grade, reports)
        result.add("archname", archname, grade, reports)
        result.add("tester", (creator or "").removeprefix("metabase:user:"), grade, reports)

    facts = report_facts.c
    grouped: dict[tuple, int] = defaultdict(int)
    for user_agent, config_set, env_set, env_spans, prereq_set, grade in conn.execute(
        sa.select(
            facts.user_agent, facts.config_set, facts.env_set, facts.env_spans, facts.prereq_set, test_report.c.grade
        )
        .select_from(test_report.join(report_facts, report_facts.c.report_id == test_report.c.id))
        .where(where)
    ):
        span_names = frozenset(name for name, _start, _end in unpack_triples(bytes(env_spans))) if env_spans else None
        grouped[(user_agent, config_set, env_set, span_names, prereq_set, grade)] += 1

    sets = _fact_sets(conn, {key[1] for key in grouped} | {key[2] for key in grouped})
    prereqs = _prereq_sets(conn, {key[4] for key in grouped})
    string_ids = {key[0] for key in grouped} | {i for key in grouped for i in (key[3] or ())}
    string_ids |= {i for pairs in sets.values() for pair in pairs for i in pair}
    string_ids |= {i for modules in prereqs.values() for pair in modules.items() for i in pair}
    strings = _strings(conn, string_ids)

    for (user_agent, config_set, env_set, span_names, prereq_set, grade), reports in grouped.items():
        result.add("reporter", strings.get(user_agent), grade, reports)
        config = {strings.get(n): strings.get(v) for n, v in sets.get(config_set, ())}
        for flag in CONFIG_FLAGS:
            result.add(f"config {flag}", config.get(flag), grade, reports)
        if env_set is not None or span_names:
            present = {strings.get(n) for n, _v in sets.get(env_set, ())} | {strings.get(n) for n in span_names or ()}
            for name in ENVIRONMENT_ALLOWLIST:
                result.add(f"env {name}", "set" if name in present else "unset", grade, reports)
        for module, have in prereqs.get(prereq_set, {}).items():
            factor = f"prereq {strings.get(module)}"
            result.add(factor, strings.get(have), grade, reports)
            result.ordered.add(factor)
    return result
