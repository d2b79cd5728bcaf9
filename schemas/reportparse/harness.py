"""The test harness's summary in a report's program output.

Test::Harness 3 / TAP::Harness (``make test``, ``./Build test``)::

    t/skip.t .. skipped: no network
    Test Summary Report
    -------------------
    t/01-basic.t (Wstat: 256 (exited 1) Tests: 3 Failed: 1)
      Failed test:  3
      Non-zero exit status: 1
    Files=2, Tests=3,  0 wallclock secs ( 0.01 usr ...)
    Result: FAIL
    Failed 1/2 test programs. 1/3 subtests failed.

and Test::Harness 2 (``Failed Test  Stat Wstat Total Fail  List of Failed`` table,
``Failed 1/5 test scripts, 80.00% okay. 2/100 subtests failed``). When a report holds
several summaries (a test that runs a harness itself), the last one counts. Only string
operations and anchored regexes without nested quantifiers: linear on any input.
"""

from __future__ import annotations

import re

from schemas.reportparse.model import FailedFile, ParsedReport

_FILES = re.compile(r"Files=(\d+), Tests=(\d+),\s*(\d+(?:\.\d+)?) wallclock secs")
_FAILED_PROGRAMS = re.compile(r"Failed (\d+)/(\d+) test (?:programs|scripts)")
_SUBTESTS_FAILED = re.compile(r"(\d+)/(\d+) subtests failed")
_WSTAT = re.compile(r"\(Wstat: (\d+)")
_TESTS_FAILED = re.compile(r"Tests: (\d+) Failed: (\d+)")
_OLD_SKIPPED = re.compile(r"All tests successful, (\d+) tests?(?: and \d+ subtests?)? skipped")
_TODO = re.compile(r"^\s*not ok\b[^#]*#\s*TODO\b", re.I)
_SUBTESTS = re.compile(r"Failed (\d+)/(\d+) subtests")

NUMBER_CHARS = frozenset("0123456789,- ")


def count_numbers(listing: str) -> int:
    """How many test numbers ``3, 5-7 9`` names (4 here); ranges counted whole."""
    total = 0
    for part in listing.replace(",", " ").split():
        low, dash, high = part.partition("-")
        if low.isdigit() and (not dash or high.isdigit()):
            total += int(high) - int(low) + 1 if dash and int(high) >= int(low) else 1
    return total


def _skipped_file(line: str) -> str | None:
    """``t/foo.t ..... skipped: why`` (and Test::Harness 2's ``t/foo.....skipped``)."""
    if len(line) > 4096:
        return None
    at = line.find("skipped")
    if at < 3:
        return None
    prefix = line[:at]
    if not prefix.endswith((". ", "..")):
        return None
    name = prefix.rstrip(" .")
    if not name or any(c.isspace() for c in name) or len(prefix) - len(name) < 3:
        return None
    return name


def _progress_file(line: str) -> str | None:
    """The test file of a progress line (``t/01-basic.t .. ok``, ``t\\x.t ....... 1/3``)."""
    if not line or len(line) > 4096 or line[0].isspace():
        return None
    name, space, rest = line.partition(" ")
    if not space or not rest.startswith("..") or not name.endswith(".t"):
        return None
    return name


