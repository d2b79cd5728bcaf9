"""Report-text parser benchmark: a 2 MB report (a real CPAN::Reporter report whose test
output is 40,000 lines long) parsed in-process, best of ``--repeat``.

    .venv/bin/python -m bench.reportparse [--repeat 3]

Prints the machine yardstick and the parse time. Target: under a second (the enrichment
job parses each report right after processing it; a pathological report must not hold a
worker). Was a unit test's time assertion until issue 17.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import yardstick  # noqa: E402
from schemas.reportparse import parse_report_text  # noqa: E402
from tests.report_texts import real_report  # noqa: E402


def forty_thousand_lines() -> str:
    """A 2 MB report: a real report whose test output is 40,000 lines long."""
    text = real_report("collector/report-cpan-reporter-1.2020.txt")
    head, marker, tail = text.partition("All tests successful.")
    lines = [f"t/generated/{i:05d}-some-long-test-file-name-here.t ............ ok" for i in range(40_000)]
    return head + "\n".join(lines) + "\n" + marker + tail


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"# {yardstick()}")
    text = forty_thousand_lines()
    best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        parse_report_text(text)
        best = min(best, time.perf_counter() - started)
    print(
        f"{len(text) / 1e6:.1f} MB, {len(text.splitlines())} lines: parsed in {best * 1000:.0f} ms (best of {args.repeat})"
    )


if __name__ == "__main__":
    main()
