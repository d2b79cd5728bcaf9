"""The report viewer: ``GET /cpan/report/<id>`` and ``GET /report/<id>`` (spec 6.1).

``<id>`` is a report GUID or a numeric cpanstats id. It reads ``test_report`` (through
``storage/report_view.py``), never the processed tables for the report itself, so a report
is viewable the moment its submission was acknowledged. Three forms: the HTML page,
``?raw=1`` (the page without its layout) and ``?json=1`` (the legacy Metabase-style JSON).

Plain Flask views: the strong ETag is werkzeug's hash of the exact bytes shown (so it
changes with the author or the tester details shown), ``304`` by ``make_conditional``,
and ``Cache-Control`` by outcome (:mod:`app.read_side`); the proxy in front caches.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import quote

from flask import Response, json, render_template, request
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields, validate

from app import read_side
from schemas.distname import parse_distfile
from schemas.metabase import DISTFILE_PREFIX
from schemas.metabase_view import default_distfile, text_report, to_metabase_struct
from schemas.module_version import is_below
from schemas.reportparse import ParsedReport, parse_report_text
from schemas.reportparse.shape import report_text
from storage.errors import DATABASE_UNAVAILABLE, Unavailable
from storage.failure_analysis import release_analysis
from storage.report_facts import load_facts
from storage.report_view import ViewedReport, find_report

logger = logging.getLogger(__name__)

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

viewer = Blueprint("viewer", __name__, description="Report pages")


def os_long_name(osname: str) -> str:
    return OS_NAMES.get((osname or "").lower(), osname or "")


def distfile_of(found: ViewedReport) -> str:
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


def page_context(found: ViewedReport) -> dict:
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


MISSING = {"n/a", "missing", ""}
"""What CPAN::Reporter's prerequisite table shows as installed for a module that is not."""


def facts_context(doc: dict, parsed: ParsedReport) -> dict:
    """What the page shows above the report's text: a summary of the run, the failed test
    files, and the prerequisites with the unmet ones marked (the first things an author
    looks for in a FAIL)."""
    environment = doc.get("environment") or {}
    language, system = environment.get("language") or {}, environment.get("system") or {}
    summary = [
        ("Perl", " ".join(v for v in (language.get("version"), language.get("archname")) if v)),
        ("Platform", " ".join(v for v in (os_long_name(system.get("osname", "")), system.get("osversion")) if v)),
        ("Tests", _counts(parsed)),
        ("Duration", f"{parsed.duration:g} s" if parsed.duration is not None else ""),
        ("Reporter", parsed.user_agent or ""),
        ("Toolchain", ", ".join(f"{name} {version}" for name, version in sorted(parsed.toolchain.items()))),
    ]
    prerequisites = [
        {
            "phase": p.phase,
            "name": p.name,
            "need": p.need,
            "have": p.have,
            "unmet": _unmet(p.phase, p.need, p.have),
        }
        for p in parsed.prerequisites
    ]
    return {
        "summary": [(label, value) for label, value in summary if value],
        "failed_files": sorted(parsed.failed_files, key=lambda f: f.file),
        "prerequisites": prerequisites,
        "unmet": sum(p["unmet"] for p in prerequisites),
    }


def _unmet(phase: str, need: str, have: str) -> bool:
    """A requirement (not a recommendation or suggestion) missing or below the version needed."""
    if phase.endswith(("recommends", "suggests")):
        return False
    return have.strip().lower() in MISSING or is_below(have, need)


def _counts(parsed: ParsedReport) -> str:
    if parsed.tests is None:
        return ""
    parts = [f"{parsed.tests} tests"]
    if parsed.failures is not None:
        parts.append(f"{parsed.failures} failed")
    if parsed.skipped:
        parts.append(f"{parsed.skipped} skipped")
    return ", ".join(parts)


def parsed_facts(conn, found: ViewedReport) -> ParsedReport:
    """The report's stored facts, or its text parsed now when they are not stored yet (a
    report just submitted, or one read from the legacy cache during a migration)."""
    text = report_text(found.row["report"])
    stored = load_facts(conn, found.row["id"], text) if found.row.get("id") is not None else None
    return stored if stored is not None else parse_report_text(text)


def legacy_json(found: ViewedReport) -> dict:
    """``{"success": "1", "result": ...}`` as the real upstream sample has it."""
    creator = found.row.get("creator")
    struct = to_metabase_struct(found.row["report"], distfile_of(found), creator)
    return {"success": "1", "result": struct}


