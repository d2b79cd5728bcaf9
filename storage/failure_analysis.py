"""Count a release's FAIL and PASS reports per candidate factor, for the failure analysis.

Three grouped queries over the indexed columns and the parsed report facts (never the
report documents): the report columns (perl, osname, archname, tester), the facts row
(reporter, ``perl -V`` fields and environment, as ids of shared sets) and the installed
prerequisites. Sets and strings are then resolved once per distinct id, so the cost grows
with the release's reports only inside the database's GROUP BY.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from storage.tables import fact_set_item, fact_string, report_facts, report_prereq, test_report

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


def _sets(conn: sa.Connection, set_ids: set[int]) -> dict[int, list[tuple[int, int]]]:
    items: dict[int, list[tuple[int, int]]] = defaultdict(list)
    wanted = sorted(i for i in set_ids if i is not None)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = sa.select(fact_set_item.c.set_id, fact_set_item.c.name_id, fact_set_item.c.value_id).where(
            fact_set_item.c.set_id.in_(chunk)
        )
        for set_id, name_id, value_id in conn.execute(query):
            items[set_id].append((name_id, value_id))
    return items


def release_counts(conn: sa.Connection, dist: str, version: str) -> ReleaseCounts:
    """Every candidate factor's FAIL/PASS counts for ``dist`` ``version`` (grades other than
    PASS and FAIL say nothing about failing and are left out)."""
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
    fact_rows = conn.execute(
        sa.select(facts.user_agent, facts.config_set, facts.env_set, test_report.c.grade, count)
        .select_from(test_report.join(report_facts, report_facts.c.report_id == test_report.c.id))
        .where(where)
        .group_by(facts.user_agent, facts.config_set, facts.env_set, test_report.c.grade)
    ).all()
    prereq_rows = conn.execute(
        sa.select(
            report_prereq.c.module,
            report_prereq.c.have,
            test_report.c.grade,
            sa.func.count(sa.distinct(test_report.c.id)),
        )
        .select_from(test_report.join(report_prereq, report_prereq.c.report_id == test_report.c.id))
        .where(where)
        .group_by(report_prereq.c.module, report_prereq.c.have, test_report.c.grade)
    ).all()

    sets = _sets(conn, {r.config_set for r in fact_rows} | {r.env_set for r in fact_rows})
    string_ids = {r.user_agent for r in fact_rows}
    string_ids |= {i for items in sets.values() for pair in items for i in pair}
    string_ids |= {r.module for r in prereq_rows} | {r.have for r in prereq_rows}
    strings = _strings(conn, string_ids)

    for user_agent, config_set, env_set, grade, reports in fact_rows:
        result.add("reporter", strings.get(user_agent), grade, reports)
        config = {strings.get(n): strings.get(v) for n, v in sets.get(config_set, ())}
        for flag in CONFIG_FLAGS:
            result.add(f"config {flag}", config.get(flag), grade, reports)
        if env_set is not None:
            present = {strings.get(n) for n, _v in sets.get(env_set, ())}
            for name in ENVIRONMENT_ALLOWLIST:
                result.add(f"env {name}", "set" if name in present else "unset", grade, reports)

    for module_id, have_id, grade, reports in prereq_rows:
        factor = f"prereq {strings.get(module_id)}"
        result.add(factor, strings.get(have_id), grade, reports)
        result.ordered.add(factor)
    return result
