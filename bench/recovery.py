"""Recovery benchmark: how long after Redis or the database comes back the farm has
processed everything that waited, with the tests' short settings and the production
defaults.

    .venv/bin/python -m bench.recovery                          # both outages, both profiles
    .venv/bin/python -m bench.recovery --profile test --outage 10 --reports 1000

The farm is real: ``--workers`` ``python -m workers.run`` processes and one
``python -m scripts.sweeper``, on a throwaway MariaDB database (created and dropped here)
and a throwaway redis-server on its own port (never the shared one).

- **redis**: a backlog is queued, Redis is killed at once (SIGKILL, no persistence: the
  queue is lost), more reports are stored during the outage (what the web app stores while
  its enqueue fails), then Redis is started empty. Healed = every report ``done``.
- **database**: the workers and the sweeper reach MariaDB through a TCP proxy; a backlog is
  queued and the proxy cut (every connection dropped, new ones refused, as a restarting
  server does), then restored.

Heal time counts from the service's return to the last report being done.
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import pymysql
import sqlalchemy as sa

from bench.machine import yardstick
from bench.processing import rows
from queueing.contract import enqueue_report
from storage.engine import create_engine
from storage.migrate import upgrade
from storage.tables import test_report
from tests import backends
from tests.outage_helpers import SHORT_SETTINGS, ThrowawayRedis, start, stop, wait_for
from tests.processing_helpers import store_many
from tests.tcp_proxy import TcpProxy

PROFILES = {
    "test": SHORT_SETTINGS,
    "production": {"LOG_LEVEL": "INFO"},  # settings.py's defaults
}


def pending(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(test_report).where(test_report.c.state != "done")
        return conn.execute(query).scalar_one()


class Database:
    """A throwaway MariaDB database on the shared server (created and dropped here)."""

    def __init__(self):
        self.name = f"cpt_bench_{uuid.uuid4().hex[:8]}"
        admin = pymysql.connect(host=backends.MARIADB_HOST, port=backends.MARIADB_PORT, user=backends.MARIADB_USER)
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        admin.close()
        self.url = f"mysql://{backends.MARIADB_USER}@{backends.MARIADB_HOST}:{backends.MARIADB_PORT}/{self.name}"
        upgrade(self.url)
        self.engine = create_engine(self.url)

    def via(self, proxy: TcpProxy) -> str:
        return self.url.replace(f"@{backends.MARIADB_HOST}:{backends.MARIADB_PORT}/", f"@127.0.0.1:{proxy.port}/")

    def drop(self):
        self.engine.dispose()
        admin = pymysql.connect(host=backends.MARIADB_HOST, port=backends.MARIADB_PORT, user=backends.MARIADB_USER)
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        admin.close()


def run(kind: str, profile: str, reports: int, outage: float, workers: int, seed: int) -> dict:
    settings = PROFILES[profile]
    db = Database()
    proxy = TcpProxy(backends.MARIADB_HOST, backends.MARIADB_PORT)
    with TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = ThrowawayRedis(tmp / "redis").start()
        database_url = db.via(proxy) if kind == "database" else db.url
        processes = [start("workers.run", database_url, server.url, tmp / f"worker{i}.log") for i in range(workers)]
        processes.append(start("scripts.sweeper", database_url, server.url, tmp / "sweeper.log", SPOOL_DIR=tmp))
        env_note = " ".join(f"{k}={v}" for k, v in settings.items() if k != "LOG_LEVEL") or "defaults"
        try:
            backlog = rows(reports, seed)
            half = len(backlog) // 2
            store_many(db.engine, backlog[:half])
            client = server.client()
            for row in backlog[:half]:
                enqueue_report(client, row["guid"])
            if kind == "redis":
                server.kill()  # the queue is lost
                store_many(db.engine, backlog[half:])  # stored while the web app could not enqueue
            else:
                proxy.cut()
                store_many(db.engine, backlog[half:])
                for row in backlog[half:]:
                    enqueue_report(client, row["guid"])
            time.sleep(outage)
            if kind == "redis":
                server.start()
            else:
                proxy.restore()
            back = time.monotonic()
            waiting = pending(db.engine)
            wait_for(lambda: pending(db.engine) == 0, 900, "the backlog", interval=0.2)
            healed = time.monotonic() - back
            alive = sum(1 for p in processes if p.poll() is None)
        finally:
            for process in processes:
                stop(process)
            server.close()
            proxy.close()
            db.drop()
    return {"kind": kind, "profile": profile, "settings": env_note, "outage": outage, "waiting": waiting,
            "healed": healed, "alive": f"{alive}/{len(processes)}"}  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["redis", "database", "both"], default="both")
    parser.add_argument("--profile", choices=["test", "production", "both"], default="both")
    parser.add_argument("--reports", type=int, default=1000, help="backlog: half queued before the outage (1000)")
    parser.add_argument("--outage", type=float, default=20, help="seconds the service is away (20)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"machine: {yardstick()}")
    print(f"{args.workers} workers + 1 sweeper, MariaDB database, throwaway redis-server; backlog {args.reports}")
    kinds = ["redis", "database"] if args.kind == "both" else [args.kind]
    profiles = ["test", "production"] if args.profile == "both" else [args.profile]
    print(
        "| outage | profile | settings | outage s | waiting at return | healed s (return -> all done) | processes alive |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, (kind, profile) in enumerate((k, p) for k in kinds for p in profiles):
        r = run(kind, profile, args.reports, args.outage, args.workers, seed=n + 1)
        print(f"| {r['kind']} | {r['profile']} | {r['settings']} | {r['outage']:g} | {r['waiting']} | "
              f"{r['healed']:.1f} | {r['alive']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
