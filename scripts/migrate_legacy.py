"""Migrate the legacy Metabase cache and tester profiles into our database.

    python -m scripts.migrate_legacy migrate [--workers N] [--batch 1000] [--dry-run] [--queue pending|all]
    python -m scripts.migrate_legacy verify [--sample 1000] [--seed N]
    python -m scripts.migrate_legacy status
    python -m scripts.migrate_legacy drop-legacy --yes

The legacy database is ``--legacy-url`` or ``LEGACY_DATABASE_URL``; ours is
``--database-url`` or ``DATABASE_URL``. ``migrate`` copies the legacy cpanstats tables as
they are, the profiles into ``metabase_user``, then converts every ``metabase`` row into
a ``test_report`` row, in 16 GUID ranges shared by ``--workers`` processes. Kill it at
any point and run it again: it resumes, and never changes a row already migrated.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import queue as queue_module
import sys
import time

import settings
from storage import legacy_migration as steps
from storage.engine import create_engine
from storage.legacy import COPIED_TABLES, legacy_engine

logger = logging.getLogger("scripts.migrate_legacy")

DEFAULT_WORKERS = min((os.cpu_count() or 1) + 1, 16)
"""One process more than cores, so the cores stay busy while a process waits on a
database (1,000,000 rows on 2 cores: 3,375 against 3,100 rows/s with the first code; about
even, 5,396 against 5,423, once the conversion got cheaper; bench/RESULTS.md). At most
the 16 GUID ranges."""


def _engines(args):
    return legacy_engine(args.legacy_url), create_engine(args.database_url)


def _enqueuer(redis_url: str | None):
    if not redis_url:
        return None
    from queueing.contract import connect, enqueue_report

    connection = connect(redis_url, timeout=5)

    def enqueue(guids: list[str]) -> int:
        return sum(1 for guid in guids if enqueue_report(connection, guid))

    return enqueue


def _worker(args_dict: dict, tasks, events) -> None:
    """One process: take GUID ranges until none is left, report every page to the parent."""
    logging.basicConfig(level=args_dict["log_level"], format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = argparse.Namespace(**args_dict)
    legacy, ours = _engines(args)
    enqueue = _enqueuer(args.redis_url) if args.queue else None
    with legacy.connect() as conn:
        profiles = steps.latest_profile_rows(conn)
    while True:
        try:
            name, lower, upper = tasks.get_nowait()
        except queue_module.Empty:
            break
        result = steps.migrate_range(
            legacy,
            ours,
            name,
            lower,
            upper,
            batch=args.batch,
            dry_run=args.dry_run,
            on_batch=lambda n: events.put(("rows", n)),
            enqueue=enqueue,
            profiles=profiles,
            force_state="pending" if args.queue == "all" else None,
        )
        events.put(("range", result.name, result.migrated, result.skipped, result.failed, result.queued))
    legacy.dispose()
    ours.dispose()
    events.put(("exit", os.getpid()))


def migrate(args) -> int:
    from tqdm import tqdm

    legacy, ours = _engines(args)
    started = time.monotonic()
    if not args.skip_tables:
        for name in COPIED_TABLES:
            copied = steps.copy_table(legacy, ours, name, batch=args.batch * 5, dry_run=args.dry_run)
            print(f"table {name}: {copied} rows read", file=sys.stderr)
        users = steps.copy_users(legacy, ours, dry_run=args.dry_run)
        print(f"metabase_user: {users} profiles", file=sys.stderr)
    total = steps.legacy_counts(legacy)["metabase"]
    with ours.connect() as conn:
        progress = {row["name"]: row for row in steps.progress_rows(conn)}
    already = (
        0
        if args.dry_run
        else sum(row["migrated"] + row["failed"] for n, row in progress.items() if n.startswith("reports:"))
    )
    legacy.dispose()
    ours.dispose()

    context = multiprocessing.get_context("spawn")
    tasks, events = context.Queue(), context.Queue()
    for item in steps.RANGES:
        tasks.put(item)
    args_dict = {**vars(args), "func": None}
    workers = [context.Process(target=_worker, args=(args_dict, tasks, events)) for _ in range(args.workers)]
    for process in workers:
        process.start()
    totals = {"migrated": 0, "skipped": 0, "failed": 0, "queued": 0}
    alive = len(workers)
    bar = tqdm(
        total=total, initial=min(already, total), unit="rows", smoothing=0.1, dynamic_ncols=True, disable=args.quiet
    )
    while alive:
        try:
            event = events.get(timeout=1)
        except queue_module.Empty:
            if not any(p.is_alive() for p in workers):
                break
            continue
        if event[0] == "rows":
            bar.update(event[1])
        elif event[0] == "range":
            _, _name, migrated, skipped, failed, queued = event
            for key, value in zip(
                ("migrated", "skipped", "failed", "queued"), (migrated, skipped, failed, queued), strict=True
            ):
                totals[key] += value
        elif event[0] == "exit":
            alive -= 1
    bar.close()
    for process in workers:
        process.join()
    failed_workers = [p.exitcode for p in workers if p.exitcode]
    elapsed = time.monotonic() - started
    legacy, ours = _engines(args)
    errors = steps.error_rows(ours) if not args.dry_run else []
    if errors and args.errors:
        os.makedirs(os.path.dirname(os.path.abspath(args.errors)), exist_ok=True)
        with open(args.errors, "w", encoding="utf-8") as out:
            for guid, reason in errors:
                out.write(json.dumps({"guid": guid, "reason": reason}) + "\n")
    summary = {
        "dry_run": args.dry_run,
        "legacy_rows": total,
        "migrated_this_run": totals["migrated"],
        "already_there": totals["skipped"],
        "rejected_this_run": totals["failed"],
        "rejected_total": len(errors),
        "queued": totals["queued"],
        "seconds": round(elapsed, 1),
        "rows_per_second": round((totals["migrated"] + totals["skipped"] + totals["failed"]) / elapsed, 1)
        if elapsed
        else None,
        "error_report": args.errors if errors else None,
    }
    print(json.dumps(summary, indent=1))
    if failed_workers:
        print(f"{len(failed_workers)} worker process(es) died: run again to resume", file=sys.stderr)
        return 2
    return 0


def verify(args) -> int:
    legacy, ours = _engines(args)
    result = steps.verify(legacy, ours, sample=args.sample, seed=args.seed)
    for table, (old, new) in result.counts.items():
        print(f"{table}: legacy {old}, here {new}")
    print(f"rejected legacy rows (error report): {result.rejected}")
    blocks = result.blocks
    print(
        f"report blocks: {blocks.reports} packed reports refer to {blocks.referenced} blocks;"
        f" {blocks.stored} stored, {len(blocks.missing)} missing, {blocks.unreferenced} unreferenced"
    )
    print(f"sampled {result.sampled} processed legacy reports")
    for line in result.differences:
        print(f"DIFFERENCE {line}")
    print("verify: OK" if result.ok else f"verify: {len(result.differences)} difference(s)")
    return 0 if result.ok else 1


def status(args) -> int:
    _, ours = _engines(args)
    with ours.connect() as conn:
        for row in steps.progress_rows(conn):
            print(
                f"{row['name']}: done={bool(row['done'])} migrated={row['migrated']} failed={row['failed']} last={row['last_guid']}"
            )
    return 0


def drop_legacy(args) -> int:
    if not args.yes:
        print("drop-legacy deletes the legacy metabase table: pass --yes", file=sys.stderr)
        return 2
    legacy, ours = _engines(args)
    try:
        freed = steps.drop_legacy_cache(legacy, ours)
    except steps.NotVerified as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(f"dropped the legacy metabase table: {freed} bytes ({freed / 1024**2:.1f} MiB) freed")
    return 0


def parser() -> argparse.ArgumentParser:
    config = settings.load()
    top = argparse.ArgumentParser(prog="python -m scripts.migrate_legacy", description=__doc__.split("\n\n")[0])
    top.add_argument("--legacy-url", default=config.LEGACY_DATABASE_URL or None, help="legacy MySQL database URL")
    top.add_argument("--database-url", default=config.DATABASE_URL, help="our database URL")
    top.add_argument("--redis-url", default=config.REDIS_URL, help="Redis for --queue")
    top.add_argument("--log-level", default=config.LOG_LEVEL)
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("migrate", help="copy and convert (resumable)")
    run.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="processes converting GUID ranges (default: one more than the cores, %(default)s here)",
    )
    run.add_argument("--batch", type=int, default=1000, help="legacy rows per page and transaction")
    run.add_argument("--dry-run", action="store_true", help="read and convert everything, write nothing")
    run.add_argument("--queue", choices=["pending", "all"], help="queue migrated reports for processing")
    run.add_argument("--skip-tables", action="store_true", help="only the reports")
    run.add_argument("--errors", default="var/legacy-migration-errors.jsonl", help="error report (JSON lines)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=migrate)
    check = commands.add_parser("verify", help="compare with the legacy cpanstats; exit 1 on a difference")
    check.add_argument("--sample", type=int, default=1000)
    check.add_argument("--seed", type=int)
    check.set_defaults(func=verify)
    commands.add_parser("status", help="progress of each step").set_defaults(func=status)
    drop = commands.add_parser("drop-legacy", help="drop the legacy metabase table after a successful verify")
    drop.add_argument("--yes", action="store_true")
    drop.set_defaults(func=drop_legacy)
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.legacy_url:
        print("no legacy database: pass --legacy-url or set LEGACY_DATABASE_URL", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
