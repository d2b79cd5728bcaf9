"""Split a CPAN distribution file name into author, dist, version and maturity.

A port of CPAN::DistnameInfo (the rules Metabase, PAUSE and MetaCPAN use), so that
``cpan:///distfile/AUTHOR/Foo-Bar-1.23.tar.gz`` yields the same dist and version here
as it did upstream.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_NAME_VERSION = re.compile(
    r"""^
    ((?:[-+.]*(?:[A-Za-z0-9]+|(?<=\D)_|_(?=\D))*
     (?:
        [A-Za-z](?=[^A-Za-z]|$)
        |
        \d(?=-)
     )(?<![._-][vV])
    )+)(.*)
    $""",
    re.X | re.S,
)
_AUTHOR_DIR = re.compile(r"^(((.*?/)?authors/)?id/)?([A-Z])/(\4[A-Z])/(\5[-A-Z0-9]*)/")
_ARCHIVE = re.compile(r"([^/]+)\.(tar\.(?:g?z|bz2)|zip|tgz)$", re.I)
_PERL_DEV = re.compile(r"^perl-?\d+\.(\d+)(?:\D(\d+))?(-(?:TRIAL|RC)\d+)?$")

MAX_PATH_LENGTH = 1024
"""Longer paths are refused before the (backtracking) name pattern sees them."""


@dataclass(frozen=True)
class DistInfo:
    """What a CPAN path says about its release."""

    cpanid: str | None
    filename: str
    distvname: str | None
    dist: str | None
    version: str | None
    maturity: str  # "released" or "developer"


def split_name_version(distvname: str | None) -> tuple[str | None, str | None, bool]:
    """``Foo-Bar-1.23`` -> (``Foo-Bar``, ``1.23``, is_developer_release)."""
    if not distvname:
        return None, None, False
    match = _NAME_VERSION.match(distvname)
    if not match:
        return distvname, None, False
    dist, version = match.group(1), match.group(2)
    if dist.endswith("-undef") and not version:
        dist = dist[: -len("-undef")]
    version = re.sub(r"-withoutworldwriteables$", "", version)
    special = re.match(r"^(-[Vv].*)-(\d.*)", version, re.S)
    if special:
        dist += special.group(1)
        version = special.group(2)
    underscored = re.match(r"(.+_.*)-(\d.*)", version, re.S)
    if underscored:
        dist += underscored.group(1)
        version = underscored.group(2)
    dist = re.sub(r"\.pm$", "", dist)
    if not version:
        trailing = re.search(r"-(\d+\w)$", dist)
        if trailing:
            version = trailing.group(1)
            dist = dist[: trailing.start()]
    if re.fullmatch(r"\d+", version or ""):
        word = re.search(r"-(\w+)$", dist)
        if word:
            version = word.group(1) + version
            dist = dist[: word.start()]
    leading = r"^[-_.]+" if re.search(r"\d\.\d", version) else r"^[-_]+"
    version = re.sub(leading, "", version)
    developer = False
    if version:
        perl = _PERL_DEV.match(distvname)
        if perl:
            minor, sub, trial = perl.group(1), perl.group(2), perl.group(3)
            developer = bool((int(minor) > 6 and int(minor) & 1) or (sub and int(sub) >= 50) or trial)
        elif re.search(r"\d\D\d+_\d", version) or "-TRIAL" in version:
            developer = True
    else:
        version = None
    return dist, version, developer


def parse_path(path: str) -> DistInfo:
    """Parse a CPAN path such as ``authors/id/A/AU/AUTHOR/Foo-1.0.tar.gz``."""
    path = re.sub(r"//+", "/", path)
    cpanid = None
    author_dir = _AUTHOR_DIR.match(path)
    filename = path
    if author_dir:
        cpanid = author_dir.group(6)
        filename = path[author_dir.end() :]
    archive = _ARCHIVE.search(path)
    distvname = archive.group(1) if archive else None
    dist, version, developer = split_name_version(distvname)
    return DistInfo(
        cpanid=cpanid,
        filename=filename,
        distvname=distvname,
        dist=dist,
        version=version,
        maturity="developer" if developer else "released",
    )


@functools.lru_cache(maxsize=4096)
def parse_distfile(distfile: str) -> DistInfo | None:
    """Parse ``AUTHOR/File-1.0.tar.gz`` as Metabase's ``cpan:///distfile/`` resource does.

    Returns None when the author, dist or version cannot be found. Cached (the result is
    immutable): the same few thousand releases are tested over and over, and every
    submission parsed its path again (2.5 % of the intake's CPU).
    """
    if not distfile or len(distfile) > MAX_PATH_LENGTH:
        return None
    author = distfile.split("/", 1)[0]
    if len(author) < 2:
        return None
    info = parse_path(f"authors/id/{author[0]}/{author[:2]}/{distfile}")
    if not (info.cpanid and info.dist and info.version):
        return None
    return info
