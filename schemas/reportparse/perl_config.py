"""The ``perl -V`` summary every reporter appends: where it starts, and its key fields.

Perls before 5.22 print several ``name=value`` pairs per line, comma- or blank-separated
(``osname=linux, osvers=3.13.0, archname=x86_64-linux``); later ones one per line. Quoted
values may hold blanks and commas (``gccversion='4.2.1 20070719  [FreeBSD]'``).
"""

from __future__ import annotations

import re

CONFIG_KEYS = (
    "osname",
    "osvers",
    "archname",
    "useithreads",
    "usemultiplicity",
    "use64bitint",
    "use64bitall",
    "uselongdouble",
    "cc",
    "gccversion",
    "optimize",
)
"""The ``perl -V`` fields kept (the ones that explain why a distribution behaves differently)."""

SUMMARY_START = "Summary of my perl5"

# A key must start a word (``-Dcc=`` inside config_args is not ``cc``); quoted values stop
# at their closing quote on the same line. No nested quantifiers: linear on any input.
_PAIR = re.compile(
    r"(?<![\w\-])(" + "|".join(CONFIG_KEYS) + r")\s?=(?:'([^'\n]*)'|([^\s,']*))",
)
_COMMIT = re.compile(r"^\s*Commit id:\s*([0-9a-fA-F]{7,64})\s*$", re.M)

CHARACTERISTICS = "\nCharacteristics of this binary"
SUMMARY_CHARS = 65_536
"""The configuration part of a ``perl -V`` summary is a few KB; no more is searched."""


def summary_offset(text: str) -> int | None:
    """Where the last ``Summary of my perl5`` line starts (reporters put it last; test
    output that prints one earlier is not it), or None."""
    end = len(text)
    while True:
        found = text.rfind(SUMMARY_START, 0, end)
        if found < 0:
            return None
        if found == 0 or text[found - 1] in "\r\n":
            return found
        end = found


def parse_config(summary: str) -> dict[str, str]:
    """The :data:`CONFIG_KEYS` fields of a ``perl -V`` summary (first value of each), and
    ``commit_id`` when the summary names the commit the perl was built from."""
    head, _, _ = summary[:SUMMARY_CHARS].partition(CHARACTERISTICS)  # %ENV and @INC below are not config
    found: dict[str, str] = {}
    for match in _PAIR.finditer(head):
        key = match.group(1)
        if key not in found:
            value = match.group(2) if match.group(2) is not None else match.group(3)
            found[key] = value.strip()
    commit = _COMMIT.search(head)
    if commit:
        found["commit_id"] = commit.group(1)
    return {key: found[key] for key in (*CONFIG_KEYS, "commit_id") if key in found}
