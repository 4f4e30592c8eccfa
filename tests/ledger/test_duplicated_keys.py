"""A submission in which an object repeats a key is refused: readers would disagree on what
was submitted (Python and orjson keep the last value, SQLite's json_extract the first)."""

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.outcomes import Accepted, Rejection
from events.reasons import ReasonCode
from events.strict_json import duplicated_key
from tests.builders import raw
from tests.ledger.strategies import JSON_VALUES
from tests.ledger.support import Cli, Org, ndjson

CHECK_IN = raw(
    "CheckInRecorded", {"key_result_id": "kr1", "value": 20, "confidence": 0.6}, org_id="acme"
)


def with_member(line: bytes, after: bytes, member: bytes) -> bytes:
    """``line`` with ``member`` (``"key":value,``) inserted just after ``after``."""
    assert after in line
    return line.replace(after, after + member, 1)


REPEATS = {
    "top level": (with_member(CHECK_IN, b"{", b'"actor":"mallory",'), "actor"),
    "in data": (with_member(CHECK_IN, b'"data":{', b'"value":99,'), "value"),
    "same value twice": (with_member(CHECK_IN, b'"data":{', b'"value":20,'), "value"),
    "escaped spelling": (with_member(CHECK_IN, b"{", b'"\\u0061ctor":"mallory",'), "actor"),
    "with whitespace": (with_member(CHECK_IN, b"{", b' "org_id" : "globex" , '), "org_id"),
}


@pytest.mark.parametrize("case", REPEATS)
def test_a_repeated_key_is_rejected_as_invalid_json_naming_it(case: str) -> None:
    line, key = REPEATS[case]
    assert isinstance(orjson.loads(line), dict)  # a parser alone accepts it
    outcome = Org().submit_raw(line)
    assert isinstance(outcome, Rejection), outcome
    assert outcome.reason is ReasonCode.INVALID_JSON
    assert f"the key {key!r} appears twice in one object" in outcome.message
    assert outcome.raw == line


def test_the_same_submission_without_the_repeat_is_accepted() -> None:
    assert isinstance(Org().submit_raw(CHECK_IN), Accepted)


def test_submit_reports_the_rejection_and_records_it(cli: Cli) -> None:
    line, _ = REPEATS["top level"]
    assert cli("submit", "-", stdin=line + b"\n").exit_code == 3
    (rejection,) = ndjson(cli("rejections", "--json"))
    assert rejection["reason_code"] == "invalid_json"
    assert "'actor' appears twice" in rejection["message"]
    assert rejection["raw"] == line.decode()


# --- the check itself -------------------------------------------------------------------------


def repeated_by_the_standard_library(line: bytes) -> bool:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found.append(len({k for k, _ in pairs}) != len(pairs))
        return dict(pairs)

    found: list[bool] = []
    json.loads(line, object_pairs_hook=hook)
    return any(found)


KEYS = st.sampled_from(["a", "b", 'q"uote', "back\\slash", "é", ":"])


def _object(members: list[tuple[str, bool, str]]) -> str:
    return "{" + ",".join(json.dumps(k, ensure_ascii=a) + ":" + v for k, a, v in members) + "}"


DOCUMENTS = st.recursive(
    JSON_VALUES.map(lambda value: json.dumps(value, ensure_ascii=False)),
    lambda inner: (
        st.lists(st.tuples(KEYS, st.booleans(), inner), max_size=4).map(_object)
        | st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]")
    ),
    max_leaves=12,
)
"""JSON texts whose objects may repeat a key, spelt raw or escaped (``"é"``, ``"\\u00e9"``)."""


_PLAIN_TEXT = st.text(alphabet="ab:,{}[] é", max_size=6)
PLAIN_DOCUMENTS = st.recursive(
    (st.none() | st.integers() | _PLAIN_TEXT).map(
        lambda value: json.dumps(value, ensure_ascii=False)
    ),
    lambda inner: (
        st.lists(st.tuples(_PLAIN_TEXT, st.just(False), inner), max_size=4).map(_object)
        | st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]")
    ),
    max_leaves=12,
)
"""JSON texts without a backslash (the fast path), with brackets, commas and colons in keys
and strings."""


@settings(max_examples=300, deadline=None)
@given(st.one_of(DOCUMENTS, PLAIN_DOCUMENTS))
def test_it_finds_a_repeat_exactly_when_one_is_there(text: str) -> None:
    """Against the standard library's pairs, on documents nested at any depth, with quotes,
    backslashes, brackets and colons in keys and strings."""
    line = text.encode()
    expected = repeated_by_the_standard_library(line)
    assert (duplicated_key(line, orjson.loads(line)) is not None) is expected


def _deep_check_in(depth: int) -> bytes:
    deep = b'{"a":' * depth + b"1" + b"}" * depth
    return with_member(CHECK_IN, b'"data":{', b'"deep":' + deep + b",")


@pytest.mark.parametrize("depth", [254, 255, 300, 1000])
def test_a_document_deeper_than_orjson_writes_gets_an_outcome(depth: int) -> None:
    """orjson reads objects nested up to 1,024 deep but writes only 254: the check takes its
    slow path for deeper ones, and the submission gets its outcome, never an exception."""
    line = _deep_check_in(depth)
    assert duplicated_key(line, orjson.loads(line)) is None
    outcome = Org().submit_raw(line)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is ReasonCode.SCHEMA_VIOLATION


@pytest.mark.parametrize("depth", [255, 300])
def test_a_repeat_beside_a_document_deeper_than_orjson_writes_is_found(depth: int) -> None:
    repeated = with_member(_deep_check_in(depth), b'"data":{', b'"value":99,')
    assert duplicated_key(repeated, orjson.loads(repeated)) == "value"
