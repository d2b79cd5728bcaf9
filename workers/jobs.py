"""The RQ jobs: process one report (the job the intake queues) or a batch of reports
(what the backlog tool queues).

Each job opens its database connections in the process that runs it, never one
inherited through a fork: the engine is created on first use and re-created when the
process id changes. A transaction that meets a deadlock (MySQL 1213) or a lock wait
timeout (1205) is retried at once, a few times. A database that cannot be reached raises
:class:`storage.engine.DatabaseUnavailable`: the worker puts the job back without using a
retry and waits for the database (see :mod:`workers.worker`). Any other error fails the
job, which RQ retries with back-off; on the last attempt the report is marked ``failed``
and the job stays in RQ's failed registry for an operator to requeue after a fix.
"""

from __future__ import annotations

import logging
import os

import sqlalchemy as sa
from rq import get_current_job
from rq.job import Job

from queueing import counters
from queueing.contract import job_id, report_queue
from storage.engine import DatabaseUnavailable, is_unavailable
from storage.processing import (
    DONE_STATES,
    Outcome,
    deadlock_retry,
    mark_failed,
    outcome_counts,
    process_pending,
    process_reports,
    processing_engine,
)

logger = logging.getLogger(__name__)

_config = None
_engine: sa.Engine | None = None
_engine_pid: int | None = None


def configure(config) -> None:
    """Give this process's jobs their settings (``DATABASE_URL``, ``WORKER_DB_READ_TIMEOUT``,
    ``WORKER_DB_IDLE_TIMEOUT``), once, from the entry point that runs them (``workers.run``,
    ``scripts.backlog --process``). ``None`` forgets them. Any engine built from earlier
    settings is closed."""
    global _config, _engine, _engine_pid
    if _engine is not None:
        _engine.dispose(close=_engine_pid == os.getpid())  # a parent's connections are the parent's
    _config, _engine, _engine_pid = config, None, None


def job_engine() -> sa.Engine:
    """This process's engine for the configured database (created on first use and again
    after a fork), with the workers' read and idle timeouts."""
    global _engine, _engine_pid
    if _config is None:
        raise RuntimeError("workers.jobs.configure(config) was not called in this process")
    if _engine_pid != os.getpid():
        if _engine is not None:
            _engine.dispose(close=False)  # the parent's connections are the parent's
        _engine = processing_engine(
            _config.DATABASE_URL,
            read_timeout=_config.WORKER_DB_READ_TIMEOUT,
            idle_timeout=_config.WORKER_DB_IDLE_TIMEOUT,
        )
        _engine_pid = os.getpid()
    return _engine


def ping() -> None:
    """One round trip to the database (the worker's probe while it waits for it)."""
    with job_engine().connect() as conn:
        conn.exec_driver_sql("SELECT 1")


def _unavailable(exc: BaseException, what: str) -> DatabaseUnavailable:
    logger.debug("database unavailable for %s: %s", what, _reason(exc))
    return DatabaseUnavailable(_reason(exc))


@deadlock_retry
def run_transaction(db: sa.Engine, guids: list[str]) -> dict[str, Outcome]:
    """Process ``guids`` in one transaction, retried from the start on a deadlock."""
    with db.begin() as conn:
        return process_reports(conn, guids)


@deadlock_retry
def run_job_transaction(db: sa.Engine, guids: list[str]) -> tuple[dict[str, Outcome], set[str], dict, dict]:
    """The report job's transaction: reports already done are left alone (see
    :func:`storage.processing.process_pending`, whose outcomes, unchanged GUIDs,
    documents and columns it returns); retried from the start on a deadlock."""
    with db.begin() as conn:
        return process_pending(conn, guids)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def _last_attempt() -> bool:
    job = get_current_job()
    return job is None or not job.retries_left


def _record(outcomes: dict[str, Outcome], unchanged: set[str] = frozenset(), own: str | None = None) -> None:
    """Count the reports this job processed and, with ``own``, remove its report's claim or
    "taken along" marker, in one round trip: a job that claimed the report after this one
    had read its key (``_taken``) marks it once done, and nothing else would read that."""
    processed = sum(1 for g, o in outcomes.items() if o is not Outcome.MISSING and g not in unchanged)
    job = get_current_job()
    if job is None or not (processed or own):
        return
    try:
        pipe = job.connection.pipeline(transaction=False)
        if processed:
            counters.add_to(pipe, counters.PROCESSED, processed)
        if own:
            pipe.delete(taken_key(own))
        pipe.execute()
    except Exception:  # figures are best effort; the marker expires after TAKEN_TTL
        logger.debug("could not record the outcome in Redis", exc_info=True)


