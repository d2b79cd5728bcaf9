"""The queries behind the v3 read API, over the processed tables (spec 2.2, 4.4-4.7).

Each function builds one SQLAlchemy Core select; every one is served by an index
(``tests/test_read_api.py`` checks their plans with ``EXPLAIN`` on MariaDB).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from storage.tables import cpanstats, perl_version, release_summary, uploads

MATURITY_DISTMAT = {"stable": 1, "dev": 2}
"""``maturity`` filter of /v3/release -> ``release_summary.distmat``."""


def fulldate_of(moment: datetime) -> str:
    """``YYYYMMDDHHMM`` (cpanstats.fulldate) of an aware or naive-UTC datetime."""
    return _utc(moment).strftime("%Y%m%d%H%M")


def epoch_of(moment: datetime) -> int:
    return int(_utc(moment).replace(tzinfo=UTC).timestamp())


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def summary_query(
    dist: str | None = None,
    version: str | None = None,
    perls: list[str] | None = None,
    osnames: list[str] | None = None,
    grade: str | None = None,
    since: datetime | None = None,
    perl_maturity: str | None = None,
    limit: int | None = None,
) -> sa.Select:
    """The cpanstats rows asked for. Unordered, as upstream's (the rows stream in index
    order at once); with ``limit``, the oldest first (``fulldate``, then ``id``), so that
    ``since`` = the last date seen pages forward."""
    c = cpanstats.c
    query = sa.select(
        c.guid, c.state, c.fulldate, c.tester, c.dist, c.version, c.platform, c.perl, c.osname, c.osvers
    ).select_from(cpanstats)
    if dist is not None:
        query = query.where(c.dist == dist)
    if version is not None:
        query = query.where(c.version == version)
        if dist is not None:
            # (dist, version, fulldate) holds exactly this release's rows in date order;
            # MariaDB would otherwise walk the distribution's date index for a `since`.
            query = query.with_hint(cpanstats, "FORCE INDEX (cpanstats_dist_version)", "mysql")
    if perls:
        query = query.where(c.perl.in_(perls))
    if osnames:
        query = query.where(c.osname.in_(osnames))
    if grade:
        query = query.where(c.state == grade)
    if since is not None:
        query = query.where(c.fulldate >= fulldate_of(since))
    if perl_maturity:
        query = query.join(perl_version, perl_version.c.version == c.perl)
        if perl_maturity == "stable":
            query = query.where(perl_version.c.devel == 0, perl_version.c.patch == 0)
        else:
            query = query.where(sa.or_(perl_version.c.devel == 1, perl_version.c.patch == 1))
    if limit is not None:
        query = query.order_by(c.fulldate, c.id).limit(limit)
    return query


def summary_row(row) -> dict:
    fulldate = row.fulldate or ""
    date = f"{fulldate[0:4]}-{fulldate[4:6]}-{fulldate[6:8]}T{fulldate[8:10]}:{fulldate[10:12]}:00Z"
    return {
        "guid": row.guid,
        "grade": row.state,
        "date": date,
        "reporter": row.tester,
        "dist": row.dist,
        "version": row.version,
        "platform": row.platform,
        "perl": row.perl,
        "osname": row.osname,
        "osvers": row.osvers,
    }


def release_query(
    dist: str | None = None,
    version: str | None = None,
    author: str | None = None,
    since: datetime | None = None,
    maturity: str | None = None,
    limit: int | None = None,
) -> sa.Select:
    """Counts per release, summed over every perl (maturity, patch level) and CPAN state."""
    r = release_summary.c
    query = sa.select(
        r.dist,
        r.version,
        sa.func.min(r.uploadid).label("uploadid"),
        sa.func.sum(r["pass"]).label("pass"),
        sa.func.sum(r.fail).label("fail"),
        sa.func.sum(r.na).label("na"),
        sa.func.sum(r.unknown).label("unknown"),
        sa.func.sum(r["pass"] + r.fail + r.na + r.unknown).label("total"),
    ).select_from(release_summary)
    if author is not None:
        query = query.join(uploads, uploads.c.uploadid == r.uploadid).where(uploads.c.author == author)
    if dist is not None:
        query = query.where(r.dist == dist)
    if version is not None:
        query = query.where(r.version == version)
    if since is not None:
        query = query.join(cpanstats, cpanstats.c.guid == r.guid).where(cpanstats.c.fulldate >= fulldate_of(since))
    if maturity:
        query = query.where(r.distmat == MATURITY_DISTMAT[maturity])
    query = query.group_by(r.dist, r.version)
    if limit is not None:
        query = query.limit(limit)
    return query


def release_row(row) -> dict:
    return {
        "dist": row.dist,
        "version": row.version,
        "uploadid": int(row.uploadid),
        "pass": int(row._mapping["pass"]),
        "fail": int(row.fail),
        "na": int(row.na),
        "unknown": int(row.unknown),
        "total": int(row.total),
    }


def upload_query(
    dist: str | None = None, author: str | None = None, since: datetime | None = None, limit: int | None = None
) -> sa.Select:
    """Uploads, oldest first; ``limit`` keeps the first ones (upstream ignores it)."""
    u = uploads.c
    query = sa.select(u.dist, u.version, u.author, u.filename, u.released)
    if dist is not None:
        query = query.where(u.dist == dist)
    if author is not None:
        query = query.where(u.author == author)
    if since is not None:
        query = query.where(u.released >= epoch_of(since))
    if dist is None and author is None:
        # The whole list: walk the released index in order (streams at once, no sort of
        # the table), which MySQL would otherwise skip for a full scan plus filesort.
        query = query.with_hint(uploads, "FORCE INDEX (uploads_released)", "mysql")
    query = query.order_by(u.released)
    return query if limit is None else query.limit(limit)


def upload_row(row) -> dict:
    released = datetime.fromtimestamp(int(row.released), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "dist": row.dist,
        "version": row.version,
        "author": row.author,
        "filename": row.filename,
        "released": released,
    }
