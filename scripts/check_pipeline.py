"""The alarm, for cron or Nagios/Icinga: is the report pipeline flowing?

    python -m scripts.check_pipeline            # one status line; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN

Critical when a report has waited too long, no worker is alive, the queue is full, the
failed registry grows, the spool is not draining, nothing was submitted for an unusual
time, or the database or Redis does not answer. With ``ALERT_SMTP_URL``/``ALERT_EMAIL_TO``
or ``ALERT_WEBHOOK_URL`` set it also sends the status line when the state changes
(recovery included), so running it from cron every few minutes alerts once per incident.
"""

from __future__ import annotations

import argparse
import json
import sys

import settings
from monitoring import alarm, figures
from monitoring.alarm import Thresholds

DEFAULTS = Thresholds()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.check_pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", help="default: DATABASE_URL")
    p.add_argument("--redis-url", help="default: REDIS_URL")
    p.add_argument("--spool-dir", help="default: SPOOL_DIR (the spool of this host)")
    p.add_argument("--timeout", type=float, default=5, help="seconds to wait for the database and Redis (5)")
    t = p.add_argument_group("thresholds")
    t.add_argument("--wait-warning", type=float, default=DEFAULTS.wait_warning, metavar="SECONDS",
                   help=f"warn when the oldest waiting report is older ({DEFAULTS.wait_warning:g})")  # fmt: skip
    t.add_argument("--wait-critical", type=float, default=DEFAULTS.wait_critical, metavar="SECONDS",
                   help=f"critical when the oldest waiting report is older ({DEFAULTS.wait_critical:g})")  # fmt: skip
    t.add_argument("--queue-warning", type=int, default=DEFAULTS.queue_warning, metavar="JOBS",
                   help=f"warn at this many queued jobs ({DEFAULTS.queue_warning})")  # fmt: skip
    t.add_argument("--queue-critical", type=int, default=DEFAULTS.queue_critical, metavar="JOBS",
                   help=f"critical at this many queued jobs ({DEFAULTS.queue_critical})")  # fmt: skip
    t.add_argument("--min-workers", type=int, default=DEFAULTS.min_workers, metavar="N",
                   help=f"critical with fewer workers alive ({DEFAULTS.min_workers})")  # fmt: skip
    t.add_argument("--failed-growth", type=int, default=DEFAULTS.failed_growth, metavar="JOBS",
                   help=f"critical when the failed registry grew by more than this ({DEFAULTS.failed_growth})")  # fmt: skip
    t.add_argument("--failed-window", type=int, default=DEFAULTS.failed_window, metavar="SECONDS",
                   help=f"... within this many seconds ({DEFAULTS.failed_window})")  # fmt: skip
    t.add_argument("--spool-age", type=float, default=DEFAULTS.spool_age, metavar="SECONDS",
                   help=f"critical when a spooled report is older ({DEFAULTS.spool_age:g})")  # fmt: skip
    t.add_argument("--quiet-minutes", type=int, default=DEFAULTS.quiet_minutes, metavar="MINUTES",
                   help=f"critical when nothing was submitted for longer; 0 turns it off ({DEFAULTS.quiet_minutes})")  # fmt: skip
    n = p.add_argument_group("notification")
    n.add_argument("--no-notify", action="store_true", help="do not send e-mail or webhook")
    n.add_argument("--always-notify", action="store_true", help="notify on every run that is not OK")
    p.add_argument("--json", action="store_true", help="print the figures as JSON after the status line")
    return p


def run(argv=None, environ=None) -> int:
    args = parser().parse_args(argv)
    config = settings.load(environ)
    from intake.spool import Spool
    from queueing.contract import connect
    from storage.engine import create_engine

    engine = create_engine(args.database_url or config.DATABASE_URL, connect_timeout=max(1, int(args.timeout)))
    connection = connect(args.redis_url or config.REDIS_URL, timeout=args.timeout)
    thresholds = Thresholds(
        wait_warning=args.wait_warning, wait_critical=args.wait_critical, queue_warning=args.queue_warning,
        queue_critical=args.queue_critical, min_workers=args.min_workers, failed_growth=args.failed_growth,
        failed_window=args.failed_window, spool_age=args.spool_age, quiet_minutes=args.quiet_minutes,
    )  # fmt: skip
    try:
        snapshot = figures.collect(engine, connection, Spool(args.spool_dir or config.SPOOL_DIR), with_history=False)
        state_connection = None if "redis" in snapshot.errors else connection
        verdict = alarm.judge(snapshot, thresholds, state_connection)
        print(verdict.line())
        if args.json:
            print(json.dumps(snapshot.as_dict(), indent=2, default=str))
        if not args.no_notify and alarm.should_notify(state_connection, verdict, args.always_notify):
            for error in alarm.notify(config, verdict, snapshot):
                print(error, file=sys.stderr)
        return verdict.state
    finally:
        engine.dispose()
        connection.close()


def main(argv=None) -> int:
    try:
        return run(argv)
    except SystemExit as exc:  # argparse: bad options are UNKNOWN to Nagios
        return alarm.UNKNOWN if exc.code else 0
    except Exception as exc:
        print(f"PIPELINE UNKNOWN - the check failed: {type(exc).__name__}: {exc}")
        return alarm.UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
