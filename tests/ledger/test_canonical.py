"""Canonical JSON (RFC 8785, JCS): numbers, key order, escaping, and round trips."""

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.canonical import canonical_bytes, canonical_json, written_canonically_by_orjson
from tests.ledger.jcs_vectors import NUMBERS, RFC_8785_NUMBERS, from_bits
from tests.ledger.strategies import JSON_VALUES, SAFE_JSON_VALUES, TEXT


@pytest.mark.parametrize(("value", "text"), NUMBERS)
def test_numbers_are_written_as_ecmascript_writes_them(value: float, text: str) -> None:
    assert canonical_json(value) == text
    assert canonical_json([value]) == f"[{text}]"
    assert canonical_json({"n": value}) == f'{{"n":{text}}}'


@pytest.mark.parametrize(("bits", "text"), RFC_8785_NUMBERS, ids=[t for _, t in RFC_8785_NUMBERS])
def test_numbers_match_the_rfc_8785_vectors(bits: int, text: str) -> None:
    assert canonical_json(from_bits(bits)) == text
    assert canonical_json({"x": [from_bits(bits)]}) == f'{{"x":[{text}]}}'


def test_integers_are_written_plainly_up_to_2_to_the_53() -> None:
    assert canonical_json([0, -7, 2**53, -(2**53)]) == "[0,-7,9007199254740992,-9007199254740992]"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2**53 + 1, "9007199254740992"),
        (10**16, "10000000000000000"),
        (43394771218396470, "43394771218396470"),
        (-(10**20), "-100000000000000000000"),
        (10**30, "1e+30"),
    ],
)
def test_integers_beyond_2_to_the_53_stand_for_the_nearest_double(value: int, text: str) -> None:
    assert canonical_json({"n": value}) == f'{{"n":{text}}}'
    assert canonical_json(value) == canonical_json(float(value))


def test_an_integer_beyond_the_range_of_doubles_is_refused() -> None:
    with pytest.raises(ValueError, match="range"):
        canonical_json({"n": 10**400})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="NaN"):
        canonical_json({"n": [value]})


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), {"k": 1j}])
def test_what_is_not_json_native_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        canonical_json(value)


def test_booleans_and_null_are_literals_not_numbers() -> None:
    assert canonical_json([True, False, None, 1, 0]) == "[true,false,null,1,0]"


def test_keys_are_sorted_by_utf16_code_units_as_in_rfc_8785() -> None:
    names = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(names)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_an_astral_key_sorts_before_a_high_bmp_key_unlike_code_point_order() -> None:
    text = canonical_json({"\uffff": 1, "\U00010000": 2})
    assert text == '{"\U00010000":2,"\uffff":1}'


def test_nested_objects_are_sorted_at_every_level() -> None:
    value = {"b": {"z": 1, "a": [{"y": 2, "x": 3}]}, "a": None}
    assert canonical_json(value) == '{"a":null,"b":{"a":[{"x":3,"y":2}],"z":1}}'


def test_strings_are_escaped_minimally() -> None:
    text = '\u20ac$\u000f\nA\'B"\\\\"/'
    assert canonical_json(text) == '"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'
    assert canonical_json("\b\t\n\f\r\u0000\u001f\u007f\u2028\u00e9") == (
        '"\\b\\t\\n\\f\\r\\u0000\\u001f\u007f\u2028\u00e9"'
    )


def test_the_rfc_8785_example_is_reproduced() -> None:
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)) == expected
    assert canonical_bytes(json.loads(source)) == expected.encode("utf-8")


def test_non_ascii_is_written_as_utf8_not_escaped() -> None:
    assert canonical_bytes({"é": "😀"}) == '{"é":"😀"}'.encode()


def test_tuples_are_arrays() -> None:
    assert canonical_json({"t": (1, "a")}) == '{"t":[1,"a"]}'


# --- properties ----------------------------------------------------------------------------


def parse_as_doubles(text: str) -> Any:
    """json.loads, reading integers beyond 2**53 as the doubles they stand for (I-JSON)."""
    return json.loads(text, parse_int=lambda s: int(s) if abs(int(s)) <= 2**53 else float(s))


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_canonical_json_parses_back_to_the_same_value(value: Any) -> None:
    assert parse_as_doubles(canonical_json(value)) == value


@settings(max_examples=100, deadline=None)
@given(SAFE_JSON_VALUES)
def test_plain_json_loads_reads_back_values_without_large_doubles(value: Any) -> None:
    assert json.loads(canonical_json(value)) == value


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_canonical_json_is_a_fixed_point_of_parse_and_reserialise(value: Any) -> None:
    text = canonical_json(value)
    assert canonical_json(json.loads(text)) == text
    assert canonical_bytes(value) == text.encode("utf-8")


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(TEXT, st.integers(0, 9), max_size=8))
def test_canonical_keys_are_in_utf16_order(value: dict[str, int]) -> None:
    keys = list(json.loads(canonical_json(value)))
    assert keys == sorted(value, key=lambda k: k.encode("utf-16-be"))


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_double_reads_back_exactly(value: float) -> None:
    text = canonical_json(value)
    assert float(text) == value
    assert "." not in text or not text.split("e")[0].endswith("0")


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES | st.floats(allow_nan=False, allow_infinity=False).map(lambda f: {"f": [f]}))
def test_what_orjson_writes_canonically_it_writes_as_jcs_does(value: Any) -> None:
    """verify takes orjson's sorted output for the canonical form when this says it may."""
    if written_canonically_by_orjson(value):
        assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == canonical_bytes(value)


@pytest.mark.parametrize("value", [5.0, -0.0, 1e-6, 1.5e-6, 1e16, 1e21, 2**53 + 1, {"é": 1}])
def test_what_orjson_writes_otherwise_is_not_taken_for_canonical(value: Any) -> None:
    assert not written_canonically_by_orjson({"v": value} if not isinstance(value, dict) else value)
