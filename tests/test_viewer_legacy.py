"""The viewer during a migration: reports not migrated yet are served from the legacy
Metabase cache (a real throwaway legacy MariaDB database of the fixture rows), on both of
our backends; not-found answers stay as they were; an unreachable legacy database never
breaks migrated reports."""

from __future__ import annotations

import logging

import pytest

import settings
from app import create_viewer_app
from tests import backends, legacy_fixtures
from tests.viewer_helpers import sample_document, store_document

LEGACY_GUID = "0cbce1be-07f0-11e3-9db1-878205732d18"
"""A real legacy row (CPAN-Testers-WWW-Statistics 1.06, Slaven Rezić) with legacy cpanstats id 33578672."""
LEGACY_ID = 33578672
UNKNOWN_GUID = "00000000-0000-0000-0000-000000000001"
UNREACHABLE_URL = "mysql://root@127.0.0.1:1/cpt_legacy_nowhere"


@pytest.fixture(scope="module")
def legacy_url():
    if not backends.reachable(backends.MARIADB_HOST, backends.MARIADB_PORT):
        if backends.services_required():
            pytest.fail("MariaDB is not reachable and CPT_REQUIRE_SERVICES is set")
        pytest.skip("MariaDB not reachable on 127.0.0.1: no legacy database")
    name = legacy_fixtures.create_legacy_database(backends.MARIADB_HOST, backends.MARIADB_PORT, backends.MARIADB_USER)
    yield f"mysql://{backends.MARIADB_USER}@{backends.MARIADB_HOST}:{backends.MARIADB_PORT}/{name}"
    legacy_fixtures.drop_database(backends.MARIADB_HOST, backends.MARIADB_PORT, backends.MARIADB_USER, name)


def viewer_for(backend, tmp_path, legacy: str):
    config = settings.load(
        {},
        DATABASE_URL=backend.database_url,
        REDIS_URL=backend.redis_url,
        SPOOL_DIR=str(tmp_path / "spool"),
        LEGACY_DATABASE_URL=legacy,
    )
    return create_viewer_app(config)


@pytest.fixture
def make_viewer(backend, tmp_path):
    apps = []

    def make(legacy: str):
        application = viewer_for(backend, tmp_path, legacy)
        apps.append(application)
        return application.test_client()

    yield make
    for application in apps:
        application.extensions["cpantesters_viewer"].engine.dispose()


def test_not_yet_migrated_report_is_served_from_the_legacy_cache_in_all_three_forms(make_viewer, legacy_url):
    viewer = make_viewer(legacy_url)
    for prefix in ("/cpan/report/", "/report/"):
        for ident in (LEGACY_GUID, str(LEGACY_ID)):  # our cpanstats is empty: the legacy id is looked up
            page = viewer.get(f"{prefix}{ident}")
            assert page.status_code == 200, (prefix, ident)
            assert "PASS CPAN-Testers-WWW-Statistics-1.06" in page.text
            assert "<h1>" in page.text and page.headers["ETag"]
            raw = viewer.get(f"{prefix}{ident}?raw=1")
            assert raw.status_code == 200
            assert raw.text.startswith('<pre id="report">') and "<h1>" not in raw.text
            assert "CPAN-Testers-WWW-Statistics-1.06" in raw.text
            data = viewer.get(f"{prefix}{ident}?json=1").get_json()
            assert data["success"] == "1"
            core = data["result"]["metadata"]["core"]
            assert core["guid"] == LEGACY_GUID
            assert core["resource"].startswith("cpan:///distfile/")
            assert "CPAN-Testers-WWW-Statistics-1.06" in core["resource"]
    # revalidation works on a legacy answer as on a migrated one
    etag = viewer.get(f"/cpan/report/{LEGACY_GUID}").headers["ETag"]
    assert viewer.get(f"/cpan/report/{LEGACY_GUID}", headers={"If-None-Match": etag}).status_code == 304


def test_a_migrated_report_is_read_from_our_database_and_the_legacy_one_is_not_needed(make_viewer, legacy_url, backend):
    engine = backend.engine()
    guid = store_document(engine, sample_document())
    engine.dispose()
    viewer = make_viewer(legacy_url)
    assert viewer.get(f"/cpan/report/{guid}").status_code == 200
    assert viewer.get(f"/cpan/report/{guid}?json=1").get_json()["success"] == "1"


@pytest.mark.parametrize("legacy", ["with legacy", ""])
def test_a_guid_in_neither_database_is_not_found_as_before(make_viewer, legacy_url, legacy):
    viewer = make_viewer(legacy_url if legacy else "")
    for path in (f"/cpan/report/{UNKNOWN_GUID}", "/report/4000000000", "/report/123456", "/report/nonsense"):
        page = viewer.get(path)
        assert page.status_code == 404
        assert page.headers["Cache-Control"] == "no-store"
        assert viewer.get(path + "?raw=1").status_code == 404
        answer = viewer.get(path + "?json=1")
        assert answer.status_code == 200
        assert answer.get_json() == {"success": 0}


def test_without_a_legacy_url_a_legacy_only_report_is_not_found(make_viewer, legacy_url):
    del legacy_url  # the legacy database exists, but the viewer is not told about it
    viewer = make_viewer("")
    assert viewer.get(f"/cpan/report/{LEGACY_GUID}").status_code == 404
    assert viewer.get(f"/report/{LEGACY_ID}?json=1").get_json() == {"success": 0}


def test_an_unreachable_legacy_database_never_breaks_migrated_reports(make_viewer, backend):
    engine = backend.engine()
    guid = store_document(engine, sample_document())
    engine.dispose()
    viewer = make_viewer(UNREACHABLE_URL)
    for prefix in ("/cpan/report/", "/report/"):
        page = viewer.get(f"{prefix}{guid}")
        assert page.status_code == 200 and "Yancy-1.004" in page.text
        assert viewer.get(f"{prefix}{guid}?raw=1").status_code == 200
        assert viewer.get(f"{prefix}{guid}?json=1").get_json()["success"] == "1"
    # what is in neither database is still an ordinary not-found, not an error
    assert viewer.get(f"/cpan/report/{UNKNOWN_GUID}").status_code == 404
    assert viewer.get(f"/cpan/report/{UNKNOWN_GUID}?json=1").get_json() == {"success": 0}
    assert viewer.get("/report/123456?json=1").get_json() == {"success": 0}


def test_an_unreachable_legacy_database_is_not_asked_again_for_a_while(make_viewer, backend, caplog):
    from storage import legacy

    breaker = legacy.fallback_breaker(UNREACHABLE_URL)
    breaker.reset()  # whatever an earlier test left
    viewer = make_viewer(UNREACHABLE_URL)

    def attempts() -> int:  # each attempt that failed is logged once
        return sum("legacy fallback unavailable" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.WARNING, logger="storage.legacy"):
        assert viewer.get(f"/cpan/report/{UNKNOWN_GUID}").status_code == 404  # asked once: it failed
        assert breaker.open and attempts() == 1
        for path in (f"/cpan/report/{UNKNOWN_GUID}", "/report/123456"):  # no connect timeout to wait for
            assert viewer.get(path).status_code == 404
            assert viewer.get(path + "?json=1").get_json() == {"success": 0}
        assert attempts() == 1
        breaker.reset()  # the retry window is over
        assert viewer.get(f"/cpan/report/{UNKNOWN_GUID}").status_code == 404
        assert attempts() == 2
