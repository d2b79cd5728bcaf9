"""The report viewer: ``GET /cpan/report/<id>`` and ``GET /report/<id>`` (spec 6.1).

``<id>`` is a report GUID or a numeric cpanstats id. It reads ``test_report`` (through
``storage/reports.py``), never the processed tables for the report itself, so a report
is viewable the moment its submission was acknowledged. Three forms: the HTML page,
``?raw=1`` (the page without its layout) and ``?json=1`` (the legacy Metabase-style JSON).
"""

from __future__ import annotations

import hashlib
import html
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, json, render_template, request

import settings as settings_module
from app import viewer_http
from intake.pipeline import DATABASE_UNAVAILABLE, Unavailable
from schemas.distname import parse_distfile
from schemas.metabase import DISTFILE_PREFIX, is_guid
from schemas.metabase_view import default_distfile, text_report, to_metabase_struct
from storage.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine, normalise_url
from storage.legacy import legacy_fallback, legacy_guid_of_id
from storage.reports import read_document
from storage.tables import cpanstats, metabase_user, test_report, uploads

logger = logging.getLogger(__name__)

EXTENSION_KEY = "cpantesters_viewer"
MAX_NUMERIC_ID = 2**32 - 1
"""cpanstats.id is an unsigned INT: longer digit strings cannot name a report."""

OS_NAMES = {
    "aix": "AIX",
    "android": "Android",
    "beos": "BeOS",
    "bitrig": "BITRIG",
    "bsdos": "BSD/OS",
    "cygwin": "Windows (Cygwin)",
    "darwin": "Mac OS X",
    "dec_osf": "Tru64",
    "dragonfly": "Dragonfly BSD",
    "freebsd": "FreeBSD",
    "gnu": "GNU Hurd",
    "gnukfreebsd": "Debian GNU/kFreeBSD",
    "haiku": "Haiku",
    "hpux": "HP-UX",
    "interix": "Interix",
    "irix": "IRIX",
    "linux": "GNU/Linux",
    "midnightbsd": "MidnightBSD",
    "minix": "MINIX",
    "mirbsd": "MirOS BSD",
    "mswin32": "Windows (Win32)",
    "netbsd": "NetBSD",
    "nto": "QNX Neutrino",
    "openbsd": "OpenBSD",
    "os2": "OS/2",
    "os390": "OS390/zOS",
    "qnx": "QNX",
    "sco": "SCO",
    "solaris": "SunOS/Solaris",
    "vms": "VMS",
}
"""osname -> the long name in the page title (upstream's OS map)."""

viewer = Blueprint("viewer", __name__)


