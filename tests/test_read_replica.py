"""The read side on a replica (issue 21 part 5): the viewer and the read API read from
``READ_DATABASE_URL``; what the replica does not have yet is looked for on the primary
before the answer is a not-found. Against a real replica: a throwaway primary ``mariadbd``
and a second ``mariadbd`` replicating its binary log, each with its own data directory."""

from __future__ import annotations

import json
import uuid

import pytest

import settings
from app import create_read_api_app, create_viewer_app
from storage.engine import create_engine
from storage.migrate import upgrade
from storage.reports import store_report
from tests.processing_helpers import report_row
from tests.replica_servers import DATABASE, ReplicatedPair, missing_binaries
from tests.viewer_helpers import add_cpanstats, add_perl, add_summary, add_upload

# --- the setting ------------------------------------------------------------------------


def test_the_read_side_reads_the_primary_when_no_replica_is_set():
    config = settings.load(environ={"DATABASE_URL": "sqlite:////tmp/cpt-primary-only.sqlite"})
    assert config.read_database_url == config.DATABASE_URL
    application = create_read_api_app(config)
    services = application.extensions["cpantesters_viewer"]
    try:
        assert services.primary is None and services.engines() == (services.engine,)
    finally:
        services.dispose()


def test_a_replica_url_gives_the_read_side_two_engines_replica_first():
    config = settings.load(
        environ={
            "DATABASE_URL": "mysql://cpt@primary.example/cpanstats",
            "READ_DATABASE_URL": "mysql://cpt@replica.example/cpanstats",
        }
    )
    application = create_viewer_app(config)
    services = application.extensions["cpantesters_viewer"]
    try:
        assert services.engine.url.host == "replica.example"
        assert services.primary.url.host == "primary.example"
        assert services.engines() == (services.engine, services.primary)
    finally:
        services.dispose()


# --- against a real replica -------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if missing := missing_binaries():
        pytest.skip(f"needs {', '.join(missing)}")
    servers = ReplicatedPair(tmp_path_factory.mktemp("replica"))
    try:
        servers.start()
        upgrade(servers.primary.url())
        servers.wait_caught_up()
    except BaseException:
        print(servers.primary.log_tail(), servers.replica.log_tail())
        servers.stop()
        raise
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def primary(pair):
    engine = create_engine(pair.primary.url())
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def config(pair):
    return settings.load(environ={}, DATABASE_URL=pair.primary.url(), READ_DATABASE_URL=pair.replica.url())


@pytest.fixture(scope="module")
def viewer(config):
    application = create_viewer_app(config)
    yield application.test_client()
    application.extensions["cpantesters_viewer"].dispose()


@pytest.fixture(scope="module")
def api(config):
    application = create_read_api_app(config)
    yield application.test_client()
    application.extensions["cpantesters_viewer"].dispose()


@pytest.fixture
def lagging(pair):
    """The replica stops applying the primary's changes for the test, then catches up."""
    pair.pause()
    yield pair
    pair.resume()
    pair.wait_caught_up()


@pytest.mark.system
def test_the_read_side_answers_from_the_replica(pair, api):
    # A row only the replica has (written there by root, around replication) shows: the
    # read API reads the replica, not the primary.
    pair.replica.sql(
        "SET foreign_key_checks=0; INSERT INTO cpanstats (guid, state, postdate, tester, dist, version, platform,"
        " perl, osname, osvers, fulldate, type, uploadid) VALUES ('00000000-0000-4000-8000-00000000a11a', 'pass',"
        " 202612, 't', 'Replica-Only', '1.0', 'x86_64-linux', '5.40.0', 'linux', '6.1', '202612070000', 2, 99999)",
        DATABASE,
    )
    try:
        [row] = json.loads(api.get("/v3/summary/Replica-Only").data)
        assert row["guid"] == "00000000-0000-4000-8000-00000000a11a"
    finally:
        pair.replica.sql("DELETE FROM cpanstats WHERE dist = 'Replica-Only'", DATABASE)


@pytest.mark.system
def test_a_report_the_replica_has_not_received_yet_shows_at_once_from_the_primary(lagging, primary, viewer):
    row = report_row(dist="Just-Submitted", version="0.01")
    store_report(primary, row)
    on_replica = lagging.replica.sql(f"SELECT COUNT(*) FROM test_report WHERE guid = '{row['guid']}'", DATABASE)
    assert on_replica == "0"
    assert viewer.get(f"/cpan/report/{row['guid']}?json=1").get_json()["success"] == "1"
    page = viewer.get(f"/cpan/report/{row['guid']}")
    assert page.status_code == 200 and b"Just-Submitted" in page.data


@pytest.mark.system
def test_lists_and_counts_the_replica_has_not_received_yet_come_from_the_primary(lagging, primary, api):
    add_perl(primary, "5.40.0")
    uploadid = add_upload(primary, "Fresh-Dist", "1.0", "FRESH")
    stats_id = add_cpanstats(primary, uploadid, "Fresh-Dist", "1.0", perl="5.40.0", fulldate="202612070000")
    guid = primary.connect().exec_driver_sql(f"SELECT guid FROM cpanstats WHERE id = {stats_id}").scalar()
    add_summary(primary, uploadid, "Fresh-Dist", "1.0", guid, id=stats_id, **{"pass": 1})
    assert lagging.replica.sql("SELECT COUNT(*) FROM cpanstats WHERE dist = 'Fresh-Dist'", DATABASE) == "0"
    assert [r["guid"] for r in json.loads(api.get("/v3/summary/Fresh-Dist").data)] == [guid]
    assert api.get("/v3/release/dist/Fresh-Dist/1.0").get_json()["total"] == 1
    assert [r["author"] for r in json.loads(api.get("/v3/upload/dist/Fresh-Dist").data)] == ["FRESH"]


@pytest.mark.system
def test_what_neither_server_has_is_a_not_found(pair, viewer, api):
    missing = str(uuid.uuid4())
    assert viewer.get(f"/cpan/report/{missing}").status_code == 404
    assert viewer.get(f"/cpan/report/{missing}?json=1").get_json() == {"success": 0}
    assert api.get("/v3/summary/No-Such-Dist").status_code == 404
    assert api.get("/v3/release/dist/No-Such-Dist/1.0").status_code == 404


@pytest.mark.system
def test_what_the_primary_stores_reaches_the_replica_through_replication(pair, primary):
    row = report_row(dist="Replicated", version="2.0")
    store_report(primary, row)
    pair.wait_caught_up()
    assert pair.replica.sql(f"SELECT dist FROM test_report WHERE guid = '{row['guid']}'", DATABASE) == "Replicated"
