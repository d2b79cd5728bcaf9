"""The benchmarks' scratch databases on the local MariaDB (root, no password): made fresh
for a run, dropped after it."""

from __future__ import annotations

import pymysql

MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}


def fresh_database(name: str) -> str:
    """Drop ``name`` if it is there, create it empty (utf8mb4); its URL."""
    conn = pymysql.connect(**MYSQL)
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    return f"mysql://{MYSQL['user']}@{MYSQL['host']}:{MYSQL['port']}/{name}"


def drop_database(*names: str) -> None:
    """Drop each of ``names`` that is there."""
    conn = pymysql.connect(**MYSQL)
    with conn.cursor() as cursor:
        for name in names:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()
