"""The module tables of a report: prerequisites and toolchain versions.

Three layouts are in real use:

- CPAN::Reporter and App::cpanminus::reporter: a phase line (``requires:``,
  ``build_requires:``, ``runtime:``...), a ``Module Need Have`` header, a ruler of dashes,
  rows; ``!`` before a row marks an unmet requirement, ``n/a`` a module not installed.
- CPANPLUS: one ``Module Name Have Want`` table for every phase (no ruler, tab-indented,
  right-aligned, long names overflow their column); ``!`` marks an unmet requirement and
  a module not installed shows ``0``.
- ``t/00-report-prereqs.t`` (Dist::Zilla's Test::ReportPrereqs) prints, as TAP comments,
  ``=== Configure Requires ===`` titles and ``Module Want Have`` tables, ``any`` and
  ``missing`` for no version and no module.

Rows are split on whitespace; when a row has more cells than the header (a version range
such as ``>= 1.2, < 2``) the ruler's columns are used instead. Nothing here raises: a line
that does not fit is skipped.
"""

from __future__ import annotations

import re

from schemas.reportparse.model import MISSING

VALUE_COLUMNS = frozenset({"need", "want", "have"})
NOT_INSTALLED = frozenset({"n/a", "missing", "not installed", "not found"})

PHASES = {
    # CPAN::Reporter (CPAN::Meta relationship names of Module::Build's era)
    "requires": "runtime",
    "build_requires": "build",
    "configure_requires": "configure",
    "test_requires": "test",
    "recommends": "runtime_recommends",
    # App::cpanminus::reporter (CPAN::Testers::Common::Client): CPAN::Meta phases
    "runtime": "runtime",
    "build": "build",
    "configure": "configure",
    "test": "test",
    "develop": "develop",
}
"""Phase lines as reporters print them, to CPAN::Meta phase names."""

CPANPLUS_PHASE = "requires"
"""CPANPLUS lists the prerequisites of every phase in one table."""


def normalise_phase(label: str) -> str:
    """``build_requires`` -> ``build``; an unknown label is kept, lower-cased."""
    label = label.strip().lower()
    return PHASES.get(label, label)


def report_prereqs_phase(title: str) -> str | None:
    """``Configure Requires`` -> ``configure``, ``Test Recommends`` -> ``test_recommends``;
    None for tables that are not prerequisites (``Other Modules``)."""
    words = title.lower().split()
    if len(words) != 2 or words[1] not in ("requires", "recommends", "suggests", "conflicts"):
        return None
    phase, relationship = words
    return phase if relationship == "requires" else f"{phase}_{relationship}"


def header_columns(stripped: str) -> list[str] | None:
    """The value columns of a table header (``Module Need Have`` -> ``["need", "have"]``;
    ``Module Name Have Want`` -> ``["have", "want"]``), or None for any other line."""
    words = stripped.split()
    if len(words) < 2 or len(words) > 5 or words[0].lower() != "module":
        return None
    rest = [w.lower() for w in words[1:]]
    if rest[0] == "name":
        rest = rest[1:]
    if not rest or any(w not in VALUE_COLUMNS for w in rest):
        return None
    return ["need" if w == "want" else w for w in rest]


def ruler_spans(line: str) -> list[int] | None:
    """The start of each column of a ruler line (runs of dashes), or None."""
    stripped = line.strip()
    if not stripped or stripped.strip("- ") or "-" not in stripped:
        return None
    starts = []
    previous = " "
    for position, char in enumerate(line):
        if char == "-" and previous != "-":
            starts.append(position)
        previous = char
    return starts


_MODULE_NAME = re.compile(r"[^\W\d][\w:'.]*\Z")  # one character class: no backtracking


def _is_module_name(token: str) -> bool:
    return _MODULE_NAME.match(token) is not None


def split_row(line: str, columns: list[str], ruler: list[int] | None) -> tuple[bool, str, list[str]] | None:
    """``(marked, name, values)`` of a table row, or None when the line is not one.

    ``marked`` is the ``!`` before the name (an unmet requirement)."""
    stripped = line.strip()
    marked = stripped.startswith("!")
    if marked:
        stripped = stripped[1:].lstrip()
    tokens = stripped.split()
    wanted = 1 + len(columns)
    if len(tokens) == wanted:
        name, values = tokens[0], tokens[1:]
    elif len(tokens) > wanted and ruler and len(ruler) == wanted:
        cells = [line[start:end].strip() for start, end in zip(ruler, [*ruler[1:], len(line)], strict=True)]
        name, values = cells[0].lstrip("!").strip(), cells[1:]
        if not name or " " in name or any(not v for v in values):
            return None
    else:
        return None
    if not _is_module_name(name):
        return None
    return marked, name, values


def row_values(need_at: int | None, have_at: int | None, values: list[str], marked: bool) -> tuple[str, str]:
    """``(need, have)`` of a row whose value columns hold need and have at these places:
    ``any`` needs become ``0``, modules not installed ``n/a``."""
    need = "0" if need_at is None else values[need_at]
    if need == "any" or need == "ANY":
        need = "0"
    have = MISSING if have_at is None else values[have_at]
    if have.lower() in NOT_INSTALLED or (marked and have == "0"):
        # CPANPLUS shows a module it could not load as version 0, marked.
        have = MISSING
    return need, have


class Table:
    """Reads the rows of consecutive tables (one phase line, header, ruler, rows each)."""

    def __init__(self, default_phase: str = CPANPLUS_PHASE):
        self.columns: list[str] | None = None
        self.need_at: int | None = None
        self.have_at: int | None = None
        self.ruler: list[int] | None = None
        self.phase = default_phase
        self.rows: list[tuple[str, str, str, str]] = []  # phase, name, need, have

    def end(self) -> None:
        """A blank line: the current table (not the phase) ends."""
        self.columns = None
        self.ruler = None

    def feed(self, line: str) -> None:
        stripped = line.strip()
        if not stripped:
            self.end()
            return
        first = stripped[0]
        if first in "Mm":
            columns = header_columns(stripped)
            if columns is not None:
                self.columns, self.ruler = columns, None
                self.need_at = columns.index("need") if "need" in columns else None
                self.have_at = columns.index("have") if "have" in columns else None
                return
        if self.columns is None:
            if not line[0].isspace() and stripped.endswith(":") and stripped[:-1].replace("_", "").isalpha():
                self.phase = normalise_phase(stripped[:-1])
            return
        if first == "-":
            ruler = ruler_spans(line)
            if ruler is not None:
                self.ruler = ruler
                return
        row = split_row(line, self.columns, self.ruler)
        if row is None:
            return
        marked, name, values = row
        need, have = row_values(self.need_at, self.have_at, values, marked)
        self.rows.append((self.phase, name, need, have))
