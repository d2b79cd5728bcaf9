"""Decode and validate the Metabase wire format the Perl clients send.

The body is JSON inside a string inside JSON inside a string (see
``spec/metabase-client-wire.md``): a CPAN-Testers-Report whose ``content`` is a JSON
array of facts, each with its own JSON-string content. The marshmallow schemas below
check each layer; :func:`decode_report` and :func:`decode_registration` return plain
data or raise :class:`~schemas.errors.InvalidReport`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from schemas import fast_json
from schemas.distname import DistInfo, parse_distfile
from schemas.errors import InvalidReport

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
GUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
GRADES = ("pass", "fail", "na", "unknown")
REPORT_TYPE = "CPAN-Testers-Report"
LEGACY_REPORT = "CPAN-Testers-Fact-LegacyReport"
TEST_SUMMARY = "CPAN-Testers-Fact-TestSummary"
DISTFILE_PREFIX = "cpan:///distfile/"
USER_PREFIX = "metabase:user:"


def is_guid(value: str) -> bool:
    return isinstance(value, str) and bool(GUID_PATTERN.match(value))


class CoreMetadataSchema(Schema):
    """``metadata.core`` of every fact (Metabase::Fact's required core keys)."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True)
    guid = fields.String(required=True, validate=validate.Regexp(GUID_PATTERN, error="invalid GUID"))
    resource = fields.String(required=True)
    creator = fields.String(load_default=None)
    creation_time = fields.String(required=True)
    update_time = fields.String(load_default=None)
    schema_version = fields.Raw(required=True)
    valid = fields.Raw(required=True)


class MetadataSchema(Schema):
    class Meta:
        unknown = INCLUDE

    core = fields.Nested(CoreMetadataSchema, required=True)


class FactSchema(Schema):
    """A fact as sent: core metadata plus string content (decoded by the caller)."""

    class Meta:
        unknown = INCLUDE

    metadata = fields.Nested(MetadataSchema, required=True)
    content = fields.Raw(required=True)


class LegacyReportContentSchema(Schema):
    """CPAN-Testers-Fact-LegacyReport content: the report itself."""

    class Meta:
        unknown = INCLUDE

    grade = fields.String(required=True, validate=validate.OneOf(GRADES, error="bad grade: {input}"))
    osname = fields.String(required=True)
    osversion = fields.String(required=True)
    archname = fields.String(required=True)
    perl_version = fields.String(required=True, validate=validate.Length(min=1))
    textreport = fields.String(required=True)


# Schema instances are reusable and building one is costly; this runs on every submission.
_FACT = FactSchema()
_LEGACY_CONTENT = LegacyReportContentSchema()


@dataclass(frozen=True)
class MetabaseReport:
    """A decoded, validated CPAN-Testers-Report submission."""

    guid: str
    core: dict
    legacy: dict
    distfile: str
    dist: DistInfo
    sha256: str
    fact_guids: dict[str, str] = field(default_factory=dict)
    """Each member fact's own GUID by fact type (the viewer's legacy JSON shows them)."""

    @property
    def creator_guid(self) -> str | None:
        creator = self.core.get("creator") or ""
        return creator[len(USER_PREFIX) :].lower() if creator.startswith(USER_PREFIX) else None


def parse_json(body: bytes | str, what: str = "body"):
    """Parse JSON whatever the Content-Type said; bad JSON is an InvalidReport."""
    try:
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        # orjson where it can (a third of a submission's decoding time), the standard
        # library's answer where orjson refuses: the same result either way.
        return fast_json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidReport(f"malformed JSON in {what}: {exc}") from exc
    except RecursionError as exc:
        raise InvalidReport(f"malformed JSON in {what}: nested too deeply") from exc


def _decode_layer(content, what: str):
    """A Metabase content field: a JSON string, or (in stored rows) already decoded."""
    if isinstance(content, str):
        return parse_json(content, what)
    return content


def _first_error(err: ValidationError, prefix: str) -> InvalidReport:
    path, message = _flatten(err.messages, prefix)
    return InvalidReport(f"{message} at {path}", path)


def _flatten(messages, prefix: str) -> tuple[str, str]:
    if isinstance(messages, dict):
        key = sorted(messages, key=str)[0]
        return _flatten(messages[key], f"{prefix}/{key}")
    if isinstance(messages, list) and messages:
        return _flatten(messages[0], prefix) if not isinstance(messages[0], str) else (prefix, messages[0])
    return prefix, str(messages)


def load_fact(data, prefix: str) -> dict:
    """Validate one fact's envelope and return it (content untouched)."""
    if not isinstance(data, dict):
        raise InvalidReport(f"a fact must be a JSON object at {prefix}", prefix)
    try:
        fact = _FACT.load(data)
    except ValidationError as err:
        raise _first_error(err, prefix) from err
    fact["metadata"]["core"]["guid"] = fact["metadata"]["core"]["guid"].lower()
    return fact


def canonical_sha256(decoded) -> str:
    """A hash of the decoded submission that ignores key order and JSON escaping."""
    text = json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def decode_report(body: bytes | str, url_type: str = REPORT_TYPE) -> MetabaseReport:
    """Decode a ``POST submit/CPAN-Testers-Report`` body into a validated report."""
    try:
        return _decode_report(body, url_type)
    except RecursionError as exc:
        raise InvalidReport("submission nested too deeply") from exc


def _fact_type(raw) -> str | None:
    try:
        return raw["metadata"]["core"]["type"]
    except (KeyError, TypeError):
        return None


def fact_guids(facts) -> dict[str, str]:
    """``{fact type: its GUID}`` of the member facts that carry both (lower-cased GUIDs)."""
    found = {}
    for fact in facts:
        try:
            core = fact["metadata"]["core"]
        except (KeyError, TypeError):
            continue
        if isinstance(core, dict) and isinstance(core.get("type"), str) and is_guid(core.get("guid")):
            found[core["type"]] = core["guid"].lower()
    return found


def _decode_report(body: bytes | str, url_type: str) -> MetabaseReport:
    outer = load_fact(parse_json(body), "")
    core = outer["metadata"]["core"]
    if core["type"] != url_type:
        raise InvalidReport(f"wrong fact type {core['type']!r}: expected {url_type!r}", "/metadata/core/type")
    facts = _decode_layer(outer["content"], "content")
    if not isinstance(facts, list):
        raise InvalidReport("content must be a JSON array of facts", "/content")
    decoded_facts = []
    legacy = None
    for index, raw in enumerate(facts):
        # Only the LegacyReport is used, so only it goes through the full schema; the
        # others (TestSummary, ...) must be facts with decodable content, nothing more.
        is_legacy = legacy is None and _fact_type(raw) == LEGACY_REPORT
        if is_legacy:
            fact = load_fact(raw, f"/content/{index}")
        elif isinstance(raw, dict) and "content" in raw:
            fact = dict(raw)
        else:
            raise InvalidReport(f"a fact must be a JSON object with content at /content/{index}", f"/content/{index}")
        fact["content"] = _decode_layer(fact["content"], f"content of fact {index}")
        decoded_facts.append(fact)
        if is_legacy:
            legacy = fact["content"]
            legacy_path = f"/content/{index}/content"
    if legacy is None:
        raise InvalidReport("missing CPAN-Testers-Fact-LegacyReport fact", "/content")
    if not isinstance(legacy, dict):
        raise InvalidReport("LegacyReport content must be a JSON object", legacy_path)
    if isinstance(legacy.get("grade"), str):
        legacy = {**legacy, "grade": legacy["grade"].lower()}
    try:
        legacy = _LEGACY_CONTENT.load(legacy)
    except ValidationError as err:
        raise _first_error(err, legacy_path) from err

    resource = core["resource"]
    if not resource.startswith(DISTFILE_PREFIX):
        raise InvalidReport(f"resource {resource!r} is not a cpan:///distfile/ URI", "/metadata/core/resource")
    distfile = resource[len(DISTFILE_PREFIX) :]
    info = None if LONE_SURROGATE.search(distfile) else parse_distfile(distfile)
    if info is None:
        raise InvalidReport(f"resource {resource!r} can't be parsed as a CPAN distfile", "/metadata/core/resource")
    decoded = {"metadata": outer["metadata"], "content": decoded_facts}
    return MetabaseReport(
        guid=core["guid"],
        core=core,
        legacy=legacy,
        distfile=distfile,
        dist=info,
        sha256=canonical_sha256(decoded),
        fact_guids=fact_guids(decoded_facts),
    )


@dataclass(frozen=True)
class Registration:
    """A decoded ``POST register`` body: the profile and, when sent, its secret."""

    profile_guid: str
    fullname: str
    email: str | None
    secret: str | None

    @property
    def resource(self) -> str:
        return USER_PREFIX + self.profile_guid


def decode_registration(body: bytes | str) -> Registration:
    """Decode ``[profile, secret]`` (or a lone profile object) as the client sends it."""
    data = parse_json(body)
    items = data if isinstance(data, list) else [data]
    profile = secret = None
    for index, raw in enumerate(items):
        fact = load_fact(raw, f"/{index}")
        kind = fact["metadata"]["core"]["type"]
        if kind == "Metabase-User-Profile":
            profile = fact
        elif kind == "Metabase-User-Secret":
            if not isinstance(fact["content"], str) or not fact["content"]:
                raise InvalidReport("invalid registration credential", f"/{index}/content")
            if not fact["content"].isascii() and LONE_SURROGATE.search(fact["content"]):
                # No client can send it back in Basic credentials, and it cannot be hashed.
                raise InvalidReport(
                    "invalid registration credential: the secret holds a lone surrogate", f"/{index}/content"
                )
            secret = fact["content"]
        else:
            raise InvalidReport(f"unexpected fact type {kind!r} in registration", f"/{index}/metadata/core/type")
    if profile is None:
        raise InvalidReport("invalid registration profile: no Metabase-User-Profile", "/")
    resource = profile["metadata"]["core"]["resource"]
    guid = resource[len(USER_PREFIX) :].lower() if resource.startswith(USER_PREFIX) else ""
    if not is_guid(guid):
        raise InvalidReport("invalid registration profile: resource is not metabase:user:<guid>", "/0")
    members = _decode_layer(profile["content"], "profile content")
    if not isinstance(members, list):
        raise InvalidReport("invalid registration profile: content must be an array", "/0/content")
    fullname = email = None
    for index, raw in enumerate(members):
        fact = load_fact(raw, f"/0/content/{index}")
        kind, value = fact["metadata"]["core"]["type"], fact["content"]
        if not isinstance(value, str):
            raise InvalidReport(f"{kind} content must be a string", f"/0/content/{index}/content")
        if kind == "Metabase-User-FullName" and fullname is None:
            fullname = value
        elif kind == "Metabase-User-EmailAddress" and email is None:
            email = value
    if fullname is None:
        raise InvalidReport("invalid registration profile: no Metabase-User-FullName", "/0/content")
    return Registration(profile_guid=guid, fullname=fullname, email=email, secret=secret)
