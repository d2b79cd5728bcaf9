"""The v3 report document (api.cpantesters.org ``share/v3.json``) as marshmallow schemas.

No schema forbids unknown keys, as upstream: real "valid" reports carry extra fields.
"""

from __future__ import annotations

import re

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from schemas.errors import InvalidReport
from schemas.metabase import GRADES

PERL5 = "Perl 5"
PERL6 = "Perl 6"
LANGUAGES = (PERL5, PERL6)
PERL5_VERSION = re.compile(r"^5\.\d+\.\d+")


class _Open(Schema):
    class Meta:
        unknown = INCLUDE
        ordered = True


class ReporterSchema(_Open):
    name = fields.String(metadata={"example": "GARU"})
    email = fields.String(required=True, allow_none=True, metadata={"example": "garu@cpan.org"})


class BackendSchema(_Open):
    engine = fields.String()
    version = fields.String()


class LanguageSchema(_Open):
    name = fields.String(required=True, validate=validate.OneOf(LANGUAGES))
    version = fields.String(required=True, metadata={"example": "5.24.1"})
    archname = fields.String(required=True, metadata={"example": "darwin-2level"})
    build = fields.String(metadata={"description": "The `perl -V` summary"})
    variables = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "Perl special variables ($^X, $UID...)"}
    )
    commit_id = fields.String()
    config = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={
            "description": "Ours: key `perl -V` fields (osname, osvers, archname, useithreads, usemultiplicity, "
            "use64bitint, use64bitall, uselongdouble, cc, gccversion, optimize), parsed from the report text"
        },
    )
    implementation = fields.String()
    backend = fields.Nested(BackendSchema)

    @validates_schema
    def perl5_version_form(self, data, **_kwargs):
        if data.get("name") == PERL5 and not PERL5_VERSION.match(data.get("version", "")):
            raise ValidationError(f"String does not match {PERL5_VERSION.pattern}", "version")


class SystemSchema(_Open):
    osname = fields.String(required=True, metadata={"example": "linux"})
    osversion = fields.String()
    hostname = fields.String()
    cpu_count = fields.String()
    cpu_type = fields.String()
    cpu_description = fields.String()
    filesystem = fields.String()
    variables = fields.Dict(keys=fields.String(), values=fields.String())


class EnvironmentSchema(_Open):
    language = fields.Nested(LanguageSchema, required=True)
    system = fields.Nested(SystemSchema, required=True)
    user_agent = fields.String()
    toolchain = fields.Dict(keys=fields.String(), values=fields.String())


class PrerequisiteSchema(_Open):
    phase = fields.String(required=True)
    name = fields.String(required=True)
    need = fields.String(required=True)
    have = fields.String()


class DistributionSchema(_Open):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    version = fields.String(required=True, validate=validate.Length(min=1, max=255))
    prerequisites = fields.List(fields.Nested(PrerequisiteSchema))
    path = fields.String(metadata={"description": "AUTHOR/FILE of the tested upload"})


class OutputSchema(_Open):
    uncategorized = fields.String()
    configure = fields.String()
    build = fields.String()
    test = fields.String()
    install = fields.String()


class FailedFileSchema(_Open):
    file = fields.String(required=True, metadata={"example": "t/01-basic.t"})
    failed = fields.String(metadata={"description": "Numbers of the failed tests as printed", "example": "3, 5-7"})


class TodoSchema(_Open):
    pass_ = fields.Integer(required=True, data_key="pass", validate=validate.Range(min=0))
    fail = fields.Integer(required=True, validate=validate.Range(min=0))


class ResultSchema(_Open):
    grade = fields.String(required=True, validate=validate.OneOf(GRADES))
    output = fields.Nested(OutputSchema, required=True)
    tests = fields.Integer(validate=validate.Range(min=0))
    failures = fields.Integer(validate=validate.Range(min=0))
    skipped = fields.Integer(validate=validate.Range(min=0))
    warnings = fields.Integer(validate=validate.Range(min=0))
    todo = fields.Nested(TodoSchema)
    duration = fields.Float(validate=validate.Range(min=0))
    failed_files = fields.List(
        fields.Nested(FailedFileSchema),
        metadata={"description": "Ours: the test files the harness summary lists as failed"},
    )


class NewReportSchema(_Open):
    """A report as a client submits it to ``POST /v3/report``."""

    reporter = fields.Nested(ReporterSchema, required=True)
    environment = fields.Nested(EnvironmentSchema, required=True)
    distribution = fields.Nested(DistributionSchema, required=True)
    result = fields.Nested(ResultSchema, required=True)
    comments = fields.Raw()


class ReportSchema(NewReportSchema):
    """A stored report, as ``GET /v3/report/{id}`` returns it."""

    id = fields.String(required=True, metadata={"format": "uuid"})
    created = fields.String(required=True, metadata={"format": "date-time"})


class AcceptedReportSchema(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})


class ErrorSchema(Schema):
    message = fields.String(required=True)
    path = fields.String(required=True)


class ErrorsSchema(Schema):
    errors = fields.List(fields.Nested(ErrorSchema), required=True)


_NEW_REPORT = NewReportSchema()


def validation_errors(messages, prefix: str = "/report") -> list[dict]:
    """marshmallow's nested messages as ``[{"message", "path"}]`` with JSON pointers."""
    found: list[dict] = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}/{key}" if key != "_schema" else path)
        elif isinstance(node, list) and node and all(isinstance(m, str) for m in node):
            found.extend({"message": m, "path": path or "/"} for m in node)
        elif isinstance(node, list):
            for item in node:
                walk(item, path)
        else:
            found.append({"message": str(node), "path": path or "/"})

    walk(messages, prefix)
    return found


def load_new_report(data) -> dict:
    """Validate a v3 submission; raise :class:`V3ValidationError` with every problem."""
    if not isinstance(data, dict):
        raise V3ValidationError([{"message": "Expected object", "path": "/report"}])
    try:
        _NEW_REPORT.load(data)
    except ValidationError as err:
        raise V3ValidationError(validation_errors(err.messages)) from err
    # Validation only: the document is stored as the client sent it (unknown keys kept).
    return data


class V3ValidationError(InvalidReport):
    """Every problem found in a v3 document, in the v3 error shape."""

    def __init__(self, errors: list[dict]):
        super().__init__(errors[0]["message"] if errors else "invalid report", errors[0]["path"] if errors else "/")
        self.errors = errors
