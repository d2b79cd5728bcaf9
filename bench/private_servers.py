"""A MariaDB and a Redis server of a benchmark's own for one run, torn down at its end.

The machine's shared MariaDB is restarted by CI runs and its Redis is used by every other
session: a long run on them measures those restarts and neighbours (bench/RESULTS.md, the
second soak's step at a database restart). These are the test suite's throwaway servers
(``tests.replica_servers.MariaDBServer``: its own ``mariadb-install-db`` data directory,
port and socket; ``tests.outage_helpers.ThrowawayRedis``: its own port, no persistence),
put together for a benchmark.

    with private_servers(Path(tempfile.mkdtemp())) as servers:
        servers.mysql   # pymysql.connect() arguments (user "bench" over TCP, no password)
        servers.redis_url
        servers.processes()   # {"mariadbd": Popen, "redis-server": Popen}

    with bench_servers("private" or "shared", directory, shared_redis_db) as (mysql, redis_url, processes): ...
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql

from tests.outage_helpers import ThrowawayRedis
from tests.replica_servers import MariaDBServer, missing_binaries

BUFFER_POOL = "128M"
"""As the shared development server (Debian's default), so that a private run measures the
same database configuration, only without the neighbours."""


@dataclass
class PrivateServers:
    database: MariaDBServer
    redis: ThrowawayRedis

    @property
    def mysql(self) -> dict:
        return {"host": "127.0.0.1", "port": self.database.port, "user": "bench"}

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def processes(self) -> dict:
        """Server name -> its Popen (for a benchmark's process probe)."""
        return {"mariadbd": self.database.process, "redis-server": self.redis.process}


@contextlib.contextmanager
def private_servers(directory: Path, keep: bool = False) -> Iterator[PrivateServers]:
    """Start both servers under ``directory``; stop them and remove their data when the
    block ends, by an exception or SIGTERM too (``keep``: leave the data for a post-mortem)."""
    missing = missing_binaries()
    if missing:
        raise RuntimeError(f"private servers need {', '.join(missing)} (apt-get install mariadb-server)")
    database = MariaDBServer(
        directory / "mariadb", 1, primary=None, options=[f"--innodb-buffer-pool-size={BUFFER_POOL}"]
    )
    redis_server = ThrowawayRedis(directory / "redis")
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        database.start()
        database.sql("CREATE USER 'bench'@'127.0.0.1'; GRANT ALL ON *.* TO 'bench'@'127.0.0.1';")
        redis_server.start()
        yield PrivateServers(database, redis_server)
    finally:
        redis_server.close()
        database.stop()
        signal.signal(signal.SIGTERM, previous)
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


SHARED_MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}


def add_servers_option(parser: argparse.ArgumentParser, shared_redis: str = "") -> None:
    """The benchmarks' ``--servers private|shared`` option (``private`` by default)."""
    parser.add_argument(
        "--servers",
        choices=["private", "shared"],
        default="private",
        help="private: a mariadbd and a redis-server of the run's own (default); "
        f"shared: the machine's on 127.0.0.1:3306 and :6379{shared_redis}",
    )


@contextlib.contextmanager
def bench_servers(kind: str, directory: Path, shared_redis_db: int) -> Iterator[tuple[dict, str, dict]]:
    """(pymysql arguments, Redis URL, server name -> Popen) of the servers a benchmark uses:
    ``private`` ones (:func:`private_servers` under ``directory``) or the machine's ``shared``
    ones (Redis DB ``shared_redis_db``; not our processes: no Popen)."""
    if kind == "shared":
        yield dict(SHARED_MYSQL), f"redis://127.0.0.1:6379/{shared_redis_db}", {}
        return
    with private_servers(directory) as private:
        print(f"private servers: mariadbd :{private.database.port}, redis-server :{private.redis.port}", flush=True)
        yield private.mysql, private.redis_url, private.processes()


def database(mysql: dict, name: str, drop: bool = False) -> str:
    """Create the database ``name`` afresh (or drop it); its SQLAlchemy URL."""
    conn = pymysql.connect(**mysql)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            if not drop:
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return f"mysql://{mysql['user']}@{mysql['host']}:{mysql['port']}/{name}"


def _exit_on_sigterm(signum, frame) -> None:
    """A SIGTERM unwinds through the ``finally`` blocks, as Ctrl-C does, instead of
    leaving the servers running."""
    raise SystemExit(128 + signum)
