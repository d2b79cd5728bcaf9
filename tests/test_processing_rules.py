"""The pure derivation rules of processing (schemas/summary_rules.py)."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import summary_rules


@pytest.mark.parametrize(
    ("name", "email", "expected"),
    [
        (
            "Andreas J. König",
            "andreas.koenig.gmwojprw@franz.ak.mind.de",
            '"Andreas J. K&#246;nig" <andreas.koenig.gmwojprw@franz.ak.mind.de>',
        ),
        ("Slaven Rezi&#263; (SREZIC)", "srezic@cpan.org", '"Slaven Rezi&#263; (SREZIC)" <srezic@cpan.org>'),
        ("Slaven Rezić", "srezic@cpan.org", '"Slaven Rezi&#263;" <srezic@cpan.org>'),
        ("空海 😀", None, '"&#31354;&#28023; &#128512;" <>'),
        ("David Golden", "dagolden@cpan.org", '"David Golden" <dagolden@cpan.org>'),
    ],
)
def test_tester_is_quoted_name_and_address_with_non_ascii_as_entities(name, email, expected):
    assert summary_rules.tester(name, email) == expected


@given(st.text(), st.one_of(st.none(), st.emails()))
def test_tester_is_always_ascii(name, email):
    assert summary_rules.tester(name, email).isascii()


@pytest.mark.parametrize(
    ("version", "perl", "patch", "devel"),
    [
        ("5.5.1", "5.5.1", 0, 0),
        ("5.7.1", "5.7.1", 0, 1),
        ("5.9.6 patch 31753", "5.9.6", 1, 1),
        ("5.10.0 patch GitLive-maint-5.10-1462-g178839f", "5.10.0", 1, 0),
        ("v5.15.0", "5.15.0", 0, 1),
        ("5.20.0 RC0", "5.20.0", 0, 1),
        ("5.8.8 patch 34559", "5.8.8", 1, 0),
        ("5.36.1", "5.36.1", 0, 0),
        ("5.39.2", "5.39.2", 0, 1),
        ("something odd", None, 0, 0),
    ],
)
def test_perl_version_rows_follow_the_documented_rules(version, perl, patch, devel):
    assert summary_rules.perl_version(version) == summary_rules.PerlVersion(version, perl, patch, devel)


@given(st.text(max_size=40))
def test_perl_version_never_fails(version):
    row = summary_rules.perl_version(version)
    assert row.patch in (0, 1) and row.devel in (0, 1)
    assert row.perl is None or len(row.perl) <= 32 or not row.perl.isascii()


@pytest.mark.parametrize(
    ("version", "perl", "upload_type", "flags"),
    [
        ("1.06", "5.22.2", "cpan", (1, 1, 1, 1)),
        ("1.06", "5.22.2", "backpan", (2, 1, 1, 1)),
        ("1.06", "5.22.2", "unknown", (1, 1, 1, 1)),
        ("1.07_01", "5.22.2", "cpan", (1, 2, 1, 1)),
        ("1.07-TRIAL", "5.22.2", "cpan", (1, 2, 1, 1)),
        ("1.06", "5.9.5", "cpan", (1, 1, 2, 1)),
        ("1.06", "5.7.3", "cpan", (1, 1, 2, 1)),
        ("1.06", "5.39.2", "cpan", (1, 1, 2, 1)),
        ("1.06", "5.10.1", "cpan", (1, 1, 1, 1)),
        ("1.06", "5.16.0 RC0", "cpan", (1, 1, 1, 2)),
        ("1.06", "5.8.8 patch 34559", "cpan", (1, 1, 1, 2)),
    ],
)
def test_release_flags(version, perl, upload_type, flags):
    assert summary_rules.release_flags(version, perl, upload_type) == summary_rules.ReleaseFlags(*flags)


@given(st.sampled_from(["pass", "fail", "na", "unknown"]))
def test_exactly_one_grade_counts(grade):
    counts = summary_rules.grade_counts(grade)
    assert sum(counts.values()) == 1 and counts[grade] == 1


def test_dates_come_from_the_receipt_time():
    created = datetime(2017, 5, 7, 16, 40, 59)
    assert (summary_rules.postdate(created), summary_rules.fulldate(created)) == (201705, "201705071640")


def test_only_perl5_is_counted():
    assert summary_rules.is_counted("Perl 5") and not summary_rules.is_counted("Perl 6")
