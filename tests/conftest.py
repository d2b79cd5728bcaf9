"""Session fixtures: one throwaway backend per kind, clean tables for every test, and a
fresh app per test. Tests that take ``app``/``client``/``backend`` run on both backends."""

from __future__ import annotations

import pytest

import settings
from app import create_app, create_read_api_app, create_viewer_app
from tests import backends

BACKENDS = ["embedded", "mariadb"]


@pytest.fixture(scope="session")
def embedded(tmp_path_factory):
    backend = backends.embedded_backend(tmp_path_factory.mktemp("embedded"))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def mariadb():
    backend = backends.mariadb_backend()
    if backend is None:
        if backends.services_required():
            pytest.fail("MariaDB or Redis on 127.0.0.1 is not reachable and CPT_REQUIRE_SERVICES is set")
        pytest.skip("MariaDB/Redis not reachable on 127.0.0.1")
    yield backend
    backend.close()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """A clean backend: every table empty, the Redis database flushed."""
    chosen = request.getfixturevalue(request.param)
    chosen.reset()
    return chosen


@pytest.fixture
def config(backend, tmp_path) -> settings.Settings:
    return settings.load(
        {},
        DATABASE_URL=backend.database_url,
        REDIS_URL=backend.redis_url,
        SPOOL_DIR=str(tmp_path / "spool"),
        LOG_LEVEL="INFO",
    )


@pytest.fixture
def app(config):
    application = create_app(config)
    yield application
    application.extensions["cpantesters"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(backend, config, monkeypatch):
    """The backend's engine, with the jobs run in this process configured for it, and the
    environment of an operator's command run in the test (``scripts.*.main``) pointing at it."""
    from workers import jobs

    jobs.configure(config)
    monkeypatch.setenv("DATABASE_URL", backend.database_url)
    monkeypatch.setenv("REDIS_URL", backend.redis_url)
    engine = backend.engine()
    yield engine
    engine.dispose()
    jobs.configure(None)


@pytest.fixture
def writer(backend):
    """A writing engine for a test's own rows (the viewer's engine is read-only)."""
    engine = backend.engine()
    yield engine
    engine.dispose()


@pytest.fixture
def viewer_app(config, writer):
    application = create_viewer_app(config)
    application.extensions["cpantesters_writer"] = writer
    yield application
    application.extensions["cpantesters_viewer"].engine.dispose()


@pytest.fixture
def viewer(viewer_app):
    return viewer_app.test_client()


@pytest.fixture
def api_app(config):
    """The v3 read-API app (the Procfile's ``readapi``)."""
    application = create_read_api_app(config)
    yield application
    application.extensions["cpantesters_viewer"].engine.dispose()


@pytest.fixture
def api(api_app):
    return api_app.test_client()
