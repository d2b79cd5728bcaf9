"""GET /v3/report/<guid> returns the facts parsed from the report text in their v3 fields."""

from __future__ import annotations

import json
from pathlib import Path

from storage.tables import report_facts
from tests import captures
from tests.helpers import auth_header, register_profile, replay, services
from tests.processing_helpers import run_jobs, table_count

FIXTURES = Path(__file__).parent / "fixtures"


def submit_capture(app, client, scenario: str) -> str:
    register_profile(services(app).engine)
    request = next(r for r in captures.load(scenario) if "/submit/" in r.path)
    response = replay(client, request)
    assert response.status_code == 201
    return response.json["guid"]


def test_a_real_client_report_reads_back_with_its_parsed_fields(app, client, db):
    guid = submit_capture(app, client, "21-cpan-reporter-fail-register")
    run_jobs(services(app).redis)  # the processing job parses it
    doc = client.get(f"/v3/report/{guid}").json
    assert doc["environment"]["user_agent"] == "CPAN::Reporter 1.2018"
    assert doc["distribution"]["prerequisites"] == [
        {"phase": "build", "name": "ExtUtils::MakeMaker", "need": "0", "have": "7.64"},
        {"phase": "runtime", "name": "Test::More", "need": "0", "have": "1.302190"},
    ]
    assert doc["environment"]["system"]["variables"]["LANG"] == "C.UTF-8"
    assert doc["environment"]["language"]["variables"]["$^X"] == "/usr/bin/perl"
    assert doc["environment"]["language"]["build"].startswith("Summary of my perl5")
    assert doc["environment"]["language"]["config"]["osname"] == "linux"
    assert doc["environment"]["toolchain"]["Test::More"] == "1.302190"
    assert (doc["result"]["tests"], doc["result"]["failures"]) == (3, 1)
    assert doc["result"]["failed_files"] == [{"file": "t/01-basic.t", "failed": "3"}]
    assert doc["result"]["output"]["uncategorized"].startswith("This distribution has been tested")


def test_a_report_not_parsed_yet_reads_the_same(app, client, db):
    guid = submit_capture(app, client, "20-cpan-reporter-pass")
    before = client.get(f"/v3/report/{guid}").json  # no job has run: parsed on the fly
    run_jobs(services(app).redis)
    assert table_count(db, report_facts) == 1
    after = client.get(f"/v3/report/{guid}").json
    assert before["environment"]["user_agent"] == "CPAN::Reporter 1.2018"
    assert before == after


def test_fields_a_v3_submitter_sent_win(app, client, db):
    register_profile(services(app).engine)
    sent = json.loads((FIXTURES / "v3-perl5-valid.json").read_text())
    guid = client.post("/v3/report", json=sent, headers=auth_header()).json["id"]
    run_jobs(services(app).redis)
    doc = client.get(f"/v3/report/{guid}").json
    assert doc["distribution"]["prerequisites"] == sent["distribution"]["prerequisites"]
    assert doc["result"]["tests"] == 453 and doc["result"]["skipped"] == 2
    assert doc["environment"]["user_agent"] == "rawsender 1.0"
    assert doc["environment"]["language"]["build"] == sent["environment"]["language"]["build"]
    assert doc["environment"]["system"]["variables"] == sent["environment"]["system"]["variables"]