def _enrich(
    outcomes: dict[str, Outcome],
    unchanged: set[str] = frozenset(),
    documents: dict[int, dict] | None = None,
    columns: dict | None = None,
) -> None:
    """After the commit: parse the texts of the reports this job processed into their
    facts (``workers/enrich.py``; never raises, a failure is queued as low-priority work).
    ``documents``, when the transaction read them, are parsed without being read again (and
    counted by their ``columns``)."""
    from workers.enrich import enrich_after_processing  # it imports this module

    guids = sorted(g for g, o in outcomes.items() if o is not Outcome.MISSING and g not in unchanged)
    enrich_after_processing(guids, documents, columns)


COALESCE_LIMIT = 50
"""With a backlog, a report job also takes up to this many reports queued behind it into
its transaction. It claims them first, so that two workers never take the same reports
along (they would only wait for each other's row locks), and once they are committed it
removes their jobs from the queue: no worker spends a dequeue, a job start and a finish
on a report that is already done."""


TAKEN_TTL = 120
"""Seconds a claim or a "taken along" marker lives. A claim outlives any transaction a
worker keeps (the read timeout ends one sooner); a marker only has to outlive the jobs
that a worker had already dequeued when the report was committed. Markers are removed as
soon as nothing can read them (their job left the queue, or read them): the TTL is only
the bound for a worker that died in between."""

CLAIMED = "claimed"
"""The value of a marker while the report's transaction is still running."""


def taken_key(guid: str) -> str:
    """The Redis key of the claim, then the "taken along" marker, of one report (see
    :data:`COALESCE_LIMIT`)."""
    return f"cpt:processing:taken:{guid.lower()}"


def _claim(guids: list[str]) -> list[str]:
    """Claim ``guids`` for this job's transaction (``SET NX``): the ones another job has
    claimed or already marked done are left out."""
    job = get_current_job()
    if job is None or not guids:
        return []
    try:
        pipe = job.connection.pipeline(transaction=False)
        for guid in guids:
            pipe.set(taken_key(guid), CLAIMED, nx=True, ex=TAKEN_TTL)
        return [guid for guid, claimed in zip(guids, pipe.execute(), strict=True) if claimed]
    except Exception:  # an optimisation only: the reports' own jobs process them
        logger.debug("could not claim the reports queued behind", exc_info=True)
        return []


def _release(guids: list[str]) -> None:
    """Give up claims: the reports' own jobs will process them."""
    job = get_current_job()
    if job is None or not guids:
        return
    try:
        job.connection.delete(*(taken_key(guid) for guid in guids))
    except Exception:  # the claims expire after TAKEN_TTL: their jobs then run in full
        logger.debug("could not release claims", exc_info=True)


def _settle_taken(outcomes: dict[str, Outcome], unchanged: set[str], claimed: list[str]) -> None:
    """After the commit: mark the reports taken along and processed here with their
    outcome, release the other claims (reports not stored yet, or already done by another
    job, whose own job has read its key), and remove the jobs of the finished ones from
    the queue. A job a worker has already dequeued is not in the queue any more; it finds
    the marker and returns after one Redis read."""
    job = get_current_job()
    if job is None or not claimed:
        return
    finished = [g for g in claimed if outcomes.get(g, Outcome.MISSING) is not Outcome.MISSING]
    marked = [g for g in finished if g not in unchanged]
    try:
        queue = report_queue(job.connection, job.origin)
        pipe = job.connection.pipeline(transaction=False)
        for guid in marked:  # XX: a claim its dequeued job has read and removed is not marked
            pipe.set(taken_key(guid), outcomes[guid].value, ex=TAKEN_TTL, xx=True)
        for guid in finished:
            pipe.lrem(queue.key, 1, job_id(guid))
        released = [g for g in claimed if g not in marked]
        if released:
            pipe.delete(*(taken_key(guid) for guid in released))
        removed = pipe.execute()[len(marked) : len(marked) + len(finished)]
        # A job removed from the queue will never run: its hash would stay forever, and its
        # marker has no job left to tell (one a worker had dequeued was not removed).
        gone = [guid for guid, count in zip(finished, removed, strict=True) if count]
        if gone:
            job.connection.delete(*(Job.key_for(job_id(guid)) for guid in gone), *map(taken_key, gone))
    except Exception:  # an optimisation only: the jobs then run and find their report done
        logger.debug("could not settle the reports taken along", exc_info=True)


