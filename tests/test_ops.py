"""The operators' surface: /status, /metrics, /healthz, /readyz, on both backends."""

from __future__ import annotations

import dataclasses
import logging
import os

import pytest
from rq import Worker

from app import create_app
from queueing import counters
from queueing import job_metrics as job_metrics
from queueing.contract import SERIALIZER, report_queue
from tests.helpers import submit_captured


def services(app):
    return app.extensions["cpantesters"]


def test_healthz_answers_without_touching_a_backend(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_ready_when_database_and_redis_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "database": "ok", "redis": "ok"}


def test_readyz_is_503_when_the_database_is_unreachable(config, unreachable_database_url):
    app = create_app(dataclasses.replace(config, DATABASE_URL=unreachable_database_url, DB_CONNECT_TIMEOUT=1))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["database"].startswith("unreachable")
    assert response.json["redis"] == "ok"


def test_status_json_shows_waiting_reports_queue_and_rates(app, client):
    guids = submit_captured(app, client, 3)
    response = client.get("/status", headers={"Accept": "application/json"})
    assert response.status_code == 200
    f = response.json
    assert f["waiting"] == 3
    assert f["stored"] >= 3
    assert 0 <= f["oldest_waiting_seconds"] < 60
    assert f["queued"] == 3
    assert [q["name"] for q in f["queues"]] == ["reports"]
    assert f["queues"][0]["queued"] == 3
    assert f["failed_jobs"] == 0
    assert f["workers"] == [] and f["workers_alive"] == 0
    assert f["spooled"] == 0
    assert f["submitted_total"] == 3
    assert f["errors"] == {}
    history = f["history"]
    assert len(history["minute_starts"]) == 60
    assert sum(history["submitted"]) == 3
    assert history["queue_depth"][-1] == 3
    assert client.get("/status?format=json").json["waiting"] == len(guids)
    assert f["verdict"] == {"state": "CRITICAL", "problems": ["no live worker: reports are not being processed"]}


def test_status_json_shows_each_worker_and_what_it_does(app, client):
    redis_connection = services(app).redis
    worker = Worker([report_queue(redis_connection)], connection=redis_connection, name="w-test-1")
    worker.register_birth()
    try:
        f = client.get("/status?format=json").json
        assert f["workers_alive"] == 1
        assert f["workers"][0]["name"] == "w-test-1"
        assert f["workers"][0]["queues"] == ["reports"]
    finally:
        worker.register_death()


def test_status_is_an_html_page_for_a_browser(app, client):
    submit_captured(app, client, 2)
    response = client.get("/status", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    page = response.get_data(as_text=True)
    assert '<div class="value" id="waiting">2</div>' in page
    assert 'id="figures"' in page and "<svg" in page
    assert "http://" not in page.replace('xmlns="http://', "").replace('"http://www.w3.org/2000/svg"', "")


def test_processed_reports_lower_the_queue_and_show_in_the_rates(app, client):
    submit_captured(app, client, 2)
    connection = services(app).redis
    counters.record(connection, counters.PROCESSED, 2)  # what the processing jobs count
    report_queue(connection).empty()
    f = client.get("/status?format=json").json
    assert f["processed_total"] == 2
    assert f["history"]["processed"][-1] == 2
    assert f["queued"] == 0


def test_metrics_expose_pipeline_figures_and_latency_histograms(app, client):
    submit_captured(app, client, 2)
    job_metrics.observe(services(app).redis, 0.03, "done")
    job_metrics.observe(services(app).redis, 7.0, "done")
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "cpt_reports_waiting 2.0" in text
    assert 'cpt_queue_jobs{queue="reports",registry="queued"} 2.0' in text
    assert 'cpt_queue_jobs{queue="reports",registry="failed"} 0.0' in text
    assert "cpt_workers_alive 0.0" in text
    assert "cpt_reports_submitted_total 2.0" in text
    assert "cpt_reports_stored_estimate" in text
    assert "cpt_reports_oldest_waiting_seconds" in text
    assert "cpt_spooled_reports 0.0" in text
    assert 'cpt_figures_up{source="database"} 1.0' in text
    assert 'cpt_job_duration_seconds_bucket{le="0.05",outcome="done"} 1.0' in text
    assert 'cpt_job_duration_seconds_bucket{le="+Inf",outcome="done"} 2.0' in text
    assert 'cpt_job_duration_seconds_count{outcome="done"} 2.0' in text
    assert 'cpt_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"}' in text
    assert (
        'cpt_http_request_duration_seconds_count{method="POST",route="/api/v1/submit/<fact_type>",status="201"}' in text
    )


def test_metrics_still_answer_when_the_database_is_down(config, unreachable_database_url):
    app = create_app(dataclasses.replace(config, DATABASE_URL=unreachable_database_url, DB_CONNECT_TIMEOUT=1))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'cpt_figures_up{source="database"} 0.0' in text
    assert 'cpt_figures_up{source="redis"} 1.0' in text
    assert "cpt_reports_waiting" not in text


def test_a_submission_is_logged_in_one_line_with_guid_outcome_and_duration(app, client, caplog):
    with caplog.at_level(logging.INFO):
        (guid,) = submit_captured(app, client, 1)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("submission "))
    assert f"guid={guid}" in line and "outcome=created" in line and "ms=" in line


