"""The v3 read API (/v3/summary, /v3/release, /v3/upload) of the read-API app, on both backends."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.read_queries import release_query, summary_query, upload_query
from storage.tables import uploads
from tests.viewer_helpers import add_cpanstats, add_perl, add_summary, add_upload

UPLOADS_SQL = Path(__file__).parent / "fixtures" / "read-api" / "upstream-stats-uploads.sql"
INSERT = re.compile(r"VALUES \('([^']*)','([^']*)','([^']*)','([^']*)','([^']*)','([^']*)'\);")


@pytest.fixture
def engine(writer):
    return writer


def load_upstream_uploads(engine) -> int:
    """The uploads rows of upstream's stats tests (``old/stats/t/data/uploads.sql``); its
    duplicate (dist, version) rows are merged into the first, as upstream's schema 0.027 did."""
    rows, seen = [], set()
    for line in UPLOADS_SQL.read_text().splitlines():
        kind, author, dist, version, filename, released = INSERT.search(line).groups()
        if (dist, version) in seen:
            continue
        seen.add((dist, version))
        rows.append(
            {
                "type": kind,
                "author": author,
                "dist": dist,
                "version": version,
                "filename": filename,
                "released": int(released),
            }
        )
    with engine.begin() as conn:
        conn.execute(uploads.insert(), rows)
    return len(rows)


@pytest.fixture
def yancy(engine):
    """Yancy 1.004 and 1.005 with reports on a stable, a dev and a patched perl."""
    add_perl(engine, "5.24.3")
    add_perl(engine, "5.27.1", devel=1)
    add_perl(engine, "5.24.3 patch 1", patch=1)
    up4 = add_upload(engine, "Yancy", "1.004", "PREACTION", released=1523938257)
    up5 = add_upload(engine, "Yancy", "1.005", "PREACTION", released=1524038257)
    g1 = add_cpanstats(engine, up4, "Yancy", "1.004", perl="5.24.3", state="pass", fulldate="201804170410")
    g2 = add_cpanstats(
        engine, up4, "Yancy", "1.004", perl="5.27.1", state="fail", fulldate="201804180000", osname="linux"
    )
    add_cpanstats(engine, up4, "Yancy", "1.004", perl="5.24.3 patch 1", state="na", fulldate="201804190000")
    add_cpanstats(engine, up5, "Yancy", "1.005", perl="5.24.3", state="pass", fulldate="201805010000")
    guid = {row: _guid(engine, row) for row in (g1, g2)}
    add_summary(engine, up4, "Yancy", "1.004", guid[g1], perlmat=1, patched=1, **{"pass": 3, "fail": 0})
    add_summary(engine, up4, "Yancy", "1.004", guid[g2], perlmat=2, patched=1, fail=2)
    add_summary(engine, up4, "Yancy", "1.004", guid[g1], perlmat=1, patched=2, na=1, unknown=1)
    add_summary(engine, up5, "Yancy", "1.005", guid[g1], distmat=2, **{"pass": 7})
    return {"up4": up4, "up5": up5}


def _guid(engine, cpanstats_id: int) -> str:
    from storage.tables import cpanstats

    with engine.connect() as conn:
        return conn.execute(sa.select(cpanstats.c.guid).where(cpanstats.c.id == cpanstats_id)).scalar()


def errors_of(response) -> list:
    return response.get_json()["errors"]


# --- /v3/summary ---------------------------------------------------------------------


def test_summary_without_dist_perl_or_osname_is_a_400(api):
    response = api.get("/v3/summary?grade=pass")
    assert response.status_code == 400
    assert errors_of(response) == [{"message": "You must provide one of 'perl' or 'osname'", "path": "/"}]


def test_summary_of_a_dist_has_upstreams_shape(api, yancy):
    response = api.get("/v3/summary/Yancy/1.004")
    assert response.status_code == 200 and response.is_streamed
    rows = sorted(json.loads(response.data), key=lambda r: r["date"])
    assert len(rows) == 3
    first = rows[0]
    assert set(first) == {
        "guid",
        "grade",
        "date",
        "reporter",
        "dist",
        "version",
        "platform",
        "perl",
        "osname",
        "osvers",
    }
    assert first["grade"] == "pass" and first["date"] == "2018-04-17T04:10:00Z"
    assert first["reporter"] == '"Doug Bell" <doug@example.com>'
    assert len(json.loads(api.get("/v3/summary/Yancy").data)) == 4


