"""Perl module versions compare as version.pm compares them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.module_version import is_below, parse, sort_key


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.10", "1.9"),  # decimals: 1.100 < 1.900
        ("v1.9", "v1.10"),  # dotted: 9 < 10
        ("1.2.9", "1.2.10"),
        ("1.05", "1.05_01"),  # a development release after its base
        ("1.05_01", "1.06"),
        ("0.99", "1.0"),
        ("1.002003", "v1.2.4"),  # a decimal and a dotted-decimal compare by their parts
        ("2", "2.000001"),
    ],
)
def test_versions_order_as_perl_orders_them(lower, higher):
    assert parse(lower).parts < parse(higher).parts
    assert sorted([higher, lower], key=sort_key) == [lower, higher]


@pytest.mark.parametrize(
    ("left", "right"), [("1.10", "1.1"), ("v1.2", "v1.2.0"), ("1.5", "1.500"), ("1.05_01", "1.0501")]
)
def test_equal_versions_have_equal_parts(left, right):
    assert parse(left).parts == parse(right).parts


@pytest.mark.parametrize("text", ["n/a", "undef", "any", "", None, "1.2a", "-"])
def test_what_is_no_version_parses_to_none(text):
    assert parse(text) is None


def test_a_development_release_is_marked():
    assert parse("1.05_01").development and not parse("1.05").development


def test_major_minor_buckets_a_version():
    assert parse("1.0501").major_minor() == parse("1.05_02").major_minor() == "1.050"


def test_an_installed_version_below_the_need_is_flagged_and_an_unknown_one_is_not():
    assert is_below("1.04", "1.05")
    assert is_below("1.10", "1.9")  # 1.100 < 1.900
    assert not is_below("1.06", "1.05")
    assert not is_below("n/a", "1.05")
    assert not is_below("1.0", "0")


@given(st.text(max_size=30))
def test_parse_never_raises(text):
    parse(text)
    sort_key(text)
