"""Read the legacy Metabase cache and tester profiles, and turn them into v3 reports.

Pure functions (no I/O) over the raw column values of the legacy ``metabase`` database
(spec sections 3 and 4.3):

- ``metabase.metabase`` rows: ``report`` is zlib-compressed JSON (some rows are stored
  uncompressed) of ``{fact class: {metadata: {core}, content}}`` whose ``content`` may be
  an object or a JSON string (sometimes encoded twice); ``updated`` is ISO 8601 in old
  rows and epoch seconds in rows the 2017-2025 backend wrote; ``fact`` (Perl Sereal) is
  ignored because ``report`` carries everything the v3 document needs.
- ``metabase.testers_email`` rows: many per profile; the latest by id wins, as upstream.

The row GUID is the authority for the report id (the facts' own GUIDs differ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from zlib_ng import zlib_ng

from schemas import fast_json
from schemas.distname import DistInfo, parse_distfile
from schemas.metabase import DISTFILE_PREFIX, GRADES, GUID_PATTERN, LEGACY_REPORT, TEST_SUMMARY, fact_guids
from schemas.text import clean_profile_text, clean_text
from schemas.translate import UNKNOWN_REPORTER, index_columns, iso_z, strip_v
from schemas.v3 import PERL5

MAX_JSON_LAYERS = 4
"""How many times a fact content may be JSON-in-a-string before it is called broken."""

LEGACY_FIELDS = ("grade", "osname", "osversion", "archname", "perl_version")
"""LegacyReport fields that TestSummary also carries (used when LegacyReport lacks one)."""

_EMAIL = re.compile(r"[^\s<>()\"',;]+@[^\s<>()\"',;]+")


class LegacyRowError(ValueError):
    """A legacy row that cannot be converted; ``reason`` goes to the error report."""

    def __init__(self, guid: str, reason: str):
        super().__init__(f"{guid}: {reason}")
        self.guid = guid
        self.reason = reason


@dataclass(frozen=True)
class Profile:
    """A tester profile as ``metabase_user`` keeps it."""

    resource: str
    fullname: str
    email: str | None


@dataclass(frozen=True)
class Converted:
    """A legacy row converted: the ``test_report`` values, ``report`` as the v3 document."""

    guid: str
    legacy_id: int | None
    row: dict


# ---------------------------------------------------------------------------- columns


def _text(value) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return value


def inflate(blob: bytes | str) -> bytes:
    """The ``report`` column inflated; rows that were stored uncompressed come back as they are.

    zlib-ng inflates the same streams in about half the time of the standard ``zlib``
    (every legacy row goes through here)."""
    if isinstance(blob, str):
        blob = blob.encode("latin-1") if all(ord(c) < 256 for c in blob) else blob.encode("utf-8")
    blob = bytes(blob)
    try:
        return zlib_ng.decompress(blob)
    except zlib_ng.error:
        return blob


def parse_updated(value) -> datetime | None:
    """``updated``: ISO 8601 (``2017-03-02T06:47:23Z``) or epoch seconds, as naive UTC; None if neither."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    text = _text(value).strip()
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC).replace(tzinfo=None)
    return parse_iso(text)


def parse_iso(text) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    candidate = text.strip().replace(" ", "T", 1)
    if candidate.endswith("Z"):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _unwrap(value, what: str):
    """Decode JSON held in strings, layer after layer (double-encoded rows)."""
    for _ in range(MAX_JSON_LAYERS):
        if not isinstance(value, str):
            return value
        try:
            value = fast_json.loads(value)
        except ValueError as exc:
            raise ValueError(f"{what} is not JSON: {exc}") from exc
    if isinstance(value, str):
        raise ValueError(f"{what} is JSON in a string more than {MAX_JSON_LAYERS} times")
    return value


def _fact_type(name: str) -> str:
    return name.replace("::", "-")


def decode_report_column(blob: bytes | str) -> dict:
    return _decode_facts(inflate(blob))


