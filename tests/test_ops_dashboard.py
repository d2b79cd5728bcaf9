"""rq-dashboard at /dashboard: only after logging in, never open, never driven cross-site."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from rq.job import Job
from werkzeug.security import generate_password_hash

from app import create_app
from queueing.contract import SERIALIZER, enqueue_report, job_id, report_queue

USER = "operator"
PASSWORD = "pa$$word with spaces and $ signs"
GUID = "0b5c0e0a-1f6e-11f1-9b1d-3c8c0cbd7c01"


def basic(user: str = USER, password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def dashboard_app(config):
    app = create_app(dataclasses.replace(config, ADMIN_USER=USER, ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD)))
    yield app
    app.extensions["cpantesters"].engine.dispose()


@pytest.fixture
def dash(dashboard_app):
    return dashboard_app.test_client()


def redis_of(app):
    return app.extensions["cpantesters"].redis


def test_the_dashboard_is_disabled_not_open_without_credentials(client):
    for path in ("/dashboard", "/dashboard/", "/dashboard/0/data/queues.json", "/dashboard/requeue/reports"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "disabled" in response.json["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, basic(password="wrong"), basic(user="admin"), {"Authorization": "Bearer x"}],
    ids=["none", "wrong-password", "wrong-user", "not-basic"],
)
def test_every_dashboard_route_asks_for_the_operator_login(dash, headers):
    for path in ("/dashboard/", "/dashboard/0/data/queues.json", "/dashboard/static/js/dashboard.js", "/dashboard/x"):
        response = dash.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_pages_and_queue_data_answer_after_login(dashboard_app, dash):
    assert enqueue_report(redis_of(dashboard_app), GUID)
    page = dash.get("/dashboard/", headers=basic())
    assert page.status_code == 200
    assert b"RQ dashboard" in page.data or b"rq-dashboard" in page.data.lower()
    queues = dash.get("/dashboard/0/data/queues.json", headers=basic())
    assert queues.status_code == 200
    (reports,) = [q for q in queues.json["queues"] if q["name"] == "reports"]
    assert reports["count"] == 1
    assert dash.get("/dashboard/0/view/workers", headers=basic()).status_code == 200
    assert dash.get("/dashboard/0/data/workers.json", headers=basic()).json == {"workers": []}
    jobs = dash.get("/dashboard/0/data/jobs/reports/queued/8/asc/1.json", headers=basic())
    assert jobs.status_code == 200
    assert [j["id"] for j in jobs.json["jobs"]] == [job_id(GUID)]


def test_a_json_serialized_job_is_shown_with_its_guid(dashboard_app, dash):
    enqueue_report(redis_of(dashboard_app), GUID)
    info = dash.get(f"/dashboard/0/data/job/{job_id(GUID)}.json", headers=basic())
    assert info.status_code == 200
    assert GUID in info.json["description"]
    assert dash.get(f"/dashboard/0/view/job/{job_id(GUID)}", headers=basic()).status_code == 200


def _fail_one_job(app):
    connection = redis_of(app)
    enqueue_report(connection, GUID)
    queue = report_queue(connection)
    job = Job.fetch(job_id(GUID), connection=connection, serializer=SERIALIZER)
    queue.remove(job)
    queue.failed_job_registry.add(job, exc_string="RuntimeError: broken")
    return connection, queue


@pytest.mark.parametrize(
    "method,headers",
    [
        ("GET", {"Sec-Fetch-Site": "cross-site"}),
        ("GET", {"Sec-Fetch-Site": "same-site"}),
        ("GET", {}),  # a link or an <img> in a browser without Fetch Metadata and no Referer
        ("GET", {"Referer": "https://evil.example/page"}),
        ("POST", {"Origin": "https://evil.example"}),
        ("POST", {"Origin": "null"}),
        ("POST", {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"}),
    ],
)
def test_cross_site_requeue_is_refused(dashboard_app, dash, method, headers):
    connection, queue = _fail_one_job(dashboard_app)
    response = dash.open("/dashboard/requeue/reports", method=method, headers={**basic(), **headers})
    assert response.status_code == 403
    assert queue.failed_job_registry.count == 1
    assert queue.count == 0


@pytest.mark.parametrize(
    "method,headers",
    [
        ("POST", {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}),
        ("POST", {"Origin": "http://localhost"}),
        ("POST", {}),  # curl with the credentials: not a browser
        ("GET", {"Referer": "http://localhost/dashboard/0/view/failed"}),
    ],
)
def test_same_origin_requeue_moves_failed_jobs_back_to_the_queue(dashboard_app, dash, method, headers):
    connection, queue = _fail_one_job(dashboard_app)
    response = dash.open("/dashboard/requeue/reports", method=method, headers={**basic(), **headers})
    assert response.status_code == 200
    assert response.json == {"status": "OK", "count": 1}
    assert queue.failed_job_registry.count == 0
    assert queue.get_job_ids() == [job_id(GUID)]


def test_a_cross_site_link_may_still_open_a_read_only_page(dash):
    response = dash.get("/dashboard/0/view", headers={**basic(), "Sec-Fetch-Site": "cross-site"}, follow_redirects=True)
    assert response.status_code == 200


def test_the_embedded_run_creates_a_login_that_opens_the_dashboard(config):
    import re

    from scripts.run_embedded import dashboard_credentials

    env: dict = {}
    message = dashboard_credentials(env)
    password = re.search(r"password (\S+)", message).group(1)
    assert env["ADMIN_USER"] == "admin" and password not in env["ADMIN_PASSWORD_HASH"]
    app = create_app(
        dataclasses.replace(config, ADMIN_USER=env["ADMIN_USER"], ADMIN_PASSWORD_HASH=env["ADMIN_PASSWORD_HASH"])
    )
    client = app.test_client()
    assert client.get("/dashboard/0/data/queues.json", headers=basic("admin", password)).status_code == 200
    assert client.get("/dashboard/0/data/queues.json", headers=basic("admin", "guess")).status_code == 401
    app.extensions["cpantesters"].engine.dispose()


def test_a_password_hash_from_the_environment_is_kept(config):
    from scripts.run_embedded import dashboard_credentials

    env = {"ADMIN_USER": "ops", "ADMIN_PASSWORD_HASH": generate_password_hash("x")}
    before = dict(env)
    assert "from the environment" in dashboard_credentials(env)
    assert env == before


def test_a_job_deleted_from_the_dashboard_is_gone(dashboard_app, dash):
    connection = redis_of(dashboard_app)
    enqueue_report(connection, GUID)
    headers = {**basic(), "Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    assert (
        dash.post(
            f"/dashboard/job/{job_id(GUID)}/delete", headers={**basic(), "Origin": "https://evil.example"}
        ).status_code
        == 403
    )
    response = dash.post(f"/dashboard/job/{job_id(GUID)}/delete", headers=headers)
    assert response.status_code == 200 and response.json == {"status": "OK"}
    assert report_queue(connection).count == 0