def _flag(name: str) -> bool:
    return request.args.get(name, "") not in ("", "0")


class ReportFormSchema(Schema):
    """The report page's forms (documentation: any value but empty or ``0`` sets a flag)."""

    json = fields.Integer(validate=validate.OneOf((0, 1)), metadata={"description": "the legacy JSON"})
    raw = fields.Integer(validate=validate.OneOf((0, 1)), metadata={"description": "the page without its layout"})


HTML_ANSWER = {"text/html": {"schema": {"type": "string"}}}

FORMS = {"json": "application/json", "raw": "text/html; charset=utf-8", "html": "text/html; charset=utf-8"}


def _render(found: ViewedReport, form: str, parsed: ParsedReport | None) -> str:
    if form == "json":
        return json.dumps(legacy_json(found), ensure_ascii=False)
    facts = facts_context(found.row["report"], parsed) if parsed is not None else None
    return render_template("viewer/report.html", raw=form == "raw", facts=facts, **page_context(found))


def _not_found(ident: str, form: str) -> Response:
    logger.info("viewer guid=%s outcome=not-found", ident[:64])
    if form == "json":
        # Always 200 for ?json=1: CPAN::Testers::WWW::Reports::Query::Report relies on it.
        response = Response(json.dumps({"success": 0}), content_type=FORMS["json"])
    else:
        response = Response(render_template("viewer/not_found.html", raw=form == "raw"), 404, content_type=FORMS[form])
    response.headers["Cache-Control"] = read_side.NOT_FOUND
    return response


@viewer.route("/cpan/report/<ident>")
@viewer.route("/report/<ident>")
@viewer.doc(
    summary="A report (GUID or cpanstats id): HTML page, ?raw=1 without layout, ?json=1 legacy JSON",
    parameters=[{"in": "query", "schema": ReportFormSchema}],
    responses={
        "200": {
            "description": 'the report; with ?json=1 also when not found ({"success": 0})',
            "content": {**HTML_ANSWER, "application/json": {"schema": {"type": "object"}}},
        },
        "304": {"description": "not modified (If-None-Match)"},
        "404": {"description": "Report not found (HTML)", "content": HTML_ANSWER},
    },
)
def view_report(ident: str):
    """The report page, its raw form or the legacy JSON; see the module docstring."""
    services = read_side.read_services()
    form = "json" if _flag("json") else "raw" if _flag("raw") else "html"
    legacy_url = services.settings.LEGACY_DATABASE_URL
    try:

        def read(conn):
            found = find_report(conn, ident.strip(), legacy_url)
            return found, (parsed_facts(conn, found) if found is not None and form == "html" else None)

        # A report not on the replica yet (just submitted) is looked for on the primary.
        found, parsed = read_side.read_until_found(read, lambda answer: answer[0] is not None)
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("database unavailable") from exc
    if found is None:
        return _not_found(ident, form)
    response = Response(_render(found, form, parsed), content_type=FORMS[form])
    response.headers["Cache-Control"] = read_side.found_page_cache_control(services.settings)
    response.add_etag()
    return response.make_conditional(request)


@viewer.route("/dist/<dist>/<version>/analysis")
@viewer.doc(
    summary="A release's failure analysis as a page",
    responses={
        "200": {"description": "the analysis page", "content": HTML_ANSWER},
        "304": {"description": "not modified (If-None-Match)"},
        "404": {"description": "no PASS or FAIL report of the release", "content": HTML_ANSWER},
    },
)
def release_analysis_page(dist: str, version: str):
    """The failure analysis of a release as a page: the strongest factors as a chart and a
    table, and their counts by value (the JSON is the read API's ``/v3/analysis``)."""
    services = read_side.read_services()
    try:
        result = read_side.read_until_found(
            lambda conn: release_analysis(conn, dist, version), lambda result: result["fail"] + result["pass"] > 0
        )
    except DATABASE_UNAVAILABLE as exc:
        raise Unavailable("database unavailable") from exc
    if result["fail"] + result["pass"] == 0:
        response = Response(render_template("viewer/not_found.html", raw=False), 404, content_type=FORMS["html"])
        response.headers["Cache-Control"] = read_side.NOT_FOUND
        return response
    page = render_template("viewer/analysis.html", a=result, top=result["factors"][:15])
    response = Response(page, content_type=FORMS["html"])
    response.headers["Cache-Control"] = read_side.read_api_cache_control(services.settings)
    response.add_etag()
    return response.make_conditional(request)


def init_app(api: Api) -> None:
    api.register_blueprint(viewer)
