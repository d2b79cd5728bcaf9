"""Every error of the legacy API is JSON with an `error` string and Content-Type exactly
application/json, and nothing partial is stored."""

from __future__ import annotations

import json

import pytest

from tests import captures
from tests.helpers import auth_header, register_profile, services, stored_rows

SUBMIT = "/api/v1/submit/CPAN-Testers-Report"


def recorded_body() -> dict:
    return json.loads(captures.load("01-ok")[0].body)


def with_legacy(change) -> bytes:
    """The recorded submission with its LegacyReport content changed by ``change``."""
    outer = recorded_body()
    facts = json.loads(outer["content"])
    for fact in facts:
        if fact["metadata"]["core"]["type"] == "CPAN-Testers-Fact-LegacyReport":
            content = json.loads(fact["content"])
            change(content)
            fact["content"] = json.dumps(content)
    outer["content"] = json.dumps(facts)
    return json.dumps(outer).encode()


def with_core(**core) -> bytes:
    outer = recorded_body()
    outer["metadata"]["core"].update(core)
    return json.dumps(outer).encode()


def without_legacy_report() -> bytes:
    outer = recorded_body()
    facts = [f for f in json.loads(outer["content"]) if "LegacyReport" not in f["metadata"]["core"]["type"]]
    outer["content"] = json.dumps(facts)
    return json.dumps(outer).encode()


BAD_BODIES = {
    "malformed-json": (b'{"content": ', "malformed JSON"),
    "not-utf8": (b"\xff\xfe{}", "malformed JSON"),
    "array-body": (b"[]", "JSON object"),
    "inner-content-not-json": (json.dumps({**recorded_body(), "content": "[{"}).encode(), "malformed JSON"),
    "missing-legacy-report": (without_legacy_report(), "LegacyReport"),
    "bad-grade": (with_legacy(lambda c: c.update(grade="excellent")), "grade"),
    "missing-textreport": (with_legacy(lambda c: c.pop("textreport")), "textreport"),
    "unparseable-resource": (with_core(resource="cpan:///distfile/nope"), "distfile"),
    "not-a-distfile-resource": (with_core(resource="http://example.com/x"), "distfile"),
    "bad-guid": (with_core(guid="not-a-guid"), "GUID"),
    "wrong-type-in-body": (with_core(type="CPAN-Testers-Other"), "wrong fact type"),
    # found by the fuzzer (tests/test_fuzz.py): a 500 when the distfile was stored
    "lone-surrogate-in-resource": (with_core(resource="cpan:///distfile/ATESTER/Foo-Bar-\ud83d.tar.gz"), "distfile"),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_submissions_get_a_json_400_and_store_nothing(app, client, name):
    register_profile(services(app).engine)
    body, fragment = BAD_BODIES[name]
    response = client.post(SUBMIT, data=body, headers=auth_header())
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert fragment.lower() in response.json["error"].lower()
    assert stored_rows(services(app).engine) == []


@pytest.mark.parametrize("field", ["creation_time", "update_time"])
def test_a_lone_surrogate_in_the_report_times_is_stored_replaced(app, client, field):
    """Found by the fuzzer: the client's times are kept under ``metabase`` in the document."""
    register_profile(services(app).engine)
    response = client.post(SUBMIT, data=with_core(**{field: "2026-11-29T22:38:12Z\udc2a"}), headers=auth_header())
    assert response.status_code == 201
    document = client.get(f"/v3/report/{response.json['guid']}").json
    assert document["metabase"][field] == "2026-11-29T22:38:12Z\ufffd"


def test_a_lone_surrogate_in_a_member_fact_type_is_stored_replaced(app, client):
    outer = recorded_body()
    facts = json.loads(outer["content"])
    summary = next(f for f in facts if "TestSummary" in f["metadata"]["core"]["type"])
    summary["metadata"]["core"]["type"] = "CPAN-Testers-Fact-TestSummary\ud800"
    outer["content"] = json.dumps(facts)
    register_profile(services(app).engine)
    response = client.post(SUBMIT, data=json.dumps(outer), headers=auth_header())
    assert response.status_code == 201
    document = client.get(f"/v3/report/{response.json['guid']}").json
    assert "CPAN-Testers-Fact-TestSummary\ufffd" in document["metabase"]["fact_guids"]


def test_unknown_fact_type_in_the_url_is_a_json_400(app, client):
    register_profile(services(app).engine)
    response = client.post(
        "/api/v1/submit/CPAN-Testers-Metabase", data=captures.load("01-ok")[0].body, headers=auth_header()
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"


def test_unknown_api_route_is_a_json_404(client):
    response = client.post("/api/v1/submit/submit/CPAN-Testers-Report", data=b"{}")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert "error" in response.json


def test_wrong_method_is_a_json_405(client):
    response = client.get(SUBMIT)
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/json"
    assert "POST" in response.headers["Allow"]


def test_body_over_the_limit_is_a_json_413(config, backend):
    from app import create_app
    from settings import load

    app = create_app(load({}, **{**config.__dict__, "MAX_SUBMISSION_BYTES": 1000}))
    response = app.test_client().post(SUBMIT, data=b"x" * 2000, headers=auth_header())
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    assert "error" in response.json
    app.extensions["cpantesters"].engine.dispose()


def post_chunked(app, path: str, stream):
    """POST ``stream`` as gunicorn hands over a chunked body: no Content-Length, the
    stream terminated by the server (``wsgi.input_terminated``)."""
    chunked = {"wsgi.input_terminated": True, "CONTENT_LENGTH": ""}
    headers = {**auth_header(), "Transfer-Encoding": "chunked"}
    return app.test_client().post(path, input_stream=stream, headers=headers, environ_overrides=chunked)


@pytest.mark.parametrize("path", [SUBMIT, "/v3/report", "/api/v1/register"])
def test_a_chunked_body_over_the_limit_is_a_json_413_not_a_truncated_body(config, backend, path):
    """werkzeug stops reading a body of unknown length at the limit without saying so: the
    over-limit submission must be refused as such, never decoded from its first 1000 bytes."""
    import io

    from app import create_app
    from settings import load

    app = create_app(load({}, **{**config.__dict__, "MAX_SUBMISSION_BYTES": 1000}))
    body = io.BytesIO(json.dumps({"padding": "x" * 2000}).encode())
    response = post_chunked(app, path, body)
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    assert "request body too large" in json.dumps(response.json)
    app.extensions["cpantesters"].engine.dispose()


def test_a_chunked_body_of_exactly_the_limit_is_read_whole(config, backend):
    import io

    from app import create_app
    from settings import load

    body = json.dumps({"padding": "x" * 2000}).encode()
    app = create_app(load({}, **{**config.__dict__, "MAX_SUBMISSION_BYTES": len(body)}))
    response = post_chunked(app, SUBMIT, io.BytesIO(body))
    assert response.status_code == 400  # read whole: valid JSON, but no report in it
    assert "too large" not in response.json["error"]
    app.extensions["cpantesters"].engine.dispose()


def test_the_body_limit_never_exceeds_the_database_packet(app, backend):
    limit = services(app).max_submission_bytes
    assert limit <= 15 * 1024 * 1024
    if backend.name == "mariadb":
        from storage.engine import max_allowed_packet

        assert limit < max_allowed_packet(services(app).engine)


def test_a_hostile_huge_nesting_is_refused_cleanly(app, client):
    register_profile(services(app).engine)
    body = b"[" * 100_000 + b"]" * 100_000
    response = client.post(SUBMIT, data=body, headers=auth_header())
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
