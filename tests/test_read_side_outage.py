"""The read side when its database connection dies under it: a JSON 503, then the next
request works on a new connection (found by the soak, bench/soak.py, during a MariaDB
restart: the read API answered 500)."""

from __future__ import annotations

import pytest

import settings
from app import create_read_api_app, create_viewer_app
from tests import backends
from tests.tcp_proxy import TcpProxy
from tests.viewer_helpers import add_upload, make_document, store_document


@pytest.fixture
def proxied(mariadb, tmp_path):
    """A read-side configuration whose database connections go through a TcpProxy."""
    mariadb.reset()
    proxy = TcpProxy(backends.MARIADB_HOST, backends.MARIADB_PORT)
    host = f"@{backends.MARIADB_HOST}:{backends.MARIADB_PORT}/"
    config = settings.load(
        {},
        DATABASE_URL=mariadb.database_url.replace(host, f"@127.0.0.1:{proxy.port}/"),
        REDIS_URL=mariadb.redis_url,
        SPOOL_DIR=str(tmp_path / "spool"),
    )
    yield config, proxy
    proxy.close()


@pytest.mark.parametrize("path", ["/v3/release/dist/Outage-Dist", "/v3/upload/dist/Outage-Dist"])
def test_a_read_api_query_on_a_connection_that_died_is_a_json_503_then_reads_work(proxied, mariadb, path):
    config, proxy = proxied
    writer = mariadb.engine()
    add_upload(writer, "Outage-Dist", "1.0", "SOMEONE")
    writer.dispose()
    app = create_read_api_app(config)
    client = app.test_client()
    try:
        # Read whole, as a server does: a streamed list returns its connection to the pool
        # only once its last row is sent (the test client closes an unread body first).
        assert client.get("/v3/upload/dist/Outage-Dist", buffered=True).status_code == 200
        proxy.cut()  # the server restarts: the pooled connection is dead
        proxy.restore()
        dead = client.get(path)
        assert (dead.status_code, dead.headers["Content-Type"]) == (503, "application/json")
        assert dead.get_json()["errors"][0]["message"] == "database unavailable"
        assert client.get(path).status_code in (200, 404)
    finally:
        app.extensions["cpantesters_viewer"].engine.dispose()


def test_a_report_page_on_a_connection_that_died_is_a_503_then_pages_work(proxied, mariadb):
    config, proxy = proxied
    writer = mariadb.engine()
    guid = store_document(writer, make_document(), creator=None)
    writer.dispose()
    app = create_viewer_app(config)
    client = app.test_client()
    try:
        assert client.get(f"/cpan/report/{guid}").status_code == 200
        proxy.cut()
        proxy.restore()
        assert client.get(f"/cpan/report/{guid}").status_code == 503
        assert client.get(f"/cpan/report/{guid}").status_code == 200
    finally:
        app.extensions["cpantesters_viewer"].engine.dispose()
