"""Parse the text of a CPAN Testers report into structured facts (pure code, no I/O).

Reads the reports of CPAN::Reporter (1.1x-1.20xx), App::cpanminus::reporter (0.1x),
CPANPLUS (0.90-0.99) and anything else that prints the same sections, and the
prerequisite tables ``t/00-report-prereqs.t`` prints as TAP comments. Sections are found
by their headings, whichever are there:

- dashed headings (``PROGRAM OUTPUT``, ``PREREQUISITES``, ``ENVIRONMENT AND OTHER
  CONTEXT``) and CPANPLUS's bare ``PREREQUISITES:`` / ``TEST RESULTS:`` lines;
- the sub-headings ``Prerequisite modules loaded:``, ``Environment variables:``,
  ``Perl special variables ...:``, ``Perl module toolchain versions installed:`` (inside
  CPANPLUS's prerequisites section too);
- the ``perl -V`` summary (``Summary of my perl5 ...``), which ends the report.

Windows line endings and paths, ``n/a``/``any`` versions, ``!`` markers, "No requirements
found" and missing sections are all expected. :func:`parse_report_text` never raises and
runs in time linear in the text (each line is looked at a bounded number of times, and no
regular expression can backtrack over more than one line).
"""

from __future__ import annotations

from schemas.reportparse.environment import environment_variable, special_variables
from schemas.reportparse.harness import Harness
from schemas.reportparse.model import FailedFile, ParsedReport, Prerequisite, prerequisite_order
from schemas.reportparse.perl_config import parse_config, summary_offset
from schemas.reportparse.reporter import user_agent
from schemas.reportparse.tables import CPANPLUS_PHASE, Table, report_prereqs_phase

__all__ = ["PARSER_VERSION", "FailedFile", "ParsedReport", "Prerequisite", "parse_report_text"]

PARSER_VERSION = 1
"""Bump when the parser's output changes: the backfill then parses every report again."""

START, OUTPUT, PREREQS, TOOLCHAIN, ENVIRONMENT, SPECIAL, OTHER = range(7)
"""START: before any heading (test output, or a section excerpt); OUTPUT: after a program
output heading, where only the reporter's main headings end it."""

DASHED_TITLES = {
    "TESTER COMMENTS": OTHER,
    "PROGRAM OUTPUT": OUTPUT,
    "PREREQUISITES": PREREQS,
    "ENVIRONMENT AND OTHER CONTEXT": OTHER,
}
SUB_HEADINGS = (
    ("Prerequisite modules loaded", PREREQS),
    ("PREREQUISITES:", PREREQS),
    ("TEST RESULTS:", OUTPUT),
    ("Environment variables:", ENVIRONMENT),
    ("Perl special variables", SPECIAL),
    ("Perl module toolchain versions installed", TOOLCHAIN),
)


HEADING_INITIALS = frozenset("PTE")
"""Every heading starts with one of these (a cheap test for the other lines)."""

MAX_LINE = 65_536
"""Longer lines are no reporter's: they are skipped (bounds the work on hostile input)."""


def _heading(line: str, previous: str) -> int | None:
    """The section a heading line opens, or None for any other line."""
    if not line or line[0] not in HEADING_INITIALS:
        return None
    if previous.startswith("---") and not previous.rstrip().strip("-"):
        section = DASHED_TITLES.get(line.rstrip())
        if section is not None:
            return section
    if line[0] in "PTE":
        for start, section in SUB_HEADINGS:
            if line.startswith(start):
                return section
    return None


