"""Chaos benchmark: the multi-host chaos scenario at full length, with its figures.

    .venv/bin/python -m bench.chaos                       # 100 submissions/s, 15 s outages, 45 s link cut
    .venv/bin/python -m bench.chaos --runs 5              # five runs in a row (each on a fresh farm)
    .venv/bin/python -m bench.chaos --rate 30 --outage 5  # shorter

Builds the farm of ``tests/chaos_farm.py`` (network namespaces: a db host with its own
MariaDB and Redis, a web host with gunicorn and the sweeper, worker hosts), submits the
captured real submission at a steady rate and injects the faults of
``tests/chaos_scenario.py`` one after the other, then checks that every acknowledged
report is stored once and counted exactly once, that ``release_summary`` equals a recount
from ``cpanstats``, that nothing is left pending or started, and that every answer was a
2xx or a JSON 503. Prints how long each fault took to heal. Needs root (namespaces,
a tmpfs mount), ``mariadbd``, ``mariadb-install-db`` and ``redis-server``; leaves the
machine's own servers alone. Exit status 1 if any check failed in any run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import yardstick
from tests import chaos_farm, chaos_scenario, netns


def checks(outcome: chaos_scenario.Outcome, heal_bound: float, worker_bound: float) -> list[str]:
    """The scenario's promises; each broken one as a line."""
    failures = []
    if outcome.bad_answers:
        failures.append(f"{len(outcome.bad_answers)} answers other than 2xx or a JSON 503, e.g. "
                        f"{outcome.bad_answers[0].describe()}")  # fmt: skip
    for name, found in (
        ("acknowledged but not stored", outcome.lost),
        ("stored twice", outcome.stored_twice),
        ("acknowledged but not in cpanstats", outcome.uncounted),
        ("counted twice", outcome.doubled),
    ):
        if found:
            failures.append(f"{len(found)} {name}, e.g. {found[:3]}")
    if outcome.not_done:
        failures.append(f"{len(outcome.not_done)} reports not done: {dict(list(outcome.not_done.items())[:3])}")
    if outcome.summary != outcome.recount:
        failures.append("release_summary differs from the recount from cpanstats")
    if outcome.redis_figures.get("started") or outcome.redis_figures.get("queued"):
        failures.append(f"jobs left in Redis: {outcome.redis_figures}")
    if outcome.spooled or outcome.rejected:
        failures.append(f"spool: {outcome.spooled} left, {len(outcome.rejected)} rejected {outcome.rejected[:2]}")
    if outcome.exited:
        failures.append("processes exited by themselves: " + ", ".join(outcome.exited))
    for fault in outcome.faults:
        bound = worker_bound if fault.name.startswith("worker host") else heal_bound
        if fault.heal_seconds is None or fault.heal_seconds > bound:
            failures.append(f"{fault.name} did not heal within {bound:.0f}s")
    if not outcome.full_spool_503s:
        failures.append("the full spool never answered a JSON 503")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    plan = chaos_scenario.Plan()
    config = chaos_farm.FarmConfig()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rate", type=float, default=plan.rate, help="submissions per second")
    parser.add_argument("--warmup", type=float, default=plan.warmup)
    parser.add_argument("--outage", type=float, default=plan.outage, help="worker host, Redis and MariaDB outages")
    parser.add_argument("--cut", type=float, help="link cut (default: the heartbeat timeout + 15 s)")
    parser.add_argument("--spool-outage", type=float, default=plan.spool_outage)
    parser.add_argument("--settle", type=float, default=plan.settle)
    parser.add_argument("--heal-limit", type=float, default=plan.heal_limit)
    parser.add_argument(
        "--heal-bound",
        type=float,
        default=60,
        help="a Redis or MariaDB heal slower than this fails the run (a worker fault: the heartbeat timeout + 30 s)",
    )
    parser.add_argument("--worker-hosts", type=int, default=config.worker_hosts)
    parser.add_argument("--workers-per-host", type=int, default=config.workers_per_host)
    parser.add_argument("--web-workers", type=int, default=config.web_workers)
    parser.add_argument("--sweep-interval", type=int, help=f"default {config.sweep_interval} (production: 60)")
    parser.add_argument("--sweep-grace", type=int, help=f"default {config.sweep_grace} (production: 30)")
    parser.add_argument(
        "--production-defaults",
        action="store_true",
        help="the workers' and sweeper's production settings (the link cut then lasts over 3 minutes)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="another setting for every farm process"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = parser.parse_args(argv)

    reason = netns.available()
    missing = chaos_farm.missing_binaries()
    if reason or missing:
        print(f"cannot build the farm: {reason or ''} {' '.join(missing)}", file=sys.stderr)
        return 2
    production = chaos_farm.FarmConfig(sweep_interval=60, sweep_grace=30)
    settings = {} if args.production_defaults else dict(chaos_farm.SHORT_SETTINGS)
    settings.update(item.split("=", 1) for item in args.set)
    config = chaos_farm.FarmConfig(
        worker_hosts=args.worker_hosts,
        workers_per_host=args.workers_per_host,
        web_workers=args.web_workers,
        sweep_interval=args.sweep_interval or (production if args.production_defaults else config).sweep_interval,
        sweep_grace=args.sweep_grace or (production if args.production_defaults else config).sweep_grace,
        spool_bytes=max(32, int(args.rate * max(args.outage, args.spool_outage) * 0.08)) * 1024 * 1024,
        env=settings,
    )
    plan = chaos_scenario.Plan(
        rate=args.rate,
        warmup=args.warmup,
        outage=args.outage,
        cut=args.cut or config.heartbeat_timeout + 15,
        spool_outage=args.spool_outage,
        settle=args.settle,
        heal_limit=max(args.heal_limit, config.heartbeat_timeout + 60),
    )
    print(f"machine: {yardstick()}", flush=True)
    print(f"plan: {json.dumps(plan.__dict__)}", flush=True)
    print(f"farm: {config.worker_hosts} worker hosts x {config.workers_per_host} workers, "
          f"{config.web_workers} web workers, sweep every {config.sweep_interval}s (grace {config.sweep_grace}s), "
          f"settings {config.env}", flush=True)  # fmt: skip
    # A SIGTERM (a CI timeout, an operator's kill) ends the run through the farm's
    # clean-up, as Ctrl-C does: namespaces, servers and the spool's tmpfs are removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    failed_runs = 0
    for run in range(1, args.runs + 1):
        workdir = Path(tempfile.mkdtemp(prefix="cpt-chaos-"))
        farm = chaos_farm.Farm(workdir, config)
        started = time.monotonic()
        try:
            farm.start()
            print(f"run {run}: farm up in {time.monotonic() - started:.1f}s (logs in {workdir / 'logs'})", flush=True)
            outcome = chaos_scenario.run(farm, plan, say=lambda line: print(line, flush=True))
        finally:
            farm.close()
        print(outcome.report(), flush=True)
        failures = checks(outcome, args.heal_bound, config.heartbeat_timeout + 30)
        print(f"run {run}: {'PASS' if not failures else 'FAIL'} in {time.monotonic() - started:.0f}s", flush=True)
        for line in failures:
            print(f"  - {line}", flush=True)
        failed_runs += bool(failures)
        if not failures and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.runs - failed_runs} of {args.runs} runs passed", flush=True)
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
