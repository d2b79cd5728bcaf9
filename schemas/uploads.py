"""What a CPAN mirror's ``indices/find-ls.gz`` and MetaCPAN's release API say was
released: pure parsing, no I/O (spec 4.5, 5.3)."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.distname import parse_path

_ARCHIVE = re.compile(r"\.(tar\.(?:g?z|bz2)|zip|tgz)$", re.I)
_MONTHS = {name: number for number, name in enumerate(calendar.month_abbr) if name}


@dataclass(frozen=True)
class Release:
    """One file on CPAN as an ``uploads`` row would hold it."""

    author: str
    dist: str
    version: str
    filename: str
    released: int  # epoch seconds


def release_of(path: str, released: int) -> Release | None:
    """The release of a CPAN path (``authors/id/B/BA/BARBIE/Foo-1.0.tar.gz``), or None
    for anything that is not a distribution archive with a dist name."""
    path = path.removeprefix("./")
    if "authors/id/" not in path or not _ARCHIVE.search(path):
        return None
    info = parse_path(path[path.index("authors/id/") :])
    if not info.cpanid or not info.dist:
        return None
    return Release(info.cpanid, info.dist, info.version or "0", info.filename, released)


def _epoch(month: str, day: str, year_or_time: str, now: datetime) -> int | None:
    number = _MONTHS.get(month.title())
    if number is None:
        return None
    if ":" in year_or_time:  # a recent file: "Nov 29 23:58" in the year that is not in the future
        hour, minute = (int(part) for part in year_or_time.split(":"))
        moment = datetime(now.year, number, int(day), hour, minute, tzinfo=UTC)
        if moment > now.replace(tzinfo=UTC):
            moment = moment.replace(year=now.year - 1)
    else:
        moment = datetime(int(year_or_time), number, int(day), tzinfo=UTC)
    return int(moment.timestamp())


def parse_find_ls(lines: Iterable[str], now: datetime) -> Iterator[Release]:
    """The distribution archives listed by a ``find -ls`` listing of a CPAN mirror.

    A line: ``inode blocks perms links owner group size Mon DD YYYY|HH:MM path``.
    ``now`` dates the ``HH:MM`` form (files of the last six months). Lines that do not
    parse are skipped.
    """
    for line in lines:
        fields = line.split(None, 10)
        if len(fields) != 11 or not fields[2].startswith("-"):
            continue
        try:
            released = _epoch(fields[7], fields[8], fields[9], now)
        except ValueError:
            continue
        if released is None:
            continue
        release = release_of(fields[10].split(" -> ")[0].strip(), released)
        if release is not None:
            yield release


def parse_metacpan_hits(hits: Iterable[dict]) -> Iterator[Release]:
    """Releases from MetaCPAN ``release/_search`` hits with fields author, archive, date."""
    for hit in hits:
        fields = hit.get("_source") or hit.get("fields") or {}
        author, archive, date = (_first(fields.get(name)) for name in ("author", "archive", "date"))
        if not (author and archive and date):
            continue
        try:
            moment = datetime.fromisoformat(date.replace("Z", "+00:00"))
            released = int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
        except ValueError:
            continue
        release = release_of(f"authors/id/{author[0]}/{author[:2]}/{author}/{archive}", released)
        if release is not None:
            yield release


def _first(value):
    return value[0] if isinstance(value, list) and value else value
