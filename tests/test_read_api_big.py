"""Big answers of the v3 read API (issue 21): ``since`` and ``limit`` on every list, lists
streamed batch by batch, sane caching of streamed answers, on both backends."""

from __future__ import annotations

import json
import uuid

import pytest

from app.read_api import STREAM_BATCH
from storage.read_queries import summary_query, upload_query
from storage.tables import cpanstats, uploads
from tests.viewer_helpers import add_perl, add_upload

BIG = 3 * STREAM_BATCH + 17


@pytest.fixture
def engine(writer):
    return writer


@pytest.fixture
def big(engine):
    """A distribution with ``BIG`` reports, one a minute from 2020-01-01 00:00, and one
    upload a day of another distribution."""
    add_perl(engine, "5.36.0")
    uploadid = add_upload(engine, "Big-Dist", "1.0", "BIGAUTHOR", released=1577836800)
    with engine.begin() as conn:
        conn.execute(
            cpanstats.insert(),
            [
                {"guid": str(uuid.UUID(int=n + 1)), "state": "pass" if n % 10 else "fail", "postdate": 202001,
                 "tester": '"T" <t@example.org>', "dist": "Big-Dist", "version": "1.0", "platform": "x86_64-linux",
                 "perl": "5.36.0", "osname": "linux", "osvers": "6.1", "type": 2, "uploadid": uploadid,
                 "fulldate": f"202001{1 + n // 1440:02d}{n % 1440 // 60:02d}{n % 60:02d}"}
                for n in reversed(range(BIG))  # inserted newest first: ids do not follow dates
            ],
        )  # fmt: skip
        conn.execute(
            uploads.insert(),
            [
                {"type": "cpan", "author": "DAILY", "dist": "Daily", "version": f"0.{n:03d}",
                 "filename": f"Daily-0.{n:03d}.tar.gz", "released": 1577836800 + n * 86400}
                for n in range(30)
            ],
        )  # fmt: skip
    return uploadid


def rows_of(response) -> list[dict]:
    assert response.status_code == 200, response.data
    return json.loads(response.data)


def test_summary_limit_gives_the_oldest_reports_first(api, big):
    rows = rows_of(api.get("/v3/summary/Big-Dist?limit=3"))
    assert [r["date"] for r in rows] == ["2020-01-01T00:00:00Z", "2020-01-01T00:01:00Z", "2020-01-01T00:02:00Z"]


def test_summary_since_and_limit_page_forward_through_a_long_list(api, big):
    seen, since = [], "2020-01-01T00:00:00Z"
    while True:
        page = rows_of(api.get(f"/v3/summary/Big-Dist?since={since}&limit=250"))
        new = [r for r in page if r["guid"] not in {s["guid"] for s in seen[-250:]}]
        seen += new
        if len(page) < 250:
            break
        since = page[-1]["date"]
    assert len(seen) == BIG and len({r["guid"] for r in seen}) == BIG


def test_summary_since_is_to_the_minute_as_upstreams(api, big):
    rows = rows_of(api.get("/v3/summary/Big-Dist?since=2020-01-01T00:30:59Z"))
    assert len(rows) == BIG - 30
    assert min(r["date"] for r in rows) == "2020-01-01T00:30:00Z"


def test_upload_limit_gives_the_oldest_uploads_and_combines_with_since(api, big):
    first = rows_of(api.get("/v3/upload/dist/Daily?limit=2"))
    assert [r["version"] for r in first] == ["0.000", "0.001"]
    later = rows_of(api.get("/v3/upload/author/DAILY?since=2020-01-11T00:00:00Z&limit=3"))
    assert [r["version"] for r in later] == ["0.010", "0.011", "0.012"]
    assert len(rows_of(api.get("/v3/upload?limit=5"))) == 5


@pytest.mark.parametrize("path", ["/v3/summary/Big-Dist", "/v3/upload", "/v3/release"])
@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_limit_below_one_is_upstreams_400_on_every_list(api, big, path, limit):
    response = api.get(f"{path}?limit={limit}")
    assert response.status_code == 400
    assert response.get_json() == {
        "errors": [{"message": 'The value for "limit" must be a positive integer', "path": "/"}]
    }


