"""Which program wrote the report, from the sentence its header opens with.

- CPAN::Reporter: ``created by CPAN-Reporter-1.2020.``
- App::cpanminus::reporter: ``created by App::cpanminus::reporter 0.12 (1.7027).``
- CPANPLUS: ``error report created automatically by\\nCPANPLUS, version 0.9113.``
  (``generated automatically`` in old versions).

The user agent is ``<module> <version>`` (``CPAN::Reporter 1.2020``).
"""

from __future__ import annotations

import re

HEADER_CHARS = 4000
"""The sentence is in the first lines; only these characters are searched."""

_VERSION = r"(v?\d[\w.]*?)"  # lazy: a version never ends with the sentence's full stop
_PATTERNS = (
    (re.compile(r"created by CPAN-Reporter-" + _VERSION + r"[.,]?\s"), "CPAN::Reporter"),
    (re.compile(r"created by App::cpanminus::reporter " + _VERSION + r"[.,]?[\s(]"), "App::cpanminus::reporter"),
    (
        re.compile(r"(?:created|generated) automatically by\s{1,20}CPANPLUS, version " + _VERSION + r"[.,]?\s"),
        "CPANPLUS",
    ),
)
_GENERIC = re.compile(r"created by ([A-Za-z][A-Za-z0-9_:]{0,80})[- ]" + _VERSION + r"[.,]?\s")


def user_agent(text: str) -> str | None:
    """``CPAN::Reporter 1.2020``, ``CPANPLUS 0.9113``... or None when no known sentence."""
    head = text[:HEADER_CHARS] + "\n"
    for pattern, name in _PATTERNS:
        found = pattern.search(head)
        if found:
            return f"{name} {found.group(1)}"
    found = _GENERIC.search(head)
    if found:
        return f"{found.group(1).replace('-', '::')} {found.group(2)}"
    return None
