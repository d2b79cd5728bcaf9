"""The backlog tool (scripts/backlog.py): select unprocessed reports by GUID, id range or
date range; queue batch jobs or process them here; --dry-run changes nothing."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from queueing.contract import report_queue
from scripts import backlog
from storage.tables import cpanstats, test_report
from tests.processing_helpers import run_jobs, states, store, summary, table_count
from workers import jobs


def stored(db, count: int, day: int) -> list[str]:
    return [store(db, grade="pass", created=datetime(2026, 11, day, 12, 0, i)) for i in range(count)]


def ids_of(db, guids) -> list[int]:
    with db.connect() as conn:
        return sorted(conn.execute(sa.select(test_report.c.id).where(test_report.c.guid.in_(guids))).scalars())


def test_dry_run_counts_and_changes_nothing(backend, db, capsys):
    stored(db, 5, 1)
    assert backlog.main(["--dry-run", "--no-progress"]) == 0
    assert "would handle 5 reports in 1 batches" in capsys.readouterr().out
    assert table_count(db, cpanstats) == 0
    assert report_queue(backend.redis()).count == 0


def test_queue_mode_queues_batch_jobs_that_the_workers_run(backend, db, capsys):
    guids = stored(db, 7, 1)
    jobs.process_report(guids[0])  # already processed: not selected again
    assert backlog.main(["--batch-size", "3", "--no-progress"]) == 0
    assert "queued 6 reports in 2 batches" in capsys.readouterr().out
    redis = backend.redis()
    assert report_queue(redis).count == 2
    run_jobs(redis)
    assert set(states(db).values()) == {"done"}
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (7, 0, 0, 0)}


def test_process_mode_by_id_range_date_range_and_guid(backend, db):
    day1, day2 = stored(db, 4, 1), stored(db, 4, 2)
    perl6 = store(db, language="Perl 6", perl="2016.12")
    first, *_ = ids_of(db, day1)
    assert backlog.main(["--process", "--ids", f"{first}-{first + 1}", "--no-progress"]) == 0
    assert table_count(db, cpanstats) == 2
    assert backlog.main(["--process", "--since", "2026-11-02", "--until", "2026-11-03", "--no-progress"]) == 0
    assert table_count(db, cpanstats) == 6
    assert {g for g, s in states(db).items() if s == "pending"} == set(day1[2:]) | {perl6}
    assert backlog.main(["--process", "--guid", perl6, "--guid", day1[2], "--no-progress"]) == 0
    assert states(db)[perl6] == "skipped" and states(db)[day1[2]] == "done"
    assert backlog.main(["--process", "--no-progress"]) == 0
    assert table_count(db, cpanstats) == 8
    assert summary(db) == {("CPAN-Testers-WWW-Statistics", "1.06", 1, 1, 1, 1): (8, 0, 0, 0)}
    assert day2
