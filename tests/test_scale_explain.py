"""The queries behind the figures of issue 21's size benchmark (``bench/scale.py``) read
index ranges on MariaDB, never a whole table and never a sort of more rows than they
answer: the tail log, the sweeper's pending page, a report page, the read API's
``since``/``limit`` lists. Each plan is taken from the statements the code really sends
(recorded as it runs), on a filled test database and, when ``CPT_SCALE_DATABASE_URL``
names one made by ``bench.scale_data`` (say ``mysql://bench@127.0.0.1:3399/cpt_scale_1m``),
on that large database too."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.tail_log import build_tail_log
from storage.engine import create_engine
from storage.factor_counts import release_coverage, release_rows
from storage.read_queries import summary_query, upload_query
from storage.report_view import find_report
from storage.reports import pending_page
from storage.tables import analysis_release, cpanstats, release_factor_count, report_facts, test_report, uploads
from storage.uploads import upload_paths


@pytest.fixture(scope="module", params=["filled", "large"])
def planned(request, mariadb):
    """A MariaDB engine on a database with enough rows that plans show the indexes."""
    if request.param == "large":
        url = os.environ.get("CPT_SCALE_DATABASE_URL")
        if not url:
            pytest.skip("CPT_SCALE_DATABASE_URL names no database made by bench.scale_data")
        engine = create_engine(url)
        yield engine
        engine.dispose()
        return
    mariadb.reset()
    engine = mariadb.engine()
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    with engine.begin() as conn:
        conn.execute(
            uploads.insert(),
            [{"type": "cpan", "author": f"A{n % 40}", "dist": f"Dist-{n % 300}", "version": f"1.{n // 300}",
              "filename": f"Dist-{n % 300}-1.{n // 300}.tar.gz", "released": 1_600_000_000 + n} for n in range(3000)],
        )  # fmt: skip
        conn.execute(
            test_report.insert(),
            [{"guid": str(uuid.UUID(int=n + 1)), "created": start + timedelta(seconds=n),
              "state": "pending" if n % 50 == 0 else "done", "language": "Perl 5", "dist": f"Dist-{n % 300}",
              "version": f"1.{n % 10}", "grade": "pass", "perl": "5.40.0", "osname": "linux",
              "distfile": None if n % 3 == 0 else "A1/Dist-1.tar.gz", "submission_sha256": f"{n:064d}", "report": "{}"}
             for n in range(5000)],
        )  # fmt: skip
        conn.exec_driver_sql("SET foreign_key_checks=0")
        conn.execute(
            cpanstats.insert(),
            [{"guid": str(uuid.UUID(int=10**6 + n)), "state": "pass", "postdate": 202601, "tester": "t",
              "dist": f"Dist-{n % 300}", "version": "1.0", "platform": "x", "perl": "5.40.0", "osname": "linux",
              "osvers": "6", "fulldate": f"2026{1 + n % 12:02d}{1 + n % 28:02d}0000", "type": 2, "uploadid": 1}
             for n in range(6000)],
        )  # fmt: skip
        for table in ("uploads", "test_report", "cpanstats"):
            conn.exec_driver_sql(f"ANALYZE TABLE {table}")
    yield engine
    engine.dispose()
    mariadb.reset()


def sent_selects(engine: sa.Engine, work) -> list[str]:
    """The SELECTs ``work(engine)`` sends, with their values in place."""
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append(cursor.mogrify(statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        work(engine)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert sent
    return sent


def plan_of(engine: sa.Engine, sql: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.exec_driver_sql(f"EXPLAIN {sql}".replace("%", "%%")).mappings()]


def assert_index_ranges(engine: sa.Engine, statements: list[str], sorted_ok: bool = False) -> None:
    for sql in statements:
        for step in plan_of(engine, sql):
            extra = step["Extra"] or ""
            # const/system: one row at most, read once (an outer join finding no row, say)
            indexed = step["type"] in ("const", "system") or (step["type"] != "ALL" and step["key"])
            assert indexed or "optimized away" in extra, (sql, step)
            if not sorted_ok:
                assert "filesort" not in extra and "temporary" not in extra, (sql, step)


def _some_guid(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(test_report.c.guid).order_by(test_report.c.id.desc()).limit(1)).scalar()


def test_the_tail_log_reads_the_newest_reports_and_their_uploads_from_indexes(planned):
    statements = sent_selects(planned, lambda engine: build_tail_log(engine, 1000))
    assert_index_ranges(planned, statements)


def test_the_sweepers_pending_page_is_an_index_range_in_order(planned):
    older_than = datetime.now(UTC).replace(tzinfo=None)

    def sweep(engine):
        with engine.connect() as conn:
            first = pending_page(conn, older_than, 10)
            if first:
                pending_page(conn, older_than, 10, after=first[-1][1:])

    assert_index_ranges(planned, sent_selects(planned, sweep))


def test_a_report_page_is_found_by_unique_keys(planned):
    guid = _some_guid(planned)

    def view(engine):
        with engine.connect() as conn:
            assert find_report(conn, guid) is not None

    assert_index_ranges(planned, sent_selects(planned, view))


def test_the_read_apis_since_and_limit_lists_are_index_ranges_in_order(planned):
    with planned.connect() as conn:
        dist = conn.execute(
            sa.select(cpanstats.c.dist).group_by(cpanstats.c.dist).order_by(sa.func.count().desc()).limit(1)
        ).scalar()
    since = datetime(2025, 11, 1)
    for query in (
        summary_query(dist=dist, since=since, limit=100),
        summary_query(dist=dist, limit=100),
        upload_query(since=since, limit=100),
    ):
        sql = str(query.compile(dialect=planned.dialect, compile_kwargs={"literal_binds": True}))
        assert_index_ranges(planned, [sql])


def test_a_releases_limited_list_reads_that_release_only_in_date_order(planned):
    with planned.connect() as conn:
        dist, version = conn.execute(
            sa.select(cpanstats.c.dist, cpanstats.c.version)
            .group_by(cpanstats.c.dist, cpanstats.c.version)
            .order_by(sa.func.count().desc())
            .limit(1)
        ).one()
    query = summary_query(dist=dist, version=version, since=datetime(2020, 1, 1), limit=10)
    sql = str(query.compile(dialect=planned.dialect, compile_kwargs={"literal_binds": True}))
    assert_index_ranges(planned, [sql])
    # Not the distribution's date index, walked until ten rows of this release turn up.
    assert [step["key"] for step in plan_of(planned, sql)] == ["cpanstats_dist_version"]


def test_upload_paths_of_many_releases_are_one_index_range_query(planned):
    with planned.connect() as conn:
        releases = [tuple(r) for r in conn.execute(sa.select(uploads.c.dist, uploads.c.version).limit(300))]
    statements = sent_selects(planned, lambda engine: _paths(engine, releases))
    assert len(statements) == 1
    assert_index_ranges(planned, statements)


def _paths(engine: sa.Engine, releases: list[tuple[str, str]]) -> dict:
    with engine.connect() as conn:
        paths = upload_paths(conn, releases + [("No-Such-Dist", "0.01")])
    assert len(paths) == len(releases) and ("No-Such-Dist", "0.01") not in paths
    return paths


def test_a_releases_failure_analysis_counts_are_read_from_index_ranges(planned):
    """The analysis of a release: its count rows (one release's range of the primary key)
    and its reports' coverage (the (dist, version) range, each facts row by its key)."""
    _count_some_releases(planned)
    dist, version = _a_counted_release(planned)
    statements = sent_selects(planned, lambda engine: _analysis_counts(engine, dist, version))
    assert len(statements) == 2
    assert_index_ranges(planned, statements)
    assert [step["key"] for step in plan_of(planned, statements[1])] == ["test_report_dist_version", "PRIMARY"]


def _count_some_releases(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(analysis_release)).scalar():
            return
        conn.execute(analysis_release.insert(), [{"dist": f"Dist-{n}", "version": f"1.{v}"} for n in range(300)
                                                 for v in range(10)])  # fmt: skip
        conn.execute(
            release_factor_count.insert(),
            [{"release_id": r, "kind": k, "name_id": 0, "value_id": v, "fails": 1, "passes": 1, "others": 0}
             for r in range(1, 3001) for k in (1, 2) for v in range(1, 4)],
        )  # fmt: skip
        ids = conn.execute(sa.select(test_report.c.id).where(test_report.c.id % 2 == 0)).scalars().all()
        conn.execute(report_facts.insert(), [{"report_id": i, "parser": 1, "counted": True} for i in ids])
        for table in ("analysis_release", "release_factor_count", "report_facts"):
            conn.exec_driver_sql(f"ANALYZE TABLE {table}")


def _a_counted_release(engine: sa.Engine) -> tuple[str, str]:
    """A release with count rows: on a large database made by bench.scale_data, one its
    workers counted (a release that is not there is answered from the unique key alone,
    and its plan shows nothing)."""
    query = (
        sa.select(analysis_release.c.dist, analysis_release.c.version)
        .join(release_factor_count, release_factor_count.c.release_id == analysis_release.c.id)
        .limit(1)
    )
    with engine.connect() as conn:
        return tuple(conn.execute(query).one())


def _analysis_counts(engine: sa.Engine, dist: str, version: str) -> None:
    with engine.connect() as conn:
        release_rows(conn, dist, version)
        release_coverage(conn, dist, version)
