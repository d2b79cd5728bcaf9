"""Synthetic legacy Metabase cache rows built from the real fixture rows, with variety.

Each synthetic tester gets a profile (1-3 ``testers_email`` rows), a real report as
template, their own user name, host, paths, perls and environment; each report gets its
own dist, version, author, grade, test output, PIDs and timestamps. So the large
sections (perl -V, environment) repeat per tester and perl, but not verbatim across
testers, and never byte-identical inside a run's volatile lines: deduplication is
realistic, not trivially perfect.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.legacy import LEGACY_REPORT, TEST_SUMMARY, decode_report_column
from tests.legacy_fixtures import metabase_rows

PERLS = ["5.8.9", "5.10.1", "5.12.5", "5.14.4", "5.16.3", "5.18.4", "5.20.3", "5.22.4", "5.24.4", "5.26.3", "5.28.3",
         "5.30.3", "5.32.1", "5.34.1", "5.36.3", "5.38.2", "5.39.7", "5.40.0"]  # fmt: skip
OSES = [("linux", "x86_64-linux", "5.10.0-8-amd64"), ("freebsd", "amd64-freebsd", "13.2-release-p8"),
        ("openbsd", "OpenBSD.amd64-openbsd", "7.4"), ("darwin", "darwin-2level", "22.6.0"),
        ("MSWin32", "MSWin32-x64-multi-thread", "10.0"), ("linux", "x86_64-linux-thread-multi", "6.1.0-13-amd64"),
        ("netbsd", "amd64-netbsd", "9.3"), ("solaris", "i86pc-solaris-64", "2.11")]  # fmt: skip
GRADES = ["pass"] * 80 + ["fail"] * 12 + ["na"] * 5 + ["unknown"] * 3
WORDS = ["Data", "Text", "JSON", "HTTP", "Net", "File", "Test", "Moose", "DBIx", "Class", "Simple", "Tiny", "XS",
         "Util", "Path", "Log", "Any", "Mojo", "Plack", "Template", "Cache", "Time", "Date", "List", "Hash", "Crypt"]  # fmt: skip
FIRST = ["Andreas", "Slaven", "Chris", "Nigel", "Alexandr", "David", "Christian", "Carlos", "Petr", "Karen", "Jean",
         "Olivier", "Matthew", "Kent", "Mohammad", "Zoë", "René", "Søren", "Łukasz", "Björn"]  # fmt: skip
LAST = ["König", "Rezić", "Williams", "Horne", "Ciornii", "Cantrell", "Walde", "Guerra", "Pisar", "Etheridge",
        "Dupont", "Mengué", "Fredric", "Anwar", "Müller", "Nowak", "Ødegård", "Smith", "Tanaka", "Ivanov"]  # fmt: skip


@dataclass
class Tester:
    resource: str
    name: str
    email: str
    user: str
    host: str
    prefix: str
    os: tuple[str, str, str]
    perls: list[str]
    template: dict  # decoded LegacyReport content of a real row
    env: str


def _templates() -> list[dict]:
    out = []
    for row in metabase_rows():
        facts = decode_report_column(row["report"])
        content = facts[LEGACY_REPORT]["content"]
        if "Summary of my perl5" in content.get("textreport", ""):
            out.append(content)
    return out


TEMPLATES = _templates()


def make_testers(count: int, rng: random.Random) -> list[Tester]:
    testers = []
    for index in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        user = f"{first[:3].lower()}{last[:4].lower()}{index}".encode("ascii", "ignore").decode()
        os = rng.choice(OSES)
        env = "".join(
            f"    {key} = {value}\n"
            for key, value in sorted(
                {
                    "LANG": rng.choice(["C", "en_US.UTF-8", "de_DE.UTF-8", "fr_FR.UTF-8"]),
                    "PATH": f"/home/{user}/bin:/usr/local/bin:/usr/bin:/bin:/opt/{user}/perl/bin",
                    "SHELL": rng.choice(["/bin/bash", "/bin/zsh", "/bin/sh", "/usr/local/bin/fish"]),
                    "HOME": f"/home/{user}",
                    "AUTOMATED_TESTING": "1",
                    "PERL_MM_USE_DEFAULT": "1",
                    f"SMOKER_{index % 7}": str(rng.randint(1, 99)),
                }.items()
            )
        )
        testers.append(
            Tester(
                resource=f"metabase:user:{uuid.UUID(int=rng.getrandbits(128))}",
                name=f"{first} {last}" + (f" ({user[:6].upper()})" if rng.random() < 0.5 else ""),
                email=f"{user}@example{index % 50}.org",
                user=user,
                host=f"{user}-{rng.choice(['smoke', 'box', 'vm', 'pi'])}{rng.randint(1, 9)}",
                prefix=rng.choice(
                    ["/opt", "/usr/local", f"/home/{user}/perl5/perlbrew/perls", "/bbbike", "C:/Strawberry"]
                ),
                os=os,
                perls=rng.sample(PERLS, rng.randint(1, 4)),
                template=rng.choice(TEMPLATES),
                env=env,
            )
        )
    return testers


_HOLES = (
    r"(?P<uname>uname='[^']*')"
    r"|(?P<osline>osname=\w+, osvers=[^,]+, archname=[\w-]+)"
    r"|(?P<prefix>/(?:bbbike|opt|usr/local|home/\w+/perl5/perlbrew/perls)/perl-)"
    r"|(?P<user>\b(?:cpansand|eserte|srezic|bingos|cpan)\b)"
    r"|(?P<env>^Environment variables:\n\n)"
    r"|(?P<pid>(?<=IS_RUNNING = )\d+|(?<=IS_RUNNING=\")\d+)"
    r"|(?P<stamp>\b20\d{8}\b)"
    r"|(?P<dist>report for [\w:-]+-[\w._]+\n)"
    r"|(?P<tests>^(?:t/\S+ \.+ [^\n]*\n)+(?:All tests successful\.\n)?Files=[^\n]*\nResult: \w+\n)"
)


@dataclass
class _Shape:
    """A template report cut into literal text and the holes each synthetic report fills."""

    literals: list[str]
    holes: list[str]


def _shape(template: dict) -> _Shape:
    text = template["textreport"]
    perl = re.escape(template["perl_version"].lstrip("v"))
    literals, holes, last = [], [], 0
    for match in re.finditer(f"(?m){_HOLES}|(?P<perl>{perl})", text):
        literals.append(text[last : match.start()])
        holes.append(match.lastgroup)
        last = match.end()
    literals.append(text[last:])
    return _Shape(literals, holes)


_SHAPES: dict[int, _Shape] = {}


def _text_report(tester: Tester, perl: str, dist: str, version: str, grade: str, rng: random.Random) -> str:
    """The tester's template with their perl, paths, user, host and environment, and this
    report's dist, PIDs, timestamps and test output (holes found once per template)."""
    shape = _SHAPES.get(id(tester.template))
    if shape is None:
        shape = _SHAPES[id(tester.template)] = _shape(tester.template)
    os_name, arch, os_version = tester.os
    fixed = {
        "uname": f"uname='{os_name} {tester.host} {os_version}'",
        "osline": f"osname={os_name}, osvers={os_version}, archname={arch}",
        "prefix": f"{tester.prefix}/perl-",
        "user": tester.user,
        "env": "Environment variables:\n\n" + tester.env,
        "dist": f"report for {dist}-{version}\n",
        "perl": perl,
    }
    pieces = []
    for literal, hole in zip(shape.literals, shape.holes, strict=False):
        pieces.append(literal)
        if hole == "pid":
            pieces.append(str(rng.randint(1000, 99999)))
        elif hole == "stamp":
            pieces.append(f"20{rng.randint(10, 24)}{rng.randint(10**5, 10**6 - 1)}")
        elif hole == "tests":
            pieces.append(_test_output(grade, rng))
        else:
            pieces.append(fixed[hole])
    pieces.append(shape.literals[-1])
    return "".join(pieces)