class PageCache:
    """A small bounded per-process LRU of rendered answers, keyed by (GUID, form) and
    validated by a stamp of everything the answer is made from (the report's stored
    bytes, its index columns, the uploads author/filename and the tester's profile), read
    by the same single query that a page view makes anyway: a changed report, upload or
    profile gives a new stamp, so the stale entry is never served and the ETag stays the
    hash of what is shown. Saves decoding the document, rendering, hashing and gzip."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[tuple, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, stamp: tuple | None) -> viewer_http.Rendered | None:
        if stamp is None or self.size <= 0:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != stamp:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple, stamp: tuple | None, rendered: viewer_http.Rendered) -> None:
        if stamp is None or self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (stamp, rendered)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@dataclass
class ViewerServices:
    """What the read side needs per process: settings and a database engine (read only)."""

    settings: settings_module.Settings
    engine: sa.Engine
    pages: PageCache


def read_services() -> ViewerServices:
    return current_app.extensions[EXTENSION_KEY]


def os_long_name(osname: str) -> str:
    return OS_NAMES.get((osname or "").lower(), osname or "")


@dataclass
class Found:
    """A stored report with the details that can change after it was stored."""

    row: dict
    author: str | None  # PAUSE id from uploads
    upload_filename: str | None
    tester_name: str | None  # from metabase_user, the profile's current name
    tester_email: str | None
    stamp: tuple | None = None
    """Everything the answers are made from, for :class:`PageCache`; None: not cacheable
    (a report read from the legacy cache). While set, ``row["report"]`` is still the
    stored form: :func:`decode` turns it into the document."""


GUID_OF_NUMERIC_ID = sa.select(cpanstats.c.guid).where(cpanstats.c.id == sa.bindparam("id"))
UPLOAD_OF_RELEASE = (
    sa.select(uploads.c.author, uploads.c.filename)
    .where(uploads.c.dist == sa.bindparam("dist"), uploads.c.version == sa.bindparam("version"))
    .limit(1)
)
PROFILE_OF_CREATOR = sa.select(metabase_user.c.fullname, metabase_user.c.email).where(
    metabase_user.c.resource == sa.bindparam("resource")
)
REPORT_WITH_DETAILS = (
    sa.select(
        test_report.c.guid,
        test_report.c.dist,
        test_report.c.version,
        test_report.c.grade,
        test_report.c.creator,
        test_report.c.distfile,
        test_report.c.report,
        test_report.c.report_z,
        uploads.c.author,
        uploads.c.filename,
        metabase_user.c.fullname,
        metabase_user.c.email,
    )
    .select_from(
        test_report.outerjoin(
            uploads, sa.and_(uploads.c.dist == test_report.c.dist, uploads.c.version == test_report.c.version)
        ).outerjoin(metabase_user, metabase_user.c.resource == test_report.c.creator)
    )
    .where(test_report.c.guid == sa.bindparam("guid"))
)
"""A stored report with its author (uploads: unique on dist, version) and its tester's
profile (unique resource) in one round trip, by primary/unique keys only."""
"""Built once: a page view only binds values (the compiled forms are cached by SQLAlchemy)."""


def find_report(conn: sa.Connection, ident: str, legacy_url: str | None = None) -> Found | None:
    """The report named by a GUID or a numeric cpanstats id, or None.

    With ``legacy_url`` (a migration is running), a report not in ``test_report`` yet is
    read from the legacy Metabase cache, and a numeric id not in our ``cpanstats`` yet
    from the legacy ``cpanstats``; the legacy database is only asked about what we lack,
    so its being down never affects migrated reports.
    """
    if ident.isdigit():
        if len(ident) > 10 or int(ident) > MAX_NUMERIC_ID:
            return None
        guid = conn.execute(GUID_OF_NUMERIC_ID, {"id": int(ident)}).scalar()
        if guid is None:
            guid = legacy_guid_of_id(legacy_url, int(ident))
        if guid is None:
            return None
    elif is_guid(ident):
        guid = ident
    else:
        return None
    stored = conn.execute(REPORT_WITH_DETAILS, {"guid": guid.lower()}).first()
    if stored is not None:
        body = stored.report_z if stored.report_z is not None else stored.report
        digest = hashlib.blake2b(body if isinstance(body, bytes) else body.encode("utf-8"), digest_size=16)
        return Found(
            row=dict(stored._mapping),
            author=stored.author or None,
            upload_filename=stored.filename or None,
            tester_name=stored.fullname,
            tester_email=stored.email,
            stamp=(digest.digest(), *(v for k, v in stored._mapping.items() if k not in ("report", "report_z"))),
        )
    row = legacy_fallback(legacy_url, guid)
    if row is None:
        return None
    upload = conn.execute(UPLOAD_OF_RELEASE, {"dist": row["dist"], "version": row["version"]}).first()
    tester = None
    if row.get("creator"):
        tester = conn.execute(PROFILE_OF_CREATOR, {"resource": row["creator"]}).first()
    return Found(
        row=dict(row),
        author=(upload.author or None) if upload else None,
        upload_filename=(upload.filename or None) if upload else None,
        tester_name=tester.fullname if tester else None,
        tester_email=tester.email if tester else None,
    )


def decode(conn: sa.Connection, found: Found) -> Found:
    """``found`` with ``row["report"]`` the v3 document (a no-op for legacy reports)."""
    if found.stamp is not None and not isinstance(found.row["report"], dict):
        found.row["report"] = read_document(conn, found.row)
    return found


def distfile_of(found: Found) -> str:
    """``AUTHOR/File-1.0.tar.gz``: from uploads, else the submission's own resource."""
    doc = found.row["report"]
    if found.author:
        return f"{found.author}/{found.upload_filename or default_distfile(doc).rsplit('/', 1)[-1]}"
    path = found.row.get("distfile") or (doc.get("distribution") or {}).get("path")
    if isinstance(path, str) and path:
        return path.removeprefix(DISTFILE_PREFIX)
    return default_distfile(doc)


def _display(text: str | None) -> str:
    """Legacy names carry HTML entities (``Slaven Rezi&#263;``): show the characters."""
    return html.unescape(text or "")


