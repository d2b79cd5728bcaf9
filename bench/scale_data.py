"""Synthetic production-shaped data, bulk-loaded into a MariaDB database of its own.

    .venv/bin/python -m bench.scale_data --database cpt_scale_1m --rows 1000000 [--reports N]
        [--dists N] [--largest-share 0.06] [--seed 1] [--facts] [--replace]

Builds ``perl_version`` (30 perls), ``uploads`` (every release of every distribution),
``cpanstats`` (``--rows`` reports), ``release_data`` (one row per report), ``release_summary``
(what the workers' increments add up to) and, for the most recent ``--reports`` reports
(default a fifth of the rows), stored ``test_report`` rows packed by the project's own
``storage.reports.insert_reports`` (state ``done``), their texts made by
``bench.legacy_synth`` (each tester's own perl -V, environment, paths; each report its own
test output).

Skew as in production: one distribution holds ``--largest-share`` of the reports (6 %:
60,000 at 1 M rows, 600,000 at 10 M), the others follow a Zipf law (a few with tens of
thousands of reports, a long tail with a handful); grades 80/12/5/3 %; 30 perls, recent
stable ones most used; 6,000 testers, a few of them sending most reports; 15 years of
dates, ids growing with time; each report is of a version released before it (mostly the
latest).

Parsed report facts (``report_facts``, migration 0119): not made for every report, since
parsing costs what the workers' enrichment costs (bench/enrichment.py). ``--facts`` parses
the stored reports of the largest distribution's latest release through
``storage.report_facts.enrich_guids``, so that its failure analysis can be measured.

The cpanstats and release_data rows go through tab-separated files and ``LOAD DATA LOCAL
INFILE`` with their secondary indexes dropped, then rebuilt in one ``ALTER TABLE``.
Refuses the tests' databases (``cpt_test_*``) and an existing database without ``--replace``.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import multiprocessing
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pymysql
import sqlalchemy as sa

from bench.legacy_synth import WORDS, _text_report, make_testers
from schemas.summary_rules import distmat, patched, perl_version, perlmat
from schemas.summary_rules import tester as tester_field
from schemas.translate import index_columns, iso_z
from storage.engine import create_engine
from storage.migrate import upgrade
from storage.reports import insert_reports

ROOT = Path(__file__).resolve().parent.parent
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}

PERLS = ["5.8.8", "5.8.8 patch 34559", "5.8.9", "5.10.0", "5.10.1", "5.12.5", "5.14.4", "5.16.3", "5.18.4",
         "5.20.3", "5.22.4", "5.24.4", "5.26.3", "5.28.3", "5.30.3", "5.32.1", "5.34.1", "5.34.3", "5.36.0",
         "5.36.3", "5.37.11", "5.38.0 RC1", "5.38.0", "5.38.2", "5.39.7", "5.39.10", "5.40.0", "5.40.1",
         "5.41.5", "5.42.0"]  # fmt: skip
"""30 perls, oldest first; later ones are given more weight (testers smoke recent perls)."""

PLATFORMS = [("linux", "x86_64-linux", "6.1.0-13-amd64"), ("linux", "x86_64-linux-thread-multi", "5.10.0-8-amd64"),
             ("freebsd", "amd64-freebsd", "13.2-release-p8"), ("openbsd", "OpenBSD.amd64-openbsd", "7.4"),
             ("darwin", "darwin-2level", "22.6.0"), ("MSWin32", "MSWin32-x64-multi-thread", "10.0"),
             ("netbsd", "amd64-netbsd", "9.3"), ("solaris", "i86pc-solaris-64", "2.11"),
             ("cygwin", "x86_64-cygwin-threads-multi", "3.4.9(0.34153)"), ("linux", "aarch64-linux", "6.6.1")]  # fmt: skip
GRADES = ["pass"] * 80 + ["fail"] * 12 + ["na"] * 5 + ["unknown"] * 3
TESTERS = 6_000
FIRST_MOMENT = datetime(2011, 1, 1)
SPAN_SECONDS = 15 * 365 * 86400
LARGEST = "Big-Dist"
"""Name of the distribution holding ``--largest-share`` of the reports."""

GRADE_INDEX = {"pass": 0, "fail": 1, "na": 2, "unknown": 3}


@dataclass
class Dist:
    name: str
    author: str
    versions: list[str]
    released: list[int]  # epoch of each version, ascending
    uploadids: list[int]
    oncpan: list[int]  # 1 on CPAN, 2 BackPAN only


def _perl_weights() -> list[float]:
    return [1 + index * index / 10 for index in range(len(PERLS))]


def _versions(rng: random.Random, count: int) -> list[str]:
    versions, major, minor = [], 0, 1
    for _ in range(count):
        version = f"{major}.{minor:02d}"
        if rng.random() < 0.05:
            version += f"_{rng.randint(1, 9):02d}"  # a developer release
        versions.append(version)
        minor += 1
        if minor > 99 or rng.random() < 0.03:
            major, minor = major + 1, 0
    return versions


def make_dists(rng: random.Random, count: int) -> list[Dist]:
    """``count`` distributions (the largest first), each with its releases over 15 years."""
    start = int(FIRST_MOMENT.replace(tzinfo=UTC).timestamp())
    dists, uploadid, names = [], 0, set()
    for index in range(count):
        if index == 0:
            name, releases = LARGEST, 80
        else:
            name = "-".join(rng.sample(WORDS, rng.randint(1, 3)))
            while name in names:
                name += "-" + rng.choice(WORDS)
            releases = min(60, 1 + int(rng.expovariate(1 / 7)))
        names.add(name)
        first = start + rng.randint(0, SPAN_SECONDS - 86400) if index else start
        stamps = sorted(first + rng.randint(0, start + SPAN_SECONDS - first) for _ in range(releases))
        stamps[0] = first
        ids = list(range(uploadid + 1, uploadid + releases + 1))
        uploadid += releases
        oncpan = [2 if position < releases - 2 and rng.random() < 0.6 else 1 for position in range(releases)]
        dists.append(Dist(name, f"AUTHOR{index % 2999}", _versions(rng, releases), stamps, ids, oncpan))
    return dists


def upload_rows(dists: list[Dist]):
    for dist in dists:
        for position, version in enumerate(dist.versions):
            kind = "backpan" if dist.oncpan[position] == 2 else "cpan"
            yield (dist.uploadids[position], kind, dist.author, dist.name, version,
                   f"{dist.name}-{version}.tar.gz", dist.released[position])  # fmt: skip


class Generator:
    """Every report of the data set, row ``i`` made from ``seed`` and ``i`` alone."""

    def __init__(self, rows: int, dists: int, largest_share: float, seed: int):
        rng = random.Random(seed)
        self.rows, self.seed = rows, seed
        self.dists = make_dists(rng, dists)
        others = [1 / (rank + 5) for rank in range(1, dists)]
        scale = (1 - largest_share) / sum(others)
        self.dist_cum = list(itertools.accumulate([largest_share] + [w * scale for w in others]))
        self.testers = make_testers(TESTERS, rng)
        perl_weights = _perl_weights()
        for tester in self.testers:
            tester.perls = sorted(set(rng.choices(PERLS, perl_weights, k=rng.randint(1, 6))), key=PERLS.index)
            tester.os = rng.choice(PLATFORMS)
        self.tester_cum = list(itertools.accumulate(1 / (rank + 3) for rank in range(TESTERS)))
        self.tester_names = [tester_field(t.name, t.email) for t in self.testers]
        self.flags = {p: (perlmat(p), patched(p)) for p in PERLS}

    def reports(self):
        """Every report, oldest first: (id, guid, grade, dist, position of the version,
        perl, tester index, moment), from one random stream."""
        rng = random.Random(self.seed)
        step = SPAN_SECONDS / self.rows
        start = int(FIRST_MOMENT.replace(tzinfo=UTC).timestamp())
        dist_cum, dists, dist_total = self.dist_cum, self.dists, self.dist_cum[-1]
        tester_cum, tester_total, testers = self.tester_cum, self.tester_cum[-1], self.testers
        uniform, getrandbits, choice, randrange = rng.random, rng.getrandbits, rng.choice, rng.randrange
        for index in range(self.rows):
            dist = dists[bisect.bisect(dist_cum, uniform() * dist_total)]
            moment = start + int((index + uniform()) * step)
            released = bisect.bisect(dist.released, moment)
            if released == 0:
                position = 0
            elif uniform() < 0.7:
                position = released - 1
            else:
                position = randrange(released)
            tester = bisect.bisect(tester_cum, uniform() * tester_total)
            perl = choice(testers[tester].perls)
            guid = str(uuid.UUID(int=getrandbits(128), version=4))
            yield index + 1, guid, choice(GRADES), dist, position, perl, tester, moment


def _tsv(values) -> str:
    return "\t".join(str(v) for v in values) + "\n"


def write_files(gen: Generator, folder: Path, keep: int) -> tuple[Path, Path, dict, list]:
    """cpanstats.tsv and release_data.tsv; returns them, the release_summary rows and the
    last ``keep`` reports (to be stored as test_report rows)."""
    summary: dict[tuple, list] = {}
    kept: list[tuple] = []
    first_kept = gen.rows - keep
    stats_path, data_path = folder / "cpanstats.tsv", folder / "release_data.tsv"
    with stats_path.open("w", encoding="utf-8") as stats, data_path.open("w", encoding="utf-8") as data:
        for report in gen.reports():
            stats_id, guid, grade, dist, position, perl, tester, moment = report
            if stats_id > first_kept:
                kept.append(report)
            version = dist.versions[position]
            stamp = datetime.fromtimestamp(moment, UTC)
            fulldate = stamp.strftime("%Y%m%d%H%M")
            _, arch, osvers = gen.testers[tester].os
            osname = gen.testers[tester].os[0]
            uploadid = dist.uploadids[position]
            stats.write(_tsv((stats_id, guid, grade, fulldate[:6], gen.tester_names[tester], dist.name, version,
                              arch, perl, osname, osvers, fulldate, 2, uploadid)))  # fmt: skip
            counts = [0, 0, 0, 0]
            counts[GRADE_INDEX[grade]] = 1
            key = (dist.name, version, dist.oncpan[position], distmat(version), *gen.flags[perl])
            data.write(_tsv((*key[:2], stats_id, guid, *key[2:], *counts, uploadid)))
            total = summary.get(key)
            if total is None:
                summary[key] = [*counts, stats_id, guid, uploadid]
            else:
                total[GRADE_INDEX[grade]] += 1
                total[4], total[5] = stats_id, guid
    return stats_path, data_path, summary, kept


def _admin(sql: str) -> None:
    conn = pymysql.connect(**MYSQL, autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def _connect(database: str):
    return pymysql.connect(
        **MYSQL, database=database, charset="utf8mb4", local_infile=True, autocommit=True, read_timeout=7200
    )


def _secondary_indexes(cursor, table: str) -> list[tuple[str, bool, list[str]]]:
    """(name, unique, columns) of the indexes no foreign key needs (those stay)."""
    cursor.execute(f"SHOW INDEX FROM `{table}`")
    indexes: dict[str, tuple[bool, list[str]]] = {}
    for row in cursor.fetchall():
        name, non_unique, column = row[2], row[1], row[4]
        indexes.setdefault(name, (not non_unique, []))[1].append(column)
    cursor.execute(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s AND REFERENCED_TABLE_NAME IS NOT NULL",
        (table,),
    )
    fk_columns = {row[0] for row in cursor.fetchall()}
    return [
        (name, unique, columns)
        for name, (unique, columns) in indexes.items()
        if name != "PRIMARY" and columns[0] not in fk_columns
    ]


def bulk_load(database: str, table: str, path: Path, columns: list[str]) -> None:
    """LOAD DATA with the secondary indexes dropped, then rebuilt (one sort each)."""
    conn = _connect(database)
    with conn.cursor() as cursor:
        cursor.execute("SET foreign_key_checks=0, unique_checks=0")
        indexes = _secondary_indexes(cursor, table)
        if indexes:
            cursor.execute(f"ALTER TABLE `{table}` " + ", ".join(f"DROP INDEX `{n}`" for n, _, _ in indexes))
        cursor.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4 "
            f"FIELDS TERMINATED BY '\\t' ESCAPED BY '' LINES TERMINATED BY '\\n' ({', '.join(columns)})",
            (str(path),),
        )
        if indexes:
            cursor.execute(
                f"ALTER TABLE `{table}` "
                + ", ".join(
                    f"ADD {'UNIQUE ' if unique else ''}INDEX `{name}` ({', '.join(f'`{c}`' for c in cols)})"
                    for name, unique, cols in indexes
                )
            )
    conn.close()


def insert_many(database: str, sql: str, rows, batch: int = 5000) -> None:
    conn = _connect(database)
    with conn.cursor() as cursor:
        cursor.execute("SET foreign_key_checks=0")
        rows = iter(rows)
        while chunk := list(itertools.islice(rows, batch)):
            cursor.executemany(sql, chunk)  # pymysql sends one multi-row INSERT per chunk
    conn.close()


def _document_row(gen: Generator, report: tuple, template: dict) -> dict:
    stats_id, guid, grade, dist, position, perl, tester_index, moment = report
    tester = gen.testers[tester_index]
    version = dist.versions[position]
    osname, arch, osvers = tester.os
    created = datetime.fromtimestamp(moment, UTC).replace(tzinfo=None)
    rng = random.Random(stats_id)
    doc = json.loads(template)
    doc["id"] = guid
    doc["created"] = iso_z(created)
    doc["reporter"] = {"name": tester.name, "email": tester.email}
    doc["distribution"] = {"name": dist.name, "version": version}
    doc["environment"]["language"].update(name="Perl 5", version=perl, archname=arch)
    doc["environment"]["language"].pop("build", None)
    doc["environment"]["system"].update(osname=osname, osversion=osvers)
    doc["result"]["grade"] = grade
    doc["result"]["output"] = {"uncategorized": _text_report(tester, perl, dist.name, version, grade, rng)}
    return {
        "guid": guid,
        "created": created,
        "state": "done",
        "state_changed": created,
        "creator": tester.resource,
        "submission_sha256": uuid.UUID(guid).hex * 2,
        "report": doc,
        **index_columns(doc),
        # Metabase submissions carry their AUTHOR/FILE; one in ten came through the v3 API without.
        "distfile": None if stats_id % 10 == 0 else f"{dist.author}/{dist.name}-{version}.tar.gz",
    }


def _store_part(url: str, gen: Generator, reports: list[tuple], batch: int) -> None:
    template = (ROOT / "tests" / "fixtures" / "v3-perl5-valid.json").read_text()
    engine = create_engine(url)
    for start in range(0, len(reports), batch):
        rows = [_document_row(gen, report, template) for report in reports[start : start + batch]]
        with engine.begin() as conn:
            insert_reports(conn, rows)
    engine.dispose()


def store_reports(gen: Generator, url: str, reports: list[tuple], processes: int = 2, batch: int = 500) -> None:
    """The reports as packed ``test_report`` rows, by ``processes`` forked processes."""
    if processes <= 1 or len(reports) < 10 * batch:
        _store_part(url, gen, reports, batch)
        return
    context = multiprocessing.get_context("fork")
    share = -(-len(reports) // processes)
    workers = [
        context.Process(target=_store_part, args=(url, gen, reports[n * share : (n + 1) * share], batch))
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise RuntimeError(f"storing reports failed in a worker (exit {worker.exitcode})")


def largest_release(url: str) -> tuple[str, str]:
    """The largest distribution's release with the most stored reports."""
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT version FROM test_report WHERE dist = :dist GROUP BY version ORDER BY COUNT(*) DESC LIMIT 1"
            ),
            {"dist": LARGEST},
        ).first()
    engine.dispose()
    return LARGEST, row[0] if row else ""


