"""GET /v3/analysis/<dist>/<version> (read API) and /dist/<dist>/<version>/analysis (viewer)."""

from __future__ import annotations

import random

import pytest

from schemas.module_version import is_below
from tests.test_failure_analysis_storage import DIST, VERSION, facts, store_release


@pytest.fixture
def planted(writer):
    """A release whose FAILs are caused by Foo::Bar < 1.05, with a perl and threads as noise."""
    rng = random.Random(11)
    reports = []
    for _ in range(200):
        foo = rng.choice(["1.03", "1.04", "1.05", "1.10", "1.9"])
        grade = "fail" if is_below(foo, "1.05") else "pass"
        kwargs = {"grade": grade, "perl": rng.choice(["5.16.3", "5.36.0"])}
        reports.append((kwargs, facts(foo, threads=rng.choice(["define", "undef"]), env={"LANG": "C"})))
    store_release(writer, reports)


def test_the_analysis_ranks_the_planted_cause_first(api, planted):
    response = api.get(f"/v3/analysis/{DIST}/{VERSION}")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["dist"], body["version"], body["conclusive"]) == (DIST, VERSION, True)
    top = body["factors"][0]
    assert top["factor"].startswith("prereq Foo::Bar") and top["significant"]
    foo = next(f for f in body["factors"] if f["factor"] == "prereq Foo::Bar")
    assert foo["best_cut"]["below"] == "1.05"


def test_the_analysis_is_cached_briefly_with_cors_and_an_etag(api, planted):
    response = api.get(f"/v3/analysis/{DIST}/{VERSION}", headers={"Origin": "https://metacpan.org"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "s-maxage" not in response.headers["Cache-Control"] and "max-age=" in response.headers["Cache-Control"]
    again = api.get(f"/v3/analysis/{DIST}/{VERSION}", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_a_release_without_pass_or_fail_reports_is_a_json_404(api):
    response = api.get("/v3/analysis/No-Such-Dist/1.0")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json()["errors"][0]["message"].startswith("No PASS or FAIL report")


def test_the_analysis_is_documented_in_the_read_apis_openapi(api):
    assert "/v3/analysis/{dist}/{version}" in api.get("/openapi.json").get_json()["paths"]


def test_the_analysis_page_shows_the_chart_and_the_strongest_factor_first(viewer, planted):
    response = viewer.get(f"/dist/{DIST}/{VERSION}/analysis")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f"Why does {DIST} {VERSION} fail?" in page
    assert '<svg id="chart"' in page
    first_row = page.split('<table id="factors">', 1)[1].split("</tr>", 2)[1]
    assert "prereq Foo::Bar" in first_row and 'class="significant"' in first_row


def test_the_analysis_page_of_an_unknown_release_is_a_404_nobody_caches(viewer):
    response = viewer.get("/dist/No-Such-Dist/1.0/analysis")
    assert response.status_code == 404
    assert "no-store" in response.headers["Cache-Control"]
