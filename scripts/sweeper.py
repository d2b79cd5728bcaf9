"""The sweeper process (``sweeper`` in the Procfile): drains the spool every few seconds
and queues pending reports with no live job every minute. Runs until stopped.

    python -m scripts.sweeper            # forever
    python -m scripts.sweeper --once     # one drain and one sweep, then exit
"""

from __future__ import annotations

import argparse
import logging
import signal
import time

import settings
from intake.pipeline import DATABASE_UNAVAILABLE, Intake
from intake.spool import Spool
from intake.sweeper import sweep
from storage.engine import create_engine
from workers import queue

logger = logging.getLogger("scripts.sweeper")


def build(config: settings.Settings) -> Intake:
    engine = create_engine(config.DATABASE_URL, connect_timeout=config.DB_CONNECT_TIMEOUT)
    connection = queue.connect(config.REDIS_URL, timeout=5)
    return Intake(engine, connection, Spool(config.SPOOL_DIR), auth_enabled=config.auth_enabled)


def run_once(intake: Intake, config: settings.Settings, sweep_too: bool = True) -> None:
    try:
        counts = intake.drain_spool()
        if counts["drained"] or counts["rejected"]:
            logger.info("spool drained=%(drained)d rejected=%(rejected)d remaining=%(remaining)d", counts)
        if sweep_too:
            sweep(intake.engine, intake.redis, config.SWEEP_GRACE)
    except DATABASE_UNAVAILABLE as exc:
        logger.warning("database unavailable: %s", str(exc).splitlines()[0][:200])
    except Exception:
        logger.exception("sweeper pass failed; trying again next round")


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
    next_sweep = 0.0
    while not stopping:
        due = time.monotonic() >= next_sweep
        run_once(intake, config, sweep_too=due)
        if due:
            next_sweep = time.monotonic() + config.SWEEP_INTERVAL
        time.sleep(config.SPOOL_DRAIN_INTERVAL)


if __name__ == "__main__":
    main()