def _column_json(raw: bytes):
    """The inflated ``report`` column parsed, straight from its UTF-8 bytes; bytes that
    are not UTF-8 (or JSON only the standard library reads) take ``_text``'s way."""
    try:
        value = fast_json.loads(raw)
    except ValueError:
        value = _text(raw)
    return _unwrap(value, "report column")


def _decode_facts(raw: bytes) -> dict:
    """The facts of a ``report`` column by type (``CPAN-Testers-Fact-LegacyReport``...), contents decoded.

    Top-level keys that are not facts (``resource``, ``creator`` in some 2010 rows) are
    kept under their own name.
    """
    data = _column_json(raw)
    if not isinstance(data, dict):
        raise ValueError("report column is not a JSON object")
    facts = {}
    for name, value in data.items():
        value = _unwrap(value, f"{name}")
        if isinstance(value, dict) and "content" in value:
            value = {**value, "content": _unwrap(value["content"], f"content of {name}")}
            if isinstance(value.get("metadata"), str):
                value["metadata"] = _unwrap(value["metadata"], f"metadata of {name}")
            facts[_fact_type(name)] = value
        else:
            facts[name] = value
    return facts


# ---------------------------------------------------------------------------- profiles


def email_address(value) -> str | None:
    """The address in a legacy e-mail field (``addr``, ``addr (Name)``, ``"Name" <addr>``)."""
    if not value:
        return None
    match = _EMAIL.search(_text(value))
    return match.group(0) if match else None


def legacy_name(value) -> str:
    """A legacy name: HTML entities decoded, UTF-8-read-as-Latin-1 repaired."""
    return clean_profile_text(html.unescape(_text(value or ""))).strip()


def profile_from_row(resource, fullname, email) -> Profile:
    return Profile(resource=_text(resource).strip().lower(), fullname=legacy_name(fullname), email=email_address(email))


def latest_profiles(rows: Iterable[tuple]) -> dict[str, Profile]:
    """``testers_email`` rows ``(id, resource, fullname, email)`` -> one profile per resource, latest id wins."""
    latest: dict[str, tuple[int, Profile]] = {}
    for row_id, resource, fullname, email in rows:
        profile = profile_from_row(resource, fullname, email)
        known = latest.get(profile.resource)
        if known is None or int(row_id) > known[0]:
            latest[profile.resource] = (int(row_id), profile)
    return {resource: profile for resource, (_, profile) in latest.items()}


# ---------------------------------------------------------------------------- reports


def _core(fact: dict | None) -> dict:
    if not isinstance(fact, dict):
        return {}
    metadata = fact.get("metadata")
    core = metadata.get("core") if isinstance(metadata, dict) else None
    return core if isinstance(core, dict) else {}