def page_context(found: Found) -> dict:
    """Everything the report page shows (escaping is left to the template)."""
    doc = found.row["report"]
    distfile = distfile_of(found)
    info = parse_distfile(distfile) if "/" in distfile else None
    distribution = doc.get("distribution") or {}
    dist = (info.dist if info and info.dist else None) or distribution.get("name") or found.row["dist"]
    version = (info.version if info and info.version else None) or distribution.get("version") or ""
    cpanid = found.author or (info.cpanid if info else None)
    language = (doc.get("environment") or {}).get("language") or {}
    system = (doc.get("environment") or {}).get("system") or {}
    grade = ((doc.get("result") or {}).get("grade") or found.row["grade"] or "").upper()
    subject = f"{grade} {dist}-{version} {language.get('version', '')} {os_long_name(system.get('osname', ''))}"
    reporter = doc.get("reporter") or {}
    name = _display(found.tester_name or reporter.get("name"))
    email = found.tester_email or reporter.get("email")
    if cpanid:
        release_url = f"https://metacpan.org/release/{quote(cpanid)}/{quote(f'{dist}-{version}')}"
    else:
        release_url = f"https://metacpan.org/release/{quote(dist)}"
    return {
        "subject": subject.strip(),
        "dist": dist,
        "version": version,
        "distversion": f"{dist}-{version}",
        "grade": grade,
        "release_url": release_url,
        "back_url": f"http://www.cpantesters.org/distro/{quote(dist[:1].upper())}/{quote(dist)}.html?version={quote(version)}",
        "from_line": f"{name} <{email}>" if email else name,
        "date": doc.get("created") or "",
        "text": text_report(doc),
        "guid": found.row["guid"],
    }


def legacy_json(found: Found) -> dict:
    """``{"success": "1", "result": ...}`` as the real upstream sample has it."""
    creator = found.row.get("creator")
    struct = to_metabase_struct(found.row["report"], distfile_of(found), creator)
    return {"success": "1", "result": struct}


def _flag(name: str) -> bool:
    return request.args.get(name, "") not in ("", "0")


FORMS = {"json": "application/json", "raw": "text/html; charset=utf-8", "html": "text/html; charset=utf-8"}


def _render(found: Found, form: str) -> str:
    if form == "json":
        return json.dumps(legacy_json(found), ensure_ascii=False)
    return render_template("viewer/report.html", raw=form == "raw", **page_context(found))


def _answer(ident: str, form: str) -> viewer_http.Rendered | None:
    """The rendered answer (from the page cache when still valid), or None: not found."""
    services = read_services()
    try:
        with services.engine.connect() as conn:
            found = find_report(conn, ident, services.settings.LEGACY_DATABASE_URL)
            if found is None:
                return None
            key = (found.row["guid"], form)
            rendered = services.pages.get(key, found.stamp)
            if rendered is None:
                rendered = viewer_http.Rendered(_render(decode(conn, found), form))
                services.pages.put(key, found.stamp, rendered)
            return rendered
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("database unavailable") from exc


@viewer.get("/cpan/report/<ident>")
@viewer.get("/report/<ident>")
def view_report(ident: str):
    """The report page, its raw form or the legacy JSON; see the module docstring."""
    config = read_services().settings
    as_json, raw = _flag("json"), _flag("raw")
    form = "json" if as_json else "raw" if raw else "html"
    rendered = _answer(ident.strip(), form)
    if rendered is None:
        logger.info("viewer guid=%s outcome=not-found", ident[:64])
        max_age = config.VIEWER_NOT_FOUND_MAX_AGE
        if as_json:
            # Always 200 for ?json=1: CPAN::Testers::WWW::Reports::Query::Report relies on it.
            return viewer_http.cached_response(json.dumps({"success": 0}), "application/json", max_age)
        body = render_template("viewer/not_found.html", raw=raw)
        return viewer_http.cached_response(body, "text/html; charset=utf-8", max_age, status=404)
    return viewer_http.rendered_response(rendered, FORMS[form], config.VIEWER_MAX_AGE)


def read_engine(url: str, connect_timeout: int) -> sa.Engine:
    """An engine for reads only. On SQLite its transactions are deferred ``BEGIN`` (the
    writers' engine takes ``BEGIN IMMEDIATE``), so that in WAL mode a page view never
    holds the write lock a submission is waiting for."""
    parsed = normalise_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return create_engine(url, connect_timeout=connect_timeout)
    engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN")

    return engine


def init_app(app: Flask, config: settings_module.Settings) -> ViewerServices:
    engine = read_engine(config.DATABASE_URL, config.DB_CONNECT_TIMEOUT)
    services = ViewerServices(config, engine, PageCache(config.VIEWER_PAGE_CACHE))
    app.extensions[EXTENSION_KEY] = services
    app.register_blueprint(viewer)
    viewer_http.init_app(app)
    return services
