"""The rules that turn a stored report into its summary rows (spec 4.4-4.8, 5.2).

Pure functions: no I/O. ``workers/processing.py`` applies them to the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from schemas.v3 import GRADES, PERL5

VALID_REPORT = 2
"""``cpanstats.type`` of a valid Perl 5 report (3 marked a report invalid upstream)."""

PROVISIONAL_UPLOAD = "unknown"
"""``uploads.type`` of the row report processing creates for a release it does not know."""

_PERL_NUMBER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_PERL_RC = re.compile(r"^v?\d+\.\d+\.\d+ RC\d+")
_DEV_PERL = re.compile(r"^5\.(7|9|[1-9][13579])")
_PATCHED_PERL = re.compile(r"RC\d+|patch")


def entity_encode(text: str) -> str:
    """Every non-ASCII character as ``&#<decimal code point>;`` (existing entities pass through)."""
    return "".join(ch if ord(ch) < 128 else f"&#{ord(ch)};" for ch in text)


def tester(name: str | None, email: str | None) -> str:
    """``"Name" <email>``, as upstream writes ``cpanstats.tester`` for new rows."""
    return f'"{entity_encode(name or "")}" <{email or ""}>'


@dataclass(frozen=True)
class PerlVersion:
    """A ``perl_version`` row."""

    version: str
    perl: str | None
    patch: int
    devel: int


def perl_version(version: str) -> PerlVersion:
    """The ``perl_version`` row of a reported perl string (spec 4.6).

    ``perl`` is the first ``X.Y.Z`` (leading ``v`` ignored); ``patch`` is 1 when the string
    says ``patch``; ``devel`` is 1 for an odd minor number of 7 or more, or a release candidate.
    """
    number = _PERL_NUMBER.search(version)
    devel = 0
    perl = None
    if number:
        perl = ".".join(number.groups())
        minor = int(number.group(2))
        devel = int(minor >= 7 and minor % 2 == 1)
    if _PERL_RC.match(version):
        devel = 1
    return PerlVersion(version=version, perl=perl, patch=int("patch" in version), devel=devel)


def oncpan(upload_type: str | None) -> int:
    """1 on CPAN (or not known to be gone), 2 on BackPAN only."""
    return 2 if upload_type == "backpan" else 1


def distmat(version: str) -> int:
    """1 a stable release, 2 a developer release (``_`` in the version or ``-TRIAL``)."""
    return 2 if "_" in version or version.endswith("-TRIAL") else 1


def perlmat(perl: str) -> int:
    """1 a stable perl, 2 a development perl (odd minor number from 7 on)."""
    return 2 if _DEV_PERL.match(perl) else 1


def patched(perl: str) -> int:
    """1 an unpatched perl, 2 a patched perl or a release candidate."""
    return 2 if _PATCHED_PERL.search(perl) else 1


@dataclass(frozen=True)
class ReleaseFlags:
    """The key of a ``release_summary`` row besides dist and version."""

    oncpan: int
    distmat: int
    perlmat: int
    patched: int


def release_flags(version: str, perl: str, upload_type: str | None) -> ReleaseFlags:
    return ReleaseFlags(oncpan(upload_type), distmat(version), perlmat(perl), patched(perl))


def grade_counts(grade: str) -> dict[str, int]:
    """``{"pass": 1, "fail": 0, "na": 0, "unknown": 0}`` for one report's grade."""
    return {name: int(grade == name) for name in ("pass", "fail", "na", "unknown")}


def postdate(created: datetime) -> int:
    """``YYYYMM`` of the receipt time."""
    return created.year * 100 + created.month


def fulldate(created: datetime) -> str:
    """``YYYYMMDDHHMM`` of the receipt time (UTC)."""
    return created.strftime("%Y%m%d%H%M")


def is_counted(language: str) -> bool:
    """Only Perl 5 reports go into the statistics; Perl 6/Raku reports are counted nowhere."""
    return language == PERL5


class UnprocessableReport(ValueError):
    """A stored report whose data cannot make summary rows (the reason says why)."""


def _clip(value, size: int = 255) -> str:
    return ("" if value is None else str(value))[:size]


def cpanstats_values(row: dict, uploadid: int) -> dict:
    """The ``cpanstats`` row of a stored report (spec 4.8), dated by receipt (``created``).

    ``row`` is a ``test_report`` row with ``report`` decoded to the v3 document.
    """
    doc = row["report"]
    reporter = doc.get("reporter") or {}
    language = doc["environment"]["language"]
    system = doc["environment"].get("system") or {}
    created = row["created"]
    grade = str((doc.get("result") or {}).get("grade", "")).lower()
    if grade not in GRADES:
        raise UnprocessableReport(f"report {row['guid']}: grade {grade!r} is not one of {', '.join(GRADES)}")
    return {
        "guid": row["guid"],
        "state": grade,
        "postdate": postdate(created),
        "tester": _clip(tester(reporter.get("name"), reporter.get("email"))),
        "dist": row["dist"],
        "version": row["version"],
        "platform": _clip(language.get("archname")),
        "perl": row["perl"],
        "osname": _clip(system.get("osname")),
        "osvers": _clip(system.get("osversion")),
        "fulldate": fulldate(created),
        "type": VALID_REPORT,
        "uploadid": uploadid,
    }
