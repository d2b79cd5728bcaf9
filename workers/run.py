"""Start one RQ worker on the reports queue (``worker`` in the Procfile).

Needs nothing but ``DATABASE_URL`` and ``REDIS_URL``; see the README's "Add a worker
host". Equivalent to ``rq worker --with-scheduler`` with our serializer and settings.
"""

from __future__ import annotations

import argparse
import logging

from rq import Worker

import settings
from workers import queue

MAINTENANCE_INTERVAL = 60
"""Seconds between RQ's registry maintenance (abandoned jobs come back this fast; RQ's default is 600)."""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's host.pid)")
    args = parser.parse_args(argv)
    config = settings.load()
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    connection = queue.connect(config.REDIS_URL)
    worker = Worker(
        [queue.report_queue(connection)],
        connection=connection,
        serializer=queue.SERIALIZER,
        name=args.name,
        maintenance_interval=MAINTENANCE_INTERVAL,
    )
    worker.work(burst=args.burst, with_scheduler=True, logging_level=config.LOG_LEVEL)


if __name__ == "__main__":
    main()