def _test_output(grade: str, rng: random.Random) -> str:
    tests = "".join(
        f"t/{i:02d}_{rng.choice(WORDS).lower()}.t {'.' * rng.randint(2, 12)} {'ok' if grade == 'pass' or rng.random() < 0.7 else 'FAILED'}\n"
        for i in range(rng.randint(2, 25))
    )
    return tests + (
        f"Files={rng.randint(2, 40)}, Tests={rng.randint(5, 5000)}, {rng.randint(0, 90)} wallclock secs "
        f"( {rng.random():.2f} usr  {rng.random():.2f} sys +  {rng.random() * 3:.2f} cusr  {rng.random():.2f} csys"
        f" =  {rng.random() * 5:.2f} CPU)\nResult: {grade.upper()}\n"
    )


FIRST_MOMENT = datetime(2010, 4, 1)
SPAN_SECONDS = 12 * 365 * 86400
"""Reports are spread over twelve years whatever their number, so that every data set has
double-encoded rows (before 2014), ISO ``updated`` and epoch ``updated`` (from 2017)."""


def _population(count: int, seed: int, testers: int | None) -> tuple[list[Tester], list[tuple[str, str, str]]]:
    rng = random.Random(seed)
    people = make_testers(testers or max(5, min(20_000, count // 50)), rng)
    dists = [
        (
            "-".join(rng.sample(WORDS, rng.randint(1, 3))),
            f"{rng.randint(0, 9)}.{rng.randint(0, 99):02d}",
            f"AUTHOR{i % 997}",
        )
        for i in range(max(10, count // 20))
    ]
    return people, dists


def synth_reports(
    count: int, seed: int = 1, testers: int | None = None, start_id: int = 1, part: int = 0, parts: int = 1
) -> Iterator[dict]:
    """``count`` legacy ``metabase`` rows (guid, id, updated, report blob) plus, under ``"stats"``,
    the legacy ``cpanstats`` row upstream would have made (None for ~5%: never processed).

    Row ``i`` depends only on ``seed`` and ``i``, so ``parts`` processes can each make the
    rows ``i % parts == part`` of the same data set."""
    people, dists = _population(count, seed, testers)
    step = SPAN_SECONDS / max(count, 1)
    for index in range(part, count, parts):
        rng = random.Random(seed * 1_000_003 + index)
        tester = rng.choice(people)
        dist, version, author = rng.choice(dists)
        perl = rng.choice(tester.perls)
        grade = rng.choice(GRADES)
        moment = FIRST_MOMENT + timedelta(seconds=int(index * step) + rng.randint(0, max(int(step) - 1, 0)))
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        guid = str(uuid.UUID(int=rng.getrandbits(128), version=1))
        content = {
            "grade": grade,
            "osname": tester.os[0],
            "osversion": tester.os[2],
            "archname": tester.os[1],
            "perl_version": f"v{perl}",
            "textreport": _text_report(tester, perl, dist, version, grade, rng),
        }
        resource = f"cpan:///distfile/{author}/{dist}-{version}.tar.gz"

        def core(kind: str, stamp: str = stamp, resource: str = resource, tester: Tester = tester, rng=rng) -> dict:
            return {
                "type": kind,
                "guid": str(uuid.UUID(int=rng.getrandbits(128), version=1)),
                "resource": resource,
                "creator": tester.resource,
                "creation_time": stamp,
                "update_time": stamp,
                "schema_version": 1,
                "valid": 1,
            }

        summary = {k: content[k] for k in ("grade", "osname", "osversion", "archname", "perl_version")}
        double = moment.year < 2014  # old rows: contents as JSON strings
        facts = {
            "CPAN::Testers::Fact::LegacyReport": {
                "metadata": {"core": core(LEGACY_REPORT)},
                "content": json.dumps(content) if double else content,
            },
            "CPAN::Testers::Fact::TestSummary": {
                "metadata": {"core": core(TEST_SUMMARY)},
                "content": json.dumps(summary) if double else summary,
            },
        }
        epoch = moment.year >= 2017
        updated = str(int(moment.replace(tzinfo=UTC).timestamp())) if epoch else stamp
        legacy_id = start_id + index
        stats = None
        if rng.random() < 0.95:
            stats = {
                "id": legacy_id,
                "guid": guid,
                "state": grade,
                "postdate": moment.strftime("%Y%m"),
                "tester": f"{tester.email} ({tester.name.encode('ascii', 'xmlcharrefreplace').decode()})",
                "dist": dist,
                "version": version,
                "platform": tester.os[1],
                "perl": perl,
                "osname": tester.os[0],
                "osvers": tester.os[2],
                "fulldate": moment.strftime("%Y%m%d%H%M"),
                "type": 2,
                "uploadid": 1,
            }
        yield {
            "guid": guid,
            "id": legacy_id,
            "updated": updated,
            "report": zlib.compress(json.dumps(facts, ensure_ascii=False).encode("utf-8"), 6),
            "stats": stats,
            "tester": tester,
        }


def testers_email_rows(testers: list[Tester]) -> Iterator[tuple]:
    """1-3 rows per profile, the latest one with the current address; names HTML-entity encoded."""
    row_id = 0
    for tester in testers:
        encoded = tester.name.encode("ascii", "xmlcharrefreplace").decode()
        for old in range(zlib.crc32(tester.user.encode()) % 3):
            row_id += 1
            yield (row_id, tester.resource, encoded, f"old{old}.{tester.email} ({tester.name})")
        row_id += 1
        yield (row_id, tester.resource, encoded, f"{tester.email} ({tester.name})")


STATS_COLUMNS = ("id", "guid", "state", "postdate", "tester", "dist", "version", "platform", "perl", "osname",
                 "osvers", "fulldate", "type", "uploadid")  # fmt: skip


def insert_metabase_rows(cursor, count: int, seed: int = 1, batch: int = 500, part: int = 0, parts: int = 1) -> int:
    """Insert one part of the ``count`` synthetic ``metabase`` rows and their ``cpanstats``
    rows through ``cursor``; returns the cpanstats rows inserted."""
    metabase_batch: list[tuple] = []
    stats_batch: list[tuple] = []
    stats_rows = 0

    def flush():
        if metabase_batch:
            cursor.executemany(
                "INSERT INTO metabase (guid, id, updated, report) VALUES (%s, %s, %s, %s)", metabase_batch
            )
            metabase_batch.clear()
        if stats_batch:
            cursor.executemany(
                f"INSERT INTO cpanstats ({', '.join(STATS_COLUMNS)}) VALUES ({', '.join(['%s'] * len(STATS_COLUMNS))})",
                stats_batch,
            )
            stats_batch.clear()

    cursor.execute("SET foreign_key_checks=0")
    for row in synth_reports(count, seed, part=part, parts=parts):
        metabase_batch.append((row["guid"], row["id"], row["updated"], row["report"]))
        if row["stats"]:
            stats_rows += 1
            stats_batch.append(tuple(row["stats"][c] for c in STATS_COLUMNS))
        if len(metabase_batch) >= batch:
            flush()
    flush()
    cursor.execute("SET foreign_key_checks=1")
    return stats_rows


def insert_profiles(cursor, count: int, seed: int = 1) -> int:
    """Insert the ``testers_email`` rows of every synthetic tester and their perls; returns
    the number of profiles."""
    people, _ = _population(count, seed, None)
    cursor.execute("SELECT COALESCE(MAX(id), 0) FROM testers_email")
    offset = cursor.fetchone()[0]
    cursor.executemany(
        "INSERT INTO testers_email (id, resource, fullname, email) VALUES (%s, %s, %s, %s)",
        [(offset + i, r, n, e) for i, r, n, e in testers_email_rows(people)],
    )
    perls = sorted({p for t in people for p in t.perls})
    cursor.executemany("INSERT IGNORE INTO perl_version (version, perl) VALUES (%s, %s)", [(p, p) for p in perls])
    return len(people)


def load_legacy(cursor, count: int, seed: int = 1, batch: int = 500) -> dict:
    """Insert ``count`` synthetic rows (and their profiles and cpanstats rows) into the legacy
    database the cursor is on; returns counts."""
    stats_rows = insert_metabase_rows(cursor, count, seed, batch)
    return {"metabase": count, "cpanstats": stats_rows, "profiles": insert_profiles(cursor, count, seed)}


@contextlib.contextmanager
def _cursor(connect: dict):
    """A cursor on a new autocommit connection made from ``pymysql.connect`` keywords."""
    import pymysql

    conn = pymysql.connect(**connect, autocommit=True, charset="utf8mb4")
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def _load_part(connect: dict, count: int, seed: int, batch: int, part: int, parts: int) -> int:
    with _cursor(connect) as cursor:
        return insert_metabase_rows(cursor, count, seed, batch, part, parts)


def load_legacy_parallel(connect: dict, count: int, seed: int = 1, batch: int = 1000, processes: int = 2) -> dict:
    """:func:`load_legacy` in ``processes`` processes, each with its own connection made
    from the ``pymysql.connect`` keywords ``connect`` (the rows do not depend on it)."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(processes) as pool:
        stats_rows = sum(
            pool.starmap(_load_part, [(connect, count, seed, batch, part, processes) for part in range(processes)])
        )
    with _cursor(connect) as cursor:
        profiles = insert_profiles(cursor, count, seed)
    return {"metabase": count, "cpanstats": stats_rows, "profiles": profiles}
