"""schemas/fast_json.py: orjson's speed, the standard library's answers."""

from __future__ import annotations

import json
import math

import pytest

from schemas import fast_json


def test_output_is_compact_utf8_with_non_ascii_unescaped():
    value = {"name": "Andreas König", "list": [1, 2.5, None, True]}
    assert fast_json.dumps(value) == '{"name":"Andreas König","list":[1,2.5,null,true]}'.encode()


def test_lone_surrogates_round_trip():
    value = {"text": "before \ud800 after \udfff"}
    assert fast_json.loads(fast_json.dumps(value)) == value


def test_an_escaped_lone_surrogate_parses_as_the_standard_library_does():
    assert fast_json.loads('"\\ud83d tail"') == json.loads('"\\ud83d tail"')


def test_nan_and_numbers_out_of_range_parse_as_the_standard_library_does():
    assert math.isnan(fast_json.loads("NaN"))
    assert fast_json.loads("1e400") == math.inf


def test_integers_beyond_64_bits_are_written_exactly():
    assert fast_json.dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'


def test_invalid_json_raises_a_value_error():
    with pytest.raises(ValueError):
        fast_json.loads("{not json")


@pytest.mark.parametrize("number", [-(2**63) - 1, 2**64, 2**70, -(2**70)])
def test_integers_beyond_64_bits_are_read_exactly(number):
    """Bug (found by test_report_storage's round trip): orjson reads them as floats, so a
    stored document with one came back changed."""
    for text in (f'{{"n": {number}}}', f'{{"n": {number}}}'.encode()):
        value = fast_json.loads(text)["n"]
        assert value == number and isinstance(value, int)


def test_long_digit_runs_inside_strings_still_parse():
    text = '{"id": "12345678901234567890123", "n": 1.5}'
    assert fast_json.loads(text) == json.loads(text)
