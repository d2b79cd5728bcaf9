"""Read-side benchmark: report pages and the read API through nginx, while submissions arrive.

    .venv/bin/python -m bench.viewer [--duration 20] [--rate 200] [--connections 64]

A fresh MariaDB database gets ``--reports`` stored reports (the real upstream sample's text
cut to 16 KB each, packed as the intake stores them) over 500 processed releases. The three
gunicorn groups of the Procfile (web, viewer, readapi) run behind nginx with the shipped
site (``deploy/nginx/cpantesters.conf``, through ``scripts/local_nginx.py``); every request
of the benchmark, submissions included, goes through nginx. The phases:

1. submissions alone: the real captured submission (fresh GUID each) at ``--rate`` per
   second, open loop, from a pool of keep-alive client threads;
2. cold cache: pages only, every one a report never viewed before (all misses);
3. pages only, over the working set viewed before (all from nginx's cache);
4. pages and read API: wrk at ``--connections`` on pages, closed loop: 80 % over a working
   set of ``--working-set`` reports viewed before, 20 % (``--miss-share``) to reports never
   viewed before; at the same time a second wrk at ``--api-connections`` on the read API,
   six kinds of question (:func:`api_paths`) about each of the 500 dists, at random;
5. the same with submissions at ``--rate`` alongside.

Before phase 3 every page of the working set is viewed once (so it is in nginx's cache).
Prints, per phase: pages/s, p50/p99, the cache hit ratio (``X-Cache-Status``: HIT, or STALE
/ UPDATING / REVALIDATED, answered from the cache), the read API's answers/s, p99 and hit
ratio, and the submissions' throughput against phase 1.
Needs wrk, nginx, MariaDB and Redis on 127.0.0.1; uses Redis DB ``BENCH_REDIS_DB`` (default 5).
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
from scripts import local_nginx  # noqa: E402
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
DISTS = 500
REPORT_TEXT_BYTES = 16_000
"""Report text kept per stored report (the real client's capture is a 19 KB submission)."""
SUBMIT_PATH = "/api/v1/submit/CPAN-Testers-Report"
SETTLE_SECONDS = 15
FROM_CACHE = ("HIT", "STALE", "UPDATING", "REVALIDATED")
"""X-Cache-Status values of answers nginx gave from its cache."""

WRK_LUA = """
-- args: working-set file, never-viewed file, share of requests to never-viewed reports.
-- Each wrk thread takes its own slice of the never-viewed reports, in order, so each is
-- asked for once (past the end of its slice a thread adds ?n=N: still a miss).
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  seen, fresh, next_fresh, n = {}, {}, 1, 0
  for line in io.lines(args[1]) do seen[#seen + 1] = line end
  local i = 0
  for line in io.lines(args[2]) do
    if i % 2 == id then fresh[#fresh + 1] = line end
    i = i + 1
  end
  share = tonumber(args[3])
  math.randomseed(os.time() + id)
  from_cache, total = 0, 0
end
function request()
  local path
  if #fresh > 0 and math.random() < share then
    path = fresh[(next_fresh - 1) % #fresh + 1]
    if next_fresh > #fresh then n = n + 1; path = path .. "?n=" .. n end
    next_fresh = next_fresh + 1
  else
    path = seen[math.random(#seen)]
  end
  return wrk.format("GET", path, {["Accept-Encoding"] = "gzip"})
end
function response(status, headers, body)
  local c = headers["X-Cache-Status"]
  if c == "HIT" or c == "STALE" or c == "UPDATING" or c == "REVALIDATED" then from_cache = from_cache + 1 end
  total = total + 1
end
function done(summary, latency, requests)
  local cached, counted = 0, 0
  for _, t in ipairs(threads) do
    cached = cached + t:get("from_cache")
    counted = counted + t:get("total")
  end
  io.write(string.format("JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"max_us\\": %d, \\"errors\\": %d, \\"status_errors\\": %d, \\"timeouts\\": %d, "
    .. "\\"from_cache\\": %d, \\"counted\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.status,
    summary.errors.timeout, cached, counted))
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


def seed(url: str, reports: int) -> tuple[list[str], list[str]]:
    """``reports`` stored reports over 500 dists, with their processed rows; returns GUIDs, dists."""
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
    for n in range(reports):
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
        if len(batch) == 500 or n == reports - 1:
            with engine.begin() as conn:
                insert_reports(conn, batch)  # packed, as the intake stores them
                conn.execute(cpanstats.insert(), stats)
            batch, stats = [], []
    with engine.begin() as conn:
        conn.execute(
            release_summary.insert(),
            [
                {"dist": d, "version": "1.0", "id": i, "guid": guids[i], "oncpan": 1, "distmat": 1, "perlmat": 1,
                 "patched": 1, "pass": reports // DISTS, "fail": 0, "na": 0, "unknown": 0, "uploadid": upload_ids[d]}
                for i, d in enumerate(dist_names)
            ],
        )  # fmt: skip
    for guid, secret in TESTERS:
        users.register(engine, guid, f"Bench Tester {guid[-2:]}", "bench@example.com", secret)
    engine.dispose()
    return guids, dist_names


TESTERS = [(f"b0aabbe1-0000-4000-8000-{n:012d}", f"bench-secret-{n}") for n in range(64)]
"""The profiles the submissions come from, in turn. nginx paces each tester at 10
submissions/s (``limit_req``, deploy/nginx/cpantesters.conf): 200/s from one profile would
measure that pace, not the server. 64 testers send ~3/s each."""


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
        self.sent = 0
        self.headers = {
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

    def _payload(self) -> tuple[bytes, dict]:
        """A fresh report from the next tester in turn, and its request headers."""
        guid, secret = TESTERS[self.sent % len(TESTERS)]
        self.sent += 1
        core = self.body["metadata"]["core"]
        core["guid"], core["creator"] = str(uuid.uuid4()), f"metabase:user:{guid}"
        token = base64.b64encode(f"{guid}:{secret}".encode()).decode()
        return json.dumps(self.body).encode(), {**self.headers, "Authorization": f"Basic {token}"}

    def _worker(self) -> None:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=30)
        while True:
            item = self.todo.get()
            if item is None:
                return
            due, (payload, headers) = item
            if time.perf_counter() > self.window_end:
                with self.lock:
                    self.unsent += 1
                continue
            try:
                conn.request("POST", SUBMIT_PATH, body=payload, headers=headers)
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


def run_wrk(port: int, seen: Path, fresh: Path, share: float, connections: int, duration: int, script: Path) -> dict:
    """wrk (closed loop) through nginx; latency percentiles and the share answered from cache."""
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
         "-s", str(script), f"http://127.0.0.1:{port}", "--", str(seen), str(fresh), str(share)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    figures = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))
    return {
        "requests_per_s": round(figures["requests"] / (figures["duration_us"] / 1e6), 1),
        "p50_ms": round(figures["p50_us"] / 1000, 1),
        "p99_ms": round(figures["p99_us"] / 1000, 1),
        "max_ms": round(figures["max_us"] / 1000, 1),
        "hit_ratio": round(figures["from_cache"] / max(figures["counted"], 1), 3),
        "socket_errors": figures["errors"],
        "non_2xx": figures["status_errors"],
        "timeouts": figures["timeouts"],
    }


def api_paths(dist: str) -> list[str]:
    """The read-API questions asked about one dist (MetaCPAN's and the sites' kinds)."""
    return [
        f"/v3/release/dist/{dist}",
        f"/v3/release/dist/{dist}/1.0",
        f"/v3/summary/{dist}",
        f"/v3/summary/{dist}/1.0",
        f"/v3/summary/{dist}?grade=pass",
        f"/v3/upload/dist/{dist}",
    ]


def view_each(port: int, paths: list[str], threads: int = 16) -> None:
    """View every page of ``paths`` once (gzip accepted, as wrk asks), ``threads`` at a time."""
    todo: queue.Queue = queue.Queue()
    for path in paths:
        todo.put(path)

    def viewer() -> None:
        conn = HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                return
            conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
            conn.getresponse().read()

    workers = [threading.Thread(target=viewer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


class Workload:
    """The path files of the phases: the working set, and a fresh slice of never-viewed
    reports for each phase (so a miss is a report nobody asked for before)."""

    def __init__(self, folder: Path, guids: list[str], dists: list[str], working_set: int):
        self.folder = folder
        shuffled = random.sample(guids, len(guids))
        self.seen = self._write("seen.txt", [f"/cpan/report/{g}" for g in shuffled[:working_set]])
        self.never_viewed = [f"/cpan/report/{g}" for g in shuffled[working_set:]]
        self.phases = 0
        self.api = self._write("api.txt", [path for dist in dists for path in api_paths(dist)])
        self.empty = self._write("empty.txt", [])

    def _write(self, name: str, lines: list[str]) -> Path:
        path = self.folder / name
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def fresh(self, phases: int = 4) -> Path:
        """The next of ``phases`` equal slices of the never-viewed reports."""
        size = len(self.never_viewed) // phases
        part = self.never_viewed[self.phases * size : (self.phases + 1) * size]
        self.phases += 1
        return self._write(f"fresh-{self.phases}.txt", part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--rate", type=int, default=200, help="submissions per second")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections on report pages")
    parser.add_argument("--api-connections", type=int, default=8, help="wrk connections on the read API")
    parser.add_argument("--reports", type=int, default=40_000, help="stored reports")
    parser.add_argument("--working-set", type=int, default=2000, help="reports viewed before the measured phases")
    parser.add_argument("--miss-share", type=float, default=0.2, help="share of page views to never-viewed reports")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--viewer-workers", type=int, default=2)
    parser.add_argument("--readapi-workers", type=int, default=0, help="0: the config's default (one per core)")
    parser.add_argument("--nginx-workers", type=int, default=2)
    parser.add_argument("--viewer-nice", type=int, default=None, help="VIEWER_NICE (default: the config's)")
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
        guids, dists = seed(url, args.reports)
        print(f"seeded {len(guids)} reports and {len(dists)} releases in {time.perf_counter() - t0:.1f}s")
        time.sleep(SETTLE_SECONDS)  # let the database write back the seed before measuring
        work = Workload(tmp, guids, dists, args.working_set)
        script = tmp / "paths.lua"
        script.write_text(WRK_LUA)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(
            DATABASE_URL=url,
            REDIS_URL=redis_url,
            SPOOL_DIR=str(tmp / "spool"),
            LOG_LEVEL="WARNING",
            WEB_CONCURRENCY=str(args.web_workers),
            VIEWER_WORKERS=str(args.viewer_workers),
            READ_API_WORKERS=str(args.readapi_workers),
        )
        if args.viewer_nice is not None:
            env["VIEWER_NICE"] = str(args.viewer_nice)
        ports = {}
        for group, conf, app in (
            ("web", "gunicorn.conf.py", "wsgi:app"),
            ("viewer", "gunicorn_viewer.conf.py", "wsgi_viewer:viewer"),
            ("readapi", "gunicorn_readapi.conf.py", "wsgi_readapi:read_api"),
        ):
            process, ports[group] = start_gunicorn(conf, app, env, tmp / f"{group}.log")
            processes.append(process)
        port = free_port()
        nginx = local_nginx.start(tmp / "nginx", port, ports, workers=args.nginx_workers)
        print(
            f"machine: {os.cpu_count()} cores (shared), {speed}, {mariadb_settings()}; through nginx "
            f"({args.nginx_workers} workers): web {args.web_workers} sync workers, viewer {args.viewer_workers} "
            f"(nice {env.get('VIEWER_NICE', 'default')}) and readapi {args.readapi_workers or os.cpu_count()} gthread workers; "
            f"{args.duration}s per phase"
        )
        Submitter(port, 20, 1).run()  # warm the web workers (imports, connections)
        results: dict = {}
        results["submissions alone"] = {"submit": Submitter(port, args.rate, args.duration).run()}
        time.sleep(2)
        results["cold cache (every page a miss)"] = {
            "pages": run_wrk(port, work.seen, work.fresh(), 1.0, args.connections, args.duration, script)
        }
        time.sleep(2)
        view_each(port, work.seen.read_text().split())  # the working set: now in nginx's cache
        results["pages viewed before (all from the cache)"] = {
            "pages": run_wrk(port, work.seen, work.empty, 0.0, args.connections, args.duration, script)
        }
        time.sleep(2)
        results["pages + read API"] = _read_phase(port, work, script, args)
        time.sleep(2)
        both: dict = {}
        reader = threading.Thread(target=lambda: both.update(_read_phase(port, work, script, args)))
        reader.start()
        time.sleep(0.5)
        both["submit"] = Submitter(port, args.rate, args.duration - 1.0).run()
        reader.join()
        results["pages + read API + submissions"] = both
        local_nginx.stop(nginx)
        print(json.dumps(results, indent=2))
        _summary(results, args)
    finally:
        for process in reversed(processes):
            stop(process)
        drop_database(name)
        redis.Redis.from_url(redis_url).flushdb()


def _read_phase(port: int, work: Workload, script: Path, args) -> dict:
    """Pages (working set plus never-viewed) with the read API alongside, both wrk."""
    result: dict = {}
    api = threading.Thread(
        target=lambda: result.update(
            read_api=run_wrk(port, work.api, work.empty, 0.0, args.api_connections, args.duration, script)
        )
    )
    api.start()
    result["pages"] = run_wrk(port, work.seen, work.fresh(), args.miss_share, args.connections, args.duration, script)
    api.join()
    return result


def _summary(results: dict, args) -> None:
    alone = results["submissions alone"]["submit"]["accepted_per_s"]
    print()
    for phase, figures in results.items():
        parts = [phase + ":"]
        if "pages" in figures:
            pages = figures["pages"]
            parts.append(
                f"pages {pages['requests_per_s']}/s p50 {pages['p50_ms']} ms p99 {pages['p99_ms']} ms "
                f"(target < 20) hit ratio {pages['hit_ratio']:.0%}"
            )
        if "read_api" in figures:
            api = figures["read_api"]
            parts.append(
                f"read API {api['requests_per_s']}/s (target >= 200) p99 {api['p99_ms']} ms (target < 250) "
                f"hit ratio {api['hit_ratio']:.0%}"
            )
        if "submit" in figures:
            submit = figures["submit"]
            kept = submit["accepted_per_s"] / alone * 100 if alone else 0
            parts.append(
                f"submissions {submit['accepted_per_s']}/s ({kept:.0f}% of alone, target >= 90%), "
                f"failures {submit['failures']}"
            )
        print("; ".join(parts))


if __name__ == "__main__":
    main()
