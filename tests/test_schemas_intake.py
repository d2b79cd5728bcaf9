"""The pure parsers and translators of the intake: CPAN paths, the Metabase envelope,
text repair. Property tests feed them hostile input: they answer or raise InvalidReport,
never anything else."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.distname import parse_distfile
from schemas.errors import InvalidReport
from schemas.metabase import decode_registration, decode_report
from schemas.text import clean_profile_text, clean_text, repair_mojibake, storable
from schemas.translate import metabase_to_v3
from tests import captures


@pytest.mark.parametrize(
    ("distfile", "cpanid", "dist", "version", "maturity"),
    [
        ("MLEHMANN/Crypt-Ed25519-1.04.tar.gz", "MLEHMANN", "Crypt-Ed25519", "1.04", "released"),
        ("PREACTION/Yancy-1.004.tar.gz", "PREACTION", "Yancy", "1.004", "released"),
        ("AUTHOR/Foo-Bar-1.23_01.tar.gz", "AUTHOR", "Foo-Bar", "1.23_01", "developer"),
        ("AUTHOR/Foo-1.2-TRIAL.tar.gz", "AUTHOR", "Foo", "1.2-TRIAL", "developer"),
        ("AUTHOR/Foo-v1.2.3.tgz", "AUTHOR", "Foo", "v1.2.3", "released"),
        ("AUTHOR/CGI.pm-4.0.tar.gz", "AUTHOR", "CGI", "4.0", "released"),
        ("AUTHOR/sub/dir/Foo-2.0.zip", "AUTHOR", "Foo", "2.0", "released"),
        (
            "AUTHOR/Unicode-Collate-Standard-V3_1_1-0.1.tar.gz",
            "AUTHOR",
            "Unicode-Collate-Standard-V3_1_1",
            "0.1",
            "released",
        ),
    ],
)
def test_distfiles_split_as_cpan_distnameinfo_does(distfile, cpanid, dist, version, maturity):
    info = parse_distfile(distfile)
    assert (info.cpanid, info.dist, info.version, info.maturity) == (cpanid, dist, version, maturity)


@pytest.mark.parametrize(
    "distfile", ["", "X/Foo-1.0.tar.gz", "lower/Foo-1.0.tar.gz", "AUTHOR/Foo.tar.gz", "AUTHOR/Foo-1.0.rar"]
)
def test_unparseable_distfiles_give_none(distfile):
    assert parse_distfile(distfile) is None


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_distfile_text_parses_or_gives_none(text):
    info = parse_distfile(text)
    assert info is None or (info.dist and info.version and info.cpanid)


def test_mojibake_lines_are_repaired_and_correct_lines_kept():
    mixed = "comment: café — naïve\ndiag: caf\u00c3\u00a9 na\u00c3\u00afve\n"
    assert repair_mojibake(mixed) == "comment: café — naïve\ndiag: café naïve\n"


@pytest.mark.parametrize(
    "text",
    [
        "ANSI \x1b[31mred\x1b[0m stays",
        "&lt;html&gt; &amp; entities stay",
        "“curly” quotes stay",
        "ﬁ ligature and ｗｉｄｅ stay",
        "e\u0301 stays decomposed",
        "Ångström 5°C ±1 ½",
    ],
)
def test_repair_rewrites_nothing_but_encoding(text):
    assert repair_mojibake(text) == text


def test_lone_surrogates_become_replacement_characters():
    assert clean_text("half \ud83d camel") == "half \ufffd camel"


@given(st.text(max_size=500))
@settings(max_examples=300, deadline=None)
def test_text_cleaning_never_raises_and_gives_storable_utf8(text):
    cleaned = clean_text(text)
    cleaned.encode("utf-8")
    clean_profile_text(text).encode("utf-8")


MIXED_TEXT = st.text(
    alphabet=st.sampled_from("ab \n\r")
    | st.characters(min_codepoint=0x80, max_codepoint=0xFF)
    | st.sampled_from("\ud83d\ude00😀é—"),
    max_size=80,
)


@given(MIXED_TEXT)
@settings(max_examples=500, deadline=None)
def test_text_cleaning_is_the_mojibake_repair_then_the_surrogate_replacement(text):
    assert clean_text(text) == storable(repair_mojibake(text))


NAMES_OUTSIDE_LATIN1 = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF, exclude_categories=("Cs",)).filter(
        lambda c: not 0x80 <= ord(c) <= 0xFF
    ),
    max_size=80,
)


@given(NAMES_OUTSIDE_LATIN1)
@settings(max_examples=300, deadline=None)
def test_a_name_utf8_encoded_once_is_restored_exactly(name):
    assert clean_profile_text(name.encode("utf-8").decode("latin-1")) == name


REAL_NAMES = st.lists(
    st.text(
        alphabet=st.characters(max_codepoint=0xFFFF, categories=("Lu", "Ll")).filter(
            lambda c: not 0x80 <= ord(c) <= 0xFF
        ),
        min_size=2,
        max_size=12,
    ),
    min_size=1,
    max_size=3,
).map(" ".join)


@given(REAL_NAMES)
@settings(max_examples=300, deadline=None)
def test_a_name_utf8_encoded_twice_is_restored(name):
    twice = name.encode("utf-8").decode("latin-1").encode("utf-8").decode("latin-1")
    assert clean_profile_text(twice) == name


def test_the_recorded_submission_translates_to_v3():
    body = captures.load("02-fail-grade")[0].body
    report = decode_report(body)
    from datetime import datetime

    doc = metabase_to_v3(report, datetime(2026, 1, 2, 3, 4, 5), "Tester", "t@example.com")
    assert doc["created"] == "2026-01-02T03:04:05Z"
    assert doc["result"]["grade"] == "fail"
    assert doc["distribution"]["name"] == "Foo-Bar"
    assert doc["environment"]["language"]["version"] == "5.36.0"


def test_key_order_and_escaping_do_not_change_the_submission_hash():
    body = captures.load("01-ok")[0].body
    reordered = json.dumps(dict(reversed(list(json.loads(body).items()))), ensure_ascii=False).encode()
    assert decode_report(body).sha256 == decode_report(reordered).sha256


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_any_json_submission_is_accepted_or_refused_with_invalid_report(value):
    with contextlib.suppress(InvalidReport):
        decode_report(json.dumps(value).encode())


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_any_bytes_are_refused_cleanly(data):
    with pytest.raises(InvalidReport):
        decode_report(data)


def _mutations():
    outer = json.loads(captures.load("01-ok")[0].body)
    facts = json.loads(outer["content"])
    return outer, facts


@given(st.sampled_from(["grade", "osname", "osversion", "archname", "perl_version", "textreport"]), json_values)
@settings(max_examples=200, deadline=None)
def test_any_legacy_field_value_is_accepted_or_refused_cleanly(field, value):
    outer, facts = _mutations()
    for fact in facts:
        content = json.loads(fact["content"])
        content[field] = value
        fact["content"] = json.dumps(content)
    outer["content"] = json.dumps(facts)
    with contextlib.suppress(InvalidReport):
        decode_report(json.dumps(outer).encode())


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_any_registration_is_accepted_or_refused_cleanly(value):
    with contextlib.suppress(InvalidReport):
        decode_registration(json.dumps(value).encode())


def test_repair_keeps_every_line_ending_and_fixes_each_affected_line_once():
    text = "a\r\ncaf\u00c3\u00a9 \u00e9 caf\u00c3\u00a9\rb\u00c3\u00b6\n\nplain\n\u00c3\u00a9"
    assert repair_mojibake(text) == "a\r\ncafé é café\rbö\n\nplain\né"


def test_the_submission_hashes_of_the_client_captures_have_not_changed():
    """Stored rows keep the hash of their submission: a resubmission is a duplicate only if
    it hashes the same, so the canonical form may never change."""
    hashes = {
        name: decode_report(captures.load(name)[0].body).sha256
        for name in ("01-ok", "03-raw-bytes", "23-non-ascii-secret")
    }
    assert hashes == {
        "01-ok": "51e8628fa2abbb879f2a319494ea3a2474f7c0dd28b8ee720eabc980ffd3d13b",
        "03-raw-bytes": "8601cff59f3b2019afbe9a3b9c00bc435199c73975b79e7d7b5f78153f388a82",
        "23-non-ascii-secret": "0225912113dc1799f850353127646316e918e71ebe9648a93927dcbb415268a1",
    }