def parse_facts(url: str, dist: str, version: str, batch: int = 250) -> int:
    from storage.report_facts import enrich_guids

    engine = create_engine(url)
    with engine.connect() as conn:
        guids = list(
            conn.execute(
                sa.text("SELECT guid FROM test_report WHERE dist = :d AND version = :v"), {"d": dist, "v": version}
            ).scalars()
        )
    for start in range(0, len(guids), batch):
        enrich_guids(engine, guids[start : start + batch])
    engine.dispose()
    return len(guids)


STATS_COLUMNS = ["id", "guid", "state", "postdate", "tester", "dist", "version", "platform", "perl", "osname",
                 "osvers", "fulldate", "type", "uploadid"]  # fmt: skip
DATA_COLUMNS = ["dist", "version", "id", "guid", "oncpan", "distmat", "perlmat", "patched", "pass", "fail", "na",
                "unknown", "uploadid"]  # fmt: skip


def use_server(spec: str) -> None:
    """``host:port[:user]``: the server to load into (bench.scale_server's, say)."""
    host, port, *user = spec.split(":")
    MYSQL.update(host=host, port=int(port), user=user[0] if user else "bench")


def database_url(database: str) -> str:
    return f"mysql://{MYSQL['user']}@{MYSQL['host']}:{MYSQL['port']}/{database}"


