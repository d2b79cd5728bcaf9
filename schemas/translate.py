"""Translate a Metabase submission into the v3 report document, and derive the
indexed columns every v3 document is stored with.
"""

from __future__ import annotations

from datetime import datetime

from schemas.metabase import MetabaseReport
from schemas.text import clean_text
from schemas.v3 import PERL5

UNKNOWN_REPORTER = "Unknown"


def iso_z(moment: datetime) -> str:
    """``2017-03-02T06:47:23Z`` from a naive UTC datetime."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def strip_v(perl_version: str) -> str:
    return perl_version.lstrip("v")


def metabase_to_v3(
    report: MetabaseReport, received: datetime, reporter_name: str | None, reporter_email: str | None
) -> dict:
    """The v3 document for a Metabase submission (spec section 3), dated by receipt.

    The client's own clock is kept under ``metabase.creation_time``, never used as
    ``created`` (upstream dated reports by it and got reports from the future).
    """
    legacy = report.legacy
    return {
        "id": report.guid,
        "created": iso_z(received),
        "reporter": {"name": reporter_name or UNKNOWN_REPORTER, "email": reporter_email},
        "environment": {
            "language": {
                "name": PERL5,
                "version": clean_text(strip_v(legacy["perl_version"])),
                "archname": clean_text(legacy["archname"]),
            },
            "system": {
                "osname": clean_text(legacy["osname"]),
                "osversion": clean_text(legacy["osversion"]),
            },
        },
        "distribution": {
            "name": report.dist.dist,
            "version": report.dist.version,
            "path": report.distfile,
        },
        "result": {
            "grade": legacy["grade"],
            "output": {"uncategorized": clean_text(legacy["textreport"])},
        },
        # The client's own fields, unchecked beyond their type: made storable like the rest.
        "metabase": clean_document(
            {
                "creator": report.core.get("creator"),
                "creation_time": report.core.get("creation_time"),
                "update_time": report.core.get("update_time"),
                "resource": report.core.get("resource"),
                "fact_guids": report.fact_guids,
            }
        ),
    }


def clean_document(doc):
    """Apply the text repair to every string of a client-supplied v3 document."""
    if isinstance(doc, str):
        return clean_text(doc)
    if isinstance(doc, dict):
        return {clean_text(k): clean_document(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [clean_document(v) for v in doc]
    return doc


def _clip(value, size: int = 255) -> str:
    return (value or "")[:size] if isinstance(value, str) else str(value or "")[:size]


def index_columns(doc: dict) -> dict:
    """The ``test_report`` columns derived from a v3 document (what queries filter on)."""
    language = doc["environment"]["language"]
    reporter = doc.get("reporter") or {}
    path = doc["distribution"].get("path")
    return {
        "language": _clip(language["name"], 16),
        "dist": _clip(doc["distribution"]["name"]),
        "version": _clip(doc["distribution"]["version"]),
        "grade": _clip(doc["result"]["grade"], 8),
        "perl": _clip(language["version"]),
        "osname": _clip(doc["environment"]["system"]["osname"]),
        "archname": _clip(language.get("archname")),
        "reporter": _clip(reporter.get("name")),
        "reporter_email": _clip(reporter.get("email")) or None,
        "distfile": _clip(path) if isinstance(path, str) and path else None,
    }
