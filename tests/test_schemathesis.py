"""Schemathesis against the OpenAPI documents the apps serve (issue 20): the web app's
``/openapi.json`` (legacy Metabase API, v3 submission API, tail log), the read API's and
the viewer's.

Every generated request, valid or not, gets an answer that is no 5xx and conforms to the
document: a documented status, a documented Content-Type, a body in the documented shape,
and a request the document forbids is refused.
Each operation is driven with hypothesis directly (schemathesis' own pytest loader does
not run under this pytest).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.fuzz

EXAMPLES = 10
"""Generated requests per operation and backend."""

NOT_CHECKED = [positive_data_acceptance]
"""A Metabase body is JSON inside strings inside JSON: a body the document's schema allows
(``[]`` for /register) can still be refused with a 400, which that check takes for a bug."""


def conformance_failures(app) -> list[str]:
    """Drive every operation of ``app``'s /openapi.json (each app documents only the
    routes it serves); one line per failing operation."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures, driven = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        driven.append(operation.label)

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(operation.as_strategy())
        def call(case):
            case.call_and_validate(excluded_checks=NOT_CHECKED)

        try:
            call()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert driven, "the document has no operation of this app"
    print(f"{len(driven)} operations: {', '.join(driven)}")
    return failures


def test_the_web_app_answers_as_its_openapi_document_says(app):
    failures = conformance_failures(app)
    assert not failures, "\n\n".join(failures)


def test_the_read_api_answers_as_its_openapi_document_says(api_app):
    failures = conformance_failures(api_app)
    assert not failures, "\n\n".join(failures)


def test_the_viewer_answers_as_its_openapi_document_says(viewer_app):
    failures = conformance_failures(viewer_app)
    assert not failures, "\n\n".join(failures)
