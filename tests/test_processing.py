"""Processing a stored report into cpanstats, uploads, perl_version, release_data and
release_summary, through real RQ jobs, on both backends."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from rq import Retry
from rq.registry import FailedJobRegistry

from queueing import counters
from queueing.contract import JOB_FUNCTION, enqueue_report, job_id, report_queue
from storage.processing import backlog_figures
from storage.tables import cpanstats, perl_version, release_data, release_summary, test_report, uploads
from tests.processing_helpers import (
    TESTERS,
    run_jobs,
    states,
    stats_rows,
    store,
    summary,
    table_count,
)
from workers import jobs


def test_a_processed_report_has_all_its_summary_rows(backend, db):
    guid = store(db, tester=TESTERS[1], perl="5.16.0 RC0", grade="fail", created=datetime(2026, 11, 29, 23, 58, 7))
    redis = backend.redis()
    enqueue_report(redis, guid)
    run_jobs(redis)

    (row,) = stats_rows(db)
    assert row["guid"] == guid
    assert row["tester"] == '"Andreas J. K&#246;nig" <andreas.koenig.gmwojprw@franz.ak.mind.de>'
    assert (row["state"], row["postdate"], row["fulldate"], row["type"]) == ("fail", 202611, "202611292358", 2)
    assert (row["platform"], row["osname"], row["osvers"], row["perl"]) == (
        "i386-freebsd",
        "freebsd",
        "8.0-release",
        "5.16.0 RC0",
    )
    with db.connect() as conn:
        upload = conn.execute(sa.select(uploads)).mappings().one()
        perl = conn.execute(sa.select(perl_version)).mappings().one()
        data = conn.execute(sa.select(release_data)).mappings().one()
        report = conn.execute(sa.select(test_report)).mappings().one()
    assert (upload["type"], upload["dist"], upload["version"]) == ("unknown", "CPAN-Testers-WWW-Statistics", "1.06")
    assert row["uploadid"] == upload["uploadid"]
    assert dict(perl) == {"version": "5.16.0 RC0", "perl": "5.16.0", "patch": 0, "devel": 1}
    assert (data["id"], data["guid"], data["fail"], data["pass"]) == (row["id"], guid, 1, 0)
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 2): (0, 1, 0, 0)}
    assert report["state"] == "done" and report["state_changed"] is not None
    assert sum(n for _, n in counters.series(redis, counters.PROCESSED, minutes=2)) == 1


def test_processing_a_report_twice_counts_it_once(backend, db):
    guids = [store(db, grade=g) for g in ("pass", "pass", "fail")]
    for _ in range(2):
        for guid in guids:
            jobs.process_report(guid)
    jobs.process_batch(guids + guids)
    assert table_count(db, cpanstats) == 3
    assert table_count(db, release_data) == 3
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (2, 1, 0, 0)}
    ids = sorted(r["id"] for r in stats_rows(db))
    jobs.process_report(guids[0])
    assert sorted(r["id"] for r in stats_rows(db)) == ids


def test_release_flags_split_the_summary(backend, db):
    store(db, version="1.07_01", perl="5.39.2", grade="pass")
    store(db, version="1.07_01", perl="5.8.8 patch 34559", grade="na")
    store(db, version="1.07_01", perl="5.8.8 patch 34559", grade="unknown")
    store(db, version="1.07", perl="5.36.1", grade="pass")
    for guid in states(db):
        jobs.process_report(guid)
    assert summary(db) == {
        ("CPAN-Testers-WWW-Statistics", "1.07_01", 1, 2, 2, 1): (1, 0, 0, 0),
        ("CPAN-Testers-WWW-Statistics", "1.07_01", 1, 2, 1, 2): (0, 0, 1, 1),
        ("CPAN-Testers-WWW-Statistics", "1.07", 1, 1, 1, 1): (1, 0, 0, 0),
    }
    with db.connect() as conn:
        perls = {r.version: (r.perl, r.patch, r.devel) for r in conn.execute(sa.select(perl_version))}
    assert perls == {
        "5.39.2": ("5.39.2", 0, 1),
        "5.8.8 patch 34559": ("5.8.8", 1, 0),
        "5.36.1": ("5.36.1", 0, 0),
    }


def test_a_known_upload_is_used_and_backpan_counts_as_oncpan_2(backend, db):
    with db.begin() as conn:
        conn.execute(
            uploads.insert().values(
                uploadid=206879,
                type="backpan",
                author="BARBIE",
                dist="CPAN-Testers-WWW-Statistics",
                version="1.06",
                filename="CPAN-Testers-WWW-Statistics-1.06.tar.gz",
                released=1376821046,
            )
        )
    jobs.process_report(store(db))
    assert stats_rows(db)[0]["uploadid"] == 206879
    assert table_count(db, uploads) == 1
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 2, 1, 1, 1): (1, 0, 0, 0)}


def test_a_perl6_report_is_skipped_and_counted_nowhere(backend, db):
    guid = store(db, language="Perl 6", perl="2016.12-239-gc405f06")
    assert jobs.process_report(guid) == "skipped"
    assert states(db) == {guid: "skipped"}
    for table in (cpanstats, uploads, perl_version, release_data, release_summary):
        assert table_count(db, table) == 0


def test_a_report_that_cannot_be_processed_is_retried_then_left_in_the_failed_registry(backend, db):
    good = store(db)
    bad = store(db, grade="bogus")  # bad data that slipped past validation
    redis = backend.redis()
    queue = report_queue(redis)
    for guid in (bad, good):  # the intake's job, with the back-off shortened to nothing
        queue.enqueue(JOB_FUNCTION, guid, job_id=job_id(guid), retry=Retry(max=2))
    run_jobs(redis)

    assert states(db) == {good: "done", bad: "failed"}
    failed = FailedJobRegistry(queue=queue)
    assert failed.get_job_ids() == [job_id(bad)]
    assert "grade 'bogus'" in report_queue(redis).fetch_job(job_id(bad)).latest_result().exc_string
    assert table_count(db, cpanstats) == 1

    # An operator repairs the report and requeues the job: the report is processed.
    with db.begin() as conn:
        conn.execute(test_report.delete().where(test_report.c.guid == bad))
    store(db, guid=bad, grade="pass")
    failed.requeue(job_id(bad))
    run_jobs(redis)
    assert states(db) == {good: "done", bad: "done"}
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (2, 0, 0, 0)}


def test_backlog_figures_come_from_the_state_index(backend, db):
    first = store(db, created=datetime(2026, 11, 1, 10, 0, 0))
    store(db, created=datetime(2026, 11, 2, 10, 0, 0))
    jobs.process_report(store(db, created=datetime(2026, 10, 1)))
    with db.connect() as conn:
        figures = backlog_figures(conn)
        plan = " ".join(
            str(r)
            for r in conn.exec_driver_sql(
                ("EXPLAIN QUERY PLAN " if db.dialect.name == "sqlite" else "EXPLAIN ")
                + "SELECT COUNT(*), MIN(created) FROM test_report WHERE state = 'pending'"
            )
        )
    assert figures == {"pending": 2, "oldest_pending": datetime(2026, 11, 1, 10, 0, 0)}
    assert "test_report_state_created" in plan
    assert first in states(db)


def test_a_missing_report_is_a_no_op(backend, db):
    assert jobs.process_report("00000000-0000-0000-0000-000000000000") == "missing"
    assert table_count(db, cpanstats) == 0


def test_a_report_job_takes_the_reports_queued_behind_it_into_its_transaction(backend, db, caplog):
    guids = [store(db, grade=grade) for grade in ("pass", "fail", "na", "unknown", "pass")]
    redis = backend.redis()
    for guid in guids:
        enqueue_report(redis, guid)
    with caplog.at_level("INFO", logger="workers.jobs"):
        run_jobs(redis)
    assert "with=4 others" in caplog.text
    assert set(states(db).values()) == {"done"}
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (2, 1, 1, 1)}
    assert sum(n for _, n in counters.series(redis, counters.PROCESSED, minutes=2)) == 5
    assert FailedJobRegistry(queue=report_queue(redis)).count == 0
