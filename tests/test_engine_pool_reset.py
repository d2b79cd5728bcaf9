"""A pooled MySQL connection goes back to the pool without a ROLLBACK round trip when its
transaction already ended (SQLAlchemy's default sends one after every committed
``engine.begin()``: one more round trip per submission and per job), and is still rolled
back when it comes back with a transaction open."""

import pytest
import sqlalchemy as sa

from storage.engine import create_engine


@pytest.fixture
def engine(mariadb):
    engine = create_engine(mariadb.database_url, pool_size=1, max_overflow=0)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS pool_probe (n INT)")
    yield engine
    engine.dispose()


def rollbacks_so_far(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_rollback'").one()[1])


def test_a_committed_transaction_returns_its_connection_without_a_rollback(engine):
    with engine.connect() as conn:
        before = rollbacks_so_far(conn)
        conn.rollback()  # ends the transaction the SHOW began, as a reader's close would
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO pool_probe VALUES (1)")
    with engine.connect() as conn:
        assert rollbacks_so_far(conn) == before + 1  # only the explicit one above


def test_a_connection_returned_inside_a_transaction_is_rolled_back(engine):
    raw = engine.raw_connection()
    with raw.cursor() as cursor:
        cursor.execute("INSERT INTO pool_probe VALUES (2)")
    raw.close()  # back to the pool, the INSERT neither committed nor rolled back
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM pool_probe WHERE n = 2").scalar() == 0
