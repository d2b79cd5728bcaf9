"""OPS_LOGIN=on puts /status and /metrics behind the dashboard's operator login;
/healthz and /readyz stay open for load balancers; off (the default) leaves them open."""

from __future__ import annotations

import dataclasses

import pytest
from werkzeug.security import generate_password_hash

from app import create_app
from tests.test_ops_dashboard import PASSWORD, USER, basic

GUARDED = ("/status", "/status?format=json", "/metrics")


@pytest.fixture
def make_app(config):
    apps = []

    def build(**overrides):
        app = create_app(dataclasses.replace(config, **overrides))
        apps.append(app)
        return app.test_client()

    yield build
    for app in apps:
        app.extensions["cpantesters"].engine.dispose()


def with_login(**overrides) -> dict:
    return {"ADMIN_USER": USER, "ADMIN_PASSWORD_HASH": generate_password_hash(PASSWORD), **overrides}


def test_with_ops_login_status_and_metrics_ask_for_the_operator_login(make_app):
    client = make_app(**with_login(OPS_LOGIN="on"))
    for path in GUARDED:
        for headers in ({}, basic(password="wrong")):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
            assert response.headers["Content-Type"] == "application/json"


def test_with_ops_login_status_and_metrics_answer_after_login(make_app):
    client = make_app(**with_login(OPS_LOGIN="on"))
    assert client.get("/status?format=json", headers=basic()).json["verdict"]["state"]
    metrics = client.get("/metrics", headers=basic())
    assert metrics.status_code == 200 and b"cpt_figures_up" in metrics.data


def test_with_ops_login_health_checks_stay_open(make_app):
    client = make_app(**with_login(OPS_LOGIN="on"))
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_with_ops_login_but_no_password_hash_they_are_disabled_not_open(make_app):
    client = make_app(OPS_LOGIN="on")
    for path in GUARDED:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "disabled" in response.json["error"]


def test_by_default_status_and_metrics_are_open(make_app):
    client = make_app(**with_login())
    assert client.get("/status?format=json").status_code == 200
    assert client.get("/metrics").status_code == 200
