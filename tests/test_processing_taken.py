"""Reports taken along by a coalesced transaction: their own jobs return after one Redis
read, and a duplicate job of a done report changes nothing; on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from rq.job import Job

from queueing.contract import SERIALIZER, enqueue_report, job_id
from storage.tables import cpanstats, perl_version, release_data
from tests.processing_helpers import run_jobs, states, store, summary, table_count
from workers import jobs


def test_jobs_of_reports_taken_along_return_after_a_redis_read(backend, db, monkeypatch):
    guids = [store(db, grade=grade, perl="5.22.2") for grade in ("pass", "fail", "na", "pass")]
    redis = backend.redis()
    for guid in guids:
        enqueue_report(redis, guid)

    transactions = []
    real = jobs.run_job_transaction

    def counting(db_, batch):
        transactions.append(sorted(batch))
        return real(db_, batch)

    monkeypatch.setattr(jobs, "run_job_transaction", counting)
    run_jobs(redis)

    assert len(transactions) == 1  # the first job took the three behind it along
    first = guids[0]  # the queue is FIFO
    for guid in guids:
        job = Job.fetch(job_id(guid), connection=redis, serializer=SERIALIZER)
        assert job.return_value() == "done"
        marker = redis.get(jobs.taken_key(guid))
        assert (marker is None) == (guid == first)
    assert states(db) == dict.fromkeys(guids, "done")
    assert table_count(db, cpanstats) == 4
    assert table_count(db, release_data) == 4
    assert table_count(db, perl_version) == 1
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (2, 1, 1, 0)}

    # A duplicate job once the marker is gone: the state, read in the transaction, says done.
    redis.delete(jobs.taken_key(guids[1]))
    with db.connect() as conn:
        ids = dict(conn.execute(sa.select(cpanstats.c.guid, cpanstats.c.id)).all())
    enqueue_report(redis, guids[1])
    run_jobs(redis)
    assert len(transactions) == 2
    with db.connect() as conn:
        assert dict(conn.execute(sa.select(cpanstats.c.guid, cpanstats.c.id)).all()) == ids
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (2, 1, 1, 0)}
