"""The RQ jobs that parse report texts into their facts (``storage/report_facts.py``).

New reports are parsed by their own processing job right after it commits
(:func:`enrich_after_processing`, called from ``workers.jobs``); a failure there never
fails the report's processing: the reports go to :func:`enrich_reports` on the
low-priority queue instead (and the backfill finds any left without facts). The backfill
(``scripts.backlog --enrich``) queues :func:`enrich_range` jobs on the low-priority queue.
Every job here is idempotent: running one again rewrites the same rows.
"""

from __future__ import annotations

import logging

from rq import Retry, get_current_job

from queueing import contract as queue
from storage import report_facts
from workers.jobs import job_engine

logger = logging.getLogger(__name__)

ENRICH_REPORTS = queue.ENRICH_REPORTS_FUNCTION
ENRICH_RANGE = queue.ENRICH_RANGE_FUNCTION
JOB_TIMEOUT = 600
RETRY = Retry(max=3, interval=[10, 60, 300])


def enrich_reports(guids: list[str]) -> int:
    """Parse and store the facts of these reports (whatever facts they had)."""
    found = report_facts.enrich_guids(job_engine(), guids)
    logger.info("enriched %d reports", found)
    return found


def enrich_range(low: int, high: int) -> int:
    """The backfill's job: the reports with ids ``low..high`` whose facts are missing or
    were written by an older parser."""
    done = report_facts.enrich_stale(job_engine(), low, high)
    logger.info("enriched ids=%d-%d reports=%d", low, high, done)
    return done


def enqueue_enrichment(connection, guids: list[str]) -> None:
    """Queue :func:`enrich_reports` on the low-priority queue."""
    queue.low_queue(connection).enqueue_call(
        ENRICH_REPORTS,
        args=(guids,),
        timeout=JOB_TIMEOUT,
        **queue.LIFETIMES,
        retry=RETRY,
        description=f"enrich {len(guids)} reports from {guids[0]}",
    )


def enrich_after_processing(
    guids: list[str], documents: dict[int, dict] | None = None, columns: dict | None = None
) -> None:
    """In a processing job, after its commit: parse the reports it processed (their
    ``documents`` by ``test_report.id`` if the transaction read them, else read again; and
    their ``columns``, the same way, for the failure-analysis counts).
    Never raises (their counting is done and stays done); on failure the work is queued
    instead."""
    if not guids:
        return
    try:
        if documents is None:
            report_facts.enrich_guids(job_engine(), guids)
        else:
            report_facts.enrich_documents(job_engine(), documents, columns)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        logger.warning("enrichment failed for %d reports from guid=%s (%s); queued", len(guids), guids[0], reason)
        job = get_current_job()
        try:
            if job is None:
                raise RuntimeError("not in a job")
            enqueue_enrichment(job.connection, guids)
        except Exception:
            logger.error(
                "could not queue the enrichment of %d reports from guid=%s; the backfill will", len(guids), guids[0]
            )
