"""Intake benchmark: the real captured submission (a fresh GUID per request) against
gunicorn + MariaDB + Redis at 16 and 64 connections, beside a bare-bones reference app
under the same gunicorn settings, in the same run.

    .venv/bin/python -m bench.intake [--duration 20] [--workers 4] [--connections 16 64]

Prints accepted reports per second, p50 and p99 for both, and checks that every
acknowledged report is in the database afterwards. Needs wrk, MariaDB and Redis on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage import users  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests import captures, processes  # noqa: E402

MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}
REDIS_DB = 12
SCENARIO = "01-ok"


def fresh_database(name: str) -> str:
    conn = pymysql.connect(**MYSQL)
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    return f"mysql://root@127.0.0.1:3306/{name}"


def count_rows(name: str, table: str) -> int:
    conn = pymysql.connect(database=name, **MYSQL)
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        count = cursor.fetchone()[0]
    conn.close()
    return count


def run_wrk(port: int, connections: int, duration: int, body_file: str, original_guid: str, run_id: int) -> dict:
    token = base64.b64encode(f"{captures.PROFILE_GUID}:{captures.PROFILE_SECRET}".encode()).decode()
    env = dict(
        os.environ,
        BODY_FILE=body_file,
        ORIGINAL_GUID=original_guid.replace("-", "%-"),
        SUBMIT_PATH="/api/v1/submit/CPAN-Testers-Report",
        AUTH=f"Basic {token}",
        RUN_ID=str(run_id),
    )
    threads = min(connections, 2)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--latency",
            "--timeout",
            "30s",
            "-s",
            str(ROOT / "bench" / "submit.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests_total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        # Anchored: the thread stats' "+/- Stdev" column also ends in "50%" or "99%".
        "p50": re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1),
        "p99": re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1),
        "requests": requests_total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "none",
    }


def ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers for both apps")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()

    recorded = captures.load(SCENARIO)[0]
    original_guid = json.loads(recorded.body)["metadata"]["core"]["guid"]
    body_path = Path(tempfile.mkdtemp(prefix="bench-intake-body-")) / "submission.json"
    body_path.write_bytes(recorded.body)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"

    ours_url = fresh_database("cpt_bench_intake")
    upgrade(ours_url)
    engine = create_engine(ours_url)
    users.register(engine, captures.PROFILE_GUID, "CPAN Tester", "tester@example.com", captures.PROFILE_SECRET)
    engine.dispose()
    ref_url = fresh_database("cpt_bench_reference")
    conn = pymysql.connect(database="cpt_bench_reference", **MYSQL)
    with conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE reference_report (id BIGINT AUTO_INCREMENT PRIMARY KEY, guid CHAR(36) NOT NULL UNIQUE,"
            " body LONGTEXT NOT NULL) CHARACTER SET utf8mb4"
        )
    conn.close()
    redis.Redis.from_url(redis_url).flushdb()

    print(
        f"machine: {os.cpu_count()} cores; gunicorn sync workers: {args.workers}; duration {args.duration}s; body {len(recorded.body)} bytes"
    )
    results = []
    run_id = int(time.time()) & 0xFFFFFF
    log_dir = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    for connections in args.connections:
        for name, app, url, table in (
            ("reference", "bench.reference_app:app", ref_url, "reference_report"),
            ("ours", "wsgi:app", ours_url, "test_report"),
        ):
            before = count_rows(url.rsplit("/", 1)[1], table)
            run_id += 1
            with processes.gunicorn(
                app,
                workers=args.workers,
                log_path=log_dir / f"{name}-{connections}.log",
                DATABASE_URL=url,
                REDIS_URL=redis_url,
                SPOOL_DIR=log_dir / "spool",
                LOG_LEVEL="WARNING",
            ) as port:
                time.sleep(1)
                figures = run_wrk(port, connections, args.duration, str(body_path), original_guid, run_id)
            stored = count_rows(url.rsplit("/", 1)[1], table) - before
            acknowledged = figures["requests"] - figures["non2xx"]
            figures.update(app=name, connections=connections, stored=stored, acknowledged=acknowledged)
            results.append(figures)
            print(
                f"{name:9} c={connections:3}  {figures['rps']:8.1f} req/s  p50 {figures['p50']:>8}  p99 {figures['p99']:>8}"
                f"  acknowledged {acknowledged}  stored {stored}  non-2xx {figures['non2xx']}  socket errors {figures['socket_errors']}"
            )
            assert stored >= acknowledged, f"{name}: {acknowledged - stored} acknowledged reports missing"
    print()
    for connections in args.connections:
        ref = next(r for r in results if r["app"] == "reference" and r["connections"] == connections)
        ours = next(r for r in results if r["app"] == "ours" and r["connections"] == connections)
        print(
            f"c={connections}: throughput ratio {ours['rps'] / ref['rps']:.2f}x (target >= 0.9), "
            f"p99 ratio {ms(ours['p99']) / ms(ref['p99']):.2f}x (target <= 1.2), ours {ours['rps']:.0f} req/s (target >= 1000)"
        )


if __name__ == "__main__":
    main()
