"""Where report texts get parsed: the processing job (new reports), the low-priority
queue, and the backfill (``scripts.backlog --enrich``), through real RQ jobs on both
backends."""

from __future__ import annotations

import sqlalchemy as sa
from rq import SimpleWorker

from queueing.contract import SERIALIZER, enqueue_report, low_queue, report_queue
from scripts import backlog
from storage import report_facts as facts
from storage.reports import insert_reports, store_report
from storage.tables import cpanstats, report_facts, test_report
from tests.processing_helpers import run_jobs, states, table_count
from tests.report_texts import real_report
from tests.test_report_facts import loaded, metabase_row, prereq_rows
from workers import jobs
from workers.run import build_worker

CPAN_REPORTER = "collector/report-cpan-reporter-1.2020.txt"


def stored_rows(db, count: int, **kwargs) -> list[str]:
    rows = [metabase_row(real_report(CPAN_REPORTER), **kwargs) for _ in range(count)]
    for row in rows:
        store_report(db, row)
    return [row["guid"] for row in rows]


def run_low_jobs(redis) -> None:
    SimpleWorker([low_queue(redis)], connection=redis, serializer=SERIALIZER).work(burst=True)


def facts_count(db) -> int:
    return table_count(db, report_facts)


def test_a_processed_report_gets_its_facts_in_its_own_job(backend, db):
    (guid,) = stored_rows(db, 1)
    redis = backend.redis()
    enqueue_report(redis, guid)
    run_jobs(redis)
    assert states(db) == {guid: "done"}
    with db.connect() as conn:
        report_id = conn.execute(sa.select(test_report.c.id)).scalar_one()
    found = loaded(db, report_id)
    assert found.user_agent == "CPAN::Reporter 1.2020"
    assert prereq_rows(db) == 14
    assert low_queue(redis).count == 0


def test_coalesced_reports_all_get_their_facts(backend, db):
    guids = stored_rows(db, 5)
    redis = backend.redis()
    for guid in guids:
        enqueue_report(redis, guid)
    run_jobs(redis)
    assert facts_count(db) == 5


def test_a_failed_enrichment_leaves_processing_done_and_queues_low_priority_work(backend, db, monkeypatch):
    (guid,) = stored_rows(db, 1)
    redis = backend.redis()

    def broken(*_args, **_kwargs):
        raise RuntimeError("parser bug")

    with monkeypatch.context() as patched:
        patched.setattr(facts, "parse_documents", broken)
        enqueue_report(redis, guid)
        run_jobs(redis)
    assert states(db) == {guid: "done"} and table_count(db, cpanstats) == 1
    assert facts_count(db) == 0
    assert low_queue(redis).count == 1
    run_low_jobs(redis)
    assert facts_count(db) == 1


def test_workers_take_a_waiting_report_before_backfill_work(backend, db):
    stored_rows(db, 3)
    redis = backend.redis()
    assert backlog.main(["--enrich", "--window", "1", "--no-progress"]) == 0
    assert low_queue(redis).count == 3
    (live,) = stored_rows(db, 1)
    enqueue_report(redis, live)
    worker = build_worker(redis, name="test-order")
    assert [q.name for q in worker.queues] == ["reports", "reports-low"]
    worker.work(burst=True, max_jobs=1)
    assert states(db)[live] == "done"
    assert low_queue(redis).count == 3  # the backfill waited
    worker.work(burst=True)
    assert facts_count(db) == 4


def test_backfill_covers_migrated_reports_and_runs_on_the_low_priority_queue(backend, db, capsys):
    rows = [metabase_row(real_report(CPAN_REPORTER), state="done") for _ in range(5)]
    with db.begin() as conn:
        insert_reports(conn, rows)  # as the legacy migration stores them: done, never processed here
    stored_rows(db, 2)
    redis = backend.redis()
    assert backlog.main(["--enrich", "--window", "3", "--no-progress"]) == 0
    assert "queued 7 reports in 3 jobs" in capsys.readouterr().out
    assert report_queue(redis).count == 0 and low_queue(redis).count == 3
    run_low_jobs(redis)
    assert facts_count(db) == 7
    assert prereq_rows(db) == 7 * 14


def test_backfill_again_finds_nothing_left(backend, db, capsys):
    stored_rows(db, 3)
    assert backlog.main(["--enrich", "--process", "--no-progress"]) == 0
    assert "parsed 3 reports" in capsys.readouterr().out
    assert backlog.main(["--enrich", "--no-progress"]) == 0
    assert "queued 0 reports" in capsys.readouterr().out
    assert low_queue(backend.redis()).count == 0


def test_backfill_after_a_parser_change_parses_those_reports_again(backend, db, capsys):
    stored_rows(db, 4)
    backlog.main(["--enrich", "--process", "--no-progress"])
    with db.begin() as conn:  # as if written by the previous parser version
        conn.execute(report_facts.update().where(report_facts.c.report_id % 2 == 0).values(parser=0, tests=None))
    capsys.readouterr()
    assert backlog.main(["--enrich", "--dry-run", "--no-progress"]) == 0
    assert "would parse 2 reports" in capsys.readouterr().out
    assert backlog.main(["--enrich", "--process", "--no-progress"]) == 0
    with db.connect() as conn:
        assert set(conn.execute(sa.select(report_facts.c.parser, report_facts.c.tests)).all()) == {(1, 715)}


def test_backfill_of_given_reports_parses_them_again(backend, db, capsys):
    guids = stored_rows(db, 2)
    backlog.main(["--enrich", "--process", "--no-progress"])
    with db.begin() as conn:
        conn.execute(report_facts.update().values(prereq_set=None))
    assert backlog.main(["--enrich", "--guid", guids[0], "--no-progress"]) == 0
    run_low_jobs(backend.redis())
    assert prereq_rows(db) == 14


def test_backfill_is_resumable_by_id_range(backend, db, capsys):
    stored_rows(db, 6)
    with db.connect() as conn:
        low, high = facts.id_bounds(conn)
    assert backlog.main(["--enrich", "--process", "--ids", f"{low}-{low + 2}", "--no-progress"]) == 0
    assert facts_count(db) == 3
    assert backlog.main(["--enrich", "--process", "--no-progress"]) == 0
    assert "parsed 3 reports" in capsys.readouterr().out.splitlines()[-1]
    assert facts_count(db) == 6
    assert high - low == 5


def test_process_job_does_not_enrich_a_report_it_left_alone(backend, db):
    (guid,) = stored_rows(db, 1)
    jobs.process_report(guid)
    with db.begin() as conn:
        conn.execute(report_facts.delete())
    jobs.process_report(guid)  # already done: nothing to do, no parsing either
    assert facts_count(db) == 0
