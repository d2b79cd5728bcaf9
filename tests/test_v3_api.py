"""POST /v3/report and GET /v3/report/<guid>."""

from __future__ import annotations

import json
from pathlib import Path

from queueing.contract import job_id
from tests.helpers import auth_header, queued_job_ids, register_profile, services, stored_rows

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_a_valid_v3_report_is_stored_queued_and_readable(app, client):
    register_profile(services(app).engine)
    response = client.post("/v3/report", json=fixture("v3-perl5-valid.json"), headers=auth_header())
    assert response.status_code == 201
    guid = response.json["id"]
    assert queued_job_ids(services(app).redis) == [job_id(guid)]
    stored = client.get(f"/v3/report/{guid}")
    assert stored.status_code == 200
    doc = stored.json
    assert doc["id"] == guid and doc["created"].endswith("Z")
    assert doc["distribution"]["name"] == "Data-Printer"
    assert (
        doc["environment"]["language"]["toolchain"]
        == fixture("v3-perl5-valid.json")["environment"]["language"]["toolchain"]
    )


def test_a_perl6_report_is_stored_with_its_language(app, client):
    register_profile(services(app).engine)
    response = client.post("/v3/report", json=fixture("v3-perl6-valid.json"), headers=auth_header())
    assert response.status_code == 201
    assert stored_rows(services(app).engine)[0]["language"] == "Perl 6"


def test_a_v_prefixed_perl5_version_is_rejected_with_its_path(app, client):
    register_profile(services(app).engine)
    response = client.post("/v3/report", json=fixture("v3-perl5-invalid-version-v.json"), headers=auth_header())
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert {"message", "path"} <= set(response.json["errors"][0])
    assert response.json["errors"][0]["path"] == "/report/environment/language/version"
    assert stored_rows(services(app).engine) == []


def test_every_problem_is_listed(app, client):
    register_profile(services(app).engine)
    response = client.post("/v3/report", json={"reporter": {}}, headers=auth_header())
    paths = {e["path"] for e in response.json["errors"]}
    assert {"/report/reporter/email", "/report/environment", "/report/distribution", "/report/result"} <= paths


def test_v3_submissions_need_profile_credentials(client):
    response = client.post("/v3/report", json=fixture("v3-perl5-valid.json"))
    assert response.status_code == 401
    assert "errors" in response.json


def test_malformed_json_is_a_v3_error(app, client):
    register_profile(services(app).engine)
    response = client.post("/v3/report", data=b"{nope", headers=auth_header())
    assert response.status_code == 400
    assert response.json["errors"][0]["message"].startswith("malformed JSON")


def test_unknown_report_is_404_in_the_v3_error_form(client):
    response = client.get("/v3/report/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json == {"errors": [{"message": "Report ID not found", "path": "/id"}]}


def test_unknown_v3_route_is_a_v3_json_404(client):
    response = client.get("/v3/nothing-here")
    assert response.status_code == 404
    assert "errors" in response.json