@pytest.fixture
def unreachable_database_url():
    from tests.backends import free_port

    return f"mysql://root@127.0.0.1:{free_port()}/nowhere"


def test_counters_keep_a_running_total_and_the_time_of_the_last_event(app):
    connection = services(app).redis
    counters.record(connection, counters.SUBMITTED, 2, at=1_000_000.0)
    assert counters.totals(connection, [counters.SUBMITTED]) == {counters.SUBMITTED: 2}
    assert int(connection.get(counters.last_key(counters.SUBMITTED))) == 1_000_000


def quick_job():
    return "done"


def failing_job():
    raise RuntimeError("broken")


@pytest.mark.parametrize("worker_class", ["ForkingReportWorker", "ReportWorker"])
def test_the_monitored_workers_time_every_job_into_the_redis_histogram(app, worker_class):
    from workers import worker as monitored

    connection = services(app).redis
    queue = report_queue(connection)
    queue.enqueue("tests.test_ops.quick_job")
    queue.enqueue("tests.test_ops.failing_job")
    cls = getattr(monitored, worker_class)
    cls([queue], connection=connection, serializer=SERIALIZER).work(burst=True)
    histograms = job_metrics.histograms(connection)
    assert histograms["done"]["count"] == 1
    assert histograms["error"]["count"] == 1
    assert histograms["done"]["sum"] > 0


def test_the_monitored_worker_logs_each_job_with_the_report_guid_and_duration(app, caplog):
    from queueing.contract import enqueue_report
    from workers.worker import ReportWorker

    connection = services(app).redis
    guid = "0b5c0e0a-1f6e-11f1-9b1d-3c8c0cbd7c01"
    enqueue_report(connection, guid)  # workers.jobs is not needed: the job fails to import or runs
    with caplog.at_level(logging.INFO, logger="workers.worker"):
        ReportWorker([report_queue(connection)], connection=connection, serializer=SERIALIZER).work(burst=True)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "workers.worker"]
    assert line.startswith(f"job guid={guid} job_id=report-{guid} outcome=")
    assert " ms=" in line


@pytest.mark.system
def test_request_latency_adds_up_the_gunicorn_workers_in_multiprocess_mode(backend, tmp_path):
    import subprocess
    import sys

    directory = tmp_path / "prometheus"
    directory.mkdir()
    script = f"""
import settings
from app import create_app
app = create_app(settings.load({{}}, DATABASE_URL={backend.database_url!r}, REDIS_URL={backend.redis_url!r},
                               SPOOL_DIR={str(tmp_path / "spool")!r}, PROMETHEUS_MULTIPROC_DIR={str(directory)!r}))
client = app.test_client()
client.get("/healthz")
print(client.get("/metrics").get_data(as_text=True))
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, first.stderr + second.stderr
    line = 'cpt_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 2.0'
    assert line in second.stdout  # both processes' requests, read from the shared directory
    assert "cpt_workers_alive 0.0" in second.stdout
