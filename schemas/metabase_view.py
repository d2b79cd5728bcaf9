"""Build the Metabase-style struct of a stored v3 report, as the legacy viewer's
``?json=1`` and ``GET guid/<guid>`` show it (shape of the real upstream sample)."""

from __future__ import annotations

from schemas.metabase import DISTFILE_PREFIX, LEGACY_REPORT, REPORT_TYPE, TEST_SUMMARY

OUTPUT_PARTS = ("configure", "build", "test", "install")


def text_report(doc: dict) -> str:
    """The full report text: the uncategorized output, or the phases joined."""
    output = doc.get("result", {}).get("output", {}) or {}
    if output.get("uncategorized"):
        return output["uncategorized"]
    return "\n\n".join(output[part] for part in OUTPUT_PARTS if output.get(part))


def default_distfile(doc: dict, author: str | None = None) -> str:
    dist = doc["distribution"]
    filename = f"{dist['name']}-{dist['version']}.tar.gz"
    return f"{author}/{filename}" if author else filename


def creator_of(doc: dict, creator: str | None) -> str:
    if creator:
        return creator
    reporter = doc.get("reporter") or {}
    return f"{reporter.get('name') or ''} {reporter.get('email') or ''}".strip()


def to_metabase_struct(doc: dict, distfile: str, creator: str | None) -> dict:
    """The report as a Metabase ``CPAN-Testers-Report`` struct with decoded fact contents."""
    language = doc["environment"]["language"]
    system = doc["environment"]["system"]
    created = doc["created"]
    core = {
        "creation_time": created,
        "update_time": created,
        "valid": 1,
        "type": REPORT_TYPE,
        "resource": DISTFILE_PREFIX + distfile,
        "schema_version": 1,
        "guid": doc["id"],
        "creator": creator_of(doc, creator),
    }
    summary = {
        "grade": doc["result"]["grade"],
        "osname": system.get("osname", ""),
        "osversion": system.get("osversion", ""),
        "archname": language.get("archname", ""),
        "perl_version": language.get("version", ""),
    }
    # Each member fact keeps its own GUID where the document recorded it (reports stored
    # before it did show the report's GUID there).
    guids = (doc.get("metabase") or {}).get("fact_guids") or {}

    def member(fact_type: str) -> dict:
        return {**core, "type": fact_type, "guid": guids.get(fact_type, core["guid"])}

    return {
        "metadata": {"core": core},
        "content": [
            {"metadata": {"core": member(LEGACY_REPORT)}, "content": {**summary, "textreport": text_report(doc)}},
            {"metadata": {"core": member(TEST_SUMMARY)}, "content": summary},
        ],
    }
