"""GET/HEAD guid, /tail/log.txt and the OpenAPI document."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.tail_log import build_tail_log
from storage.tables import test_report, uploads
from tests import captures
from tests.helpers import register_profile, replay, services, with_new_guid

# The pattern log.txt consumers (CPAN::Testers::TailLog, metabase-tail) use: 8 bracketed fields.
TAIL_LINE = re.compile(r"^\[(.*?)\] \[(.*?)\] \[(.*?)\] \[(.*?)\] \[(.*?)\] \[(.*?)\] \[(.*?)\] \[(.*?)\]$")


def submit(app, client, scenario="01-ok") -> str:
    register_profile(services(app).engine)
    return replay(client, captures.load(scenario)[0]).json["guid"]


def test_guid_of_a_known_report_is_its_metabase_fact(app, client):
    guid = submit(app, client)
    response = client.get(f"/api/v1/guid/{guid}")
    assert response.status_code == 200
    fact = response.json["fact"]
    core = fact["metadata"]["core"]
    assert core["guid"] == guid
    assert core["type"] == "CPAN-Testers-Report"
    assert core["resource"] == "cpan:///distfile/ATESTER/Foo-Bar-1.23.tar.gz"
    assert core["creator"] == f"metabase:user:{captures.PROFILE_GUID}"
    legacy, summary = fact["content"]
    assert legacy["metadata"]["core"]["type"] == "CPAN-Testers-Fact-LegacyReport"
    assert legacy["content"]["textreport"].startswith("This distribution has been tested")
    assert summary["content"] == {k: v for k, v in legacy["content"].items() if k != "textreport"}


def test_head_guid_answers_without_a_body_and_never_hangs(app, client):
    register_profile(services(app).engine)
    response = client.head(f"/api/v1/guid/{captures.PROFILE_GUID}")
    assert response.status_code == 200
    assert response.data == b""


def test_unknown_guid_is_a_json_404(client):
    guid = "00000000-0000-4000-8000-000000000000"
    response = client.get(f"/beta/guid/{guid}")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json == {"error": f"{guid} not found"}


def test_tail_log_lists_a_new_report_in_the_legacy_format(app, client):
    guid = submit(app, client)
    response = client.get("/tail/log.txt")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    header, *lines = response.get_data(as_text=True).splitlines()
    assert re.match(r"^The last 1 reports as of \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ:$", header)
    fields = TAIL_LINE.match(lines[0]).groups()
    assert fields[1:7] == (
        "CPAN Tester",
        "pass",
        "ATESTER/Foo-Bar-1.23.tar.gz",
        "x86_64-linux-gnu-thread-multi",
        "perl-v5.36.0",
        guid,
    )
    assert fields[0] == fields[7] and fields[0].endswith("Z")


def test_tail_log_says_how_long_it_stays_fresh(client):
    response = client.get("/tail/log.txt")
    max_age = int(re.match(r"max-age=(\d+), must-revalidate", response.headers["Cache-Control"]).group(1))
    assert 0 < max_age <= 5


def test_tail_log_lines_parse_like_the_real_2016_log(app):
    real = (captures.CAPTURES.parent / "fixtures" / "taillog-01.txt").read_text(encoding="utf-8", errors="replace")
    real_lines = [line for line in real.splitlines() if line.startswith("[")]
    assert real_lines and all(TAIL_LINE.match(line) for line in real_lines)
    text = build_tail_log(services(app).engine, 10)
    assert text.splitlines()[0].startswith("The last 0 reports as of ")


def test_tail_log_takes_the_author_from_uploads_when_the_report_has_no_path(app, client):
    guid = submit(app, client)
    engine = services(app).engine
    with engine.begin() as conn:
        conn.execute(test_report.update().values(distfile=None))
        conn.execute(
            uploads.insert().values(
                type="cpan",
                author="REALAUTHOR",
                dist="Foo-Bar",
                version="1.23",
                filename="Foo-Bar-1.23.tgz",
                released=0,
            )
        )
    line = build_tail_log(engine, 10).splitlines()[1]
    assert TAIL_LINE.match(line).group(4) == "REALAUTHOR/Foo-Bar-1.23.tgz"
    assert guid in line


def test_tail_log_is_newest_first_and_only_perl5(app, client):
    register_profile(services(app).engine)
    recorded = captures.load("01-ok")[0]
    guids = []
    for _ in range(3):
        body, guid = with_new_guid(recorded.body)
        replay(client, recorded, body=body)
        guids.append(guid)
    with services(app).engine.begin() as conn:
        conn.execute(test_report.update().where(test_report.c.guid == guids[0]).values(language="Perl 6"))
    lines = build_tail_log(services(app).engine, 10).splitlines()[1:]
    assert [TAIL_LINE.match(line).group(7) for line in lines] == [guids[2], guids[1]]


def test_tail_log_dates_are_receipt_times_not_the_clients_clock(app, client):
    guid = submit(app, client)
    with services(app).engine.connect() as conn:
        created = conn.execute(sa.select(test_report.c.created).where(test_report.c.guid == guid)).scalar()
    assert abs(datetime.utcnow() - created) < timedelta(minutes=1)
    line = build_tail_log(services(app).engine, 10).splitlines()[1]
    assert line.startswith(f"[{created:%Y-%m-%dT%H:%M:%S}Z]")


def test_openapi_document_describes_both_submission_apis_from_the_schemas(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in ("/api/v1/submit/{fact_type}", "/api/v1/register", "/v3/report", "/v3/report/{guid}"):
        assert path in spec["paths"]
    submit = spec["paths"]["/api/v1/submit/{fact_type}"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MetabaseFact"
    }
    schemas = spec["components"]["schemas"]
    assert "grade" in schemas["Result"]["properties"]
    assert "NewReport" in schemas and "Errors" in schemas
    json.dumps(spec)
