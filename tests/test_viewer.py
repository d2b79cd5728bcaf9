"""The report viewer: /cpan/report/<id> and /report/<id> in its three forms, on both backends."""

from __future__ import annotations

import gzip
import json

import sqlalchemy as sa
from flask import request

from storage.tables import metabase_user, test_report, uploads
from tests import captures
from tests.helpers import register_profile, replay
from tests.viewer_helpers import (
    SAMPLE,
    SAMPLE_CREATOR,
    add_cpanstats,
    add_perl,
    add_upload,
    add_user,
    make_document,
    sample_document,
    store_document,
)


def engine_of(viewer_app):
    return viewer_app.extensions["cpantesters_writer"]


def test_json_form_matches_the_real_upstream_sample(viewer_app, viewer):
    engine = engine_of(viewer_app)
    add_user(engine, SAMPLE_CREATOR, "Doug Bell", "doug@example.com")
    add_upload(engine, "Yancy", "1.004", "PREACTION")
    guid = store_document(engine, sample_document())
    response = viewer.get(f"/cpan/report/{guid}?json=1")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json() == SAMPLE


def test_json_form_of_a_report_stored_without_fact_guids_repeats_the_report_guid(viewer_app, viewer):
    guid = store_document(engine_of(viewer_app), make_document(**{"metabase.fact_guids": None}))
    facts = viewer.get(f"/cpan/report/{guid}?json=1").get_json()["result"]["content"]
    assert [fact["metadata"]["core"]["guid"] for fact in facts] == [guid, guid]


def test_json_form_of_an_unknown_report_is_a_200_with_success_0(viewer):
    for path in ("/cpan/report/00000000-0000-0000-0000-000000000001", "/report/123456", "/report/nonsense"):
        response = viewer.get(path + "?json=1")
        assert response.status_code == 200
        assert response.get_json() == {"success": 0}
        assert response.headers["Cache-Control"] == "no-store"  # the report may arrive any moment


def test_unknown_report_page_is_a_404_that_no_cache_keeps(viewer):
    response = viewer.get("/cpan/report/00000000-0000-0000-0000-000000000001")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<h1>Report not found</h1>" in response.text
    assert "Sorry, but that report does not exist." in response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in response.headers
    raw = viewer.get("/report/00000000-0000-0000-0000-000000000001?raw=1")
    assert raw.status_code == 404 and raw.headers["Cache-Control"] == "no-store"
    assert "<h1>" not in raw.text and "does not exist" in raw.text


