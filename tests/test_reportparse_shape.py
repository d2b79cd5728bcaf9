"""Parsed facts as v3 fields, and their merge into a document (a submitter's own field wins)."""

from __future__ import annotations

import copy

from schemas.reportparse import parse_report_text
from schemas.reportparse.shape import enrich_document, merge_parsed, report_text, v3_fields
from schemas.v3 import load_new_report
from tests.report_texts import real_report

NAME = "collector/report-cpan-reporter-1.2020.txt"


def metabase_shaped(text: str) -> dict:
    """A v3 document as the Metabase translation makes it: the text, none of the fields."""
    return {
        "reporter": {"name": "A", "email": "a@example.org"},
        "environment": {
            "language": {"name": "Perl 5", "version": "5.43.10", "archname": "x86_64-linux-thread-multi-ld"},
            "system": {"osname": "linux", "osversion": "6.12.38+deb13-amd64"},
        },
        "distribution": {"name": "Bitcoin-Crypto", "version": "4.005"},
        "result": {"grade": "pass", "output": {"uncategorized": text}},
    }


def test_every_field_lands_where_the_v3_format_puts_it():
    text = real_report(NAME)
    doc = enrich_document(metabase_shaped(text), parse_report_text(text))
    environment, result = doc["environment"], doc["result"]
    assert environment["user_agent"] == "CPAN::Reporter 1.2020"
    assert environment["toolchain"]["CPAN::Meta"] == "2.150013"
    assert environment["system"]["variables"]["LANG"] == "en_US.UTF-8"
    assert environment["language"]["variables"]["$GID"] == "1005 1005"
    assert environment["language"]["build"].startswith("Summary of my perl5 (revision 5 version 43 subversion 10)")
    assert environment["language"]["build"].endswith("    .")
    assert environment["language"]["commit_id"] == "068830eb0bb2c1a602e432b25a91dae1c2ba9239"
    assert environment["language"]["config"]["uselongdouble"] == "define"
    assert {"phase": "configure", "name": "ExtUtils::MakeMaker", "need": "0", "have": "7.78"} in doc["distribution"][
        "prerequisites"
    ]
    assert (result["tests"], result["failures"], result["skipped"], result["duration"]) == (715, 0, 5, 80.0)
    assert "failed_files" not in result  # nothing failed
    assert "todo" not in result  # the harness said nothing about TODO tests


def test_the_enriched_document_is_still_a_valid_v3_report():
    text = real_report("capture/21-cpan-reporter-fail-register")
    doc = enrich_document(metabase_shaped(text), parse_report_text(text))
    assert load_new_report(doc) is doc
    assert doc["result"]["failed_files"] == [{"file": "t/01-basic.t", "failed": "3"}]


def test_a_field_the_submitter_sent_wins():
    text = real_report(NAME)
    sent = metabase_shaped(text)
    sent["result"]["tests"] = 453
    sent["environment"]["system"]["variables"] = {"ONLY": "mine"}
    sent["distribution"]["prerequisites"] = [{"phase": "runtime", "name": "X", "need": "1"}]
    doc = enrich_document(sent, parse_report_text(text))
    assert doc["result"]["tests"] == 453
    assert doc["environment"]["system"]["variables"] == {"ONLY": "mine"}
    assert doc["distribution"]["prerequisites"] == [{"phase": "runtime", "name": "X", "need": "1"}]
    assert doc["result"]["failures"] == 0  # what it did not send is filled


def test_merging_leaves_the_stored_document_unchanged():
    text = real_report(NAME)
    stored = metabase_shaped(text)
    before = copy.deepcopy(stored)
    enrich_document(stored, parse_report_text(text))
    assert stored == before


def test_a_path_through_a_non_object_is_skipped():
    doc = {"environment": "odd", "result": {"output": {}}}
    merged = merge_parsed(doc, {("environment", "user_agent"): "X 1", ("result", "tests"): 3})
    assert merged == {"environment": "odd", "result": {"output": {}, "tests": 3}}


def test_split_output_parts_are_parsed_together():
    doc = {"result": {"output": {"configure": "Checking...", "test": "Files=1, Tests=3,  0 wallclock secs"}}}
    assert report_text(doc) == "Checking...\nFiles=1, Tests=3,  0 wallclock secs"
    assert v3_fields(parse_report_text(report_text(doc)), report_text(doc))[("result", "tests")] == 3


def test_nothing_found_adds_nothing():
    doc = metabase_shaped("no sections at all")
    assert enrich_document(doc, parse_report_text("no sections at all")) == doc