def test_summary_filters_grade_perl_osname_since_and_perl_maturity(api, yancy):
    def grades(query):
        return sorted(r["grade"] for r in json.loads(api.get(f"/v3/summary/Yancy/1.004?{query}").data))

    assert grades("grade=fail") == ["fail"]
    assert grades("perl=5.24.3&perl=5.27.1") == ["fail", "pass"]
    assert grades("osname=linux") == ["fail"]
    assert grades("since=2018-04-18T00:00:00Z") == ["fail", "na"]
    assert grades("perl_maturity=stable") == ["pass"]
    assert grades("perl_maturity=dev") == ["fail", "na"]
    by_perl = json.loads(api.get("/v3/summary?perl=5.24.3").data)
    assert sorted(r["version"] for r in by_perl) == ["1.004", "1.005"]


def test_summary_with_no_rows_is_a_404_no_results_found(api, yancy):
    response = api.get("/v3/summary/No-Such-Dist")
    assert response.status_code == 404
    assert errors_of(response) == [{"message": "No results found", "path": "/"}]


def test_summary_rejects_a_bad_grade_with_the_parameter_path(api):
    response = api.get("/v3/summary/Yancy?grade=excellent")
    assert response.status_code == 400
    assert errors_of(response)[0]["path"] == "/grade"
    assert api.get("/v3/summary/Yancy?since=yesterday").status_code == 400


# --- /v3/release ---------------------------------------------------------------------


def test_release_counts_are_summed_over_every_perl(api, yancy):
    response = api.get("/v3/release/dist/Yancy")
    assert response.status_code == 200
    rows = sorted(json.loads(response.data), key=lambda r: r["version"])
    assert rows == [
        {
            "dist": "Yancy",
            "version": "1.004",
            "uploadid": yancy["up4"],
            "pass": 3,
            "fail": 2,
            "na": 1,
            "unknown": 1,
            "total": 7,
        },
        {
            "dist": "Yancy",
            "version": "1.005",
            "uploadid": yancy["up5"],
            "pass": 7,
            "fail": 0,
            "na": 0,
            "unknown": 0,
            "total": 7,
        },
    ]
    assert json.loads(api.get("/v3/release").data) == json.loads(response.data)
    assert json.loads(api.get("/v3/release/author/PREACTION").data) == json.loads(response.data)


def test_release_of_one_version_is_a_single_summed_object(api, yancy):
    response = api.get("/v3/release/dist/Yancy/1.004")
    assert response.status_code == 200
    assert response.get_json() == {
        "dist": "Yancy",
        "version": "1.004",
        "uploadid": yancy["up4"],
        "pass": 3,
        "fail": 2,
        "na": 1,
        "unknown": 1,
        "total": 7,
    }
    missing = api.get("/v3/release/dist/Yancy/9.9")
    assert missing.status_code == 404
    assert errors_of(missing) == [{"message": "Not found", "path": "/"}]


def test_release_filters_maturity_limit_and_since(api, yancy):
    assert [r["version"] for r in json.loads(api.get("/v3/release/dist/Yancy?maturity=dev").data)] == ["1.005"]
    assert [r["version"] for r in json.loads(api.get("/v3/release/dist/Yancy?maturity=stable").data)] == ["1.004"]
    assert len(json.loads(api.get("/v3/release?limit=1").data)) == 1
    # since filters on the latest report of each summary row
    late = json.loads(api.get("/v3/release/dist/Yancy?since=2018-04-18T00:00:00Z").data)
    assert [(r["version"], r["fail"]) for r in late] == [("1.004", 2)]


def test_release_errors_are_upstreams(api, yancy):
    since = api.get("/v3/release?since=2018-01-01T00:00:00Z")
    assert since.status_code == 400
    assert errors_of(since) == [{"message": '"since" parameter not allowed', "path": "/"}]
    zero = api.get("/v3/release/dist/Yancy?limit=0")
    assert zero.status_code == 400
    assert errors_of(zero) == [{"message": 'The value for "limit" must be a positive integer', "path": "/"}]
    assert errors_of(api.get("/v3/release?limit=abc"))[0]["path"] == "/limit"
    assert api.get("/v3/release/author/NOBODY").status_code == 404


# --- /v3/upload ----------------------------------------------------------------------


