"""Fairness under a flood: nine testers at 5/s each while a tenth submits at full speed.

    .venv/bin/python -m bench.flood [--duration 30] [--flood-connections 24 32] [--servers private]

The web app (gunicorn, ``--web-workers``) behind nginx with the shipped site
(``deploy/nginx/cpantesters.conf``, through ``scripts/local_nginx.py``), and a second nginx
with the same site less its per-tester ``limit_req`` lines (to show what the limit does).
Ten testers are registered, each with its own profile and secret. Every submission is the
real captured report under its tester's GUID (a fresh report GUID each).

Each tester sends from its own loopback address, as testers send from their own hosts (all
from one address, the per-address ``limit_conn`` of 64 refuses the nine's 36 connections
and the flooder's 32 together once answers slow down).

- **the nine**: each sends 5 submissions/s, open loop (latency counted from when a
  submission was due, so a slow answer does not slow the rate), from keep-alive threads;
- **the flooder**: ``N`` keep-alive connections, closed loop, each sending the next
  submission as soon as the last is answered.

For each ``N`` of ``--flood-connections`` the phases run in the order alone, flood with the
limit, flood without it, then the same in reverse (ABCCBA), ``--rounds`` times, so that a
drift of the machine over the run weighs on every kind alike; each kind's figures are the
medians over its phases (a neighbour's burst of load on a shared machine lands in one phase
and moves a median less than a mean). Prints, per phase and per kind: the nine's p50/p99 and non-2xx, the flooder's rate
and non-2xx, and the nine's p99 with a flood over their p99 alone (target <= 1.2).
No workers run: the measure is the intake (reports wait in the queue).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.client import HTTPConnection
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import yardstick  # noqa: E402
from bench.private_servers import add_servers_option, bench_servers, database  # noqa: E402
from bench.viewer import start_gunicorn, stop  # noqa: E402
from scripts import local_nginx  # noqa: E402
from storage import users  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests import captures  # noqa: E402
from tests.backends import free_port  # noqa: E402

REDIS_DB = int(os.environ.get("BENCH_REDIS_DB") or os.environ.get("CPT_TEST_REDIS_DB") or "7")
SUBMIT_PATH = "/api/v1/submit/CPAN-Testers-Report"
TESTERS = 9
RATE_EACH = 5.0
SETTLE_SECONDS = 3.0
"""Between phases: the flooder's last answers and the limit's queue drain."""


class Tester:
    """One profile's credentials, its own client address (127.0.1.<number + 1>: testers send
    from their own hosts, each under nginx's per-address connection limit) and a maker of
    its submissions (fresh report GUID each)."""

    def __init__(self, number: int):
        self.address = f"127.0.1.{number + 1}"
        self.guid = f"f100d000-0000-4000-8000-{number:012d}"
        self.secret = f"flood-secret-{number}"
        recorded = json.loads(captures.load("01-ok")[0].body)
        recorded["metadata"]["core"]["creator"] = f"metabase:user:{self.guid}"
        self.body = recorded
        token = base64.b64encode(f"{self.guid}:{self.secret}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/octet-stream",
                        "Content_Type": "application/json", "Accept": "application/json"}  # fmt: skip
        self.lock = threading.Lock()

    def connect(self, port: int) -> HTTPConnection:
        return HTTPConnection("127.0.0.1", port, timeout=120, source_address=(self.address, 0))

    def payload(self) -> bytes:
        with self.lock:
            self.body["metadata"]["core"]["guid"] = str(uuid.uuid4())
            return json.dumps(self.body).encode()


def _post(conn: HTTPConnection, tester: Tester, port: int) -> tuple[HTTPConnection, int | str]:
    """One submission on ``conn`` (a new connection after a failure); its status or error."""
    try:
        conn.request("POST", SUBMIT_PATH, body=tester.payload(), headers=tester.headers)
        response = conn.getresponse()
        response.read()
        return conn, response.status
    except Exception as exc:  # a failure to count, not to hide
        conn.close()
        return tester.connect(port), type(exc).__name__


class Steady:
    """The nine: each tester at ``RATE_EACH``/s, open loop, until ``end``."""

    def __init__(self, port: int, testers: list[Tester], end: float, threads_each: int = 4):
        self.port, self.testers, self.end = port, testers, end
        self.latencies: list[float] = []
        self.other: list[int | str] = []
        self.lock = threading.Lock()
        self.queues = [queue.Queue() for _ in testers]
        self.threads = [
            threading.Thread(target=self._sender, args=(tester, todo), daemon=True)
            for tester, todo in zip(testers, self.queues, strict=True)
            for _ in range(threads_each)
        ]
        self.threads_each = threads_each

    def _sender(self, tester: Tester, todo: queue.Queue) -> None:
        conn = tester.connect(self.port)
        while (due := todo.get()) is not None:
            conn, status = _post(conn, tester, self.port)
            latency = time.perf_counter() - due
            with self.lock:
                if status in (200, 201):
                    self.latencies.append(latency)
                else:
                    self.other.append(status)
        conn.close()

    def run(self) -> None:
        for thread in self.threads:
            thread.start()
        started = time.perf_counter()
        n = 0
        # each tester's submissions 1/RATE_EACH s apart, the nine spread evenly over that
        while (first := started + n / RATE_EACH) < self.end:
            for index, todo in enumerate(self.queues):
                due = first + index / len(self.queues) / RATE_EACH
                if (delay := due - time.perf_counter()) > 0:
                    time.sleep(delay)
                todo.put(due)
            n += 1
        for todo in self.queues:
            for _ in range(self.threads_each):
                todo.put(None)
        for thread in self.threads:
            thread.join()


class Flood:
    """The flooder: ``connections`` closed-loop senders until ``end``."""

    def __init__(self, port: int, tester: Tester, connections: int, end: float):
        self.port, self.tester, self.end = port, tester, end
        self.answered = 0
        self.other: list[int | str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._sender, daemon=True) for _ in range(connections)]

    def _sender(self) -> None:
        conn = self.tester.connect(self.port)
        while time.perf_counter() < self.end:
            conn, status = _post(conn, self.tester, self.port)
            with self.lock:
                if status in (200, 201):
                    self.answered += 1
                else:
                    self.other.append(status)
        conn.close()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


def _percentile(values: list[float], share: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000, 1) if ordered else None


def phase(port: int, nine: list[Tester], flooder: Tester | None, connections: int, duration: float) -> dict:
    """The nine for ``duration`` s, with the flooder's ``connections`` alongside if given."""
    started = time.perf_counter()
    end = started + duration
    flood = Flood(port, flooder, connections, end) if flooder else None
    if flood:
        flood.start()
    steady = Steady(port, nine, end)
    steady.run()
    if flood:
        flood.join()
    took = time.perf_counter() - started
    return {
        "nine_p50_ms": _percentile(steady.latencies, 0.5),
        "nine_p99_ms": _percentile(steady.latencies, 0.99),
        "nine_ok": len(steady.latencies),
        "nine_non_2xx": len(steady.other),
        "nine_failures": sorted({str(s) for s in steady.other})[:5],
        "flood_per_s": round(flood.answered / took, 1) if flood else None,
        "flood_non_2xx": len(flood.other) if flood else None,
        "flood_failures": sorted({str(s) for s in flood.other})[:5] if flood else [],
    }


