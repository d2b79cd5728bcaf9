"""Performance guards: properties of the configuration whose loss costs CPU or latency but
changes no behaviour, so the tests (specifications of behaviour) do not hold them.

    .venv/bin/python -m bench.guards [--database-url mysql+pymysql://.../migrated_db]

The ROLLBACK guard measures only on MariaDB (a migrated database given by URL).

Each guard prints ``ok`` or ``LOST`` with what it found; the exit status is the number lost.
Run it after changing the engines, the pools or the gunicorn configs (bench/RESULTS.md
says what each one was worth when it was measured).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import threading
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from app import create_read_api_app, create_viewer_app  # noqa: E402
from storage.migrate import upgrade  # noqa: E402


def gunicorn_conf(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / name)
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def viewer_pool_keeps_a_connection_per_thread(config: settings.Settings) -> tuple[bool, str]:
    """The default pool (5) opened and closed a connection for every request beyond five at
    once, each a new TLS context for pymysql: ~20 % of the read API's CPU."""
    application = create_viewer_app(config)
    engine = application.extensions["cpantesters_viewer"].engine
    opened: list[object] = []
    sa.event.listen(engine, "connect", lambda connection, _record: opened.append(connection))
    at_once = config.VIEWER_THREADS  # gunicorn's request threads per viewer process

    def round_of_concurrent_queries():
        together = threading.Barrier(at_once)

        def query():
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                together.wait(timeout=30)

        threads = [threading.Thread(target=query) for _ in range(at_once)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    round_of_concurrent_queries()
    first = len(opened)
    round_of_concurrent_queries()
    engine.dispose()
    return len(opened) == first, f"{at_once} threads: {first} connections, then {len(opened) - first} more"


def viewer_workers_yield_the_cpu() -> tuple[bool, str]:
    """Page renders at nice 10 take the CPU only when submissions and the read API leave it."""
    nice = gunicorn_conf("gunicorn_viewer.conf.py").nice
    return nice == 10, f"viewer workers at nice {nice} (VIEWER_NICE)"


def read_api_connections_go_back_without_a_rollback(config: settings.Settings) -> tuple[bool, str]:
    """The read side only reads, so on MariaDB its connections run in autocommit and none
    sends a ``ROLLBACK`` when it goes back to the pool: that round trip was ~5 % of a
    viewer process's time under load. Answers found or not, each query uses a connection."""
    application = create_read_api_app(config)
    engine = application.extensions["cpantesters_viewer"].engine
    if engine.dialect.name != "mysql":
        engine.dispose()
        return True, "not measured: SQLite's rollback is a local call, not a round trip (give --database-url)"
    client = application.test_client()
    paths = ("/v3/release/dist/Yancy", "/v3/summary/Yancy/1.004", "/v3/release/dist/Yancy/1.004")
    for path in paths:
        client.get(path)
    with engine.connect() as conn:  # requests one after the other: the pool's one connection
        rollbacks = int(conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_rollback'").one()[1])
    engine.dispose()
    return rollbacks == 0, f"{len(paths)} answers, {rollbacks} ROLLBACK statements"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/guards.sqlite"
        if not args.database_url:
            upgrade(url)
        config = settings.load({}, DATABASE_URL=url, LOG_LEVEL="WARNING")
        lost = 0
        for guard, result in (
            (viewer_pool_keeps_a_connection_per_thread, viewer_pool_keeps_a_connection_per_thread(config)),
            (viewer_workers_yield_the_cpu, viewer_workers_yield_the_cpu()),
            (
                read_api_connections_go_back_without_a_rollback,
                read_api_connections_go_back_without_a_rollback(config),
            ),
        ):
            kept, found = result
            lost += not kept
            print(f"{'ok  ' if kept else 'LOST'} {guard.__name__}: {found}")
    return lost


if __name__ == "__main__":
    sys.exit(main())