def test_upload_answers_like_upstream_on_its_fixture(api, engine):
    load_upstream_uploads(engine)
    rows = json.loads(api.get("/v3/upload/dist/Acme-Buffy").data)
    assert rows == [
        {"dist": "Acme-Buffy", "version": "1.1", "author": "LBROCARD", "filename": "Acme-Buffy-1.1.tar.gz", "released": "2001-05-22T16:15:03Z"},
        {"dist": "Acme-Buffy", "version": "1.2", "author": "LBROCARD", "filename": "Acme-Buffy-1.2.tar.gz", "released": "2001-08-12T11:53:14Z"},
        {"dist": "Acme-Buffy", "version": "1.3", "author": "LBROCARD", "filename": "Acme-Buffy-1.3.tar.gz", "released": "2002-03-27T13:37:48Z"},
        {"dist": "Acme-Buffy", "version": "1.4", "author": "LBROCARD", "filename": "Acme-Buffy-1.4.tar.gz", "released": "2006-09-08T16:31:25Z"},
        {"dist": "Acme-Buffy", "version": "1.5", "author": "LBROCARD", "filename": "Acme-Buffy-1.5.tar.gz", "released": "2007-04-28T14:03:54Z"},
    ]  # fmt: skip
    by_author = json.loads(api.get("/v3/upload/author/SAPER").data)
    assert len(by_author) == 7 and {r["author"] for r in by_author} == {"SAPER"}
    everything = json.loads(api.get("/v3/upload").data)
    assert len(everything) == 60
    assert [r["released"] for r in everything] == sorted(r["released"] for r in everything)
    recent = json.loads(api.get("/v3/upload/dist/Acme-Buffy?since=2006-01-01T00:00:00Z").data)
    assert [r["version"] for r in recent] == ["1.4", "1.5"]


def test_upload_not_found_messages_name_the_dist_or_author(api, engine):
    load_upstream_uploads(engine)
    dist = api.get("/v3/upload/dist/No-Such")
    assert dist.status_code == 404
    assert errors_of(dist) == [{"message": 'Distribution "No-Such" not found', "path": "/"}]
    assert errors_of(api.get("/v3/upload/author/NOBODY")) == [{"message": 'Author "NOBODY" not found', "path": "/"}]


# --- HTTP ----------------------------------------------------------------------------


