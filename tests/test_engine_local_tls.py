"""A database on the same host is reached without TLS unless the URL asks for it: pymysql's
default ("preferred") builds a TLS context from the system's CA bundle for every new
connection (37 ms of CPU on a quiet day, up to 280 ms on a loaded one, paid by each web
worker before its first request) to protect a loopback link that has nothing to protect."""

from storage.engine import create_engine, local_connection_without_tls
from tests.backends import MARIADB_HOST, MARIADB_PORT, MARIADB_USER


def test_a_loopback_connection_builds_no_tls_context():
    engine = create_engine(f"mysql://{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/")
    try:
        with engine.connect() as conn:
            assert getattr(conn.connection.driver_connection, "ctx", None) is None
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


def test_only_loopback_urls_without_tls_options_go_without_tls():
    assert local_connection_without_tls("mysql://u@127.0.0.1/db")
    assert local_connection_without_tls("mysql://u@localhost:3399/db")
    assert local_connection_without_tls("mysql://u@[::1]/db")
    assert not local_connection_without_tls("mysql://u@db.example/db")  # pymysql's default: TLS if offered
    assert not local_connection_without_tls("mysql://u@127.0.0.1/db?ssl_ca=/etc/ca.pem")
    assert not local_connection_without_tls("sqlite:///var/cpt.db")
