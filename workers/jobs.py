"""The RQ jobs: process one report (the job the intake queues) or a batch of reports
(what the backlog tool queues).

Each job opens its database connections in the process that runs it, never one
inherited through a fork: the engine is created on first use and re-created when the
process id changes. A transaction that meets a deadlock (MySQL 1213) or a lock wait
timeout (1205) is retried at once, a few times; any other error fails the job, which RQ
retries with back-off; on the last attempt the report is marked ``failed`` and the job
stays in RQ's failed registry for an operator to requeue after a fix.
"""

from __future__ import annotations

import logging
import os

import sqlalchemy as sa
from rq import get_current_job

import settings
from monitoring import counters
from storage.processing import (
    Outcome,
    deadlock_retry,
    mark_failed,
    outcome_counts,
    process_reports,
    processing_engine,
)

logger = logging.getLogger(__name__)

_engine: sa.Engine | None = None
_engine_key: tuple | None = None


def engine() -> sa.Engine:
    """This process's engine for ``DATABASE_URL`` (created after any fork)."""
    global _engine, _engine_key
    url = settings.load().DATABASE_URL
    key = (os.getpid(), url)
    if _engine_key != key:
        if _engine is not None:
            if _engine_key[0] == os.getpid():
                _engine.dispose()
            else:
                _engine.dispose(close=False)  # the parent's connections are the parent's
        _engine = processing_engine(url)
        _engine_key = key
    return _engine


@deadlock_retry
def run_transaction(db: sa.Engine, guids: list[str]) -> dict[str, Outcome]:
    """Process ``guids`` in one transaction, retried from the start on a deadlock."""
    with db.begin() as conn:
        return process_reports(conn, guids)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def _last_attempt() -> bool:
    job = get_current_job()
    return job is None or not job.retries_left


def _record(outcomes: dict[str, Outcome]) -> None:
    processed = sum(1 for o in outcomes.values() if o is not Outcome.MISSING)
    job = get_current_job()
    if job is not None and processed:
        counters.record(job.connection, counters.PROCESSED, processed)


def process_report(guid: str) -> str:
    """The job of one report: its summary rows in one transaction, then its state."""
    db = engine()
    try:
        outcomes = run_transaction(db, [guid])
    except Exception as exc:
        last = _last_attempt()
        logger.error("processing failed guid=%s last_attempt=%s reason=%s", guid, last, _reason(exc))
        if last:
            with db.begin() as conn:
                mark_failed(conn, guid)
        raise
    outcome = outcomes[guid.lower()]
    if outcome is Outcome.MISSING:
        logger.warning("no stored report guid=%s: nothing to do", guid)
    else:
        logger.info("processed guid=%s outcome=%s", guid, outcome.value)
    _record(outcomes)
    return outcome.value


class BatchFailed(Exception):
    """Some reports of a batch could not be processed (the others were)."""


def process_batch(guids: list[str]) -> dict[str, int]:
    """The backlog tool's job: many reports in one transaction; if that fails, each report
    in its own, so one bad report never holds back the others."""
    db = engine()
    try:
        outcomes = run_transaction(db, guids)
    except Exception as exc:
        logger.warning("batch of %d failed (%s); processing one by one", len(guids), _reason(exc))
        outcomes, failed = {}, {}
        for guid in guids:
            try:
                outcomes.update(run_transaction(db, [guid]))
            except Exception as one_exc:
                failed[guid] = _reason(one_exc)
                logger.error("processing failed guid=%s reason=%s", guid, failed[guid])
        _record(outcomes)
        if failed:
            if _last_attempt():
                with db.begin() as conn:
                    for guid in failed:
                        mark_failed(conn, guid)
            raise BatchFailed(f"{len(failed)} of {len(guids)} reports failed: {failed}") from exc
        return outcome_counts(outcomes)
    _record(outcomes)
    counts = outcome_counts(outcomes)
    logger.info("processed batch of %d %s", len(guids), counts)
    return counts
