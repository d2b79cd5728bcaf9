"""The operators' surface: ``/status`` (JSON or an HTML page with the last hour drawn),
``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` (for a load balancer).

The figures come from :mod:`monitoring.figures` (Redis and the database), so any web
process on any host shows the same pipeline. Request latency is observed per route in
this process (prometheus-flask-exporter; set ``PROMETHEUS_MULTIPROC_DIR`` to add up the gunicorn
workers of a host); job durations come from the Redis histogram the jobs write.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, render_template, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_flask_exporter import PrometheusMetrics

from app.errors import json_response
from app.services import services
from monitoring import alarm
from monitoring import figures as figures_module
from queueing import job_metrics as job_metrics

blueprint = Blueprint("ops", __name__)

REQUEST_METRICS_KEY = "cpantesters_request_metrics"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Of ``cpt_http_request_duration_seconds`` (seconds); the Perl client gives up at 60 s."""


def wants_json() -> bool:
    if request.args.get("format") == "json":
        return True
    if request.args.get("format") == "html":
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _collect(with_history: bool = True) -> figures_module.Figures:
    s = services()
    return figures_module.collect(s.engine, s.redis, s.spool, with_history=with_history)


@blueprint.get("/status")
def status():
    snapshot = _collect()
    data = snapshot.as_dict()
    # The alarm's judgement with its default thresholds (the state-keeping tests are the check command's).
    verdict = alarm.judge(snapshot, alarm.Thresholds(), None)
    data["verdict"] = {"state": verdict.name, "problems": verdict.problems}
    if wants_json():
        response = json_response(data, 200)
    else:
        response = Response(
            render_template("ops/status.html", f=data),
            content_type="text/html; charset=utf-8",
        )
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/healthz")
def healthz():
    """The process answers (no backend is touched)."""
    return json_response({"status": "ok"}, 200)


@blueprint.get("/readyz")
def readyz():
    """The database and Redis answer; 503 otherwise, so a load balancer takes this host out."""
    s = services()
    checks = {}
    try:
        with s.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = f"unreachable: {str(exc).splitlines()[0][:200]}"
    try:
        s.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {str(exc).splitlines()[0][:200]}"
    ready = all(v == "ok" for v in checks.values())
    return json_response({"status": "ready" if ready else "not ready", **checks}, 200 if ready else 503)


class PipelineCollector(Collector):
    """The pipeline figures and job durations, read at scrape time from Redis and the database."""

    def __init__(self, snapshot: figures_module.Figures, redis_connection):
        self.snapshot = snapshot
        self.redis = redis_connection

    def collect(self):
        f = self.snapshot
        up = GaugeMetricFamily("cpt_figures_up", "1 when the figures of this source could be read.", labels=["source"])
        for source in ("database", "redis", "spool"):
            up.add_metric([source], 0 if source in f.errors else 1)
        yield up
        if f.queues is not None:
            jobs = GaugeMetricFamily("cpt_queue_jobs", "RQ jobs per queue and registry.", labels=["queue", "registry"])
            for q in f.queues:
                for registry in ("queued", "started", "failed", "scheduled"):
                    jobs.add_metric([q["name"], registry], q[registry])
            yield jobs
        if f.workers is not None:
            workers = GaugeMetricFamily("cpt_workers", "RQ workers alive, by state.", labels=["state"])
            states: dict[str, int] = {}
            for w in f.workers:
                states[w["state"]] = states.get(w["state"], 0) + 1
            for state in sorted(set(states) | {"busy", "idle"}):
                workers.add_metric([state], states.get(state, 0))
            yield workers
            yield GaugeMetricFamily("cpt_workers_alive", "RQ workers alive.", value=len(f.workers))
        gauges = [
            ("cpt_reports_stored_estimate", "Reports stored (the auto-increment figure, an estimate).", f.stored),
            ("cpt_reports_waiting", "Reports waiting for processing (state pending).", f.waiting),
            ("cpt_reports_oldest_waiting_seconds", "Age of the oldest waiting report (0: none).",
             f.oldest_waiting_seconds or 0 if f.waiting is not None else None),
            ("cpt_reports_failed", "Reports given up on (state failed).", f.failed_reports),
            ("cpt_spooled_reports", "Submissions in this host's spool, not yet drained.", f.spooled),
        ]  # fmt: skip
        for name, doc, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        for name, doc, value in (
            ("cpt_reports_submitted", "Reports submitted (counted in Redis).", f.submitted_total),
            ("cpt_reports_processed", "Reports processed by the workers (counted in Redis).", f.processed_total),
        ):
            if value is not None:
                yield CounterMetricFamily(name, doc, value=value)
        if "redis" not in f.errors:
            try:
                histograms = job_metrics.histograms(self.redis)
            except Exception:
                histograms = {}
            family = HistogramMetricFamily(
                "cpt_job_duration_seconds", "Time a worker spent on one report.", labels=["outcome"]
            )
            for outcome, h in histograms.items():
                family.add_metric([outcome], h["buckets"], h["sum"])
            yield family


@blueprint.get("/metrics")
def metrics():
    s = services()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(_collect(with_history=False), s.redis))
    body = generate_latest(registry)
    if s.settings.PROMETHEUS_MULTIPROC_DIR:  # prometheus-client keeps every worker's metrics there
        from prometheus_client import multiprocess

        per_host = CollectorRegistry()
        multiprocess.MultiProcessCollector(per_host)
        body += generate_latest(per_host)
    else:
        body += generate_latest(current_app.extensions[REQUEST_METRICS_KEY])
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def route(req) -> str:
    """The request-metrics label of a request: its route's rule, not its path (bounded)."""
    return req.url_rule.rule if req.url_rule is not None else "<unmatched>"


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
    # Request metrics by prometheus-flask-exporter: cpt_http_request_duration_seconds (per
    # route, method, status), cpt_http_request_total and cpt_http_request_exceptions_total,
    # in the app's own registry (one app per gunicorn worker; many in a test process).
    registry = CollectorRegistry(auto_describe=True)
    PrometheusMetrics(app, path=None, registry=registry, defaults_prefix="cpt", group_by=route, buckets=LATENCY_BUCKETS)
    app.extensions[REQUEST_METRICS_KEY] = registry
