"""Start one RQ worker on the reports queue (``worker`` in the Procfile).

Needs nothing but ``DATABASE_URL`` and ``REDIS_URL``; see the README's "Add a worker
host":

    DATABASE_URL=mysql://user:pass@db/cpanstats REDIS_URL=redis://redis:6379/0 python -m workers.run

Equivalent to ``rq worker --with-scheduler`` with our serializer and settings. By default
a ``SimpleWorker``: jobs run in the worker process itself, which keeps its database
connections between jobs (opened in this process on the first job, never inherited from a
parent). A forking ``Worker`` (``--fork``) isolates each job in a child process but opens a
database connection per job: 7 against 44 reports per second measured (bench/RESULTS.md).

Either way it never exits because Redis or the database went away: it waits for them
(capped, jittered back-off, logged once per outage) and goes on (see ``workers.worker``).
It exits on SIGTERM/SIGINT (after the current job), or on a bug, for its supervisor
(systemd, supervisord) to start it again.
"""

from __future__ import annotations

import argparse
import importlib
import logging

import settings
from queueing import contract as queue
from workers.allowlist import ReportJob, allowlisted
from workers.worker import ForkingReportWorker, ReportWorker, RqRetryLogFilter

REDIS_CONNECT_TIMEOUT = 5
"""Seconds to wait for a TCP connection to Redis (a vanished host is then one more outage)."""


def build_worker(
    connection,
    name: str | None = None,
    fork: bool = False,
    config: settings.Settings | None = None,
    maintenance_interval: int | None = None,
    database_probe=None,
):
    """The worker on the reports queue, then the low-priority one, with the settings'
    heartbeat, maintenance and back-off."""
    config = config or settings.Settings()  # the documented defaults (main passes the loaded settings)
    # The classes time each job into the Redis histogram behind /metrics, log one line per
    # job with its GUID and duration, and wait through Redis and database outages.
    worker_class = ForkingReportWorker if fork else ReportWorker
    # Only allowlisted job functions run (workers.allowlist): refused before any fork.
    # RQ takes the queues in order: the low-priority (backfill) queue only when no report waits.
    return allowlisted(worker_class)(
        [
            queue.report_queue(connection, job_class=ReportJob),
            queue.report_queue(connection, queue.LOW_QUEUE_NAME, job_class=ReportJob),
        ],
        connection=connection,
        serializer=queue.SERIALIZER,
        job_class=ReportJob,
        name=name,
        maintenance_interval=maintenance_interval or config.WORKER_MAINTENANCE_INTERVAL,
        worker_ttl=max(20, config.WORKER_TTL),
        database_probe=database_probe,
        backoff_cap=config.OUTAGE_BACKOFF_MAX,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's host.pid)")
    parser.add_argument("--fork", action="store_true", help="fork a work horse per job (RQ's default Worker)")
    parser.add_argument(
        "--maintenance-interval",
        type=int,
        help="seconds between registry clean-ups (default WORKER_MAINTENANCE_INTERVAL)",
    )
    args = parser.parse_args(argv)
    config = settings.load()
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("rq.worker").addFilter(RqRetryLogFilter())
    # Import the job code (SQLAlchemy, the schemas) once, before any fork: a forking
    # Worker's work horse would otherwise import it again for every job. No database
    # connection is opened here; each process opens its own on its first job.
    jobs = importlib.import_module(queue.JOB_FUNCTION.rsplit(".", 1)[0])
    jobs.configure(config)  # the jobs' settings, once (a forked work horse inherits them)
    connection = queue.connect(config.REDIS_URL, connect_timeout=REDIS_CONNECT_TIMEOUT, keepalive=True)
    worker = build_worker(
        connection,
        args.name,
        args.fork,
        config,
        maintenance_interval=args.maintenance_interval,
        database_probe=jobs.ping,
    )
    worker.work(burst=args.burst, with_scheduler=True, logging_level=config.LOG_LEVEL)


if __name__ == "__main__":
    main()
