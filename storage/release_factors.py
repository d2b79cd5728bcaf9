"""The failure analysis's candidate factors, and what one report contributes to them.

A report counts once in each factor it has a value for: its columns (perl, osname,
archname, tester), its reporter, each ``perl -V`` flag, the presence of each allowlisted
environment variable, and the installed version of each prerequisite. The enrichment
adds these contributions to ``release_factor_count`` as it writes a report's facts
(``storage/report_facts.py``), and the analysis reads them back
(``storage/failure_analysis.py``), which counts the same way from the facts themselves for
reports not counted yet. Both sides take their rules from here, so they agree value for
value. Pure code on ids: no database, no statistics library (the workers import it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from schemas.reportparse.perl_config import CONFIG_KEYS

CONFIG_FLAGS = tuple(key for key in CONFIG_KEYS if key not in ("osname", "archname"))
"""``perl -V`` fields tested as factors (each its own factor, ``config <name>``): every
field the parser keeps but the OS name and the architecture, which are factors of their own
(the report columns)."""

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

SET, UNSET = "set", "unset"

COUNTS_VERSION = 1
"""The rules of this module as counted in ``release_factor_count``. A change to them (a new
factor, another allowlist) makes the stored counts stale: the migration that ships it must
empty ``release_factor_count`` and set ``report_facts.counted`` to false, and the enrichment
backfill (``scripts.backlog --enrich``) counts every report again. Until then the analysis
counts the uncounted reports from their facts: slower, never wrong."""


class Kind(enum.IntEnum):
    """``release_factor_count.kind``: which factor a count row belongs to."""

    TOTAL = 0  # the release's reports, by grade (name and value 0)
    PERL = 1
    OSNAME = 2
    ARCHNAME = 3
    TESTER = 4
    REPORTER = 5
    CONFIG = 6  # name: the flag
    ENV = 7  # name: the variable
    PREREQ = 8  # name: the module


FAIL, PASS, OTHER = 0, 1, 2
"""Positions of a grade's count: ``fails``, ``passes``, ``others``."""

_PLAIN = {Kind.PERL: "perl", Kind.OSNAME: "osname", Kind.ARCHNAME: "archname", Kind.TESTER: "tester",
          Kind.REPORTER: "reporter"}  # fmt: skip
_NAMED = {Kind.CONFIG: "config", Kind.ENV: "env", Kind.PREREQ: "prereq"}
COLUMN_KINDS = (Kind.PERL, Kind.OSNAME, Kind.ARCHNAME, Kind.TESTER)


def grade_position(grade: str) -> int:
    """Where a report of ``grade`` is counted (only FAIL and PASS count per factor)."""
    return FAIL if grade == "fail" else PASS if grade == "pass" else OTHER


def factor_name(kind: int, name: str | None) -> str:
    """The analysis's name of a factor: ``perl``, ``config useithreads``, ``prereq Foo::Bar``..."""
    plain = _PLAIN.get(kind)
    return plain if plain is not None else f"{_NAMED[kind]} {name}"


def ordered(kind: int) -> bool:
    """Whether the factor's values are versions (tested in version order)."""
    return kind in (Kind.PERL, Kind.PREREQ)


class ReportColumns(NamedTuple):
    """The ``test_report`` columns a report is counted by (they never change once stored)."""

    dist: str
    version: str
    grade: str
    perl: str | None
    osname: str | None
    archname: str | None
    creator: str | None


REPORT_COLUMNS = ReportColumns._fields


def column_values(perl: str | None, osname: str | None, archname: str | None, creator: str | None):
    """The report columns' factor values, as ``(kind, value)``: an empty value is unknown,
    and the tester is the profile's GUID (``metabase:user:`` left out)."""
    tester = (creator or "").removeprefix("metabase:user:")
    found = zip(COLUMN_KINDS, (perl, osname, archname, tester), strict=True)
    return [(kind, value) for kind, value in found if value]


FACTOR_STRINGS = (*CONFIG_FLAGS, *ENVIRONMENT_ALLOWLIST, SET, UNSET, "")
"""Strings whose interned ids :class:`Known` needs."""


@dataclass(frozen=True)
class Known:
    """The interned (``fact_string``) ids the rules compare facts with."""

    flags: frozenset[int]
    variables: tuple[int, ...]
    set: int
    unset: int
    empty: int

    @classmethod
    def from_ids(cls, ids: dict[str, int]) -> Known:
        return cls(
            frozenset(ids[flag] for flag in CONFIG_FLAGS),
            tuple(ids[name] for name in ENVIRONMENT_ALLOWLIST),
            ids[SET],
            ids[UNSET],
            ids[""],
        )


@dataclass(frozen=True)
class FactInputs:
    """A report's facts as the factors read them, in ``fact_string`` ids."""

    user_agent: int | None
    config: tuple[tuple[int, int], ...]
    """``perl -V`` (name, value) pairs."""
    variables: frozenset[int] | None
    """The names of the environment variables it printed; None: it printed none."""
    prerequisites: tuple[tuple[int, int, int, int], ...]
    """(phase, module, need, have)."""


def fact_keys(facts: FactInputs, known: Known) -> list[tuple[int, int, int]]:
    """The ``(kind, name id, value id)`` of each factor value the facts give.

    A module listed in several phases counts once, at its smallest version id (as the
    prerequisite lists are stored: one item per phase and module, the smallest need and
    version of a list that repeats one)."""
    keys = []
    if facts.user_agent is not None and facts.user_agent != known.empty:
        keys.append((Kind.REPORTER, 0, facts.user_agent))
    keys.extend(
        (Kind.CONFIG, name, value) for name, value in facts.config if name in known.flags and value != known.empty
    )
    if facts.variables is not None:
        present = facts.variables
        keys.extend((Kind.ENV, name, known.set if name in present else known.unset) for name in known.variables)
    items: dict[tuple[int, int], tuple[int, int]] = {}
    for phase, module, need, have in facts.prerequisites:
        listed = items.get((phase, module))
        if listed is None or (need, have) < listed:
            items[(phase, module)] = (need, have)
    versions: dict[int, int] = {}
    for (_phase, module), (_need, have) in items.items():
        if module not in versions or have < versions[module]:
            versions[module] = have
    keys.extend((Kind.PREREQ, module, have) for module, have in versions.items() if have != known.empty)
    return keys


def add_report(
    deltas: dict[tuple, list[int]],
    release_id: int,
    grade: str,
    columns: Iterable[tuple[int, int]],
    facts: list[tuple[int, int, int]],
    sign: int = 1,
) -> None:
    """Add one report's contribution (``sign`` -1: take it away) to ``deltas``, keyed by
    ``(release id, kind, name id, value id)`` -> [fails, passes, others]. ``columns`` are
    ``(kind, value id)`` of :func:`column_values`; ``facts`` the :func:`fact_keys`."""
    position = grade_position(grade)
    total = deltas.setdefault((release_id, Kind.TOTAL, 0, 0), [0, 0, 0])
    total[position] += sign
    if position == OTHER:
        return  # other grades say nothing about failing
    for kind, value in columns:
        deltas.setdefault((release_id, kind, 0, value), [0, 0, 0])[position] += sign
    for kind, name, value in facts:
        deltas.setdefault((release_id, kind, name, value), [0, 0, 0])[position] += sign
