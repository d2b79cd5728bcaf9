"""CPU per accepted submission, in-process: the real captured submission (a fresh GUID per
request) through the Flask test client of the submission app, on MariaDB and Redis.

    .venv/bin/python -m bench.intake_cpu [--requests 1000] [--rounds 7]

Prints the machine yardstick and, per round, the process CPU time (``time.process_time``)
per request; then the median and the best round. The library decisions of issue 17
(cachetools, the circuit breaker, the request metrics) were each held to < 5 % of this.
The request bodies are built before a round, so only the app's work is counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from app import create_app  # noqa: E402
from bench.databases import drop_database, fresh_database  # noqa: E402
from bench.machine import yardstick  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests import captures  # noqa: E402
from tests.helpers import register_profile, replay, with_new_guid  # noqa: E402

DATABASE = "cpt_bench_intake_cpu"


def library_calls_per_request() -> dict[str, float]:
    """Seconds of CPU the library-backed pieces take in one submission, at most: an auth-cache
    hit (cachetools.TTLCache under its lock), the breaker's check, and ten block-cache look-ups
    and stores (cachetools.LRUCache; a submission meets fewer blocks)."""
    import threading

    import cachetools

    from intake.pipeline import AUTH_CACHE_SECONDS, AUTH_CACHE_SIZE
    from storage.outage import Breaker
    from storage.reports import BlockCache

    auth_cache, lock = cachetools.TTLCache(maxsize=AUTH_CACHE_SIZE, ttl=AUTH_CACHE_SECONDS), threading.Lock()
    auth_cache["g"] = ("digest", "profile")
    breaker, blocks = Breaker(2.0), BlockCache(16 * 1024 * 1024)
    digests = [bytes([i]) * 32 for i in range(10)]

    def auth_hit():
        with lock:
            auth_cache.get("g")

    def ten_blocks():
        for digest in digests:
            blocks.get(digest)
            blocks.put(digest, b"x" * 4096)

    n = 20_000
    figures = {}
    for name, work in (
        ("auth cache hit", auth_hit),
        ("breaker check", lambda: breaker.open),
        ("10 block-cache calls", ten_blocks),
    ):
        started = time.process_time()
        for _ in range(n):
            work()
        figures[name] = (time.process_time() - started) / n
    return figures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="a Redis database it may flush")
    parser.add_argument("--database", default=DATABASE, help="a MariaDB database it creates and drops")
    args = parser.parse_args(argv)
    print(f"# {yardstick()}")
    url = fresh_database(args.database)
    upgrade(url)
    recorded = captures.load("01-ok")[0]
    with tempfile.TemporaryDirectory() as spool:
        app = create_app(
            settings.load({}, DATABASE_URL=url, REDIS_URL=args.redis_url, SPOOL_DIR=spool, LOG_LEVEL="WARNING")
        )
        services = app.extensions["cpantesters"]
        register_profile(services.engine)
        client = app.test_client()
        per_request = []
        try:
            for round_number in range(args.rounds + 1):  # the first round warms up
                services.redis.flushdb()
                bodies = [with_new_guid(recorded.body)[0] for _ in range(args.requests)]
                started = time.process_time()
                for body in bodies:
                    response = replay(client, recorded, body)
                    assert response.status_code == 201, response.get_data(as_text=True)
                cpu = (time.process_time() - started) / args.requests
                if round_number:
                    per_request.append(cpu)
                    print(f"round {round_number}: {cpu * 1000:.3f} ms CPU per request")
        finally:
            services.engine.dispose()
            services.redis.flushdb()
            drop_database(args.database)
    median = statistics.median(per_request)
    print(f"median {median * 1000:.3f} ms, best {min(per_request) * 1000:.3f} ms per request")
    for name, seconds in library_calls_per_request().items():
        print(f"{name}: {seconds * 1e6:.2f} µs per request, {seconds / median:.3%} of the median")


if __name__ == "__main__":
    main()