class _ReportPrereqs:
    """The ``=== Configure Requires ===`` tables ``t/00-report-prereqs.t`` prints as
    TAP comments (lines ``# ...``), read while they last."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []
        self.table: Table | None = None

    def feed(self, line: str) -> bool:
        """True when the line belonged to such a table."""
        at = line.find("# === ") if "===" in line and len(line) < 200 else -1
        if at >= 0 and line.rstrip().endswith("==="):
            phase = report_prereqs_phase(line[at + 6 :].rstrip().rstrip("=").strip())
            self.close()
            if phase is not None:
                self.table = Table(default_phase=phase)
            return True
        if self.table is None:
            return False
        if not line.startswith("#"):
            self.close()
            return False
        body = line[1:]
        if body.strip():
            self.table.feed(body)
        else:
            self.table.end()
        return True

    def close(self) -> None:
        if self.table is not None:
            self.rows.extend(self.table.rows)
            self.table = None


def parse_report_text(text: str) -> ParsedReport:
    """Everything :class:`ParsedReport` holds that ``text`` shows (see the module)."""
    parsed = ParsedReport()
    if not isinstance(text, str) or not text:
        return parsed
    parsed.user_agent = user_agent(text)
    offset = summary_offset(text)
    body = text
    if offset is not None:
        parsed.build_offset = offset
        parsed.config = parse_config(text[offset:].replace("\r\n", "\n"))
        body = text[:offset]

    section = START
    harness = Harness()
    report_prereqs = _ReportPrereqs()
    prereqs: Table | None = None
    toolchain: Table | None = None
    previous = ""
    # Lines end at LF (a CR before it is dropped; a text of old Macs' lone CRs is read as
    # such); a CR inside a line (a progress line a terminal overwrote) keeps what follows
    # it, as the terminal showed. ``at`` is where the line starts in the text.
    if "\n" not in body:
        body = body.replace("\r", "\n")  # same length: the offsets hold
    next_at = 0
    for line in body.split("\n"):
        at = next_at
        next_at += len(line) + 1
        if "\r" in line:
            line = line.rstrip("\r")
            cut = line.rfind("\r")
            if cut >= 0:
                line, at = line[cut + 1 :], at + cut + 1
        if len(line) > MAX_LINE:
            previous = ""
            continue
        opened = _heading(line, previous) if line and line[0] in HEADING_INITIALS else None
        previous = line
        if opened in (ENVIRONMENT, SPECIAL, TOOLCHAIN) and section == OUTPUT:
            opened = None  # such lines in the test output are not the reporter's sections
        if opened is not None:
            section = opened
            # A section met again replaces what an earlier one held (test output that
            # prints such a heading comes before the reporter's own sections).
            if opened == PREREQS and line.startswith(("PREREQUISITES", "Prerequisite")):
                if prereqs is None or prereqs.rows or prereqs.columns is not None:
                    prereqs = Table(default_phase=CPANPLUS_PHASE)
            elif opened == TOOLCHAIN:
                toolchain = Table()
            elif opened == ENVIRONMENT:
                parsed.environment, parsed.environment_spans = {}, {}
            elif opened == SPECIAL:
                parsed.perl_variables = {}
            continue
        if section in (START, OUTPUT, OTHER):
            if (report_prereqs.table is not None or "===" in line) and report_prereqs.feed(line):
                continue
            harness.feed(line)
        elif section == PREREQS:
            if prereqs is not None:
                prereqs.feed(line)
        elif section == TOOLCHAIN:
            if toolchain is not None:
                toolchain.feed(line)
        elif section == ENVIRONMENT:
            found = environment_variable(line)
            if found:
                name, value, value_at = found
                parsed.environment[name] = value
                parsed.environment_spans[name] = (at + value_at, at + value_at + len(value))
        elif section == SPECIAL:
            for name, value in special_variables(line):
                parsed.perl_variables.setdefault(name, value)
    report_prereqs.close()
    harness.finish(parsed)

    seen: set[tuple[str, str]] = set()
    # The reporter's own list first; report-prereqs adds what it does not list.
    for phase, name, need, have in [*(prereqs.rows if prereqs else []), *report_prereqs.rows]:
        if (phase, name) not in seen:
            seen.add((phase, name))
            parsed.prerequisites.append(Prerequisite(phase, name, need, have))
    parsed.prerequisites.sort(key=prerequisite_order)
    if toolchain is not None:
        parsed.toolchain = {name: have for _phase, name, _need, have in toolchain.rows}
    return parsed
