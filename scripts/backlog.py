"""Process (or queue) stored reports that have no cpanstats row yet.

    python -m scripts.backlog                                   # queue every unprocessed report
    python -m scripts.backlog --ids 1000-250000 --process       # process an id range here, now
    python -m scripts.backlog --since 2026-11-01 --until 2026-11-02 --dry-run
    python -m scripts.backlog --guid 0cbce1be-07f0-11e3-9db1-878205732d18 --process
    python -m scripts.backlog --enrich                          # backfill: parse report texts

Selects ``test_report`` rows with no ``cpanstats`` row (Perl 6 reports, marked skipped,
are left out), walking the table by id in windows, with a progress bar. ``--guid`` takes
the given reports whatever their state. By default it queues one RQ job per batch of
GUIDs (``workers.jobs.process_batch``, one transaction per batch); ``--process`` does the
work in this process instead. Safe while the workers run: processing is idempotent.

``--enrich`` is the backfill of the facts parsed from report texts (``storage/report_facts``):
it walks every stored report (migrated ones included) by id windows and queues one
``workers.enrich.enrich_range`` job per window holding reports with no facts, or facts of
an older parser, on the low-priority queue (``reports-low``: workers take it only when no
report waits). At most ``--max-queued`` such jobs wait at a time, so the progress bar
follows the work done. Resumable: run it again and the windows already done are passed
over (one index range read each); after a parser change (``PARSER_VERSION``) the same
command parses every report again. ``--process`` parses here, ``--dry-run`` only counts,
``--ids`` narrows, ``--guid`` parses these reports again whatever their facts.

The enrichment also counts each report in its release's failure-analysis counts
(``release_factor_count``, see ``storage/factor_counts.py``), and the backfill takes
reports whose facts are not counted yet (enriched before migration 0123) as stale too.
``--enrich --recount`` first empties the counts and marks every report uncounted (after a
change of the counting rules, or counts that no longer match the facts), then backfills.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
from rq import Retry
from tqdm import tqdm

import settings
from queueing import contract as queue
from storage.processing import processing_engine
from storage.tables import cpanstats, test_report

logger = logging.getLogger("scripts.backlog")

WINDOW = 5000
"""Ids scanned per query."""

BATCH_JOB_TIMEOUT = 600
BATCH_RETRY = Retry(max=3, interval=[10, 60, 300])


def parse_ids(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def unprocessed(
    engine: sa.Engine, ids: tuple[int, int] | None, since: datetime | None, until: datetime | None, progress
) -> Iterator[str]:
    """GUIDs of reports with no cpanstats row, by id window, in id order (a short read
    transaction per window, so that the scan never holds locks the workers need)."""
    bounds = sa.select(sa.func.min(test_report.c.id), sa.func.max(test_report.c.id))
    with engine.connect() as conn:
        low, high = conn.execute(bounds).one()
    if low is None:
        return
    if ids:
        low, high = max(low, ids[0]), min(high, ids[1])
    progress.reset(total=max(high - low + 1, 0))
    start = low
    while start <= high:
        end = min(start + WINDOW - 1, high)
        query = (
            sa.select(test_report.c.guid)
            .where(
                test_report.c.id.between(start, end),
                test_report.c.state != "skipped",
                ~sa.exists().where(cpanstats.c.guid == test_report.c.guid),
            )
            .order_by(test_report.c.id)
        )
        if since:
            query = query.where(test_report.c.created >= since)
        if until:
            query = query.where(test_report.c.created < until)
        with engine.connect() as conn:
            found = list(conn.execute(query).scalars())
        yield from found
        progress.update(end - start + 1)
        start = end + 1


def batches(guids: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for guid in guids:
        batch.append(guid)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


ENRICH_WINDOW = 1000
"""Report ids per backfill job (its stale reports are parsed 250 per transaction)."""

ENRICH_MAX_QUEUED = 50
"""Backfill jobs allowed to wait in the low-priority queue at once."""


def enrich_windows(engine: sa.Engine, ids: tuple[int, int] | None, window: int) -> Iterator[tuple[int, int, int]]:
    """``(low, high, stale)`` for each id window holding reports whose facts are missing or
    stale, in id order (a short read per window)."""
    from storage.report_facts import id_bounds, stale_count

    with engine.connect() as conn:
        low, high = id_bounds(conn)
    if low is None:
        return
    if ids:
        low, high = max(low, ids[0]), min(high, ids[1])
    start = low
    while start <= high:
        end = min(start + window - 1, high)
        with engine.connect() as conn:
            stale = stale_count(conn, start, end)
        yield start, end, stale
        start = end + 1


def wait_for_room(redis, limit: int, poll: float = 0.5) -> None:
    """Block while ``limit`` backfill jobs or more wait (live reports go first anyway)."""
    low = queue.low_queue(redis)
    while low.count >= limit:
        time.sleep(poll)


def enrich_main(args, engine: sa.Engine, redis) -> int:
    """The backfill: parse the texts of reports whose facts are missing or stale."""
    from storage import report_facts
    from workers.enrich import ENRICH_RANGE, JOB_TIMEOUT, RETRY, enqueue_enrichment

    if args.guid:
        if args.dry_run:
            print(f"would parse {len(args.guid)} reports")
        elif args.process:
            print(f"parsed {report_facts.enrich_guids(engine, args.guid)} reports")
        else:
            enqueue_enrichment(redis, args.guid)
            print(f"queued {len(args.guid)} reports")
        return 0
    if args.recount and not args.dry_run:
        from storage.factor_counts import forget_counts

        forget_counts(engine)
        print("emptied the failure-analysis counts: every report will be counted again")
    totals = {"reports": 0, "jobs": 0}
    with engine.connect() as conn:
        low, high = report_facts.id_bounds(conn)
    span = 0 if low is None else (min(high, args.ids[1]) - max(low, args.ids[0]) + 1 if args.ids else high - low + 1)
    with tqdm(total=max(span, 0), unit="id", disable=args.no_progress, file=sys.stderr, desc="backfill") as progress:
        for start, end, stale in enrich_windows(engine, args.ids, args.window):
            if stale and not args.dry_run:
                if args.process:
                    report_facts.enrich_stale(engine, start, end)
                else:
                    wait_for_room(redis, args.max_queued)
                    queue.low_queue(redis).enqueue_call(
                        ENRICH_RANGE,
                        args=(start, end),
                        job_id=f"enrich-{start}-{end}",
                        timeout=JOB_TIMEOUT,
                        **queue.LIFETIMES,
                        retry=RETRY,
                        description=f"enrich reports {start}-{end}",
                    )
                    totals["jobs"] += 1
            totals["reports"] += stale
            progress.update(end - start + 1)
            progress.set_postfix(reports=totals["reports"])
    verb = "would parse" if args.dry_run else ("parsed" if args.process else "queued")
    print(f"{verb} {totals['reports']} reports" + (f" in {totals['jobs']} jobs" if totals["jobs"] else ""))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guid", action="append", default=[], help="this report (repeatable)")
    parser.add_argument("--ids", type=parse_ids, help="test_report id range, e.g. 1000-2000")
    parser.add_argument("--since", type=datetime.fromisoformat, help="received at or after (UTC)")
    parser.add_argument("--until", type=datetime.fromisoformat, help="received before (UTC)")
    parser.add_argument("--process", action="store_true", help="process here instead of queueing jobs")
    parser.add_argument("--batch-size", type=int, default=200, help="reports per job / transaction (200)")
    parser.add_argument("--dry-run", action="store_true", help="only count what would be done")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--enrich", action="store_true", help="backfill the facts parsed from report texts")
    parser.add_argument(
        "--recount", action="store_true", help="--enrich: empty the failure-analysis counts first, count all again"
    )
    parser.add_argument("--window", type=int, default=ENRICH_WINDOW, help="--enrich: report ids per job (1000)")
    parser.add_argument(
        "--max-queued", type=int, default=ENRICH_MAX_QUEUED, help="--enrich: backfill jobs waiting at most (50)"
    )
    args = parser.parse_args(argv)
    config = settings.load()
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    engine = processing_engine(config.DATABASE_URL)
    redis = None if (args.process or args.dry_run) else queue.connect(config.REDIS_URL)
    if args.enrich:
        return enrich_main(args, engine, redis)
    if args.process:
        from workers import jobs

        jobs.configure(config)  # the jobs run in this process
    totals = {"reports": 0, "batches": 0, "failed": 0}
    with tqdm(total=0, unit="id", disable=args.no_progress, file=sys.stderr, desc="scanning") as progress:
        guids = iter(args.guid) if args.guid else unprocessed(engine, args.ids, args.since, args.until, progress)
        for batch in batches(guids, args.batch_size):
            totals["reports"] += len(batch)
            totals["batches"] += 1
            progress.set_postfix(reports=totals["reports"])
            if args.dry_run:
                continue
            if args.process:
                from workers.jobs import BatchFailed, process_batch

                try:
                    process_batch(batch)
                except BatchFailed as exc:
                    totals["failed"] += 1
                    logger.error("%s", exc)
            else:
                queue.report_queue(redis).enqueue(
                    queue.BATCH_JOB_FUNCTION,
                    batch,
                    job_timeout=BATCH_JOB_TIMEOUT,
                    **queue.LIFETIMES,
                    retry=BATCH_RETRY,
                    description=f"process {len(batch)} backlog reports from {batch[0]}",
                )
    verb = "would handle" if args.dry_run else ("processed" if args.process else "queued")
    print(f"{verb} {totals['reports']} reports in {totals['batches']} batches; failed batches: {totals['failed']}")
    return 1 if totals["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
