"""Every database figure of /status, /metrics and the alarm is an index lookup on MariaDB
(EXPLAIN), so reading them stays cheap with millions of reports. The Redis figures are
O(1) commands (LLEN, ZCARD, MGET) plus one HGETALL per live worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from monitoring.figures import QUERIES
from storage.tables import test_report

STATES = ["done"] * 90 + ["pending"] * 6 + ["failed"] * 2 + ["skipped"] * 2


@pytest.fixture
def filled_mariadb(mariadb):
    mariadb.reset()
    engine = mariadb.engine()
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    rows = [
        {
            "guid": f"00000000-0000-4000-8000-{i:012d}",
            "created": start + timedelta(seconds=i),
            "state": STATES[i % len(STATES)],
            "language": "Perl 5",
            "dist": f"Dist-{i % 37}",
            "version": "1.0",
            "grade": "pass",
            "perl": "5.40.0",
            "osname": "linux",
            "submission_sha256": f"{i:064d}",
            "report": "{}",
        }
        for i in range(2000)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(test_report), rows)
        conn.execute(sa.text("ANALYZE TABLE test_report"))
    yield engine
    engine.dispose()
    mariadb.reset()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_each_database_figure_is_an_index_lookup(filled_mariadb, name):
    sql = str(QUERIES[name].compile(dialect=filled_mariadb.dialect, compile_kwargs={"literal_binds": True}))
    with filled_mariadb.connect() as conn:
        plan = [dict(row) for row in conn.execute(sa.text(f"EXPLAIN {sql}")).mappings()]
    print(name, sql, plan)
    (step,) = plan
    extra = step["Extra"] or ""
    if "Select tables optimized away" in extra:
        return  # MIN/MAX answered from the end of an index, no row read
    assert step["type"] in ("ref", "range", "const", "eq_ref"), plan
    assert step["key"] == "test_report_state_created", plan
    assert "Using index" in extra, plan  # covered by the index: no table row is read


def test_the_figures_read_from_mariadb_are_right(filled_mariadb):
    from monitoring.figures import database_figures

    figures = database_figures(filled_mariadb, datetime.now(UTC).timestamp())
    assert figures["waiting"] == 2000 * 6 // 100
    assert figures["failed_reports"] == 2000 * 2 // 100
    assert figures["stored"] >= 2000
    assert 86_000 < figures["oldest_waiting_seconds"] < 86_500