class Harness:
    """Collects the summary lines fed to it, one line at a time."""

    def __init__(self):
        self.files_line: tuple[int, float] | None = None  # tests, duration
        self.failed_programs = False
        self.subtests_failed: int | None = None
        self.all_successful = False
        self.old_skipped: int | None = None
        self.skipped: set[str] = set()
        self.failed: list[FailedFile] = []
        self.failed_counts: list[int] = []
        self.todo_pass: int | None = None
        self.todo_fail = 0
        # Test Summary Report / Test::Harness 2 table being read
        self.in_summary = False
        self.in_old_table = False
        self.entry: dict | None = None
        self.listing: str | None = None  # which list continuation lines extend
        self.previous = ""
        # Without a summary (the harness died): the files its progress lines failed
        # (``t/x.t ..... `` then ``Dubious, test returned 2`` and ``Failed 9/9 subtests``).
        self.dubious_file: str | None = None
        self.progress_failed: dict[str, int] = {}

    # -- the Test Summary Report block ------------------------------------------------

    def _close_entry(self) -> None:
        entry, self.entry, self.listing = self.entry, None, None
        if entry is None:
            return
        if entry["todo"]:
            self.todo_pass = (self.todo_pass or 0) + count_numbers(entry["todo"])
        if entry["failed_count"] or entry["wstat"] or entry["failed"] or entry["problem"]:
            self.failed.append(FailedFile(entry["file"], " ".join(entry["failed"].split())))
            self.failed_counts.append(entry["failed_count"])

    def _summary_line(self, line: str) -> bool:
        """Handle a line of a Test Summary Report; False when the block has ended."""
        if not line.strip():
            return True
        if line[0].isspace():
            if self.entry is None:
                return True
            stripped = line.strip()
            label, colon, rest = stripped.partition(":")
            if colon and label in ("Failed test", "Failed tests"):
                self.entry["failed"] = rest.strip()
                self.listing = "failed"
            elif colon and label == "TODO passed":
                self.entry["todo"] = rest.strip()
                self.listing = "todo"
            elif colon and label in ("Non-zero exit status", "Parse errors", "Non-zero wait status"):
                self.entry["problem"] = True
                self.listing = None
            elif self.listing and set(stripped) <= NUMBER_CHARS:
                self.entry[self.listing] += " " + stripped
            else:
                self.listing = None
            return True
        if "(Wstat:" in line:
            self._close_entry()
            at = line.find("(Wstat:")
            wstat = _WSTAT.search(line, at)
            counts = _TESTS_FAILED.search(line, at, at + 200)
            self.entry = {
                "file": line[:at].rstrip(),
                "wstat": int(wstat.group(1)) if wstat else 0,
                "failed_count": int(counts.group(2)) if counts else 0,
                "failed": "",
                "todo": "",
                "problem": False,
            }
            self.listing = None
            return True
        self._close_entry()
        return False

    def _old_table_line(self, line: str) -> bool:
        """A row of Test::Harness 2's failure table; False when the table has ended
        (the ``Failed 1/5 test scripts`` line that ends it is then read as usual)."""
        stripped = line.strip()
        if not stripped or line.startswith("Failed "):
            return False
        if line[0].isspace():
            if set(stripped) <= NUMBER_CHARS and self.failed:  # the list goes on
                last = self.failed[-1]
                self.failed[-1] = FailedFile(last.file, f"{last.failed} {stripped}".strip())
            return True
        tokens = stripped.split()
        if len(tokens) >= 5 and tokens[1].isdigit() and tokens[2].isdigit():
            percent = next((i for i, t in enumerate(tokens[3:8], 3) if t.endswith("%")), 4)
            listing = [t for t in tokens[percent + 1 :] if set(t) <= NUMBER_CHARS]
            self.failed.append(FailedFile(tokens[0], " ".join(listing)))
            self.failed_counts.append(int(tokens[4]) if tokens[4].isdigit() else 0)
        return True

    # -- every line --------------------------------------------------------------------

    def feed(self, line: str) -> None:
        previous, self.previous = self.previous, line
        if self.in_summary:
            if self._summary_line(line):
                return
            self.in_summary = False
        if self.in_old_table:
            if self._old_table_line(line):
                return
            self.in_old_table = False
        if not line:
            return
        first = line[0]
        if first == "-" and line.startswith("---") and not line.strip("-"):
            if previous.startswith("Test Summary Report"):
                self._start_summary()
                self.in_summary = True
            elif previous.startswith("Failed Test") and "List of Failed" in previous:
                self._start_summary()
                self.in_old_table = True
            return
        if first == "F":
            if line.startswith("Files="):
                found = _FILES.match(line)
                if found:
                    self.files_line = (int(found.group(2)), float(found.group(3)))
            elif line.startswith("Failed "):
                subtests = _SUBTESTS.match(line)
                if subtests and self.dubious_file:
                    self.progress_failed[self.dubious_file] = int(subtests.group(1))
                elif _FAILED_PROGRAMS.match(line):
                    self.failed_programs = True
                    subtests = _SUBTESTS_FAILED.search(line, 0, 400)
                    self.subtests_failed = int(subtests.group(1)) if subtests else None
            return
        if first == "D" and line.startswith("Dubious, test returned"):
            self.dubious_file = _progress_file(previous)
            if self.dubious_file:
                self.progress_failed.setdefault(self.dubious_file, 0)
            return
        if first == "A" and line.startswith("All tests successful"):
            self.all_successful = True
            old = _OLD_SKIPPED.match(line)
            if old:
                self.old_skipped = int(old.group(1))
            return
        if first in " \tn" and "TODO" in line and _TODO.match(line):
            self.todo_fail += 1
            return
        if "skipped" in line:
            skipped = _skipped_file(line)
            if skipped:
                self.skipped.add(skipped)

    def _start_summary(self) -> None:
        """A new summary replaces an earlier one (the last harness run counts)."""
        self.failed, self.failed_counts, self.entry = [], [], None
        self.todo_pass = None

    def finish(self, parsed: ParsedReport) -> None:
        """Write what was found into ``parsed``."""
        if self.in_summary:
            self._close_entry()
        if self.files_line is None and not self.failed_programs and not self.all_successful:
            if self.progress_failed:  # the harness died before its summary
                parsed.failed_files = [FailedFile(name) for name in self.progress_failed]
                parsed.failures = sum(self.progress_failed.values())
            return
        if self.files_line is not None:
            parsed.tests, parsed.duration = self.files_line
        if self.subtests_failed is not None:
            parsed.failures = self.subtests_failed
        elif self.failed_counts:
            parsed.failures = sum(self.failed_counts)
        elif self.all_successful or self.files_line is not None:
            parsed.failures = 0
        parsed.skipped = len(self.skipped) if self.skipped else (self.old_skipped or 0)
        if self.todo_pass is not None or self.todo_fail:
            parsed.todo_pass, parsed.todo_fail = self.todo_pass or 0, self.todo_fail
        parsed.failed_files = self.failed
