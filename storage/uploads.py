"""Keep ``uploads`` in step with CPAN, and the release rows with ``uploads`` (spec 5.3).

A listed release is inserted as ``cpan``, or its row (a provisional ``unknown`` one made
by report processing, or a ``backpan`` one that came back) is upgraded in place, keeping
its ``uploadid``. With a complete listing (a mirror's find-ls), a ``cpan`` release no
longer listed becomes ``backpan``. When a release's ``oncpan`` flag changes, its
``release_data`` rows change flag and their counts move between ``release_summary`` rows,
in the same transaction as the ``uploads`` change: workers read the ``uploads`` row with a
shared lock, so reports being counted finish first, and later ones see the new type.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa

from schemas import summary_rules
from schemas.uploads import Release
from storage.processing import COUNTS, SUMMARY_KEY, apply_summary_delta, deadlock_retry
from storage.tables import release_data, uploads
from storage.upserts import insert_missing

logger = logging.getLogger(__name__)

CPAN = "cpan"
BACKPAN = "backpan"
INSERT_CHUNK = 1000


def upload_path(conn: sa.Connection, dist: str, version: str) -> str | None:
    """``AUTHOR/FILE`` of a release from ``uploads``, or None when there is no usable row
    (none, or a provisional one without author)."""
    upload = conn.execute(
        sa.select(uploads.c.author, uploads.c.filename).where(uploads.c.dist == dist, uploads.c.version == version)
    ).first()
    if upload and upload.author and upload.filename:
        return f"{upload.author}/{upload.filename}"
    return None


def upload_paths(conn: sa.Connection, releases: Iterable[tuple[str, str]], chunk: int = 500) -> dict:
    """``{(dist, version): "AUTHOR/FILE"}`` of the releases that have a usable ``uploads``
    row: one query per ``chunk`` releases (a row-IN on the (dist, version) key), not one
    per release."""
    wanted = sorted(set(releases))
    paths = {}
    key = sa.tuple_(uploads.c.dist, uploads.c.version)
    for start in range(0, len(wanted), chunk):
        query = sa.select(uploads.c.dist, uploads.c.version, uploads.c.author, uploads.c.filename).where(
            key.in_(wanted[start : start + chunk])
        )
        for row in conn.execute(query):
            if row.author and row.filename:
                paths[(row.dist, row.version)] = f"{row.author}/{row.filename}"
    return paths


def current_uploads(conn: sa.Connection) -> dict[tuple[str, str], sa.Row]:
    query = sa.select(uploads.c.uploadid, uploads.c.type, uploads.c.author, uploads.c.dist, uploads.c.version)
    query = query.add_columns(uploads.c.filename, uploads.c.released)
    return {(r.dist, r.version): r for r in conn.execute(query)}


def refile_release(conn: sa.Connection, uploadid: int, oncpan: int) -> int:
    """Move a release's reports to the summary rows of its new ``oncpan`` flag; returns
    how many reports moved. Runs in the caller's transaction, after the uploads change."""
    moved = list(
        conn.execute(
            sa.select(release_data)
            .where(release_data.c.uploadid == uploadid, release_data.c.oncpan != oncpan)
            .with_for_update()
        ).mappings()
    )
    if not moved:
        return 0
    conn.execute(
        release_data.update()
        .where(release_data.c.uploadid == uploadid, release_data.c.oncpan != oncpan)
        .values(oncpan=oncpan)
    )
    deltas: dict[tuple, dict] = {}
    for row in moved:
        for sign, flag in ((-1, row["oncpan"]), (+1, oncpan)):
            key = tuple(flag if name == "oncpan" else row[name] for name in SUMMARY_KEY)
            delta = deltas.setdefault(key, {**dict.fromkeys(COUNTS, 0), "id": 0, "guid": "", "uploadid": uploadid})
            for name in COUNTS:
                delta[name] += sign * row[name]
            if sign > 0 and row["id"] > delta["id"]:
                delta["id"], delta["guid"] = row["id"], row["guid"]
    # Decrements first, then increments, each in key order.
    for key in sorted(deltas, key=lambda k: (deltas[k]["id"] > 0, k)):
        apply_summary_delta(conn, dict(zip(SUMMARY_KEY, key, strict=True)), deltas[key])
    return len(moved)


def _set_upload(conn: sa.Connection, uploadid: int, values: dict, old_type: str) -> int:
    """Change one uploads row and make its release rows follow; returns reports moved."""
    locked = conn.execute(
        sa.select(uploads.c.type).where(uploads.c.uploadid == uploadid).with_for_update()
    ).scalar_one()
    conn.execute(uploads.update().where(uploads.c.uploadid == uploadid).values(values))
    new_type = values.get("type", locked)
    if summary_rules.oncpan(new_type) != summary_rules.oncpan(old_type):
        logger.info("upload %s: %s -> %s", uploadid, old_type, new_type)
    return refile_release(conn, uploadid, summary_rules.oncpan(new_type))


@deadlock_retry
def _insert_chunk(engine: sa.Engine, rows: list[dict]) -> None:
    with engine.begin() as conn:
        insert_missing(conn, uploads, rows, ["dist", "version"])


@deadlock_retry
def _change(engine: sa.Engine, row: sa.Row, values: dict) -> int:
    with engine.begin() as conn:
        return _set_upload(conn, row.uploadid, values, row.type)


def sync_uploads(engine: sa.Engine, releases: Iterable[Release], complete: bool, dry_run: bool = False) -> dict:
    """Bring ``uploads`` in line with ``releases`` (``complete``: the whole of CPAN, so
    anything missing went to BackPAN). Returns counts of what was (or would be) done."""
    with engine.connect() as conn:
        known = current_uploads(conn)
    listed: dict[tuple[str, str], Release] = {}
    for release in releases:
        key = (release.dist, release.version)
        if key not in listed or release.released < listed[key].released:
            listed[key] = release  # the first file of a release (a .zip beside the .tar.gz)
    counts = {"listed": len(listed), "added": 0, "upgraded": 0, "backpan": 0, "unchanged": 0, "moved_reports": 0}
    inserts = []
    changes = []
    for key, release in listed.items():
        values = {
            "type": CPAN,
            "author": release.author,
            "filename": release.filename,
            "released": release.released,
        }
        row = known.get(key)
        if row is None:
            inserts.append({**values, "dist": release.dist, "version": release.version})
            counts["added"] += 1
        elif (row.type, row.author, row.filename, row.released) == (
            CPAN,
            release.author,
            release.filename,
            release.released,
        ):
            counts["unchanged"] += 1
        else:
            changes.append((row, values))
            counts["upgraded"] += 1
    if complete:
        for key, row in known.items():
            if row.type == CPAN and key not in listed:
                changes.append((row, {"type": BACKPAN}))
                counts["backpan"] += 1
    if dry_run:
        return counts
    for start in range(0, len(inserts), INSERT_CHUNK):
        _insert_chunk(engine, inserts[start : start + INSERT_CHUNK])
    for row, values in changes:  # one short transaction each: changes are few
        counts["moved_reports"] += _change(engine, row, values)
    logger.info("uploads synced %s", counts)
    return counts