def _taken(guid: str) -> str | None:
    """The report's claim or marker, removed as it is read (``GETDEL``): this job is the
    only one left that it concerns. A claim read here is another job's transaction still
    running: this job then processes the report itself (waiting for that transaction's
    row locks, then finding it done), and the claimant leaves no marker nobody reads."""
    job = get_current_job()
    if job is None:
        return None
    try:
        value = job.connection.getdel(taken_key(guid))
    except Exception:
        return None
    return value.decode() if value else None


def _queued_behind() -> list[str]:
    """GUIDs of the report jobs next in this job's queue (one LRANGE; none when idle)."""
    job = get_current_job()
    if job is None or COALESCE_LIMIT <= 0:
        return []
    try:
        ids = report_queue(job.connection, job.origin).get_job_ids(0, COALESCE_LIMIT - 1)
    except Exception:  # an optimisation only
        return []
    prefix = job_id("")
    return [i[len(prefix) :] for i in ids if i.startswith(prefix)]


def process_report(guid: str) -> str:
    """The job of one report: its summary rows in one transaction, then its state.

    A report already done (or skipped) is left alone: that is the work of an earlier
    job or of a job that took it along (see :data:`COALESCE_LIMIT`). Reprocess a done
    report with ``scripts.backlog --guid``.
    """
    taken = _taken(guid)
    if taken in DONE_STATES:
        logger.debug("taken along, already %s guid=%s", taken, guid)
        return taken
    db = job_engine()
    own = guid.lower()
    result = None
    # The state is read in the transaction's first query, with the rows of the reports
    # queued behind (none when the workers keep up): no separate look-up.
    others = _claim([g for g in _queued_behind() if g != own])
    if others:
        try:
            result = run_job_transaction(db, [guid, *others])
        except Exception as exc:  # one of the others may be bad: do just this one
            _release(others)
            if is_unavailable(exc):
                raise _unavailable(exc, f"guid={guid}") from exc
            logger.info("coalesced transaction failed (%s); processing guid=%s alone", _reason(exc), guid)
        else:
            _settle_taken(result[0], result[1], others)
    try:
        if result is None:
            result = run_job_transaction(db, [guid])
    except Exception as exc:
        if is_unavailable(exc):  # not this report's fault: the worker puts the job back
            raise _unavailable(exc, f"guid={guid}") from exc
        last = _last_attempt()
        logger.error("processing failed guid=%s last_attempt=%s reason=%s", guid, last, _reason(exc))
        if last:
            with db.begin() as conn:
                mark_failed(conn, guid)
        raise
    outcomes, unchanged, documents, columns = result
    if own in unchanged:
        logger.debug("already %s guid=%s", outcomes[own].value, guid)
    outcome = outcomes[own]
    if outcome is Outcome.MISSING:
        logger.warning("no stored report guid=%s: nothing to do", guid)
    elif own not in unchanged:
        logger.info("processed guid=%s outcome=%s with=%d others", guid, outcome.value, len(outcomes) - 1)
    _record(outcomes, unchanged, own)
    _enrich(outcomes, unchanged, documents, columns)
    return outcome.value


class BatchFailed(Exception):
    """Some reports of a batch could not be processed (the others were)."""


def process_batch(guids: list[str]) -> dict[str, int]:
    """The backlog tool's job: many reports in one transaction; if that fails, each report
    in its own, so one bad report never holds back the others."""
    db = job_engine()
    try:
        outcomes = run_transaction(db, guids)
    except Exception as exc:
        if is_unavailable(exc):
            raise _unavailable(exc, f"a batch of {len(guids)}") from exc
        logger.warning("batch of %d failed (%s); processing one by one", len(guids), _reason(exc))
        outcomes, failed = {}, {}
        for guid in guids:
            try:
                outcomes.update(run_transaction(db, [guid]))
            except Exception as one_exc:
                if is_unavailable(one_exc):
                    _record(outcomes)
                    raise _unavailable(one_exc, f"guid={guid}") from one_exc
                failed[guid] = _reason(one_exc)
                logger.error("processing failed guid=%s reason=%s", guid, failed[guid])
        _record(outcomes)
        _enrich(outcomes)
        if failed:
            if _last_attempt():
                with db.begin() as conn:
                    for guid in failed:
                        mark_failed(conn, guid)
            raise BatchFailed(f"{len(failed)} of {len(guids)} reports failed: {failed}") from exc
        return outcome_counts(outcomes)
    _record(outcomes)
    _enrich(outcomes)
    counts = outcome_counts(outcomes)
    logger.info("processed batch of %d %s", len(guids), counts)
    return counts
