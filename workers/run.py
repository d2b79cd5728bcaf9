"""Start one RQ worker on the reports queue (``worker`` in the Procfile).

Needs nothing but ``DATABASE_URL`` and ``REDIS_URL``; see the README's "Add a worker
host":

    DATABASE_URL=mysql://user:pass@db/cpanstats REDIS_URL=redis://redis:6379/0 python -m workers.run

Equivalent to ``rq worker --with-scheduler`` with our serializer and settings. By default
a ``SimpleWorker``: jobs run in the worker process itself, which keeps its database
connections between jobs (opened in this process on the first job, never inherited from a
parent). A forking ``Worker`` (``--fork``) isolates each job in a child process but opens a
database connection per job: 7 against 44 reports per second measured (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import importlib
import logging

import settings
from monitoring.worker import MonitoredSimpleWorker, MonitoredWorker
from workers import queue
from workers.allowlist import AllowlistedJob, allowlisted

MAINTENANCE_INTERVAL = 60
"""Seconds between RQ's registry maintenance (abandoned jobs come back this fast; RQ's default is 600)."""


def build_worker(
    connection, name: str | None = None, fork: bool = False, maintenance_interval: int = MAINTENANCE_INTERVAL
):
    # The monitored classes time each job into the Redis histogram behind /metrics and log
    # one line per job with its GUID and duration.
    worker_class = MonitoredWorker if fork else MonitoredSimpleWorker
    # Only allowlisted job functions run (workers.allowlist): refused before any fork.
    return allowlisted(worker_class)(
        [queue.report_queue(connection, job_class=AllowlistedJob)],
        connection=connection,
        serializer=queue.SERIALIZER,
        job_class=AllowlistedJob,
        name=name,
        maintenance_interval=maintenance_interval,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's host.pid)")
    parser.add_argument("--fork", action="store_true", help="fork a work horse per job (RQ's default Worker)")
    parser.add_argument(
        "--maintenance-interval",
        type=int,
        default=MAINTENANCE_INTERVAL,
        help=f"seconds between registry clean-ups (default {MAINTENANCE_INTERVAL})",
    )
    args = parser.parse_args(argv)
    config = settings.load()
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Import the job code (SQLAlchemy, the schemas) once, before any fork: a forking
    # Worker's work horse would otherwise import it again for every job. No database
    # connection is opened here; each process opens its own on its first job.
    importlib.import_module(queue.JOB_FUNCTION.rsplit(".", 1)[0])
    connection = queue.connect(config.REDIS_URL)
    worker = build_worker(connection, args.name, args.fork, args.maintenance_interval)
    worker.work(burst=args.burst, with_scheduler=True, logging_level=config.LOG_LEVEL)


if __name__ == "__main__":
    main()
