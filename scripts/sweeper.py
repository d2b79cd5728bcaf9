"""The sweeper process (``sweeper`` in the Procfile): drains the spool every few seconds
and queues pending reports with no live job every ``SWEEP_INTERVAL``. Runs until stopped.

    python -m scripts.sweeper            # forever
    python -m scripts.sweeper --once     # one drain and one sweep, then exit

It never exits because Redis or the database went away: it waits for them with the same
capped, jittered back-off as the workers (one line when an outage begins, one when it
ends), sweeps as soon as they answer again (a Redis restart may have lost the queue), and
once more a ``SWEEP_GRACE`` later for the reports that were too young the first time.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from dataclasses import dataclass

import settings
from intake.pipeline import SubmissionPipeline
from intake.spool import Spool
from queueing import contract as queue
from storage.engine import create_engine
from storage.errors import DATABASE_UNAVAILABLE
from storage.outage import REDIS_ERRORS, Outage
from workers.sweeper import sweep

logger = logging.getLogger("scripts.sweeper")


@dataclass
class Outages:
    redis: Outage
    database: Outage

    @classmethod
    def of(cls, config: settings.Settings) -> Outages:
        return cls(
            Outage("redis", logger, cap=config.OUTAGE_BACKOFF_MAX),
            Outage("database", logger, cap=config.OUTAGE_BACKOFF_MAX),
        )

    @property
    def down(self) -> bool:
        return self.redis.down or self.database.down


def build(config: settings.Settings) -> SubmissionPipeline:
    engine = create_engine(config.DATABASE_URL, connect_timeout=config.DB_CONNECT_TIMEOUT)
    connection = queue.connect(config.REDIS_URL, timeout=5)
    return SubmissionPipeline(
        engine, connection, Spool(config.SPOOL_DIR), auth_enabled=config.auth_enabled, job_timeout=config.JOB_TIMEOUT
    )


def run_once(
    intake: SubmissionPipeline, config: settings.Settings, sweep_too: bool = True, outages: Outages | None = None
) -> float | None:
    """One drain of the spool and (with ``sweep_too``) one sweep. Returns None when both
    services answered, else the seconds to wait before trying again."""
    outages = outages or Outages.of(config)
    try:
        counts = intake.drain_spool()
        if counts["drained"] or counts["rejected"]:
            logger.info("spool drained=%(drained)d rejected=%(rejected)d remaining=%(remaining)d", counts)
        if sweep_too:
            sweep(intake.engine, intake.redis, config.SWEEP_GRACE, job_timeout=config.JOB_TIMEOUT)
    except REDIS_ERRORS as exc:
        return outages.redis.failed(exc)
    except DATABASE_UNAVAILABLE as exc:
        return outages.database.failed(exc)
    except Exception:
        logger.exception("sweeper pass failed; trying again next round")
        return None
    if sweep_too:  # a sweep reads both: both answer
        outages.redis.recovered()
        outages.database.recovered()
    return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="one drain and one sweep, then exit")
    args = parser.parse_args(argv)
    config = settings.load()
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    intake = build(config)
    if args.once:
        run_once(intake, config)
        return
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    outages = Outages.of(config)
    next_sweep = 0.0
    while not stopping:
        was_down = outages.down
        due = was_down or time.monotonic() >= next_sweep
        wait = run_once(intake, config, sweep_too=due, outages=outages)
        if due and wait is None:
            # After an outage, once more when the reports that were too young are old enough.
            pause = min(config.SWEEP_GRACE + 1, config.SWEEP_INTERVAL) if was_down else config.SWEEP_INTERVAL
            next_sweep = time.monotonic() + pause
        time.sleep(wait if wait is not None else config.SPOOL_DRAIN_INTERVAL)


if __name__ == "__main__":
    main()