def convert_row(
    guid,
    updated,
    report_blob,
    profiles: Mapping[str, Profile] | Callable[[str], Profile | None],
    legacy_id: int | None = None,
    state: str = "pending",
) -> Converted:
    """One ``metabase.metabase`` row as the ``test_report`` row the intake would have stored.

    ``created`` is the row's ``updated`` (the time the old server stored it), falling back
    to the fact's ``creation_time``; the client's clock is kept in ``metabase.creation_time``
    as for new reports. Raises :class:`LegacyRowError` with the reason when it can't.
    """
    guid = _text(guid or "").strip().lower()
    if not GUID_PATTERN.match(guid):
        raise LegacyRowError(guid or "?", "row guid is not a GUID")
    try:
        raw = inflate(report_blob)
        facts = _decode_facts(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LegacyRowError(guid, str(exc)) from exc
    legacy_fact = facts.get(LEGACY_REPORT)
    summary_fact = facts.get(TEST_SUMMARY)
    if not isinstance(legacy_fact, dict) or not isinstance(legacy_fact.get("content"), dict):
        raise LegacyRowError(guid, "no CPAN-Testers-Fact-LegacyReport object in the report column")
    summary = summary_fact.get("content") if isinstance(summary_fact, dict) else None
    summary = summary if isinstance(summary, dict) else {}
    content = dict(legacy_fact["content"])
    for key in LEGACY_FIELDS:
        if content.get(key) in (None, "") and summary.get(key) not in (None, ""):
            content[key] = summary[key]
    if "textreport" not in content:
        content["textreport"] = ""
    if isinstance(content.get("grade"), str):
        content["grade"] = content["grade"].lower()
    for key in ("osversion", "archname"):
        content.setdefault(key, "")
    problem = _content_problem(content)
    if problem:
        raise LegacyRowError(guid, f"invalid LegacyReport content: {problem}")

    core = {**_core(summary_fact), **_core(legacy_fact)}
    resource = core.get("resource") or facts.get("resource") or ""
    if not isinstance(resource, str) or not resource.startswith(DISTFILE_PREFIX):
        raise LegacyRowError(guid, f"resource {resource!r} is not a cpan:///distfile/ URI")
    distfile = resource[len(DISTFILE_PREFIX) :]
    info = _distfile(distfile)
    if info is None or not info.dist:
        raise LegacyRowError(guid, f"resource {resource!r} can't be parsed as a CPAN distfile")
    if not info.version:
        info = dataclasses.replace(info, version="0")  # as upstream FetchUploads: no version is "0"
    creator = core.get("creator") or facts.get("creator")
    core = {**core, "guid": guid, "resource": resource, "creator": creator}

    created = parse_updated(updated) or parse_iso(core.get("creation_time"))
    if created is None:
        raise LegacyRowError(guid, f"no usable date: updated={_text(updated)!r}")

    lookup = profiles if callable(profiles) else profiles.get
    profile = lookup(creator.lower()) if isinstance(creator, str) else None
    doc = legacy_to_v3(guid, core, content, distfile, info, created, profile, fact_guids(facts.values()))
    row = {
        "guid": guid,
        "created": created,
        "state": state,
        **index_columns(doc),
        "creator": creator[:64] if isinstance(creator, str) else None,
        "submission_sha256": hashlib.sha256(raw).hexdigest(),
        "report": doc,
    }
    return Converted(guid=guid, legacy_id=legacy_id, row=row)


def _content_problem(content: dict) -> str | None:
    """What LegacyReportContentSchema would refuse, checked without its per-call cost."""
    if content.get("grade") not in GRADES:
        return f"bad grade: {content.get('grade')!r}"
    for key in ("osname", "osversion", "archname", "perl_version", "textreport"):
        if not isinstance(content.get(key), str):
            return f"{key} is missing or not a string"
    if not content["perl_version"]:
        return "perl_version is empty"
    return None


@lru_cache(maxsize=65536)
def _distfile(distfile: str) -> DistInfo | None:
    return parse_distfile(distfile)


def _clean(text: str) -> str:
    """clean_text, with the common case (pure ASCII: nothing to repair) for free."""
    return text if text.isascii() else clean_text(text)


def legacy_to_v3(
    guid: str, core: dict, legacy: dict, distfile: str, dist: DistInfo, created: datetime, profile, guids: dict
):
    """The v3 document of a legacy row: exactly what ``schemas.translate.metabase_to_v3``
    makes of the same report received at ``created`` (a test holds them equal), built
    here to skip its text repair on ASCII text, the bulk of a migration's CPU."""
    return {
        "id": guid,
        "created": iso_z(created),
        "reporter": {
            "name": (profile.fullname if profile else None) or UNKNOWN_REPORTER,
            "email": profile.email if profile else None,
        },
        "environment": {
            "language": {
                "name": PERL5,
                "version": _clean(strip_v(legacy["perl_version"])),
                "archname": _clean(legacy["archname"]),
            },
            "system": {"osname": _clean(legacy["osname"]), "osversion": _clean(legacy["osversion"])},
        },
        "distribution": {"name": dist.dist, "version": dist.version, "path": distfile},
        "result": {"grade": legacy["grade"], "output": {"uncategorized": _clean(legacy["textreport"])}},
        "metabase": {
            "creator": core.get("creator"),
            "creation_time": core.get("creation_time"),
            "update_time": core.get("update_time"),
            "resource": core.get("resource"),
            "fact_guids": guids,
        },
    }