def test_every_answer_has_permissive_cors_and_a_short_cache_lifetime(api, yancy):
    for path in ("/v3/release", "/v3/summary/Yancy", "/v3/upload/dist/Nope", "/v3/release/dist/Yancy/1.004"):
        response = api.get(path, headers={"Origin": "https://metacpan.org"})
        assert response.headers["Access-Control-Allow-Origin"] == "*", path
        assert response.headers["Cache-Control"] == "public, max-age=5, stale-while-revalidate=5, stale-if-error=86400"
    preflight = api.options(
        "/v3/release", headers={"Origin": "https://metacpan.org", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Max-Age"] == "3600"
    assert "POST" not in preflight.headers["Access-Control-Allow-Methods"]
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert api.post("/v3/release").status_code == 405


def test_one_release_has_an_etag_and_answers_304(api, yancy):
    first = api.get("/v3/release/dist/Yancy/1.004")
    again = api.get("/v3/release/dist/Yancy/1.004", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_a_bad_query_is_not_kept_by_caches(api):
    assert "Cache-Control" not in api.get("/v3/summary?grade=pass").headers


def test_streamed_lists_are_gzipped_for_clients_that_accept_it(api, yancy):
    plain = api.get("/v3/summary/Yancy")
    zipped = api.get("/v3/summary/Yancy", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(zipped.data)) == json.loads(plain.data)


def test_the_read_api_documents_its_routes_with_its_query_schemas(api):
    document = api.get("/openapi.json").get_json()
    for path in ("/v3/summary/{dist}/{version}", "/v3/release/dist/{dist}", "/v3/upload/author/{author}"):
        assert path in document["paths"]
    assert {"Summary", "Release", "Upload"} <= set(document["components"]["schemas"])
    names = {p["name"] for p in document["paths"]["/v3/summary"]["get"]["parameters"]}
    assert names == {"since", "grade", "perl", "osname", "perl_maturity", "limit"}


def test_each_app_documents_only_the_routes_it_serves(api, viewer, client):
    read_api = set(api.get("/openapi.json").get_json()["paths"])
    pages = set(viewer.get("/openapi.json").get_json()["paths"])
    submissions = set(client.get("/openapi.json").get_json()["paths"])
    assert all(path.startswith("/v3/") for path in read_api)
    assert pages == {"/cpan/report/{ident}", "/report/{ident}", "/dist/{dist}/{version}/analysis"}
    assert "/api/v1/submit/{fact_type}" in submissions and "/v3/report" in submissions
    assert not read_api & submissions and not pages & (read_api | submissions)


# --- indexes ------------------------------------------------------------------------

PLANNED_QUERIES = {
    "summary dist": summary_query(dist="Dist-7"),
    "summary dist version grade": summary_query(dist="Dist-7", version="1.0", grade="pass"),
    "summary dist perl_maturity": summary_query(dist="Dist-7", perl_maturity="stable"),
    "summary perl": summary_query(perls=["5.36.0"]),
    "summary osname": summary_query(osnames=["linux"]),
    "release all": release_query(),
    "release dist": release_query(dist="Dist-7"),
    "release dist version": release_query(dist="Dist-7", version="1.0"),
    "release author": release_query(author="AUTHOR3"),
    "release dist since": release_query(dist="Dist-7", since=__import__("datetime").datetime(2026, 1, 1)),
    "upload all": upload_query(),
    "upload dist": upload_query(dist="Dist-7"),
    "upload author": upload_query(author="AUTHOR3"),
    "upload since": upload_query(since=__import__("datetime").datetime(2026, 1, 1)),
}


def _fill_for_plans(engine, dists: int = 200, perls: int = 40) -> None:
    """Enough rows that the optimizer's choice reflects the indexes, not a tiny table."""
    from storage.tables import cpanstats, perl_version, release_summary

    with engine.begin() as conn:
        conn.execute(perl_version.insert(), [{"version": f"5.{i}.0", "perl": f"5.{i}.0"} for i in range(perls)])
        conn.execute(
            uploads.insert(),
            [
                {"type": "cpan", "author": f"AUTHOR{i % 50}", "dist": f"Dist-{i}", "version": "1.0",
                 "filename": f"Dist-{i}-1.0.tar.gz", "released": 1_700_000_000 + i}
                for i in range(dists)
            ],
        )  # fmt: skip
        ids = dict(conn.execute(sa.select(uploads.c.dist, uploads.c.uploadid)).all())
        conn.execute(
            cpanstats.insert(),
            [
                {"guid": f"{i:08d}-{j:04d}-0000-0000-000000000000", "state": "pass", "postdate": 202601,
                 "tester": "t", "dist": f"Dist-{i}", "version": "1.0", "platform": "x", "perl": f"5.{j}.0",
                 "osname": "linux" if j == 0 else f"os{(i + j) % 60}", "osvers": "1",
                 "fulldate": f"2026{1 + j % 12:02d}010000", "type": 2, "uploadid": ids[f"Dist-{i}"]}
                for i in range(dists) for j in range(perls)
            ],
        )  # fmt: skip
        conn.execute(
            release_summary.insert(),
            [
                {"dist": f"Dist-{i}", "version": "1.0", "id": i, "guid": f"{i:08d}-{p:04d}-0000-0000-000000000000",
                 "oncpan": 1, "distmat": 1, "perlmat": 1 + p % 2, "patched": 1 + p // 2, "pass": 1, "fail": 0,
                 "na": 0, "unknown": 0, "uploadid": ids[f"Dist-{i}"]}
                for i in range(dists) for p in range(4)
            ],
        )  # fmt: skip
        for table in ("perl_version", "uploads", "cpanstats", "release_summary"):
            conn.exec_driver_sql(f"ANALYZE TABLE {table}")


def test_every_read_api_query_is_served_by_an_index_on_mariadb(backend, engine):
    if backend.name != "mariadb":
        pytest.skip("EXPLAIN plans are checked on MariaDB")
    _fill_for_plans(engine)
    with engine.connect() as conn:
        for name, query in PLANNED_QUERIES.items():
            sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
            plan = list(conn.exec_driver_sql(f"EXPLAIN {sql}").mappings())
            for step in plan:
                assert step["type"] != "ALL" and step["key"], f"{name}: {step} in {plan}"


# --- end to end ----------------------------------------------------------------------


def test_the_real_clients_report_reaches_the_read_api_after_its_job(app, client, viewer, api, backend, db):
    from tests import captures
    from tests.helpers import register_profile, replay
    from tests.processing_helpers import run_jobs

    register_profile(app.extensions["cpantesters"].engine)
    response = replay(client, captures.load("01-ok")[0])
    guid = response.get_json()["guid"]
    doc = viewer.get(f"/cpan/report/{guid}?json=1").get_json()["result"]
    fact = doc["content"][0]["content"]
    run_jobs(backend.redis())

    dist_version = doc["metadata"]["core"]["resource"].rsplit("/", 1)[1].removesuffix(".tar.gz")
    dist, version = dist_version.rsplit("-", 1)
    [row] = json.loads(api.get(f"/v3/summary/{dist}/{version}").data)
    assert row["guid"] == guid and row["grade"] == fact["grade"] and row["perl"] == fact["perl_version"]
    counts = api.get(f"/v3/release/dist/{dist}/{version}").get_json()
    assert counts["total"] == 1 and counts[fact["grade"]] == 1
    from storage.tables import cpanstats

    with backend.engine().connect() as conn:
        numeric = conn.execute(sa.select(cpanstats.c.id).where(cpanstats.c.guid == guid)).scalar()
    assert viewer.get(f"/report/{numeric}?json=1").get_json()["result"]["metadata"]["core"]["guid"] == guid