def unlimited_site(folder: Path) -> Path:
    """The shipped site less its per-tester ``limit_req`` lines (the rest as it is)."""
    text = local_nginx.SITE.read_text()
    stripped = re.sub(r"^\s*limit_req(_zone|_status)?\b[^;]*;\n", "", text, flags=re.M)
    assert "limit_req" not in re.sub(r"#.*", "", stripped), "a limit_req line was left"
    path = folder / "cpantesters-unlimited.conf"
    path.write_text(stripped)
    return path


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30, help="seconds per phase")
    parser.add_argument("--flood-connections", type=int, nargs="+", default=[24, 32])
    parser.add_argument("--rounds", type=int, default=1, help="ABCCBA sequences per flooder size")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--nginx-workers", type=int, default=1)
    add_servers_option(parser, " (Redis DB BENCH_REDIS_DB)")
    args = parser.parse_args()
    print(f"yardstick: {yardstick()}; load average {load_average()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    with bench_servers(args.servers, tmp / "servers", REDIS_DB) as (mysql, redis_url, _):
        return _run(args, tmp, mysql, redis_url)


def _run(args, tmp: Path, mysql: dict, redis_url: str) -> int:
    name = f"w20_flood_{uuid.uuid4().hex[:6]}"
    url = database(mysql, name)
    redis.Redis.from_url(redis_url).flushdb()
    upgrade(url)
    testers = [Tester(n) for n in range(TESTERS + 1)]
    engine = create_engine(url)
    for tester in testers:
        users.register(engine, tester.guid, f"Tester {tester.guid[-2:]}", "flood@example.com", tester.secret)
    engine.dispose()
    nine, flooder = testers[:TESTERS], testers[TESTERS]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(DATABASE_URL=url, REDIS_URL=redis_url, SPOOL_DIR=str(tmp / "spool"), LOG_LEVEL="WARNING",
               WEB_CONCURRENCY=str(args.web_workers))  # fmt: skip
    processes, nginxes = [], []
    try:
        web, web_port = start_gunicorn("gunicorn.conf.py", "wsgi:app", env, tmp / "web.log")
        processes.append(web)
        ports = {"web": web_port, "viewer": free_port(), "readapi": free_port()}  # only the web app is asked
        limited, unlimited = free_port(), free_port()
        nginxes.append(local_nginx.start(tmp / "nginx-limited", limited, ports, workers=args.nginx_workers))
        nginxes.append(
            local_nginx.start(
                tmp / "nginx-unlimited", unlimited, ports, workers=args.nginx_workers, site=unlimited_site(tmp)
            )  # fmt: skip
        )
        print(f"web: {args.web_workers} gunicorn workers; nginx {args.nginx_workers} worker(s); "
              f"{args.duration:.0f} s per phase; {TESTERS} testers at {RATE_EACH:.0f}/s each", flush=True)  # fmt: skip
        phase(limited, nine, flooder, 4, 3)  # warm the web workers (imports, connections)
        time.sleep(SETTLE_SECONDS)
        kinds = {
            "alone": lambda n: phase(limited, nine, None, 0, args.duration),
            "flood, limit": lambda n: phase(limited, nine, flooder, n, args.duration),
            "flood, no limit": lambda n: phase(unlimited, nine, flooder, n, args.duration),
        }
        order = ["alone", "flood, limit", "flood, no limit", "flood, no limit", "flood, limit", "alone"]
        results: dict = {}
        for connections in args.flood_connections:
            for kind in order * args.rounds:
                figures = kinds[kind](connections)
                figures["load average"] = load_average()
                results.setdefault(connections, {}).setdefault(kind, []).append(figures)
                print(f"N={connections} {kind}: {json.dumps(figures)}", flush=True)
                time.sleep(SETTLE_SECONDS)
        delays = delayed_requests(tmp / "nginx-limited" / "logs" / "error.log", nine, flooder)
    finally:
        for process in nginxes:
            local_nginx.stop(process)
        for process in processes:
            stop(process)
        database(mysql, name, drop=True)
        redis.Redis.from_url(redis_url).flushdb()
    print(f"\nrequests nginx's per-tester limit delayed (its error log, whole run): {delays}")
    return _summary(results)


def delayed_requests(log: Path, nine: list[Tester], flooder: Tester) -> dict[str, int]:
    """How many of the nine's and of the flooder's requests the limit delayed: nginx logs each
    delay at `warn` ("delaying request ... client: <address>"), and each tester has its own
    address."""
    clients = re.findall(r"delaying request.*?client: ([0-9.]+)", log.read_text(errors="replace"))
    nine_addresses = {tester.address for tester in nine}
    return {
        "the nine": sum(client in nine_addresses for client in clients),
        "the flooder": sum(client == flooder.address for client in clients),
    }


def _median(runs: list[dict], key: str) -> float | None:
    """The median of ``key`` over the phases ``runs``."""
    values = [run[key] for run in runs if run[key] is not None]
    return round(statistics.median(values), 1) if values else None


def _summary(results: dict) -> int:
    print("\nmedians over each kind's phases")
    print("| flooder conns | phase | nine p50 ms | nine p99 ms | p99 vs alone | nine non-2xx | flooder /s | "
          "flooder non-2xx |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    held = True
    for connections, kinds in results.items():
        alone = _median(kinds["alone"], "nine_p99_ms")
        for kind, runs in kinds.items():
            p99 = _median(runs, "nine_p99_ms")
            ratio = p99 / alone if alone and p99 else None
            nine_bad = sum(run["nine_non_2xx"] for run in runs)
            flood_bad = sum(run["flood_non_2xx"] or 0 for run in runs)
            print(f"| {connections} | {kind} | {_median(runs, 'nine_p50_ms')} | {p99} | "
                  f"{f'{ratio:.2f}x' if ratio else '-'} | {nine_bad} | {_median(runs, 'flood_per_s') or '-'} | "
                  f"{flood_bad if kind != 'alone' else '-'} |")  # fmt: skip
            if kind != "flood, no limit":
                held = held and nine_bad == 0 and flood_bad == 0 and (ratio is None or ratio <= 1.2)
    print(f"\ntarget (with the limit: the nine's p99 within 1.2x of alone, 0 non-2xx): {'HELD' if held else 'MISSED'}")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
