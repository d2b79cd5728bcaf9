"""Every real report text the fixtures hold, by name, for the report-text parser's tests
and benchmark (provenance: ``tests/fixtures/reports/PROVENANCE.txt``):

- ``collector/``: the upstream collector's parser test data (whole reports and section
  excerpts) as files;
- ``legacy/``: the text of each real Metabase cache row in ``tests/fixtures/legacy``;
- ``backend-generate/``: zlib-compressed Sereal ``CPAN::Testers::Report`` objects of the
  old backend's tests (the ``textreport`` string is read out of the Sereal bytes);
- ``backend-mailer/``: reports as the old mailing list carried them (headers dropped);
- ``capture/``: the reports the real CPAN::Reporter 1.2018 wrote in the client captures
  (``tests/captures``, scenarios 20-22; the tested distribution is a test one).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from schemas.metabase import decode_report
from tests import captures
from tests.legacy_fixtures import metabase_rows

REPORTS = Path(__file__).parent / "fixtures" / "reports"

CAPTURE_SCENARIOS = ("20-cpan-reporter-pass", "21-cpan-reporter-fail-register")


@dataclass(frozen=True)
class RealReport:
    name: str
    text: str
    whole: bool = True  # False for the collector's section excerpts


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def sereal_textreport(blob: bytes) -> str:
    """The ``textreport`` string of a zlib-compressed Sereal report object: the value
    after the key, a BINARY (0x26, Latin-1) or STR_UTF8 (0x27) with a varint length."""
    data = zlib.decompress(blob)
    at = data.index(b"textreport") + len(b"textreport")
    tag = data[at]
    if tag not in (0x26, 0x27):
        raise ValueError(f"unexpected Sereal tag {tag:#x}")
    length, start = _varint(data, at + 1)
    raw = data[start : start + length]
    return raw.decode("utf-8") if tag == 0x27 else raw.decode("latin-1")


def mail_body(raw: str) -> str:
    """The body of a mailing-list message (after the first blank line)."""
    return raw.split("\n\n", 1)[1]


@cache
def real_reports() -> tuple[RealReport, ...]:
    found: list[RealReport] = []
    for path in sorted((REPORTS / "collector").glob("*.txt")):
        found.append(RealReport(f"collector/{path.name}", path.read_text(), path.name.startswith("report-")))
    from schemas.legacy import convert_row

    for row in metabase_rows():
        doc = convert_row(row["guid"], row["updated"], row["report"], {}, row.get("id"), "done").row["report"]
        found.append(RealReport(f"legacy/{row['guid']}", doc["result"]["output"]["uncategorized"]))
    for path in sorted((REPORTS / "backend-generate").glob("*.dat")):
        found.append(RealReport(f"backend-generate/{path.stem}", sereal_textreport(path.read_bytes())))
    for path in sorted((REPORTS / "backend-mailer").iterdir()):
        found.append(RealReport(f"backend-mailer/{path.name}", mail_body(path.read_text())))
    for scenario in CAPTURE_SCENARIOS:
        request = next(r for r in captures.load(scenario) if "/submit/" in r.path)
        found.append(RealReport(f"capture/{scenario}", decode_report(request.body).legacy["textreport"]))
    return tuple(found)


def real_report(name: str) -> str:
    """The text of one real report by its name (``collector/report-cpanplus-0.9113.txt``...)."""
    return next(r.text for r in real_reports() if r.name == name)


def whole_reports() -> list[RealReport]:
    return [r for r in real_reports() if r.whole]


def as_json(value) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


def _summary(parsed) -> str:
    if parsed.tests is None and not parsed.failed_files:
        return "—"
    parts = []
    if parsed.tests is not None:
        parts.append(f"{parsed.tests} tests")
    if parsed.failures is not None:
        parts.append(f"{parsed.failures} failed")
    if parsed.skipped:
        parts.append(f"{parsed.skipped} files skipped")
    if parsed.todo_pass:
        parts.append(f"{parsed.todo_pass} TODO passed")
    if parsed.duration is not None:
        parts.append(f"{parsed.duration:g} s")
    for failed in parsed.failed_files:
        parts.append(f"`{failed.file}`" + (f" #{failed.failed}" if failed.failed else ""))
    return ", ".join(parts)


def coverage_table() -> str:
    """The README's table: what the parser reads from each real fixture report."""
    from collections import Counter

    from schemas.reportparse import parse_report_text

    lines = [
        "| fixture | reporter | prerequisites (by phase) | env. vars | special vars | toolchain | `perl -V` fields | test summary |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for report in real_reports():
        parsed = parse_report_text(report.text)
        phases = Counter(p.phase for p in parsed.prerequisites)
        prereqs = ", ".join(f"{phase} {count}" for phase, count in phases.items()) or "none"
        missing = sum(p.have == "n/a" for p in parsed.prerequisites)
        if missing:
            prereqs += f" ({missing} missing)"
        config = f"{len(parsed.config)} ({parsed.config['osname']})" if "osname" in parsed.config else "—"
        agent = parsed.user_agent or ("— (section excerpt)" if not report.whole else "—")
        lines.append(
            f"| `{report.name}` | {agent} | {prereqs} | {len(parsed.environment)} | {len(parsed.perl_variables)} "
            f"| {len(parsed.toolchain)} | {config} | {_summary(parsed)} |"
        )
    return "\n".join(lines)


def write_readme_table() -> None:
    """Rewrite the table between the README's ``report-coverage`` markers."""
    import re

    readme = Path(__file__).resolve().parent.parent / "README.md"
    table = f"<!-- report-coverage -->\n{coverage_table()}\n<!-- /report-coverage -->"
    readme.write_text(
        re.sub(r"<!-- report-coverage -->.*<!-- /report-coverage -->", table, readme.read_text(), flags=re.S)
    )


if __name__ == "__main__":
    write_readme_table()
