"""How the cost of each question grows with the data (issue 21): one table per size.

    .venv/bin/python -m bench.scale --database cpt_scale_1m [--mysql 127.0.0.1:3399:bench]
        [--redis-url redis://127.0.0.1:6379/8] [--repeat 20] [--load] [--no-reads]

Run it on databases made by ``bench.scale_data`` (e.g. ``--rows 1000`` for "empty" and
``--rows 1000000``), each on its own; it prints the machine yardstick and a markdown table:

- ``/tail/log.txt`` build (``app.tail_log.build_tail_log``, 1,000 lines);
- the status figures (``monitoring.figures.database_figures``) and a ``/metrics`` scrape
  of the web app (the figures of the database and of Redis);
- the sweeper's pending query (``storage.reports.pending_page``), with 100 pending reports;
- processing those 100 reports in one batch (``storage.processing.process_reports``);
- a report page the viewer has not served before (a different stored report each time);
- the read API for a small distribution and for the largest (summary, release list, one
  release, uploads), in process (Flask test client), p50 / p99 of ``--repeat``;
- the largest distribution's full ``/v3/summary`` and the whole ``/v3/upload`` through a
  real gunicorn read-API process (one worker) over HTTP: time to first byte, total, µs
  per row (plain and gzip), and the worker's resident memory after them;
- the failure analysis of the largest release (its reports' facts parsed by the loader's
  ``--facts``).

With ``--load`` it then measures the Procfile's processes under load on the same
database (``bench.scale_load``): intake throughput and p99 (gunicorn + wrk), processing lag
at 200/s and a 10,000-report drain, a sweeper pass, and the resident memory of the web,
worker and sweeper processes (``--no-reads`` measures only that). It flushes the Redis
database of ``--redis-url``: give it one of your own.

The 100 reports it adds (and processes) stay in the database: a rerun measures 100 more
(``--load`` adds some 20,000: the intake's, the lag's and the drain's).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import sqlalchemy as sa

import settings
from app import create_app, create_read_api_app, create_viewer_app
from app.tail_log import build_tail_log
from bench.machine import yardstick
from bench.scale_data import LARGEST, MYSQL, database_url, use_server
from monitoring.figures import database_figures
from storage.engine import create_engine
from storage.failure_analysis import release_analysis
from storage.processing import process_reports
from storage.reports import pending_page, store_report
from tests.processes import wait_for_port
from tests.processing_helpers import report_row

ROOT = Path(__file__).resolve().parent.parent


def timed(work, repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` calls of ``work``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p50_p99(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):.1f} / {p99:.1f} ms"


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar()
            for table in ("cpanstats", "uploads", "release_summary", "test_report", "report_facts")
        }


def small_dist(engine: sa.Engine) -> tuple[str, str]:
    """A distribution with a handful of reports (the long tail), and its latest release."""
    with engine.connect() as conn:
        return tuple(
            conn.exec_driver_sql(
                "SELECT dist, MAX(version) FROM release_summary GROUP BY dist"
                " HAVING SUM(pass + fail + na + unknown) BETWEEN 3 AND 30 ORDER BY dist LIMIT 1"
            ).one()
        )


def largest_release(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return (
            conn.exec_driver_sql(
                "SELECT t.version FROM report_facts f JOIN test_report t ON t.id = f.report_id"
                f" WHERE t.dist = '{LARGEST}' GROUP BY t.version ORDER BY COUNT(*) DESC LIMIT 1"
            ).scalar()
            or conn.exec_driver_sql(
                f"SELECT version FROM release_summary WHERE dist = '{LARGEST}'"
                " GROUP BY version ORDER BY SUM(pass + fail + na + unknown) DESC LIMIT 1"
            ).scalar()
        )


def recent(engine: sa.Engine, dist: str) -> str:
    """30 days before the distribution's latest report, ISO 8601."""
    with engine.connect() as conn:
        latest = conn.execute(sa.text("SELECT MAX(fulldate) FROM cpanstats WHERE dist = :d"), {"d": dist}).scalar()
    return (datetime.strptime(latest, "%Y%m%d%H%M") - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


def http_list(port: int, path: str, gzip: bool = False) -> tuple[float, float, int]:
    """(ms to the first body byte, ms in all, bytes) of one GET over a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    first = response.read(1)
    ttfb = time.perf_counter() - started
    size = len(first) + len(response.read())
    total = time.perf_counter() - started
    conn.close()
    assert response.status == 200, (path, response.status)
    return ttfb * 1000, total * 1000, size


@contextlib.contextmanager
def read_api_process(url: str):
    """A gunicorn read-API process (one worker, the shipped config) on ``url``."""
    from tests.backends import free_port

    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "PORT": str(port), "HOST": "127.0.0.1", "READ_API_WORKERS": "1"}
    env.pop("READ_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn_readapi.conf.py", "wsgi_readapi:read_api"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def worker_rss(process: subprocess.Popen) -> float:
    children = psutil.Process(process.pid).children()
    return max(child.memory_info().rss for child in children) / 2**20


def measure(url: str, redis_url: str, repeat: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    engine = create_engine(url)
    size = counts(engine)
    with engine.connect() as conn:
        big_rows = conn.exec_driver_sql(f"SELECT COUNT(*) FROM cpanstats WHERE dist = '{LARGEST}'").scalar()
    rows.append(("rows: cpanstats / uploads / release_summary / test_report / report_facts",
                 " / ".join(f"{v:,}" for v in size.values())))  # fmt: skip
    rows.append((f"largest distribution ({LARGEST}) reports", f"{big_rows:,}"))

    config = settings.load(environ={}, DATABASE_URL=url, REDIS_URL=redis_url, OPS_LOGIN="off")
    rows.append(("`/tail/log.txt` build (1,000 lines)", p50_p99(timed(lambda: build_tail_log(engine, 1000), repeat))))
    now = time.time()
    rows.append(("status figures (database)", p50_p99(timed(lambda: database_figures(engine, now), repeat))))
    web = create_app(config)
    client = web.test_client()
    client.get("/metrics")
    rows.append(("`/metrics` scrape", p50_p99(timed(lambda: client.get("/metrics"), repeat))))

    created = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    pending = [report_row(dist="Scale-Bench", version=f"1.{n:03d}", created=created) for n in range(100)]
    for row in pending:
        store_report(engine, row)
    older_than = datetime.now(UTC).replace(tzinfo=None)

    def sweep():
        with engine.connect() as conn:
            assert len(pending_page(conn, older_than, 10_000)) >= 100

    rows.append(("sweeper pending query (100 pending)", p50_p99(timed(sweep, repeat))))
    started = time.perf_counter()
    with engine.begin() as conn:
        process_reports(conn, [r["guid"] for r in pending])
    rows.append(("processing 100 reports in one batch", f"{(time.perf_counter() - started) * 1000:.0f} ms"))

    viewer = create_viewer_app(config).test_client()
    with engine.connect() as conn:
        guids = list(
            conn.exec_driver_sql(
                f"SELECT guid FROM test_report WHERE MOD(id, 97) = 1 ORDER BY id DESC LIMIT {repeat * 5}"
            ).scalars()
        )
    unseen = iter(guids)

    def page():
        response = viewer.get(f"/cpan/report/{next(unseen)}")
        assert response.status_code == 200, response.status_code

    rows.append(("viewer page miss (a report not viewed before)", p50_p99(timed(page, len(guids)))))
    rows.append(("viewer report not found", p50_p99(timed(lambda: viewer.get(f"/cpan/report/{uuid.uuid4()}"), repeat))))

    api = create_read_api_app(config).test_client()
    small, small_version = small_dist(engine)
    with engine.connect() as conn:
        big_version = conn.exec_driver_sql(
            f"SELECT MAX(version) FROM release_summary WHERE dist = '{LARGEST}' AND version NOT LIKE '%%\\_%%'"
        ).scalar()
    for label, dist, version, times in (("small", small, small_version, repeat), ("largest", LARGEST, big_version, 5)):
        since = recent(engine, dist)
        for kind, path in (
            ("summary", f"/v3/summary/{dist}"),
            ("summary since (its last 30 days) + limit 100", f"/v3/summary/{dist}?since={since}&limit=100"),
            ("release list", f"/v3/release/dist/{dist}"),
            ("one release", f"/v3/release/dist/{dist}/{version}"),
            ("uploads", f"/v3/upload/dist/{dist}"),
        ):

            def get(path=path):
                response = api.get(path)
                assert response.status_code == 200, (path, response.status_code)
                response.get_data()

            get()
            rows.append((f"read API, {label} dist: {kind}", p50_p99(timed(get, times))))

    with read_api_process(url) as (port, process):
        http_list(port, f"/v3/summary/{LARGEST}")  # warm the process
        for label, path, count in (
            (f"`/v3/summary/{LARGEST}` over HTTP", f"/v3/summary/{LARGEST}", big_rows),
            ("`/v3/upload` (every upload) over HTTP", "/v3/upload", size["uploads"]),
        ):
            for gzip in (False, True):
                runs = [http_list(port, path, gzip) for _ in range(3)]
                ttfb, total, nbytes = min(runs, key=lambda r: r[1])
                rows.append((f"{label}{', gzip' if gzip else ''}: first byte / all / per row",
                             f"{ttfb:.0f} ms / {total:.0f} ms / {total * 1000 / count:.1f} µs ({nbytes / 2**20:.1f} MiB)"))  # fmt: skip
        rows.append(("read-API worker resident memory after them", f"{worker_rss(process):.0f} MiB"))

    version = largest_release(engine)
    with engine.connect() as conn:
        result = release_analysis(conn, LARGEST, version)
    if result["fail"] + result["pass"]:

        def analyse():
            with engine.connect() as conn:
                release_analysis(conn, LARGEST, version)

        rows.append((f"failure analysis of {LARGEST} {version} ({result['fail'] + result['pass']:,} PASS/FAIL reports"
                     " with facts)", p50_p99(timed(analyse, 3))))  # fmt: skip
    rows.append(("bench process resident memory", f"{psutil.Process().memory_info().rss / 2**20:.0f} MiB"))
    engine.dispose()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--mysql", default="127.0.0.1:3306:root", help="host:port:user of the server")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--load", action="store_true", help="also intake, processing and memory (bench.scale_load)")
    parser.add_argument("--no-reads", action="store_true", help="skip the per-question figures (with --load)")
    parser.add_argument("--connections", type=int, nargs="+", default=[16], help="intake's wrk connections")
    parser.add_argument("--intake-seconds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2, help="processing workers")
    parser.add_argument("--rate", type=float, default=200, help="reports/s offered in the lag phase")
    parser.add_argument("--lag-seconds", type=float, default=20)
    parser.add_argument("--drain", type=int, default=10_000, help="reports in the drained backlog")
    args = parser.parse_args(argv)
    use_server(args.mysql)
    logging.basicConfig(level=logging.WARNING)
    print(f"yardstick: {yardstick()}; load average {os.getloadavg()[0]:.1f}")
    print(f"database {args.database} on {MYSQL['host']}:{MYSQL['port']}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    url = database_url(args.database)
    rows = [] if args.no_reads else measure(url, args.redis_url, args.repeat)
    if args.load:
        from bench.scale_load import measure_load

        rows += measure_load(url, args.database, dict(MYSQL), args.redis_url, connections=args.connections,
                             intake_seconds=args.intake_seconds, workers=args.workers, rate=args.rate,
                             lag_seconds=args.lag_seconds, drain=args.drain)  # fmt: skip
    print(f"\nyardstick after: {yardstick()}; load average {os.getloadavg()[0]:.1f};"
          f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")  # fmt: skip
    print(markdown_table(rows))


def markdown_table(rows: list[tuple[str, str]]) -> str:
    """``rows`` of (figure, value) as a two-column markdown table."""
    lines = ["| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
