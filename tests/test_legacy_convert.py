"""schemas/legacy.py on every real legacy row of the fixtures (no database needed)."""

from __future__ import annotations

import json
import zlib
from datetime import datetime

import pytest

from schemas.legacy import (
    LegacyRowError,
    convert_row,
    decode_report_column,
    email_address,
    inflate,
    latest_profiles,
    legacy_name,
    parse_updated,
)
from schemas.metabase import LEGACY_REPORT, TEST_SUMMARY
from schemas.v3 import ReportSchema
from storage.reports import decode_document, encode_document
from tests.legacy_fixtures import FIXTURES, cpanstats_rows, metabase_rows, profile_rows, read_outfile_blob

ROWS = metabase_rows()
PROFILES = latest_profiles(profile_rows())
SREZIC = "metabase:user:314402c4-2aae-11df-837a-5e0a49663a4f"


def test_the_fixtures_hold_seventeen_real_rows():
    assert len(ROWS) == 17
    assert len({row["guid"] for row in ROWS}) == 17


@pytest.mark.parametrize("row", ROWS, ids=[r["guid"] for r in ROWS])
def test_every_real_row_converts_to_a_valid_v3_document_with_its_own_guid(row):
    converted = convert_row(row["guid"], row["updated"], row["report"], PROFILES, row["id"])
    doc = converted.row["report"]
    assert doc["id"] == row["guid"] == converted.guid
    ReportSchema().load(json.loads(json.dumps(doc)))
    assert doc["environment"]["language"]["name"] == "Perl 5"
    assert not doc["environment"]["language"]["version"].startswith("v")
    assert doc["result"]["grade"] in ("pass", "fail", "na", "unknown")
    assert doc["result"]["output"]["uncategorized"].startswith("This distribution has been tested")
    assert converted.row["created"] == parse_updated(row["updated"])
    assert doc["created"] == converted.row["created"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert decode_document(encode_document(doc)) == doc


@pytest.mark.parametrize("stats", cpanstats_rows(), ids=lambda s: s["guid"])
def test_converted_rows_agree_with_the_legacy_cpanstats_row(stats):
    row = next(r for r in ROWS if r["guid"] == stats["guid"])
    columns = convert_row(row["guid"], row["updated"], row["report"], PROFILES).row
    assert (columns["dist"], columns["version"], columns["grade"]) == (stats["dist"], stats["version"], stats["state"])
    assert (columns["perl"], columns["osname"], columns["archname"]) == (
        stats["perl"],
        stats["osname"],
        stats["platform"],
    )
    assert columns["report"]["environment"]["system"]["osversion"] == stats["osvers"]
    assert columns["created"].strftime("%Y%m%d%H%M") == stats["fulldate"]
    assert columns["reporter_email"] == email_address(stats["tester"])


def test_perl_version_with_rc_suffix_and_leading_v_is_kept_without_the_v():
    row = next(r for r in ROWS if r["guid"] == "ffdb8ffc-07f1-11e3-a0a5-bfc8c70fa3a9")
    assert convert_row(row["guid"], row["updated"], row["report"], PROFILES).row["perl"] == "5.16.0 RC0"


def test_double_encoded_2010_row_is_decoded():
    row = next(r for r in ROWS if r["guid"] == "4fe9f782-4594-11df-b067-2bba90befd91")
    raw = json.loads(zlib.decompress(row["report"]))
    assert isinstance(raw["CPAN::Testers::Fact::LegacyReport"]["content"], str)
    facts = decode_report_column(row["report"])
    assert facts[LEGACY_REPORT]["content"]["grade"] == "fail"
    doc = convert_row(row["guid"], row["updated"], row["report"], PROFILES).row["report"]
    assert (doc["distribution"]["name"], doc["distribution"]["version"]) == ("Video-Manip", "0.02")
    assert doc["environment"]["language"]["version"] == "5.8.9"


def test_epoch_updated_row_is_dated_by_the_epoch():
    row = next(r for r in ROWS if r["guid"] == "69952598-c015-11ee-98b0-b3c3213a625c")
    assert row["updated"] == "1706690869"
    assert row["fact"]  # a Sereal blob, ignored
    columns = convert_row(row["guid"], row["updated"], row["report"], PROFILES).row
    assert columns["created"] == datetime(2024, 1, 31, 8, 47, 49)
    assert columns["report"]["metabase"]["creation_time"] == "2024-01-31T08:47:58Z"


def test_the_row_guid_wins_over_the_fact_guids():
    row = ROWS[0]
    facts = decode_report_column(row["report"])
    assert facts[LEGACY_REPORT]["metadata"]["core"]["guid"] != row["guid"]
    assert convert_row(row["guid"].upper(), row["updated"], row["report"], PROFILES).guid == row["guid"]


def test_the_facts_own_guids_are_kept_for_the_legacy_json_view():
    row = ROWS[0]
    facts = decode_report_column(row["report"])
    doc = convert_row(row["guid"], row["updated"], row["report"], PROFILES).row["report"]
    assert doc["metabase"]["fact_guids"][LEGACY_REPORT] == facts[LEGACY_REPORT]["metadata"]["core"]["guid"]
    assert doc["metabase"]["fact_guids"][TEST_SUMMARY] == facts[TEST_SUMMARY]["metadata"]["core"]["guid"]


def test_uncompressed_report_columns_are_read_as_they_are():
    row = next(r for r in ROWS if r["source"] == "metabase.sql")
    assert inflate(row["report"]) == row["report"]
    assert TEST_SUMMARY in decode_report_column(row["report"])


def test_a_report_column_in_latin1_bytes_is_read_as_latin1():
    row = ROWS[0]
    text = (
        zlib.decompress(row["report"])
        .decode("utf-8")
        .replace("This distribution", "Ce r\u00e9sultat: this distribution", 1)
    )
    blob = zlib.compress(text.encode("latin-1"))  # \xe9 alone: not UTF-8
    doc = convert_row(row["guid"], row["updated"], blob, PROFILES).row["report"]
    assert doc["result"]["output"]["uncategorized"].startswith("Ce r\u00e9sultat: this distribution")


def test_outfile_dump_of_a_report_blob_inflates_to_the_decoded_fixture():
    facts = decode_report_column(read_outfile_blob(FIXTURES / "api-report.outfile"))
    assert facts[LEGACY_REPORT]["metadata"]["core"]["resource"] == "cpan:///distfile/MLEHMANN/Crypt-Ed25519-1.04.tar.gz"


def test_updated_is_iso_or_epoch():
    assert parse_updated("2017-03-02T06:47:23Z") == datetime(2017, 3, 2, 6, 47, 23)
    assert parse_updated(b"1706690869") == datetime(2024, 1, 31, 8, 47, 49)
    assert parse_updated(1706690869) == datetime(2024, 1, 31, 8, 47, 49)
    assert parse_updated("yesterday") is None
    assert parse_updated(None) is None


def test_latest_testers_email_row_wins_and_names_are_decoded():
    assert PROFILES[SREZIC].fullname == "Slaven Rezić (SREZIC)"
    assert PROFILES[SREZIC].email == "srezic@iconmobile.net"  # id 122, the highest of the profile
    assert latest_profiles([(2, "R", "New", "new@x.org"), (1, "R", "Old", "old@x.org")])["r"].fullname == "New"


def test_legacy_names_lose_entities_and_mojibake():
    assert legacy_name("Andreas J. K&ouml;nig") == "Andreas J. König"
    assert legacy_name("Slaven Rezi&#x0107;") == "Slaven Rezić"
    assert legacy_name("Ren\u00c3\u00a9") == "René"
    assert email_address('cpan-testers@perl.org ("chris at bingosnet.co.uk")') == "cpan-testers@perl.org"
    assert email_address('"Name" <a@b.org>') == "a@b.org"
    assert email_address("") is None


def test_unknown_creator_is_reported_as_unknown():
    row = next(r for r in ROWS if r["guid"] == "166d274a-ff14-11e6-9865-4c569e5b62e3")
    columns = convert_row(row["guid"], row["updated"], row["report"], {}).row
    assert (columns["reporter"], columns["reporter_email"]) == ("Unknown", None)


@pytest.mark.parametrize(
    "blob, reason",
    [
        (b"x\x9c\x00garbage", "not JSON"),
        (zlib.compress(b"[1, 2]"), "not a JSON object"),
        (zlib.compress(b'{"CPAN::Testers::Fact::TestSummary": {"content": {}}}'), "no CPAN-Testers-Fact-LegacyReport"),
        (
            zlib.compress(
                json.dumps(
                    {
                        "CPAN::Testers::Fact::LegacyReport": {
                            "metadata": {"core": {"resource": "cpan:///distfile/A/B-1.0.tar.gz"}},
                            "content": json.dumps({"grade": "excellent", "osname": "x", "perl_version": "5.1.1"}),
                        }
                    }
                ).encode()
            ),
            "invalid LegacyReport content",
        ),
        (
            zlib.compress(
                json.dumps(
                    {
                        "CPAN::Testers::Fact::LegacyReport": {
                            "metadata": {"core": {"resource": "metabase:user:x"}},
                            "content": {"grade": "pass", "osname": "x", "perl_version": "5.1.1", "textreport": ""},
                        }
                    }
                ).encode()
            ),
            "is not a cpan:///distfile/ URI",
        ),
    ],
)
def test_bad_rows_raise_an_error_with_the_reason(blob, reason):
    with pytest.raises(LegacyRowError) as caught:
        convert_row("0cbce1be-07f0-11e3-9db1-878205732d18", "2013-08-18T10:22:13Z", blob, PROFILES)
    assert reason in caught.value.reason
    assert caught.value.guid == "0cbce1be-07f0-11e3-9db1-878205732d18"


def test_a_row_without_a_usable_date_is_an_error():
    row = ROWS[0]
    facts = json.loads(zlib.decompress(row["report"]))
    for fact in facts.values():
        fact["metadata"]["core"]["creation_time"] = "never"
    with pytest.raises(LegacyRowError, match="no usable date"):
        convert_row(row["guid"], "soon", zlib.compress(json.dumps(facts).encode()), PROFILES)


@pytest.mark.parametrize("row", ROWS, ids=[r["guid"] for r in ROWS])
def test_the_document_is_exactly_what_the_intake_translation_makes_of_the_same_report(row):
    from schemas.distname import parse_distfile
    from schemas.metabase import MetabaseReport, fact_guids
    from schemas.translate import metabase_to_v3

    columns = convert_row(row["guid"], row["updated"], row["report"], PROFILES).row
    doc = columns["report"]
    facts = decode_report_column(row["report"])
    legacy = dict(facts[LEGACY_REPORT]["content"])
    for key, value in facts.get(TEST_SUMMARY, {}).get("content", {}).items():
        legacy.setdefault(key, value)
    legacy["grade"] = legacy["grade"].lower()
    profile = PROFILES.get((doc["metabase"]["creator"] or "").lower())
    report = MetabaseReport(
        guid=doc["id"],
        core=doc["metabase"],
        legacy=legacy,
        distfile=doc["distribution"]["path"],
        dist=parse_distfile(doc["distribution"]["path"]),
        sha256="",
        fact_guids=fact_guids(facts.values()),
    )
    expected = metabase_to_v3(report, columns["created"], profile and profile.fullname, profile and profile.email)
    assert doc == expected
