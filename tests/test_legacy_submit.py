"""The legacy Metabase submit route, replaying what the real Perl client sent."""

from __future__ import annotations

import base64
import json

import pytest

from queueing.contract import JOB_FUNCTION, job_id
from storage.reports import load_report
from tests import captures
from tests.helpers import job_of, queued_job_ids, register_profile, replay, services, stored_rows, with_new_guid

SUBMISSIONS = captures.submissions()


def register_sender(engine, recorded) -> None:
    """Register the profile and secret the recorded request authenticates with (the Perl
    client sends a secret's Latin-1 bytes, and registers that same string)."""
    token = recorded.header_dict["Authorization"].split(" ", 1)[1]
    guid, _, secret = base64.b64decode(token).partition(b":")
    register_profile(engine, secret=secret.decode("latin-1"), guid=guid.decode())


@pytest.mark.parametrize("recorded", SUBMISSIONS, ids=[f"{r.scenario}-{r.number}" for r in SUBMISSIONS])
def test_every_recorded_submission_is_stored_and_queued(app, client, recorded):
    register_sender(services(app).engine, recorded)
    response = replay(client, recorded)
    guid = json.loads(recorded.body)["metadata"]["core"]["guid"]
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    assert response.json == {"guid": guid}
    assert response.headers["Location"].endswith(f"/guid/{guid}")
    rows = stored_rows(services(app).engine)
    assert [r["guid"] for r in rows] == [guid]
    assert rows[0]["state"] == "pending"
    assert queued_job_ids(services(app).redis) == [job_id(guid)]


def test_location_keeps_the_prefix_the_client_used(app, client):
    register_profile(services(app).engine)
    recorded = captures.load("14-uri-root-no-slash")[0]
    response = replay(client, recorded)
    guid = response.json["guid"]
    assert response.headers["Location"] == f"/guid/{guid}"


def test_beta_prefix_accepts_submissions(app, client):
    register_profile(services(app).engine)
    recorded = captures.load("01-ok")[0]
    recorded.path = "/beta/submit/CPAN-Testers-Report"
    response = replay(client, recorded)
    assert response.status_code == 201
    assert response.headers["Location"].startswith("/beta/guid/")


def test_the_job_carries_only_the_guid_with_retries_and_timeouts(app, client):
    register_profile(services(app).engine)
    response = replay(client, captures.load("01-ok")[0])
    job = job_of(services(app).redis, response.json["guid"])
    assert job.func_name == JOB_FUNCTION
    assert job.args == [response.json["guid"]]
    assert job.timeout and job.ttl and job.retries_left


def test_stored_document_is_the_v3_translation_dated_by_receipt(app, client):
    register_profile(services(app).engine)
    recorded = captures.load("02-fail-grade")[0]
    response = replay(client, recorded)
    with services(app).engine.connect() as conn:
        row = load_report(conn, response.json["guid"])
    doc = row["report"]
    assert doc["id"] == response.json["guid"]
    assert doc["result"]["grade"] == "fail"
    assert doc["distribution"] == {"name": "Foo-Bar", "version": "1.23", "path": "ATESTER/Foo-Bar-1.23.tar.gz"}
    assert doc["environment"]["language"]["name"] == "Perl 5"
    assert not doc["environment"]["language"]["version"].startswith("v")
    assert doc["reporter"] == {"name": "CPAN Tester", "email": "tester@example.com"}
    assert doc["created"] == row["created"].strftime("%Y-%m-%dT%H:%M:%SZ")
    client_time = json.loads(recorded.body)["metadata"]["core"]["creation_time"]
    assert doc["metabase"]["creation_time"] == client_time
    assert (row["dist"], row["version"], row["grade"], row["osname"]) == ("Foo-Bar", "1.23", "fail", "linux")


def test_unicode_comes_back_unchanged_including_four_byte_characters(app, client):
    register_profile(services(app).engine)
    recorded = captures.load("01-ok")[0]
    outer = json.loads(recorded.body)
    facts = json.loads(outer["content"])
    expected = (
        json.loads(facts[0]["content"])["textreport"]
        if "textreport" in facts[0]["content"]
        else json.loads(facts[1]["content"])["textreport"]
    )
    response = replay(client, recorded)
    with services(app).engine.connect() as conn:
        stored = load_report(conn, response.json["guid"])["report"]["result"]["output"]["uncategorized"]
    assert "\U0001f42a" in expected
    assert stored == expected


def test_raw_byte_mojibake_is_repaired_and_correct_text_kept(app, client):
    register_profile(services(app).engine)
    response = replay(client, captures.load("20-cpan-reporter-pass")[0])
    with services(app).engine.connect() as conn:
        text = load_report(conn, response.json["guid"])["report"]["result"]["output"]["uncategorized"]
    assert "Ã©" not in text and "Ã¶" not in text
    assert "é" in text


def test_resubmitting_the_same_report_creates_no_second_row_and_no_second_job(app, client):
    register_profile(services(app).engine)
    recorded = captures.load("01-ok")[0]
    first = replay(client, recorded)
    services(app).redis.delete(f"rq:job:{job_id(first.json['guid'])}")
    services(app).redis.delete("rq:queue:reports")
    second = replay(client, recorded)
    assert (first.status_code, second.status_code) == (201, 201)
    assert len(stored_rows(services(app).engine)) == 1
    assert queued_job_ids(services(app).redis) == []


def test_a_different_report_under_a_known_guid_is_a_conflict(app, client):
    register_profile(services(app).engine)
    first, second = captures.load("01-ok")[0], captures.load("02-fail-grade")[0]
    guid = json.loads(first.body)["metadata"]["core"]["guid"]
    other = json.loads(second.body)
    other["metadata"]["core"]["guid"] = guid
    assert replay(client, first).status_code == 201
    response = replay(client, second, body=json.dumps(other).encode())
    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/json"
    assert guid in response.json["error"]
    assert len(stored_rows(services(app).engine)) == 1


def test_many_distinct_submissions_each_get_a_row(app, client):
    register_profile(services(app).engine)
    recorded = captures.load("01-ok")[0]
    guids = []
    for _ in range(5):
        body, guid = with_new_guid(recorded.body)
        assert replay(client, recorded, body=body).status_code == 201
        guids.append(guid)
    assert sorted(r["guid"] for r in stored_rows(services(app).engine)) == sorted(guids)
