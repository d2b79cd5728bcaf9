"""Perl module versions ordered the way Perl's ``version.pm`` orders them.

Text order and Python's ``packaging`` both get Perl versions wrong: as decimals ``1.9`` is
greater than ``1.10`` (``1.900`` against ``1.100``), while as dotted-decimals ``v1.9`` is
less than ``v1.10``. version.pm turns a decimal into a dotted-decimal by cutting its
fraction into groups of three digits (``1.10`` is ``v1.100``, ``1.0501`` is ``v1.50.100``)
and compares the integer parts left to right, missing parts as zero. An underscore marks a
development release (``1.05_01``); since version.pm 0.9913 it is only a separator, so
``1.05_01`` is the decimal ``1.0501``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOTTED = re.compile(r"v?(\d+(?:\.\d+){2,})|v(\d+(?:\.\d+)?)")
_DECIMAL = re.compile(r"(\d*)(?:\.(\d*))?")


@dataclass(frozen=True, order=True)
class PerlVersion:
    """A parsed version: ``parts`` compare as version.pm compares; ``text`` is what was given."""

    parts: tuple[int, ...]
    text: str = ""
    development: bool = False

    def major_minor(self) -> str:
        """The version bucketed to its first two parts (``1.05_01`` and ``1.0502`` are both ``1.050``)."""
        first, second = (self.parts + (0, 0))[:2]
        return f"{first}.{second:03d}"


def _trimmed(parts: list[int]) -> tuple[int, ...]:
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def parse(text: str | None) -> PerlVersion | None:
    """The version ``text`` stands for, or None for what is not a version (``n/a``, ``undef``, ``any``, empty)."""
    if text is None:
        return None
    given = str(text).strip()
    cleaned = given.strip("'\"")
    development = "_" in cleaned
    cleaned = cleaned.replace("_", "")
    if not cleaned:
        return None
    dotted = _DOTTED.fullmatch(cleaned)
    if dotted:
        body = dotted.group(1) or dotted.group(2)
        return PerlVersion(_trimmed([int(p) for p in body.split(".")]), given, development)
    decimal = _DECIMAL.fullmatch(cleaned)
    if not decimal or not (decimal.group(1) or decimal.group(2)):
        return None
    integer = int(decimal.group(1) or 0)
    fraction = decimal.group(2) or ""
    fraction += "0" * (-len(fraction) % 3)
    groups = [int(fraction[i : i + 3]) for i in range(0, len(fraction), 3)]
    return PerlVersion(_trimmed([integer, *groups]), given, development)


def sort_key(text: str | None) -> tuple:
    """A key that sorts versions as Perl does; what is no version sorts first, by its text."""
    version = parse(text)
    if version is None:
        return (0, (), str(text or ""))
    return (1, version.parts, version.text)


def is_below(have: str | None, need: str | None) -> bool:
    """True when an installed version is known to be lower than the one needed (``0`` needs any)."""
    wanted, installed = parse(need), parse(have)
    if wanted is None or installed is None:
        return False
    return installed.parts < wanted.parts