def load(database: str, rows: int, reports: int, dists: int, largest_share: float, seed: int, facts: bool) -> dict:
    """Create ``database`` and fill it; returns the time of each step and the row counts."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    _admin(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = database_url(database)
    upgrade(url)
    timings["schema"] = time.perf_counter() - started

    mark = time.perf_counter()
    gen = Generator(rows, dists, largest_share, seed)
    perls = [perl_version(p) for p in PERLS]
    insert_many(
        database,
        "INSERT INTO perl_version (version, perl, patch, devel) VALUES (%s, %s, %s, %s)",
        [(p.version, p.perl, p.patch, p.devel) for p in perls],
    )
    insert_many(
        database,
        "INSERT INTO uploads (uploadid, type, author, dist, version, filename, released) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        upload_rows(gen.dists),
    )
    timings["population, perls, uploads"] = time.perf_counter() - mark

    with tempfile.TemporaryDirectory(prefix="cpt_scale_") as folder:
        mark = time.perf_counter()
        stats_path, data_path, summary, kept = write_files(gen, Path(folder), reports)
        timings["generate cpanstats, release_data"] = time.perf_counter() - mark
        mark = time.perf_counter()
        bulk_load(database, "cpanstats", stats_path, STATS_COLUMNS)
        timings["load cpanstats"] = time.perf_counter() - mark
        mark = time.perf_counter()
        bulk_load(database, "release_data", data_path, DATA_COLUMNS)
        timings["load release_data"] = time.perf_counter() - mark
    mark = time.perf_counter()
    insert_many(
        database,
        "INSERT INTO release_summary (dist, version, oncpan, distmat, perlmat, patched, pass, fail, na, unknown, "
        "id, guid, uploadid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        ((*key, *total) for key, total in sorted(summary.items())),
    )
    timings["release_summary"] = time.perf_counter() - mark
    mark = time.perf_counter()
    store_reports(gen, url, kept)
    del kept
    timings["stored reports (packed)"] = time.perf_counter() - mark
    parsed = 0
    if facts:
        mark = time.perf_counter()
        parsed = parse_facts(url, *largest_release(url))
        timings["parsed facts of the largest release"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    counts = {
        "cpanstats": rows,
        "uploads": sum(len(d.versions) for d in gen.dists),
        "release_summary": len(summary),
        "test_report": reports,
        "report_facts": parsed,
        "largest dist reports": None,
    }
    conn = _connect(database)
    with conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM cpanstats WHERE dist = %s", (LARGEST,))
        counts["largest dist reports"] = cursor.fetchone()[0]
    conn.close()
    return {"timings": timings, "counts": counts}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="database to create (never cpt_test_*)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="cpanstats rows")
    parser.add_argument("--reports", type=int, help="stored test_report rows (default rows / 5)")
    parser.add_argument("--dists", type=int, help="distributions (default rows / 50, 100 to 40,000)")
    parser.add_argument("--largest-share", type=float, default=0.06, help="share of the largest distribution")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--facts", action="store_true", help="parse the largest release's stored reports")
    parser.add_argument("--replace", action="store_true", help="drop the database first if it exists")
    parser.add_argument("--mysql", default="127.0.0.1:3306:root", help="host:port:user of the server")
    args = parser.parse_args(argv)
    use_server(args.mysql)
    if args.database.startswith("cpt_test_") or not args.database.replace("_", "").isalnum():
        parser.error("give a database name of letters, digits and _ that is not a test database (cpt_test_*)")
    if args.replace:
        _admin(f"DROP DATABASE IF EXISTS `{args.database}`")
    reports = args.rows // 5 if args.reports is None else args.reports
    dists = args.dists or max(100, min(40_000, args.rows // 50))
    result = load(args.database, args.rows, min(reports, args.rows), dists, args.largest_share, args.seed, args.facts)
    for step, seconds in result["timings"].items():
        print(f"{step:40} {seconds:8.1f} s")
    for table, count in result["counts"].items():
        print(f"{table:40} {count:>10,}")


if __name__ == "__main__":
    main()
