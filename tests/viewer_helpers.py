"""Helpers of the read-side tests: a viewer app on the test backend, stored reports and
processed rows inserted directly (the processing workers are tested elsewhere)."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from schemas.translate import index_columns
from storage.reports import store_report
from storage.tables import cpanstats, metabase_user, perl_version, release_summary, uploads

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = json.loads((FIXTURES / "legacy-view-report-json-sample.json").read_text())
SAMPLE_CORE = SAMPLE["result"]["metadata"]["core"]
SAMPLE_FACT = SAMPLE["result"]["content"][0]["content"]
SAMPLE_CREATOR = SAMPLE_CORE["creator"]


def sample_document() -> dict:
    """The v3 document of the report in the real ``?json=1`` sample (Yancy-1.004, OpenBSD)."""
    return {
        "id": SAMPLE_CORE["guid"],
        "created": SAMPLE_CORE["creation_time"],
        "reporter": {"name": "Doug Bell", "email": "doug@example.com"},
        "environment": {
            "language": {
                "name": "Perl 5",
                "version": SAMPLE_FACT["perl_version"],
                "archname": SAMPLE_FACT["archname"],
            },
            "system": {"osname": SAMPLE_FACT["osname"], "osversion": SAMPLE_FACT["osversion"]},
        },
        "distribution": {"name": "Yancy", "version": "1.004", "path": "PREACTION/Yancy-1.004.tar.gz"},
        "result": {"grade": SAMPLE_FACT["grade"], "output": {"uncategorized": SAMPLE_FACT["textreport"]}},
        "metabase": {
            "fact_guids": {
                fact["metadata"]["core"]["type"]: fact["metadata"]["core"]["guid"]
                for fact in SAMPLE["result"]["content"]
            }
        },
    }


def make_document(**changes) -> dict:
    """A copy of the sample document with a new GUID and ``changes`` applied (dotted keys)."""
    doc = copy.deepcopy(sample_document())
    doc["id"] = str(uuid.uuid4())
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


def store_document(engine, doc: dict, creator: str | None = SAMPLE_CREATOR) -> str:
    """Store a v3 document in ``test_report`` as the intake does; returns its GUID."""
    created = datetime.strptime(doc["created"], "%Y-%m-%dT%H:%M:%SZ")
    row = {
        "guid": doc["id"].lower(),
        "created": created,
        "creator": creator,
        "submission_sha256": hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest(),
        "report": doc,
        **index_columns(doc),
    }
    store_report(engine, row)
    return row["guid"]


def add_user(engine, resource: str, fullname: str, email: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(metabase_user.insert().values(resource=resource, fullname=fullname, email=email))


def add_upload(engine, dist: str, version: str, author: str, released: int = 1523938257, kind: str = "cpan") -> int:
    with engine.begin() as conn:
        result = conn.execute(
            uploads.insert().values(
                type=kind,
                author=author,
                dist=dist,
                version=version,
                filename=f"{dist}-{version}.tar.gz",
                released=released,
            )
        )
        return result.inserted_primary_key[0]


def add_perl(engine, version: str, devel: int = 0, patch: int = 0) -> None:
    with engine.begin() as conn:
        conn.execute(
            perl_version.insert().values(version=version, perl=version.split(" ")[0], devel=devel, patch=patch)
        )


def add_cpanstats(engine, uploadid: int, dist: str, version: str, **values) -> int:
    row = {
        "guid": str(uuid.uuid4()),
        "state": "pass",
        "postdate": 201804,
        "tester": '"Doug Bell" <doug@example.com>',
        "dist": dist,
        "version": version,
        "platform": "OpenBSD.amd64-openbsd",
        "perl": "5.24.3",
        "osname": "openbsd",
        "osvers": "6.2",
        "fulldate": "201804170410",
        "type": 2,
        "uploadid": uploadid,
        **values,
    }
    with engine.begin() as conn:
        return conn.execute(cpanstats.insert().values(**row)).inserted_primary_key[0]


def add_summary(engine, uploadid: int, dist: str, version: str, guid: str, **values) -> None:
    row = {
        "dist": dist,
        "version": version,
        "id": 1,
        "guid": guid,
        "oncpan": 1,
        "distmat": 1,
        "perlmat": 1,
        "patched": 1,
        "pass": 0,
        "fail": 0,
        "na": 0,
        "unknown": 0,
        "uploadid": uploadid,
        **values,
    }
    with engine.begin() as conn:
        conn.execute(release_summary.insert().values(**row))


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
