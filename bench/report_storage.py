"""Bytes per report on disk: packed (blocks once + compressed rest) vs plain v3 JSON rows.

    .venv/bin/python -m bench.report_storage [--reports 100000] [--keep]

Loads the same documents (the real fixture rows, then ``--reports`` synthetic ones from
bench/legacy_synth.py) into two throwaway MariaDB databases at the current schema: one
through ``storage.reports.insert_reports`` (packed), one with the document as plain JSON
in ``test_report.report`` (what the schema stored before). Then ``ANALYZE TABLE`` and
data + index bytes from ``information_schema``, per report. Drops both databases.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import pymysql
import sqlalchemy as sa

from bench.legacy_synth import synth_reports
from schemas.legacy import convert_row
from storage.engine import create_engine
from storage.legacy_migration import table_bytes
from storage.migrate import upgrade
from storage.reports import encode_document, insert_reports
from storage.tables import test_report
from tests.legacy_fixtures import metabase_rows

HOST, PORT, USER = "127.0.0.1", 3306, "root"


def create_database() -> str:
    name = f"cpt_bench_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(host=HOST, port=PORT, user=USER, autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    upgrade(f"mysql://{USER}@{HOST}:{PORT}/{name}")
    return name


def drop_database(name: str) -> None:
    conn = pymysql.connect(host=HOST, port=PORT, user=USER, autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def documents(count: int, seed: int = 2026):
    for row in metabase_rows():
        yield convert_row(row["guid"], row["updated"], row["report"], {}).row
    for row in synth_reports(count, seed):
        yield convert_row(row["guid"], row["updated"], row["report"], {}).row


def measure(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        for name in ("test_report", "report_block"):
            conn.exec_driver_sql(f"ANALYZE TABLE {name}").all()
        return table_bytes(conn, ["test_report", "report_block"])


def run(count: int, keep: bool = False) -> dict:
    packed_db, plain_db = create_database(), create_database()
    packed = create_engine(f"mysql://{USER}@{HOST}:{PORT}/{packed_db}")
    plain = create_engine(f"mysql://{USER}@{HOST}:{PORT}/{plain_db}")
    results = {}
    try:
        batch: list[dict] = []
        json_bytes = 0
        rows = 0
        fixtures_done = False
        timings = {"packed": 0.0, "plain": 0.0}

        def flush():
            if not batch:
                return
            started = time.perf_counter()
            with packed.begin() as conn:
                insert_reports(conn, batch)
            timings["packed"] += time.perf_counter() - started
            started = time.perf_counter()
            with plain.begin() as conn:
                conn.execute(test_report.insert(), [{**r, "report": encode_document(r["report"])} for r in batch])
            timings["plain"] += time.perf_counter() - started
            batch.clear()

        fixture_count = len(metabase_rows())
        for row in documents(count):
            batch.append(row)
            rows += 1
            json_bytes += len(encode_document(row["report"]).encode("utf-8"))
            if rows == fixture_count and not fixtures_done:
                flush()
                fixtures_done = True
                results["fixtures"] = _figures(packed, plain, rows, json_bytes)
            elif len(batch) >= 500:
                flush()
        flush()
        results["all"] = _figures(packed, plain, rows, json_bytes)
        results["insert_seconds"] = {k: round(v, 1) for k, v in timings.items()}
    finally:
        packed.dispose()
        plain.dispose()
        if not keep:
            drop_database(packed_db)
            drop_database(plain_db)
    return results


def _figures(packed: sa.Engine, plain: sa.Engine, rows: int, json_bytes: int) -> dict:
    mine, theirs = measure(packed), measure(plain)
    packed_total = mine.get("test_report", 0) + mine.get("report_block", 0)
    plain_total = theirs.get("test_report", 0)
    return {
        "reports": rows,
        "json_bytes_per_report": round(json_bytes / rows),
        "plain_rows_bytes_per_report": round(plain_total / rows),
        "packed_bytes_per_report": round(packed_total / rows),
        "packed_test_report_bytes": mine.get("test_report", 0),
        "packed_report_block_bytes": mine.get("report_block", 0),
        "ratio": round(packed_total / plain_total, 3) if plain_total else None,
    }


def store_latency(count: int) -> dict:
    """The intake's write, one report per transaction as the web app does it: packed
    (``store_report``) against a plain JSON row, same documents, same database server."""
    from storage.reports import store_report

    docs = list(documents(count))[:count]
    out = {}
    for kind in ("plain", "packed"):
        name = create_database()
        engine = create_engine(f"mysql://{USER}@{HOST}:{PORT}/{name}")
        took = []
        try:
            for row in docs:
                began = time.perf_counter()
                if kind == "packed":
                    store_report(engine, row)
                else:
                    with engine.begin() as conn:
                        conn.execute(test_report.insert(), {**row, "report": encode_document(row["report"])})
                took.append(time.perf_counter() - began)
        finally:
            engine.dispose()
            drop_database(name)
        took.sort()
        out[kind] = {
            "reports_per_second": round(len(took) / sum(took)),
            "p50_ms": round(took[len(took) // 2] * 1000, 2),
            "p99_ms": round(took[int(len(took) * 0.99)] * 1000, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the two databases")
    parser.add_argument("--latency", type=int, metavar="N", help="only time N single-report stores, packed vs plain")
    args = parser.parse_args()
    started = time.time()
    result = store_latency(args.latency) if args.latency else run(args.reports, args.keep)
    result["seconds"] = round(time.time() - started)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
