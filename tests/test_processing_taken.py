"""Reports taken along by a coalesced transaction: claimed first, so that no two jobs take
the same report; once committed, their jobs leave the queue, and a job a worker had
already dequeued returns after one Redis read; a duplicate job of a done report changes
nothing. What Redis keeps afterwards does not depend on how many reports went through.
On both backends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from rq.job import Job
from rq.registry import FinishedJobRegistry

from queueing.contract import SERIALIZER, enqueue_report, job_id, report_queue
from storage.tables import cpanstats, perl_version, release_data
from tests.processing_helpers import run_jobs, states, store, summary, table_count
from workers import jobs


@pytest.fixture
def transactions(monkeypatch):
    """The GUIDs of every report transaction the jobs run, in order."""
    seen = []
    real = jobs.run_job_transaction

    def counting(db_, batch):
        seen.append(sorted(batch))
        return real(db_, batch)

    monkeypatch.setattr(jobs, "run_job_transaction", counting)
    return seen


def _queued(backend, db, grades=("pass", "fail", "na", "pass")):
    redis = backend.redis()
    guids = [store(db, grade=grade, perl="5.22.2") for grade in grades]
    for guid in guids:
        enqueue_report(redis, guid)
    return redis, guids


def test_a_job_takes_the_reports_queued_behind_it_into_its_transaction(backend, db, transactions):
    redis, guids = _queued(backend, db)
    run_jobs(redis)

    assert transactions == [sorted(guids)]
    assert states(db) == dict.fromkeys(guids, "done")
    assert table_count(db, cpanstats) == 4
    assert table_count(db, release_data) == 4
    assert table_count(db, perl_version) == 1
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (2, 1, 1, 0)}


def test_the_jobs_of_reports_taken_along_leave_the_queue_with_their_markers(backend, db, transactions):
    redis, guids = _queued(backend, db)
    run_jobs(redis)

    assert transactions == [sorted(guids)]
    assert not any(Job.exists(job_id(guid), connection=redis) for guid in guids)
    assert report_queue(redis).count == 0
    # Their jobs will never run: no marker has anything left to tell.
    assert [redis.get(jobs.taken_key(guid)) for guid in guids] == [None] * 4


def test_a_taken_report_whose_job_a_worker_dequeued_meanwhile_keeps_its_done_marker(
    backend, db, transactions, monkeypatch
):
    redis, guids = _queued(backend, db)
    claim = jobs._claim

    def claim_then_another_worker_dequeues(candidates):
        claimed = claim(candidates)
        redis.lrem(report_queue(redis).key, 1, job_id(guids[2]))  # as another worker's dequeue does
        return claimed

    monkeypatch.setattr(jobs, "_claim", claim_then_another_worker_dequeues)
    run_jobs(redis)

    assert redis.get(jobs.taken_key(guids[2])) == b"done"  # its dequeued job reads it and returns
    assert [redis.get(jobs.taken_key(guid)) for guid in (guids[1], guids[3])] == [None, None]


def test_a_dequeued_job_that_finds_its_report_claimed_runs_it_and_no_marker_is_left(
    backend, db, transactions, monkeypatch
):
    redis, guids = _queued(backend, db)
    claim = jobs._claim

    def claim_then_another_worker_runs_one(candidates):
        claimed = claim(candidates)
        if guids[2] in claimed:  # another worker dequeues its job and runs it meanwhile
            redis.lrem(report_queue(redis).key, 1, job_id(guids[2]))
            Job.fetch(job_id(guids[2]), connection=redis, serializer=SERIALIZER).perform()
        return claimed

    monkeypatch.setattr(jobs, "_claim", claim_then_another_worker_runs_one)
    run_jobs(redis)

    assert transactions == [[guids[2]], sorted(guids)]
    assert states(db) == dict.fromkeys(guids, "done")
    assert table_count(db, cpanstats) == 4
    assert [redis.get(jobs.taken_key(guid)) for guid in guids] == [None] * 4


def test_a_claimed_report_that_another_job_processed_first_gets_no_marker(backend, db, transactions, monkeypatch):
    redis, guids = _queued(backend, db)
    claim = jobs._claim

    def another_worker_runs_one_then_claim(candidates):
        if guids[2] in candidates:  # another worker dequeued its job and ran it just before
            redis.lrem(report_queue(redis).key, 1, job_id(guids[2]))
            Job.fetch(job_id(guids[2]), connection=redis, serializer=SERIALIZER).perform()
        return claim(candidates)

    monkeypatch.setattr(jobs, "_claim", another_worker_runs_one_then_claim)
    run_jobs(redis)

    assert transactions[-1] == sorted(guids)  # the first job's, which found guids[2] done
    assert states(db) == dict.fromkeys(guids, "done")
    assert table_count(db, cpanstats) == 4
    assert [redis.get(jobs.taken_key(guid)) for guid in guids] == [None] * 4


def test_a_marker_set_while_its_own_job_runs_is_removed_when_the_job_ends(backend, db, monkeypatch):
    redis, (guid,) = _queued(backend, db, grades=("pass",))
    real = jobs.run_job_transaction

    def marked_meanwhile(db_, batch):
        result = real(db_, batch)
        redis.set(jobs.taken_key(guid), "done")  # another job that had claimed it settles
        return result

    monkeypatch.setattr(jobs, "run_job_transaction", marked_meanwhile)
    run_jobs(redis)

    assert states(db) == {guid: "done"}
    assert redis.get(jobs.taken_key(guid)) is None


def test_a_processed_reports_job_leaves_nothing_in_redis(backend, db, transactions):
    redis, (guid,) = _queued(backend, db, grades=("pass",))
    run_jobs(redis)

    assert states(db) == {guid: "done"}  # the database holds the outcome
    assert not Job.exists(job_id(guid), connection=redis)
    assert redis.keys("rq:results:*") == []
    assert FinishedJobRegistry(queue=report_queue(redis)).count == 0


def test_a_report_claimed_by_another_job_is_not_taken_along(backend, db, transactions):
    redis, guids = _queued(backend, db)
    redis.set(jobs.taken_key(guids[1]), jobs.CLAIMED)  # as a job on another worker does
    run_jobs(redis)

    assert transactions == [sorted([guids[0], guids[2], guids[3]]), [guids[1]]]
    assert states(db) == dict.fromkeys(guids, "done")
    assert table_count(db, cpanstats) == 4


def test_a_dequeued_job_whose_report_was_taken_along_returns_after_reading_its_marker(backend, db, transactions):
    redis, (guid,) = _queued(backend, db, grades=("pass",))
    redis.set(jobs.taken_key(guid), "done")  # committed by another job after this one was dequeued
    run_jobs(redis)

    assert transactions == []
    assert states(db) == {guid: "pending"}  # it trusted the marker: no transaction at all
    assert not Job.exists(job_id(guid), connection=redis)
    assert redis.get(jobs.taken_key(guid)) is None  # read once, by the only job that needed it


def test_the_claim_of_a_report_not_yet_stored_is_released_for_its_own_job(backend, db, transactions):
    redis, (guid,) = _queued(backend, db, grades=("pass",))
    not_stored = "00000000-0000-0000-0000-00000000abcd"
    enqueue_report(redis, not_stored)
    run_jobs(redis)

    assert transactions == [sorted([guid, not_stored]), [not_stored]]
    assert redis.get(jobs.taken_key(not_stored)) is None


def test_a_failed_coalesced_transaction_releases_its_claims_and_each_job_runs_alone(
    backend, db, transactions, monkeypatch
):
    redis, guids = _queued(backend, db, grades=("pass", "fail"))
    counting = jobs.run_job_transaction

    def refusing_batches(db_, batch):
        if len(batch) > 1:
            counting(db_, [])  # recorded, as a transaction that failed
            raise RuntimeError("one of the others is bad")
        return counting(db_, batch)

    monkeypatch.setattr(jobs, "run_job_transaction", refusing_batches)
    run_jobs(redis)

    assert transactions == [[], [guids[0]], [guids[1]]]
    assert states(db) == dict.fromkeys(guids, "done")
    assert table_count(db, cpanstats) == 2


def test_a_duplicate_job_of_a_done_report_changes_nothing(backend, db, transactions):
    redis, guids = _queued(backend, db)
    run_jobs(redis)
    with db.connect() as conn:
        ids = dict(conn.execute(sa.select(cpanstats.c.guid, cpanstats.c.id)).all())

    redis.delete(jobs.taken_key(guids[1]))  # the marker gone: the state, read in the transaction, says done
    enqueue_report(redis, guids[1])
    run_jobs(redis)

    assert transactions[-1] == [guids[1]]
    with db.connect() as conn:
        assert dict(conn.execute(sa.select(cpanstats.c.guid, cpanstats.c.id)).all()) == ids
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (2, 1, 1, 0)}
