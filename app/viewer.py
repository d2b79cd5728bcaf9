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
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, json, render_template, request

import settings as settings_module
from app import viewer_http
from schemas.distname import parse_distfile
from schemas.metabase import DISTFILE_PREFIX, GUID_PATTERN, is_guid
from schemas.metabase_view import default_distfile, text_report, to_metabase_struct
from storage.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine, normalise_url
from storage.errors import DATABASE_UNAVAILABLE, Unavailable
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


IN_USE_SECONDS = 30.0
"""A cached answer served within this many seconds is kept fresh by the revalidation
rounds; older ones are checked again by the view that next asks for them."""

STALE_WHILE_REVALIDATING = 5
"""While a revalidation round is under way, an answer is served up to this many times
``VIEWER_REVALIDATE_SECONDS`` after its last check: right after a burst of submissions
MariaDB took 3.0-3.2 s for a round here (bench/RESULTS.md), and every view past its
window would otherwise go to that same slow database at once."""


class _Entry:
    __slots__ = ("stamp", "rendered", "checked", "used")

    def __init__(self, stamp: tuple, rendered: viewer_http.Rendered, checked: float, used: float):
        self.stamp, self.rendered, self.checked, self.used = stamp, rendered, checked, used


class PageCache:
    """A small bounded per-process LRU of rendered answers, keyed by (GUID, form) and
    validated by a stamp of everything the answer is made from (the report's stored
    bytes, its index columns, the uploads author/filename and the tester's profile), read
    by the same single query that a page view makes: a changed report, upload or profile
    gives a new stamp, so the stale entry is never served and the ETag stays the hash of
    what is shown. Saves decoding the document, rendering, hashing and gzip.

    With ``revalidate_after`` > 0 (``VIEWER_REVALIDATE_SECONDS``), an answer whose stamp
    was checked against the database less than that many seconds ago is served by
    :meth:`fresh` without asking the database again, and :class:`Revalidator` re-checks
    the answers in use in one query per round: so a change to a report, its author or
    its tester shows within that many seconds, or within :data:`STALE_WHILE_REVALIDATING`
    times that while a round is under way (a busy machine or database), never later.
    0: every view asks.
    """

    def __init__(self, size: int, revalidate_after: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.size = size
        self.revalidate_after = revalidate_after
        self.clock = clock
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._revalidating = False

    def fresh(self, key: tuple) -> viewer_http.Rendered | None:
        """The answer for ``key`` if its stamp was checked within ``revalidate_after``, or,
        while a :meth:`revalidate` round is under way, within :data:`STALE_WHILE_REVALIDATING`
        times that: on a busy machine or database a round can take seconds, and the views
        of every answer in use would otherwise all go to the database at once."""
        if self.revalidate_after <= 0:
            return None
        now = self.clock()
        limit = self.revalidate_after * (STALE_WHILE_REVALIDATING if self._revalidating else 1)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry.checked >= limit:
                return None
            entry.used = now
            self._entries.move_to_end(key)
            return entry.rendered

    def get(self, key: tuple, stamp: tuple | None, checked: float = 0.0) -> viewer_http.Rendered | None:
        """The answer for ``key`` if it was made from ``stamp``, read from the database
        by a query started at ``checked`` (by :attr:`clock`)."""
        if stamp is None or self.size <= 0:
            return None
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.stamp != stamp:
                return None
            entry.checked = max(entry.checked, checked)
            entry.used = now
            self._entries.move_to_end(key)
            return entry.rendered

    def put(self, key: tuple, stamp: tuple | None, rendered: viewer_http.Rendered, checked: float = 0.0) -> None:
        if stamp is None or self.size <= 0:
            return
        now = self.clock()
        with self._lock:
            self._entries[key] = _Entry(stamp, rendered, checked, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def revalidate(self, conn: sa.Connection, batch: int = 500) -> int:
        """One round: re-read the stamps of the GUIDs whose answers were served in the
        last :data:`IN_USE_SECONDS` (one query per ``batch`` GUIDs, so a round reads at
        most as many rows as the cache holds); an unchanged stamp makes the answer fresh
        again, a changed or vanished one drops it. Returns the GUIDs checked."""
        checked = self.clock()  # before the query: what it reads is at least this recent
        with self._lock:
            guids = {guid for (guid, _form), entry in self._entries.items() if checked - entry.used < IN_USE_SECONDS}
        if not guids:
            return 0
        current: dict[str, tuple] = {}
        ordered = sorted(guids)
        self._revalidating = True
        try:
            for n in range(0, len(ordered), batch):
                for row in conn.execute(STAMPS_OF_REPORTS, {"guids": ordered[n : n + batch]}):
                    current[row[0]] = stamp_of(row)
        finally:
            self._revalidating = False
        with self._lock:
            for key in [k for k in self._entries if k[0] in guids]:
                entry = self._entries[key]
                if current.get(key[0]) == entry.stamp:
                    entry.checked = max(entry.checked, checked)
                else:
                    del self._entries[key]
        return len(guids)


class Revalidator:
    """A daemon thread of a viewer process that starts :meth:`PageCache.revalidate` every
    half of ``VIEWER_REVALIDATE_SECONDS``, so that answers in use stay fresh and page
    views served from the cache never wait for the database. Started by the viewer's
    gunicorn workers (``gunicorn_viewer.conf.py``); without it answers are re-checked by
    the view that finds them stale, as with ``VIEWER_REVALIDATE_SECONDS=0``."""

    def __init__(self, engine: sa.Engine, pages: PageCache):
        self.engine, self.pages = engine, pages
        self.interval = pages.revalidate_after / 2
        self.rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        if self.interval <= 0 or self.pages.size <= 0 or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="viewer-revalidator", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run_once(self) -> int:
        with self.engine.connect() as conn:
            checked = self.pages.revalidate(conn)
        self.rounds += 1
        return checked

    def wait_after(self, started: float) -> float:
        """Seconds until the round after one begun at ``started`` (by the page cache's
        clock): rounds start every :attr:`interval`, so a slow round (a busy machine)
        eats into the wait instead of pushing every later round back."""
        return max(0.0, started + self.interval - self.pages.clock())

    def _run(self) -> None:
        failing = False
        started = self.pages.clock()
        while not self._stop.wait(self.wait_after(started)):
            started = self.pages.clock()
            try:
                self.run_once()
            except Exception:  # the database may be away: views then check for themselves
                if not failing:
                    logger.warning("viewer page cache revalidation failed; views check the database", exc_info=True)
                failing = True
            else:
                if failing:
                    logger.info("viewer page cache revalidation works again")
                failing = False


@dataclass
class ViewerServices:
    """What the read side needs per process: settings and a database engine (read only)."""

    settings: settings_module.Settings
    engine: sa.Engine
    pages: PageCache
    revalidator: Revalidator


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
_DETAILS = (
    test_report.c.guid,
    test_report.c.dist,
    test_report.c.version,
    test_report.c.grade,
    test_report.c.creator,
    test_report.c.distfile,
    uploads.c.author,
    uploads.c.filename,
    metabase_user.c.fullname,
    metabase_user.c.email,
    # The stored bytes' digest, made by the database: a revalidation round then reads and
    # parses ~200 bytes per report, not the ~2 KB of its packed row, nor hashes them.
    sa.func.md5(sa.func.coalesce(test_report.c.report_z, test_report.c.report), type_=sa.String).label("digest"),
)
_WITH_DETAILS = test_report.outerjoin(
    uploads, sa.and_(uploads.c.dist == test_report.c.dist, uploads.c.version == test_report.c.version)
).outerjoin(metabase_user, metabase_user.c.resource == test_report.c.creator)
REPORT_WITH_DETAILS = (
    sa.select(*_DETAILS, test_report.c.report, test_report.c.report_z)
    .select_from(_WITH_DETAILS)
    .where(test_report.c.guid == sa.bindparam("guid"))
)
"""A stored report with its author (uploads: unique on dist, version) and its tester's
profile (unique resource) in one round trip, by primary/unique keys only. Built once: a
page view only binds values (the compiled forms are cached by SQLAlchemy)."""
STAMPS_OF_REPORTS = (
    sa.select(*_DETAILS).select_from(_WITH_DETAILS).where(test_report.c.guid.in_(sa.bindparam("guids", expanding=True)))
)
"""The stamps of many reports (unique key look-ups): the page cache's revalidation rounds."""


def stamp_of(stored: sa.Row) -> tuple:
    """Everything an answer is made from, for :class:`PageCache`: every column of
    :data:`STAMPS_OF_REPORTS`, the first ones of :data:`REPORT_WITH_DETAILS` (the
    database's digest of the stored bytes: packed rows name their blocks by SHA-256, and
    blocks never change)."""
    return tuple(stored[: len(_DETAILS)])


def sqlite_md5(data: bytes | str | None) -> str | None:
    """MySQL's ``MD5()`` for SQLite, whose connections get it as a function (the digest
    in :data:`STAMPS_OF_REPORTS`)."""
    if data is None:
        return None
    return hashlib.md5(data if isinstance(data, bytes) else data.encode("utf-8"), usedforsecurity=False).hexdigest()


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
        return Found(
            row=dict(stored._mapping),
            author=stored.author or None,
            upload_filename=stored.filename or None,
            tester_name=stored.fullname,
            tester_email=stored.email,
            stamp=stamp_of(stored),
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
    pages = services.pages
    if is_guid(ident):
        rendered = pages.fresh((ident.lower(), form))
        if rendered is not None:
            return rendered
    try:
        checked = pages.clock()
        with services.engine.connect() as conn:
            found = find_report(conn, ident, services.settings.LEGACY_DATABASE_URL)
            if found is None:
                return None
            key = (found.row["guid"], form)
            rendered = pages.get(key, found.stamp, checked)
            if rendered is None:
                rendered = viewer_http.Rendered(_render(decode(conn, found), form))
                pages.put(key, found.stamp, rendered, checked)
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


FAST_FORMS = {"": "html", "raw=1": "raw", "json=1": "json"}
"""Query strings of the forms :func:`cached_answer` serves (any other goes through Flask)."""
REPORT_PATH = re.compile(r"/(?:cpan/)?report/(" + GUID_PATTERN.pattern.strip("^$") + ")", re.I)


def cached_answer(
    services: ViewerServices,
    method: str,
    path: str,
    query: str,
    if_none_match: str | None,
    accept_encoding: str | None,
) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """The status, headers and body of a request for a report page whose answer is in
    the page cache and fresh (:meth:`PageCache.fresh`), exactly as the Flask route would
    send them (:func:`viewer_http.answer`, plus the CORS headers), or None: the request
    goes to the route. Only a GET of ``/cpan/report/<GUID>`` or ``/report/<GUID>``, plain,
    ``?raw=1`` or ``?json=1``, is answered so, without a Flask request context or a
    database query."""
    if method != "GET":
        return None
    form = FAST_FORMS.get(query)
    match = REPORT_PATH.fullmatch(path) if form else None
    rendered = services.pages.fresh((match.group(1).lower(), form)) if match else None
    if rendered is None:
        return None
    config = services.settings
    status, headers, data = viewer_http.answer(
        rendered, FORMS[form], config.VIEWER_MAX_AGE, if_none_match, accept_encoding
    )
    if status == 200:
        headers.append(("Content-Length", str(len(data))))
    headers.extend(viewer_http.CORS_HEADERS.items())
    return status, headers, data


def read_engine(url: str, connect_timeout: int, threads: int) -> sa.Engine:
    """An engine for reads only, pooling a connection for each of ``threads`` request
    threads and the revalidation thread: a smaller pool opens and closes the surplus on
    every request (for pymysql each a new TLS context, ~20 % of the read API's CPU).

    On MySQL/MariaDB its connections run in autocommit: every read is one statement, and
    a connection goes back to the pool without the ``ROLLBACK`` round trip that ends an
    implicit transaction. On SQLite its transactions are deferred ``BEGIN`` (the
    writers' engine takes ``BEGIN IMMEDIATE``), so that in WAL mode a page view never
    holds the write lock a submission is waiting for."""
    parsed = normalise_url(url)
    pool_size = threads + 1
    if not parsed.drivername.startswith("sqlite"):
        return create_engine(
            url,
            connect_timeout=connect_timeout,
            pool_size=pool_size,
            isolation_level="AUTOCOMMIT",
            skip_autocommit_rollback=True,
        )
    engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_size=pool_size)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.create_function("md5", 1, sqlite_md5, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN")

    return engine


def init_app(app: Flask, config: settings_module.Settings) -> ViewerServices:
    engine = read_engine(config.DATABASE_URL, config.DB_CONNECT_TIMEOUT, config.VIEWER_THREADS)
    pages = PageCache(config.VIEWER_PAGE_CACHE, config.VIEWER_REVALIDATE_SECONDS)
    services = ViewerServices(config, engine, pages, Revalidator(engine, pages))
    app.extensions[EXTENSION_KEY] = services
    app.register_blueprint(viewer)
    viewer_http.init_app(app)
    return services
