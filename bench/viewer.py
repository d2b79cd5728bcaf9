"""Viewer benchmark: report pages and the read API under load while submissions arrive.

    .venv/bin/python -m bench.viewer [--duration 20] [--rate 200] [--connections 64]

With 10,000 stored reports (the real upstream sample's text cut to 16 KB each, packed as
the intake stores them) and 500 processed releases in a fresh MariaDB database, the intake
(``web``) and the viewer (``viewer``) run as their own gunicorn groups, as in the
Procfile. The phases:

1. submissions alone: the real captured submission (fresh GUID each) at ``--rate`` per
   second, open loop, from a pool of keep-alive client threads;
2. the viewer alone: wrk at ``--connections`` on existing GUIDs (gzip accepted), plus a
   second wrk at ``--api-connections`` (8) on the read API with existing dists;
3. both at once;
4. and 5. (unless ``--open-rate 0``) phases 2 and 3 again with the pages offered open
   loop at ``--open-rate`` per second over the same connections (``bench.viewer_open_loop``:
   latency counted from when each request was due, as wrk2 does).

Before measuring, ``--warm`` seconds of page load fill the viewer's page caches, so the
phases measure the steady state. Prints viewer p50/p99, read-API p99, submission
throughput and failures for each phase.
Needs wrk, MariaDB and Redis on 127.0.0.1; uses Redis DB ``BENCH_REDIS_DB`` (default 5).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path

import pymysql
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intake import MYSQL, fresh_database  # noqa: E402
from bench.machine import yardstick  # noqa: E402
from schemas.translate import index_columns  # noqa: E402
from storage import users  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.reports import insert_reports  # noqa: E402
from storage.tables import cpanstats, perl_version, release_summary, uploads  # noqa: E402
from tests import captures  # noqa: E402
from tests.backends import free_port  # noqa: E402
from tests.processes import wait_for_port  # noqa: E402
from tests.viewer_helpers import sample_document  # noqa: E402

REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "5"))
REPORTS = 10_000
DISTS = 500
REPORT_TEXT_BYTES = 16_000
"""Report text kept per stored report (the real client's capture is a 19 KB submission)."""
SUBMIT_PATH = "/api/v1/submit/CPAN-Testers-Report"
SETTLE_SECONDS = 15

VIEWER_LUA = """
local paths = {}
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(os.time() + (id or 0))
end
function request()
  return wrk.format("GET", paths[math.random(#paths)], {["Accept-Encoding"] = "gzip"})
end
function done(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"max_us\\": %d, \\"errors\\": %d, \\"status_errors\\": %d, \\"timeouts\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
"""


def mariadb_settings() -> str:
    """The server settings that decide whether MariaDB stalls after a burst of writes
    (printed beside the figures: a stall of all reads for ~3 s was seen on the defaults)."""
    conn = pymysql.connect(**MYSQL)
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@innodb_buffer_pool_size, @@innodb_log_file_size, @@innodb_io_capacity")
        pool, log, io = cursor.fetchone()
    conn.close()
    return f"MariaDB buffer pool {pool >> 20} MiB, redo log {log >> 20} MiB, io_capacity {io}"


def drop_database(name: str) -> None:
    conn = pymysql.connect(**MYSQL)
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def seed(url: str) -> tuple[list[str], list[str]]:
    """10,000 stored reports over 500 dists, with their processed rows; returns GUIDs, dists."""
    engine = create_engine(url)
    base = sample_document()
    text = base["result"]["output"]["uncategorized"]
    base["result"]["output"]["uncategorized"] = text[:REPORT_TEXT_BYTES]
    start = datetime(2026, 1, 1)
    guids, dist_names = [], [f"Bench-Dist-{i}" for i in range(DISTS)]
    with engine.begin() as conn:
        conn.execute(perl_version.insert(), [{"version": "5.40.0", "perl": "5.40.0"}])
        conn.execute(
            uploads.insert(),
            [
                {"type": "cpan", "author": f"AUTHOR{i % 97}", "dist": d, "version": "1.0",
                 "filename": f"{d}-1.0.tar.gz", "released": 1_760_000_000 + i}
                for i, d in enumerate(dist_names)
            ],
        )  # fmt: skip
        upload_ids = dict(conn.execute(uploads.select().with_only_columns(uploads.c.dist, uploads.c.uploadid)).all())
    batch: list[dict] = []
    stats: list[dict] = []
    for n in range(REPORTS):
        dist = dist_names[n % DISTS]
        doc = json.loads(json.dumps(base))
        doc["id"] = str(uuid.uuid4())
        created = start + timedelta(seconds=n * 60)
        doc["created"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        doc["distribution"] = {"name": dist, "version": "1.0", "path": f"AUTHOR{n % DISTS % 97}/{dist}-1.0.tar.gz"}
        doc["environment"]["language"]["version"] = "5.40.0"
        guids.append(doc["id"])
        batch.append(
            {"guid": doc["id"], "created": created, "state": "done", "creator": None,
             "submission_sha256": uuid.uuid4().hex * 2, "report": doc, **index_columns(doc)}
        )  # fmt: skip
        stats.append(
            {"guid": doc["id"], "state": "pass", "postdate": 202601, "tester": '"Doug Bell" <doug@example.com>',
             "dist": dist, "version": "1.0", "platform": "x86_64-linux", "perl": "5.40.0", "osname": "linux",
             "osvers": "6.1", "fulldate": created.strftime("%Y%m%d%H%M"), "type": 2, "uploadid": upload_ids[dist]}
        )  # fmt: skip
        if len(batch) == 500:
            with engine.begin() as conn:
                insert_reports(conn, batch)  # packed, as the intake stores them
                conn.execute(cpanstats.insert(), stats)
            batch, stats = [], []
    with engine.begin() as conn:
        conn.execute(
            release_summary.insert(),
            [
                {"dist": d, "version": "1.0", "id": i, "guid": guids[i], "oncpan": 1, "distmat": 1, "perlmat": 1,
                 "patched": 1, "pass": REPORTS // DISTS, "fail": 0, "na": 0, "unknown": 0, "uploadid": upload_ids[d]}
                for i, d in enumerate(dist_names)
            ],
        )  # fmt: skip
    users.register(engine, captures.PROFILE_GUID, "Bench Tester", "bench@example.com", captures.PROFILE_SECRET)
    engine.dispose()
    return guids, dist_names


def start_gunicorn(conf: str, app: str, env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", conf, app],
        cwd=ROOT,
        env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
        stdout=open(log, "wb"),  # noqa: SIM115 - lives as long as the process
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port)
    return process, port


def cpu_seconds(master_pid: int) -> float:
    """User+system CPU of a gunicorn master and its workers (contention-independent cost)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == master_pid or ppid == master_pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


class Submitter:
    """Open-loop submissions at a fixed rate from keep-alive client threads, for a fixed window.

    Throughput counts the ``201``s completed inside the window; submissions still waiting
    for a free client thread when the window closes are not sent (``unsent``): a server that
    cannot keep up shows as a lower rate, not as a longer run.
    """

    def __init__(self, port: int, rate: int, duration: float, threads: int = 48):
        self.port, self.rate, self.duration, self.threads = port, rate, duration, threads
        recorded = captures.load("01-ok")[0]
        self.body = json.loads(recorded.body)
        token = base64.b64encode(f"{captures.PROFILE_GUID}:{captures.PROFILE_SECRET}".encode()).decode()
        self.headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/octet-stream",
            "Content_Type": "application/json",
            "Accept": "application/json",
        }
        self.done: list[tuple[float, float]] = []  # (finished at, latency)
        self.failures: list[str] = []
        self.unsent = 0
        self.lock = threading.Lock()
        self.todo: queue.Queue = queue.Queue()
        self.window_end = float("inf")

    def _payload(self) -> bytes:
        self.body["metadata"]["core"]["guid"] = str(uuid.uuid4())
        return json.dumps(self.body).encode()

    def _worker(self) -> None:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=30)
        while True:
            item = self.todo.get()
            if item is None:
                return
            due, payload = item
            if time.perf_counter() > self.window_end:
                with self.lock:
                    self.unsent += 1
                continue
            try:
                conn.request("POST", SUBMIT_PATH, body=payload, headers=self.headers)
                response = conn.getresponse()
                response.read()
                outcome = None if response.status == 201 else f"status {response.status}"
            except Exception as exc:  # a failure to report, not to hide
                outcome = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = HTTPConnection("127.0.0.1", self.port, timeout=30)
            finished = time.perf_counter()
            with self.lock:
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.done.append((finished, finished - due))

    def run(self) -> dict:
        workers = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        payloads = [self._payload() for _ in range(int(self.rate * self.duration))]
        started = time.perf_counter()
        self.window_end = started + self.duration
        for n, payload in enumerate(payloads):
            due = started + n / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.todo.put((due, payload))  # latency counts from when it was due (no coordinated omission)
        for _ in workers:
            self.todo.put(None)
        for w in workers:
            w.join()
        in_window = sorted(lat for finished, lat in self.done if finished <= self.window_end)
        every = sorted(lat for _, lat in self.done)
        return {
            "offered_per_s": self.rate,
            "accepted_in_window": len(in_window),
            "accepted_per_s": round(len(in_window) / self.duration, 1),
            "accepted_after_window": len(every) - len(in_window),
            "unsent": self.unsent,
            "failures": len(self.failures),
            "failure_kinds": sorted(set(self.failures))[:5],
            "p50_ms": round(every[len(every) // 2] * 1000, 1) if every else None,
            "p99_ms": round(every[int(len(every) * 0.99)] * 1000, 1) if every else None,
        }


def run_wrk(port: int, paths_file: str, connections: int, duration: int, script: str) -> dict:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
         "-s", script, f"http://127.0.0.1:{port}", "--", paths_file],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    figures = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))
    return {
        "requests_per_s": round(figures["requests"] / (figures["duration_us"] / 1e6), 1),
        "p50_ms": round(figures["p50_us"] / 1000, 1),
        "p99_ms": round(figures["p99_us"] / 1000, 1),
        "max_ms": round(figures["max_us"] / 1000, 1),
        "socket_errors": figures["errors"],
        "non_2xx": figures["status_errors"],
        "timeouts": figures["timeouts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--rate", type=int, default=200, help="submissions per second")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections on report pages")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--viewer-workers", type=int, default=2)
    parser.add_argument("--viewer-threads", type=int, default=None, help="VIEWER_THREADS (default: the config's)")
    parser.add_argument(
        "--viewer-api-processes", type=int, default=None, help="VIEWER_API_PROCESSES (default: the config's)"
    )
    parser.add_argument("--viewer-api-nice", type=int, default=None, help="VIEWER_API_NICE (default: the config's)")
    parser.add_argument("--viewer-nice", type=int, default=None, help="VIEWER_NICE (default: the config's)")
    parser.add_argument(
        "--open-rate", type=int, default=1000, help="pages per second of the open-loop phases (0: skip them)"
    )
    parser.add_argument(
        "--api-connections", type=int, default=8, help="wrk connections on the read API alongside (0: none)"
    )
    parser.add_argument("--warm", type=int, default=10, help="seconds of page load before measuring")
    args = parser.parse_args()
    speed = yardstick()  # before seeding: MariaDB writes the seed back for a while after it

    name = f"cpt_bench_viewer_{uuid.uuid4().hex[:6]}"
    url = fresh_database(name)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    processes: list[subprocess.Popen] = []
    try:
        upgrade(url)
        t0 = time.perf_counter()
        guids, dists = seed(url)
        print(f"seeded {len(guids)} reports and {len(dists)} releases in {time.perf_counter() - t0:.1f}s")
        time.sleep(SETTLE_SECONDS)  # let the database write back the seed before measuring
        pages = tmp / "pages.txt"
        pages.write_text("\n".join(f"/cpan/report/{g}" for g in random.sample(guids, 2000)) + "\n")
        api = tmp / "api.txt"
        api.write_text(
            "\n".join(p for d in random.sample(dists, 200) for p in (f"/v3/release/dist/{d}", f"/v3/summary/{d}/1.0"))
            + "\n"
        )
        script = tmp / "paths.lua"
        script.write_text(VIEWER_LUA)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(
            DATABASE_URL=url,
            REDIS_URL=redis_url,
            SPOOL_DIR=str(tmp / "spool"),
            LOG_LEVEL="WARNING",
            WEB_CONCURRENCY=str(args.web_workers),
            VIEWER_WORKERS=str(args.viewer_workers),
        )
        if args.viewer_nice is not None:
            env["VIEWER_NICE"] = str(args.viewer_nice)
        if args.viewer_threads is not None:
            env["VIEWER_THREADS"] = str(args.viewer_threads)
        if args.viewer_api_processes is not None:
            env["VIEWER_API_PROCESSES"] = str(args.viewer_api_processes)
        if args.viewer_api_nice is not None:
            env["VIEWER_API_NICE"] = str(args.viewer_api_nice)
        web, web_port = start_gunicorn("gunicorn.conf.py", "wsgi:app", env, tmp / "web.log")
        processes.append(web)
        viewer, viewer_port = start_gunicorn("gunicorn_viewer.conf.py", "wsgi_viewer:viewer", env, tmp / "viewer.log")
        processes.append(viewer)
        print(
            f"machine: {os.cpu_count()} cores (shared), {speed}, {mariadb_settings()}; "
            f"web: {args.web_workers} sync workers; viewer: "
            f"{args.viewer_workers} uvicorn workers, {env.get('VIEWER_THREADS', 'the default')} route threads "
            f"and {env.get('VIEWER_API_PROCESSES', 'the default')} read-API processes "
            f"(nice {env.get('VIEWER_API_NICE', 'default')}) each; "
            f"{args.duration}s per phase"
        )
        # warm both apps (imports, connection pools) and the viewer's page caches: the
        # phases measure the steady state, every page of the set rendered in both workers
        run_wrk(viewer_port, str(pages), 16, args.warm, str(script))
        Submitter(web_port, 20, 1).run()

        results: dict = {}
        cpu = cpu_seconds(web.pid)
        submit = Submitter(web_port, args.rate, args.duration).run()
        served = submit["accepted_in_window"] + submit["accepted_after_window"]
        submit["web_cpu_ms_per_submission"] = round((cpu_seconds(web.pid) - cpu) * 1000 / max(served, 1), 2)
        results["submissions alone"] = {"submit": submit}
        time.sleep(2)
        cpu = cpu_seconds(viewer.pid)
        results["viewer alone"] = _viewer_phase(viewer_port, pages, api, script, args)
        answered = sum(r["requests_per_s"] for r in results["viewer alone"].values()) * args.duration
        results["viewer alone"]["viewer_cpu_ms_per_request"] = round(
            (cpu_seconds(viewer.pid) - cpu) * 1000 / max(answered, 1), 2
        )
        time.sleep(2)
        # service time without queueing: a few connections only
        results["viewer at 4 connections"] = {"pages": run_wrk(viewer_port, str(pages), 4, 10, str(script))}
        time.sleep(2)
        results["both"] = _with_submissions(web_port, viewer_port, pages, api, script, args)
        if args.open_rate:
            time.sleep(2)
            results["open loop alone"] = _viewer_phase(viewer_port, pages, api, script, args, open_loop=True)
            time.sleep(2)
            results["open loop with submissions"] = _with_submissions(
                web_port, viewer_port, pages, api, script, args, open_loop=True
            )
        print(json.dumps(results, indent=2))
        alone, loaded = results["submissions alone"]["submit"], results["both"]["submit"]
        kept = loaded["accepted_per_s"] / alone["accepted_per_s"] * 100 if alone["accepted_per_s"] else 0
        print(
            f"\nviewer p99: {results['viewer alone']['pages']['p99_ms']} ms alone, "
            f"{results['both']['pages']['p99_ms']} ms with submissions; "
            f"submissions: {alone['accepted_per_s']}/s alone, {loaded['accepted_per_s']}/s with viewer load "
            f"({kept:.0f}%), failures {alone['failures']} / {loaded['failures']}; CPU per viewer request "
            f"{results['viewer alone']['viewer_cpu_ms_per_request']} ms, per submission "
            f"{alone['web_cpu_ms_per_submission']} ms"
        )
        if args.open_rate:
            opened = results["open loop with submissions"]["submit"]
            print(
                f"open loop at {args.open_rate} pages/s over {args.connections} connections: viewer p99 "
                f"{results['open loop alone']['pages']['p99_ms']} ms alone, "
                f"{results['open loop with submissions']['pages']['p99_ms']} ms with submissions "
                f"({opened['accepted_per_s']}/s, "
                f"{opened['accepted_per_s'] / alone['accepted_per_s'] * 100 if alone['accepted_per_s'] else 0:.0f}%)"
            )
    finally:
        for process in reversed(processes):
            stop(process)
        drop_database(name)
        redis.Redis.from_url(redis_url).flushdb()


def _with_submissions(web_port: int, viewer_port: int, pages: Path, api: Path, script: Path, args, open_loop=False):
    """A viewer phase (:func:`_viewer_phase`) with submissions at ``--rate`` running
    alongside; the submissions' figures under ``"submit"``."""
    both: dict = {}
    viewer_thread = threading.Thread(
        target=lambda: both.update(_viewer_phase(viewer_port, pages, api, script, args, open_loop=open_loop))
    )
    viewer_thread.start()
    time.sleep(0.5)
    both["submit"] = Submitter(web_port, args.rate, args.duration - 1.0).run()
    viewer_thread.join()
    return both


def run_open_loop(port: int, paths_file: str, rate: int, connections: int, duration: int) -> dict:
    """``bench.viewer_open_loop`` in its own process: pages due at ``rate`` per second."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.viewer_open_loop", str(port), paths_file, str(rate), str(duration),
         str(connections)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def _viewer_phase(port: int, pages: Path, api: Path, script: Path, args, open_loop: bool = False) -> dict:
    """Pages (wrk's closed loop, or the open loop at ``--open-rate``) with the read API
    under wrk at ``--api-connections`` alongside."""
    result: dict = {}
    api_thread = threading.Thread(
        target=lambda: (
            args.api_connections
            and result.update(read_api=run_wrk(port, str(api), args.api_connections, args.duration, str(script)))
        )
    )
    api_thread.start()
    if open_loop:
        result["pages"] = run_open_loop(port, str(pages), args.open_rate, args.connections, args.duration)
    else:
        result["pages"] = run_wrk(port, str(pages), args.connections, args.duration, str(script))
    api_thread.join()
    return result


if __name__ == "__main__":
    main()