@pytest.mark.parametrize("path", ["/v3/summary/Big-Dist", "/v3/upload"])
def test_a_limit_that_is_not_a_number_names_the_parameter(api, big, path):
    response = api.get(f"{path}?limit=many")
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["path"] == "/limit"


def test_a_long_list_is_sent_batch_by_batch(api, big):
    response = api.get("/v3/summary/Big-Dist", buffered=False)
    assert response.status_code == 200 and response.is_streamed
    chunks = iter(response.response)
    first = next(chunks)
    assert len(json.loads(first + b"]")) == STREAM_BATCH
    rest = b"".join(chunks)
    response.close()
    assert len(json.loads(first + rest)) == BIG


def test_an_abandoned_stream_gives_its_connection_back_and_the_next_answer_is_whole(api_app, api, big):
    engine = api_app.extensions["cpantesters_viewer"].engine
    response = api.get("/v3/summary/Big-Dist", buffered=False)
    next(iter(response.response))
    response.close()  # the client went away after the first batch
    assert engine.pool.checkedout() == 0
    assert len(rows_of(api.get("/v3/summary/Big-Dist"))) == BIG


def test_streamed_lists_carry_no_etag_and_a_short_shared_lifetime(api, big):
    response = api.get("/v3/summary/Big-Dist", headers={"If-None-Match": '"anything"'})
    assert response.status_code == 200 and response.is_streamed
    assert "ETag" not in response.headers
    assert response.headers["Cache-Control"].startswith("public, max-age=5,")
    zipped = api.get("/v3/summary/Big-Dist", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and "ETag" not in zipped.headers
    assert "Accept-Encoding" in zipped.headers["Vary"]


def test_since_and_limit_are_documented_on_every_list(api):
    paths = api.get("/openapi.json").get_json()["paths"]
    for path in ("/v3/summary/{dist}", "/v3/release/dist/{dist}", "/v3/upload/dist/{dist}"):
        parameters = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert {"since", "limit"} <= set(parameters), path
        assert parameters["limit"]["schema"]["type"] == "integer"
        assert parameters["since"]["schema"]["format"] == "date-time"


LIMITED_QUERIES = {
    "summary dist since limit": summary_query(
        dist="Big-Dist", since=__import__("datetime").datetime(2020, 1, 2), limit=50
    ),
    "summary dist limit": summary_query(dist="Big-Dist", limit=50),
    "summary dist since": summary_query(dist="Big-Dist", since=__import__("datetime").datetime(2020, 1, 2)),
    "upload since limit": upload_query(since=__import__("datetime").datetime(2020, 1, 2), limit=50),
}


def test_limited_and_since_lists_read_an_index_in_order_without_a_sort_on_mariadb(backend, engine, big):
    if backend.name != "mariadb":
        pytest.skip("EXPLAIN plans are checked on MariaDB")
    with engine.begin() as conn:
        conn.execute(
            cpanstats.insert(),
            [
                {"guid": str(uuid.UUID(int=10**6 + n)), "state": "pass", "postdate": 202001, "tester": "t",
                 "dist": f"Other-{n % 50}", "version": "1.0", "platform": "x", "perl": "5.36.0", "osname": "linux",
                 "osvers": "6.1", "type": 2, "uploadid": big, "fulldate": f"2019{1 + n % 12:02d}010000"}
                for n in range(5000)
            ],
        )  # fmt: skip
        for table in ("cpanstats", "uploads"):
            conn.exec_driver_sql(f"ANALYZE TABLE {table}")
    with engine.connect() as conn:
        for name, query in LIMITED_QUERIES.items():
            sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
            plan = list(conn.exec_driver_sql(f"EXPLAIN {sql}").mappings())
            for step in plan:
                assert step["type"] != "ALL" and step["key"], f"{name}: {step}"
                assert "filesort" not in (step["Extra"] or ""), f"{name}: {step}"
                assert "temporary" not in (step["Extra"] or ""), f"{name}: {step}"