def test_page_shows_title_metacpan_link_headers_and_the_full_text(viewer_app, viewer):
    engine = engine_of(viewer_app)
    add_upload(engine, "Yancy", "1.004", "PREACTION")
    guid = store_document(engine, sample_document())
    response = viewer.get(f"/cpan/report/{guid}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.text
    assert "<title>CPAN Testers Reports: PASS Yancy-1.004 5.24.3 OpenBSD</title>" in page
    assert '<a id="release" href="https://metacpan.org/release/PREACTION/Yancy-1.004">Yancy-1.004</a>' in page
    assert "From: Doug Bell &lt;doug@example.com&gt;" in page
    assert "Subject: PASS Yancy-1.004 5.24.3 OpenBSD" in page
    assert "Date: 2018-04-17T04:10:57Z" in page
    assert "All tests were successful." in page
    assert "t/00-compile.t ............... ok" in page
    assert "http://www.cpantesters.org/distro/Y/Yancy.html?version=1.004" in page


def test_raw_form_has_no_layout(viewer_app, viewer):
    guid = store_document(engine_of(viewer_app), sample_document())
    page = viewer.get(f"/report/{guid}?raw=1").text
    assert page.startswith('<pre id="report">')
    assert "<h1>" not in page and "<html" not in page and "Back" not in page
    assert "Subject: PASS Yancy-1.004 5.24.3 OpenBSD" in page


def test_numeric_cpanstats_id_finds_the_report(viewer_app, viewer):
    engine = engine_of(viewer_app)
    doc = sample_document()
    guid = store_document(engine, doc)
    add_perl(engine, "5.24.3")
    uploadid = add_upload(engine, "Yancy", "1.004", "PREACTION")
    numeric = add_cpanstats(engine, uploadid, "Yancy", "1.004", guid=guid)
    response = viewer.get(f"/cpan/report/{numeric}?json=1")
    assert response.get_json()["result"]["metadata"]["core"]["guid"] == guid
    assert viewer.get(f"/report/{numeric}").status_code == 200
    assert viewer.get("/report/99999999999999999999").status_code == 404


def test_author_comes_from_the_submission_when_uploads_has_no_row(viewer_app, viewer):
    guid = store_document(engine_of(viewer_app), sample_document(), creator=None)
    page = viewer.get(f"/cpan/report/{guid}").text
    assert 'href="https://metacpan.org/release/PREACTION/Yancy-1.004"' in page
    data = viewer.get(f"/cpan/report/{guid}?json=1").get_json()
    assert data["result"]["metadata"]["core"]["resource"] == "cpan:///distfile/PREACTION/Yancy-1.004.tar.gz"
    # No profile known: the creator falls back to "<name> <email>" instead of crashing.
    assert data["result"]["metadata"]["core"]["creator"] == "Doug Bell doug@example.com"


def test_neither_uploads_nor_a_resource_never_crashes_the_page(viewer_app, viewer):
    doc = make_document(**{"distribution.path": None, "reporter.email": None})
    guid = store_document(engine_of(viewer_app), doc, creator="metabase:user:00000000-0000-0000-0000-00000000dead")
    response = viewer.get(f"/cpan/report/{guid}")
    assert response.status_code == 200
    assert 'href="https://metacpan.org/release/Yancy"' in response.text
    assert "From: Doug Bell\n" in response.text
    data = viewer.get(f"/cpan/report/{guid}?json=1").get_json()
    assert data["result"]["metadata"]["core"]["resource"] == "cpan:///distfile/Yancy-1.004.tar.gz"


HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>"\'&'


def test_hostile_report_fields_are_escaped_everywhere(viewer_app, viewer):
    doc = make_document(
        **{
            "reporter.name": HOSTILE,
            "reporter.email": f"x@example.com{HOSTILE}",
            "distribution.name": f"Evil{HOSTILE}",
            "distribution.version": f"1.0{HOSTILE}",
            "distribution.path": f"EVIL/Evil{HOSTILE}-1.0.tar.gz",
            "environment.language.version": f"5.36.0{HOSTILE}",
            "environment.system.osname": HOSTILE,
            "result.output.uncategorized": f"before </pre>{HOSTILE}<!-- after",
            "created": "2026-11-30T00:00:00Z",
        }
    )
    guid = store_document(engine_of(viewer_app), doc, creator=None)
    for form in ("", "?raw=1"):
        page = viewer.get(f"/cpan/report/{guid}{form}").text
        assert "<script>" not in page and "<img" not in page and "<!-- after" not in page
        assert "</pre><script" not in page
        assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in page
    # the JSON form is JSON, not HTML: a browser never renders it as a page
    response = viewer.get(f"/cpan/report/{guid}?json=1")
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json()["result"]["content"][0]["content"]["textreport"].endswith("<!-- after")


def test_unicode_renders_correctly_including_four_byte_characters(viewer_app, viewer):
    text = "Ünïcödé ✓ 日本語 🐪 Slaven Rezić"
    doc = make_document(**{"reporter.name": "Slaven Rezi&#263;", "result.output.uncategorized": text})
    guid = store_document(engine_of(viewer_app), doc, creator=None)
    response = viewer.get(f"/cpan/report/{guid}")
    assert text in response.data.decode("utf-8")
    assert "From: Slaven Rezić &lt;doug@example.com&gt;" in response.text
    assert text == viewer.get(f"/cpan/report/{guid}?json=1").get_json()["result"]["content"][0]["content"]["textreport"]


def test_strong_etag_gives_304_and_changes_with_the_tester_details(viewer_app, viewer):
    engine = engine_of(viewer_app)
    guid = store_document(engine, sample_document())
    first = viewer.get(f"/cpan/report/{guid}")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = viewer.get(f"/cpan/report/{guid}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert viewer.get(f"/cpan/report/{guid}", headers={"If-None-Match": f'"other", {etag}'}).status_code == 304
    add_user(engine, SAMPLE_CREATOR, "Douglas Bell", "preaction@example.com")
    changed = viewer.get(f"/cpan/report/{guid}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert "From: Douglas Bell &lt;preaction@example.com&gt;" in changed.text


def test_a_found_report_is_kept_long_but_refreshed_by_proxies_within_the_shared_max_age(viewer_app, viewer):
    """Found: browsers keep it VIEWER_MAX_AGE, the proxy VIEWER_SHARED_MAX_AGE (the bound on
    a changed tester name or a later author), then serves it stale while refreshing, a day."""
    guid = store_document(engine_of(viewer_app), sample_document())
    for form in ("", "?raw=1", "?json=1"):
        response = viewer.get(f"/cpan/report/{guid}{form}")
        assert response.headers["Cache-Control"] == (
            "public, max-age=300, s-maxage=60, stale-while-revalidate=86400, stale-if-error=86400"
        ), form


def test_large_answers_are_gzipped_with_their_own_etag(viewer_app, viewer):
    guid = store_document(engine_of(viewer_app), sample_document())
    plain = viewer.get(f"/cpan/report/{guid}")
    zipped = viewer.get(f"/cpan/report/{guid}", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert gzip.decompress(zipped.data) == plain.data
    assert len(zipped.data) < len(plain.data) / 2
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    assert not zipped.headers["ETag"].startswith("W/")
    revalidated = viewer.get(
        f"/cpan/report/{guid}", headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]}
    )
    assert revalidated.status_code == 304 and revalidated.data == b""
    # a client that prefers another encoding still gets gzip, the one the viewer makes
    other = viewer.get(f"/cpan/report/{guid}", headers={"Accept-Encoding": "br;q=1.0, gzip;q=0.5"})
    # (compared unzipped: gzip's header carries the second it was made in)
    assert other.headers["Content-Encoding"] == "gzip" and gzip.decompress(other.data) == plain.data


def test_every_answer_allows_any_origin_and_only_the_methods_it_serves(viewer_app, viewer):
    guid = store_document(engine_of(viewer_app), sample_document())
    for path in (f"/cpan/report/{guid}", f"/report/{guid}?json=1", "/report/00000000-0000-0000-0000-000000000001"):
        response = viewer.get(path, headers={"Origin": "https://example.org"})
        assert response.headers["Access-Control-Allow-Origin"] == "*", path  # never the origin echoed
        assert "Origin" not in response.headers.get("Vary", "")
    preflight = viewer.options(
        f"/cpan/report/{guid}",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    allowed = {method.strip() for method in preflight.headers["Access-Control-Allow-Methods"].split(",")}
    assert allowed == {"GET", "HEAD", "OPTIONS"}
    assert preflight.headers["Access-Control-Max-Age"] == "3600"
    for method in ("post", "put", "patch", "delete"):
        refused = getattr(viewer, method)(f"/cpan/report/{guid}")
        assert refused.status_code == 405, method
        assert refused.headers["Content-Type"] == "application/json"
        assert set(refused.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


def test_head_answers_the_headers_of_get(viewer_app, viewer):
    guid = store_document(engine_of(viewer_app), sample_document())
    head, get = viewer.head(f"/cpan/report/{guid}"), viewer.get(f"/cpan/report/{guid}")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["ETag"] == get.headers["ETag"]


def test_forwarded_headers_of_the_proxy_are_trusted_one_hop_deep(viewer_app):
    seen = {}
    viewer_app.before_request(lambda: seen.update(addr=request.remote_addr))
    viewer_app.test_client().get("/report/x", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    assert seen["addr"] == "203.0.113.9"  # the address nginx added, not what the client claimed


def test_the_real_clients_report_is_viewable_at_once_in_all_three_forms(app, client, viewer):
    register_profile(app.extensions["cpantesters"].engine)
    response = replay(client, captures.load("01-ok")[0])
    assert response.status_code == 201
    guid = response.get_json()["guid"]
    page = viewer.get(f"/cpan/report/{guid}")
    assert page.status_code == 200 and "Subject: " in page.text
    assert viewer.get(f"/report/{guid}?raw=1").status_code == 200
    data = viewer.get(f"/cpan/report/{guid}?json=1").get_json()
    assert data["success"] == "1"
    assert data["result"]["metadata"]["core"]["guid"] == guid
    assert data["result"]["metadata"]["core"]["resource"].startswith("cpan:///distfile/")
    sent = json.loads(captures.load("01-ok")[0].body)
    sent_guids = {
        fact["metadata"]["core"]["type"]: fact["metadata"]["core"]["guid"] for fact in json.loads(sent["content"])
    }
    assert {
        fact["metadata"]["core"]["type"]: fact["metadata"]["core"]["guid"] for fact in data["result"]["content"]
    } == {kind: sent_guids[kind] for kind in ("CPAN-Testers-Fact-LegacyReport", "CPAN-Testers-Fact-TestSummary")}


def test_every_form_shows_a_changed_report_author_or_tester_at_once(viewer_app, viewer):
    """The app caches nothing: each view reads the database (the proxy's bound is tested
    through nginx, tests/test_nginx_system.py)."""
    engine = engine_of(viewer_app)
    add_user(engine, SAMPLE_CREATOR, "Doug Bell", "doug@example.com")
    add_upload(engine, "Yancy", "1.004", "PREACTION")
    guid = store_document(engine, sample_document())
    forms = ("", "?raw=1", "?json=1")

    def answers():
        return {form: viewer.get(f"/cpan/report/{guid}{form}") for form in forms}

    first = answers()
    again = answers()  # the same bytes and tags
    for form in forms:
        assert again[form].data == first[form].data and again[form].headers["ETag"] == first[form].headers["ETag"]

    with engine.begin() as conn:  # the author (uploads) changes
        conn.execute(uploads.update().where(uploads.c.dist == "Yancy").values(author="NEWAUTHOR"))
    by_author = answers()
    assert "NEWAUTHOR" in by_author[""].text and "NEWAUTHOR" in by_author["?json=1"].text
    for form in ("", "?json=1"):  # the raw form does not show the author
        assert by_author[form].headers["ETag"] != first[form].headers["ETag"]

    with engine.begin() as conn:  # the tester renames their profile
        conn.execute(metabase_user.update().values(fullname="Douglas Bell"))
    by_tester = answers()
    assert "Douglas Bell" in by_tester[""].text
    assert by_tester[""].headers["ETag"] != by_author[""].headers["ETag"]

    # the stored report itself changes (same row, same columns, other stored bytes)
    other = sample_document()
    other["id"] = "00000000-0000-0000-0000-0000000000ff"
    other["result"]["output"]["uncategorized"] = "A different report text"
    store_document(engine, other)
    with engine.begin() as conn:
        source = test_report.c.guid == other["id"]
        stored = conn.execute(sa.select(test_report.c.report, test_report.c.report_z).where(source)).one()
        conn.execute(test_report.delete().where(source))
        conn.execute(
            test_report.update()
            .where(test_report.c.guid == guid)
            .values(report=stored.report, report_z=stored.report_z)
        )
    by_report = answers()
    assert "A different report text" in by_report[""].text and "A different report text" in by_report["?raw=1"].text
    for form in forms:
        assert by_report[form].headers["ETag"] != by_tester[form].headers["ETag"]

    # an unchanged answer revalidates against the cached tag
    etag = by_report[""].headers["ETag"]
    assert viewer.get(f"/cpan/report/{guid}", headers={"If-None-Match": etag}).status_code == 304
