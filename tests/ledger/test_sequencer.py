"""The sequencer: reason codes before the rules, idempotency, purity, and accepted events."""

import copy
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events.canonical import canonical_bytes
from events.chain import event_hash
from events.outcomes import Accepted, Duplicate, Rejection
from events.reasons import ReasonCode
from events.sequencer import (
    MAX_SUBMISSION_BYTES,
    Policy,
    Sequencer,
    _timestamp_text,
    _validate_whole,
    content_digest,
    decide,
    probe,
    record_digest,
    submission_digest,
)
from schemas.envelope import (
    EVENT_ID_NAMESPACE,
    GENESIS_HASH,
    Submission,
    derive_event_id,
    derive_event_key,
    format_timestamp,
)
from schemas.registry import EVENT_TYPES
from tests.builders import NOW, raw, sequence_all, submission
from tests.ledger.support import CHECK_IN_ID, Org, describe, key_result

CHECK_IN = {"key_result_id": "kr1", "value": 30, "confidence": 0.7}


def check_in(**envelope: Any) -> dict[str, Any]:
    return submission("CheckInRecorded", dict(CHECK_IN), **envelope)


def rejected(org: Org, document: dict[str, Any] | bytes) -> Rejection:
    line = document if isinstance(document, bytes) else orjson.dumps(document)
    outcome = org.submit_raw(line)
    assert isinstance(outcome, Rejection), describe(outcome)
    return outcome


@pytest.fixture
def org() -> Org:
    return Org()


# --- invalid_json and too_large ------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"type": "CheckInRecorded", "org_id": ', id="cut off"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1, 2]", id="an array"),
        pytest.param(b'"CheckInRecorded"', id="a string"),
        pytest.param(b"42", id="a number"),
        pytest.param(b"null", id="null"),
        pytest.param(b"\xff\xfe{}", id="not UTF-8"),
        pytest.param(b"{'type': 'x'}", id="single quotes"),
    ],
)
def test_what_is_not_a_json_object_is_invalid_json(org: Org, line: bytes) -> None:
    rejection = rejected(org, line)
    assert rejection.reason is ReasonCode.INVALID_JSON
    assert rejection.raw == line


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
def test_non_finite_numbers_are_invalid_json(org: Org, number: bytes) -> None:
    line = raw("CheckInRecorded", CHECK_IN).replace(b'"value":30', b'"value":' + number)
    assert number in line
    assert rejected(org, line).reason is ReasonCode.INVALID_JSON


def test_a_submission_over_64_kib_is_too_large(org: Org) -> None:
    big = submission("CheckInRecorded", {**CHECK_IN, "comment": "x" * MAX_SUBMISSION_BYTES})
    rejection = rejected(org, big)
    assert rejection.reason is ReasonCode.TOO_LARGE
    assert str(MAX_SUBMISSION_BYTES) in rejection.message


def test_a_submission_of_exactly_64_kib_is_not_too_large(org: Org) -> None:
    line = raw("CheckInRecorded", CHECK_IN)
    padded = line + b" " * (MAX_SUBMISSION_BYTES - len(line))
    assert len(padded) == MAX_SUBMISSION_BYTES
    assert isinstance(org.submit_raw(padded), Accepted)
    assert rejected(org, padded + b" ").reason is ReasonCode.TOO_LARGE


def test_the_size_limit_is_a_policy() -> None:
    org = Org(policy=Policy(max_bytes=100_000))
    line = raw("CheckInRecorded", CHECK_IN)
    assert isinstance(org.submit_raw(line + b" " * MAX_SUBMISSION_BYTES), Accepted)
    small = Org(policy=Policy(max_bytes=len(line) - 1), setup=False)
    assert rejected(small, line).reason is ReasonCode.TOO_LARGE


# --- unknown_type --------------------------------------------------------------------------


def test_an_unknown_type_is_unknown_type_and_keeps_what_identifies_it(org: Org) -> None:
    rejection = rejected(org, submission("CheckInDeleted", {"x": 1}, source="jira"))
    assert rejection.reason is ReasonCode.UNKNOWN_TYPE
    assert "CheckInDeleted" in rejection.message
    assert (rejection.org_id, rejection.type, rejection.source) == (
        "acme",
        "CheckInDeleted",
        "jira",
    )


def test_a_type_that_is_not_a_string_is_a_schema_violation(org: Org) -> None:
    rejection = rejected(org, check_in(type=["CheckInRecorded"]))
    assert rejection.reason is ReasonCode.SCHEMA_VIOLATION
    assert [d["loc"] for d in rejection.details] == ["type"]


# --- schema_violation ----------------------------------------------------------------------


def _locations(rejection: Rejection) -> set[str]:
    return {d["loc"] for d in rejection.details}


@pytest.mark.parametrize(
    ("change", "location"),
    [
        pytest.param({"org_id": None}, "org_id", id="missing org_id"),
        pytest.param({"actor": None}, "actor", id="missing actor"),
        pytest.param({"occurred_at": None}, "occurred_at", id="missing occurred_at"),
        pytest.param({"data": None}, "data", id="missing data"),
        pytest.param({"data": [1]}, "data", id="data not an object"),
        pytest.param({"org_id": "ac me"}, "org_id", id="org_id with a space"),
        pytest.param({"org_id": "-acme"}, "org_id", id="org_id starting with a dash"),
        pytest.param({"org_id": "a" * 129}, "org_id", id="org_id over 128 characters"),
        pytest.param({"actor": "a" * 201}, "actor", id="actor over 200 characters"),
        pytest.param({"actor": "   "}, "actor", id="actor blank"),
        pytest.param({"source": ""}, "source", id="source empty"),
        pytest.param({"source_event_id": "k" * 201}, "source_event_id", id="source_event_id long"),
        pytest.param({"correlation_id": ""}, "correlation_id", id="correlation_id empty"),
        pytest.param({"causation_id": 7}, "causation_id", id="causation_id a number"),
        pytest.param({"event_id": "not-a-uuid"}, "event_id", id="event_id not a UUID"),
        pytest.param({"occurred_at": "2026-11-02T09:00:00"}, "occurred_at", id="no offset"),
        pytest.param({"occurred_at": "yesterday"}, "occurred_at", id="not a timestamp"),
        pytest.param({"schema_version": 0}, "schema_version", id="schema_version 0"),
        pytest.param({"schema_version": 99}, "schema_version", id="schema_version 99"),
        pytest.param({"schema_version": "2"}, "schema_version", id="schema_version text"),
        pytest.param({"schema_version": 2.0}, "schema_version", id="schema_version a float"),
        pytest.param({"schema_version": True}, "schema_version", id="schema_version a boolean"),
        pytest.param({"priority": "high"}, "priority", id="an unknown envelope field"),
        pytest.param({"hash": "0" * 64}, "hash", id="a ledger field in a submission"),
    ],
)
def test_an_envelope_that_breaks_the_contract_names_the_field(
    org: Org, change: dict[str, Any], location: str
) -> None:
    document = {k: v for k, v in {**check_in(), **change}.items() if v is not None}
    rejection = rejected(org, document)
    assert rejection.reason is ReasonCode.SCHEMA_VIOLATION
    assert location in _locations(rejection), rejection.details


@pytest.mark.parametrize(
    ("data", "location"),
    [
        pytest.param({"value": 1, "confidence": 0.5}, "data.key_result_id", id="missing field"),
        pytest.param({**CHECK_IN, "confidence": 7}, "data.confidence", id="confidence over 1"),
        pytest.param({**CHECK_IN, "confidence": -0.1}, "data.confidence", id="confidence below 0"),
        pytest.param({**CHECK_IN, "value": "high"}, "data.value", id="value not a number"),
        pytest.param({**CHECK_IN, "value": "30"}, "data.value", id="value a numeric string"),
        pytest.param({**CHECK_IN, "value": True}, "data.value", id="value a boolean"),
        pytest.param({**CHECK_IN, "value": "1e999"}, "data.value", id="value text infinity"),
        pytest.param({**CHECK_IN, "value": "NaN"}, "data.value", id="value text NaN"),
        pytest.param({**CHECK_IN, "mood": "good"}, "data.mood", id="an unknown data field"),
        pytest.param({**CHECK_IN, "comment": "c" * 4001}, "data.comment", id="comment too long"),
        pytest.param({**CHECK_IN, "key_result_id": "k" * 129}, "data.key_result_id", id="id long"),
    ],
)
def test_data_that_breaks_the_contract_names_the_field(
    org: Org, data: dict[str, Any], location: str
) -> None:
    rejection = rejected(org, submission("CheckInRecorded", data))
    assert rejection.reason is ReasonCode.SCHEMA_VIOLATION
    assert location in _locations(rejection), rejection.details
    assert "CheckInRecorded v2" in rejection.message


def test_every_field_error_is_listed_not_only_the_first(org: Org) -> None:
    rejection = rejected(org, submission("CheckInRecorded", {"value": "x", "confidence": 2}))
    assert _locations(rejection) == {"data.key_result_id", "data.value", "data.confidence"}


def test_an_envelope_that_breaks_the_contract_is_named_before_its_data(org: Org) -> None:
    """A submission of the latest version is validated whole in one call; when that fails, the
    rejection is still the two steps' (the envelope's errors alone, then the data's)."""
    document = submission("CheckInRecorded", {"value": "x"}, actor="", priority="high")
    rejection = rejected(org, document)
    assert rejection.message == "the envelope does not match the contract"
    assert _locations(rejection) == {"actor", "priority"}
    data_only = rejected(org, submission("CheckInRecorded", {"value": "x"}))
    assert data_only.message == "data does not match CheckInRecorded v2"
    assert _locations(data_only) == {"data.key_result_id", "data.value", "data.confidence"}


def test_a_submission_validated_whole_is_decided_as_in_two_steps(org: Org) -> None:
    """The same event whether or not the submission names its (latest) schema_version: one
    validates whole, the other in two steps."""
    latest = EVENT_TYPES["CheckInRecorded"]
    whole = org.accept("CheckInRecorded", {**CHECK_IN, "comment": " c "}, source_event_id="w1")
    other = Org()
    stepped = other.accept(
        "CheckInRecorded",
        {**CHECK_IN, "comment": " c "},
        source_event_id="w1",
        schema_version=latest,
    )
    assert (whole.data, whole.occurred_at, whole.event_id) == (
        stepped.data,
        stepped.occurred_at,
        stepped.event_id,
    )
    assert whole.schema_version == stepped.schema_version == latest


_OFFSETS = st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-05:30", "+14:00"])


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30)),
    separator=st.sampled_from(["T", "t"]),
    fraction=st.sampled_from(["", ".0", ".000000", ".5", ".123456", ".250"]),
    offset=_OFFSETS,
)
def test_occurred_at_is_written_as_format_timestamp_writes_it(
    moment: datetime, separator: str, fraction: str, offset: str
) -> None:
    """``_timestamp_text`` takes the submitted text as it is when it is the normal form (or
    ``+00:00`` for ``Z``): never other text than formatting the instant would give."""
    text = f"{moment.date().isoformat()}{separator}{moment:%H:%M:%S}{fraction}{offset}"
    parsed = Submission.model_validate(check_in(occurred_at=text)).occurred_at
    assert _timestamp_text(text, parsed) == format_timestamp(parsed)


_ARABIC_INDIC = str.maketrans(
    "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
)


@st.composite
def _timestamp_texts(draw: st.DrawFn) -> str:
    """Texts near RFC 3339: most valid, some with a separator, fraction, offset, ending or
    digits that the contract refuses."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30)))
    separator = draw(st.sampled_from(["T", "t", " "]))
    fraction = draw(st.sampled_from(["", ".5", ".123456", ".1234567", "."]))
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "-05:30", "+24:00", "", "+0100"]))
    ending = draw(st.sampled_from(["", "", "\n", " "]))
    text = f"{moment.date().isoformat()}{separator}{moment:%H:%M:%S}{fraction}{offset}{ending}"
    if draw(st.booleans()) and draw(st.booleans()):
        text = text.translate(_ARABIC_INDIC)
    return text


@given(text=_timestamp_texts() | st.text(max_size=40))
def test_a_submission_validated_whole_has_an_occurred_at_the_contract_accepts(text: str) -> None:
    """The whole validation checks ``occurred_at`` in pydantic-core alone: it accepts no text
    that ``Submission`` refuses, and reads the same instant (with the same offset)."""
    document = check_in(occurred_at=text)
    try:
        whole = _validate_whole("CheckInRecorded", document)
    except ValidationError:
        return
    contract = Submission.model_validate(document).occurred_at
    assert (whole.occurred_at, whole.occurred_at.utcoffset()) == (contract, contract.utcoffset())


def test_string_limits_are_inclusive(org: Org) -> None:
    longest_id = "k" * 128
    org.accept("ThemeAdded", {"theme_id": longest_id, "name": "n" * 200, "description": "d" * 4000})
    rejection = org.reject("ThemeAdded", {"theme_id": "t8", "name": "n" * 201})
    assert _locations(rejection) == {"data.name"}


def test_a_payload_with_a_cross_field_check_is_a_schema_violation(org: Org) -> None:
    rejection = org.reject("StrategyRevised", {"reason": "nothing changes"})
    assert rejection.reason is ReasonCode.SCHEMA_VIOLATION


def test_duplicate_ids_in_a_list_are_a_schema_violation(org: Org) -> None:
    data = {"objective_id": "o1", "theme_ids": ["t1", "t1"]}
    rejection = org.reject("ObjectiveRevised", data)
    assert rejection.reason is ReasonCode.SCHEMA_VIOLATION
    assert _locations(rejection) == {"data.theme_ids"}


def test_a_submission_with_neither_event_id_nor_source_event_id_is_a_schema_violation(
    org: Org,
) -> None:
    document = check_in()
    del document["source_event_id"]
    rejection = rejected(org, document)
    assert rejection.reason is ReasonCode.SCHEMA_VIOLATION
    assert "source_event_id" in str(rejection.details)


# --- identity, duplicates and conflicts ----------------------------------------------------


def test_event_id_is_derived_from_org_source_and_source_event_id(org: Org) -> None:
    event = org.accept("CheckInRecorded", CHECK_IN, key="jira-123", source="jira")
    expected = uuid5(EVENT_ID_NAMESPACE, "acme\x1fjira\x1fjira-123")
    assert event.event_id == str(expected) == str(derive_event_id("acme", "jira", "jira-123"))
    assert event.source_event_id == "jira-123"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.text())
def test_a_derived_event_key_is_the_uuid5_of_its_name(
    org_id: str, source: str, source_event_id: str
) -> None:
    """``derive_event_key`` sets the version and variant bits itself (by table): it must give
    exactly ``uuid5``'s bytes, for any name; the probe's text (made inline) exactly
    ``str(UUID)``, and its submission digest exactly ``submission_digest``'s."""
    expected = uuid5(EVENT_ID_NAMESPACE, f"{org_id}\x1f{source}\x1f{source_event_id}")
    assert derive_event_key(org_id, source, source_event_id) == expected.bytes
    line = orjson.dumps({"org_id": org_id, "source": source, "source_event_id": source_event_id})
    probed = probe(line)
    assert probed is not None
    assert probed.submitted == submission_digest(line)  # made inline by the probe
    if source == source.strip():  # the probe reads ``source`` trimmed, as the contract does
        assert probed.event_key == expected.bytes
    assert probed.event_id == str(UUID(bytes=probed.event_key or b""))


def test_derived_event_ids_differ_by_org_source_and_key() -> None:
    ids = {
        derive_event_id("acme", "jira", "1"),
        derive_event_id("globex", "jira", "1"),
        derive_event_id("acme", "crm", "1"),
        derive_event_id("acme", "jira", "2"),
        derive_event_id("acme", "jira\x1f1", ""),
    }
    assert len(ids) == 5
    assert derive_event_id("acme", "jira", "1") == derive_event_id("acme", "jira", "1")


def test_the_same_key_in_two_orgs_gives_two_events() -> None:
    org = Org()
    org.expect_accepted_raw(raw("StrategyDefined", {"mission": "m", "vision": "v"}, org_id="x"))
    first = org.accept("ThemeAdded", {"theme_id": "t", "name": "T"}, key="same")
    second = org.accept("ThemeAdded", {"theme_id": "t", "name": "T"}, key="same", org_id="x")
    assert first.event_id != second.event_id


def test_an_explicit_event_id_wins_over_source_event_id(org: Org) -> None:
    event_id = "6a1b1c8e-2f57-4d1e-9c1a-0b7e4c2d9a10"
    event = org.accept("CheckInRecorded", CHECK_IN, event_id=event_id, source_event_id="k1")
    assert event.event_id == event_id


def test_the_same_submission_again_is_a_duplicate_that_adds_nothing(org: Org) -> None:
    line = raw("CheckInRecorded", CHECK_IN)
    event = org.expect_accepted_raw(line)
    state_before = copy.deepcopy(org.sequencer.state)
    outcome = org.submit_raw(line)
    assert outcome == Duplicate(event.event_id, "acme")
    assert org.sequencer.state == state_before


def test_a_duplicate_is_recognised_after_normalisation(org: Org) -> None:
    event_id = "0b7e4c2d-9a10-4c1e-9c1a-6f1d4b0e8a57"
    org.accept("ThemeAdded", {"theme_id": "t8", "name": "Ops", "description": None}, key="t8")
    same = submission("ThemeAdded", {"name": "  Ops ", "theme_id": "t8"}, key="t8")
    assert isinstance(org.submit_raw(orjson.dumps(same, option=orjson.OPT_INDENT_2)), Duplicate)
    org.accept("CheckInRecorded", CHECK_IN, event_id=event_id)
    upper = {**CHECK_IN, "value": 30.0}
    outcome = org.submit("CheckInRecorded", upper, event_id=event_id.upper(), schema_version=2)
    assert outcome == Duplicate(event_id, "acme")


def test_a_known_event_id_with_other_content_is_a_conflict(org: Org) -> None:
    event_id = "0b7e4c2d-9a10-4c1e-9c1a-6f1d4b0e8a57"
    org.accept("CheckInRecorded", CHECK_IN, event_id=event_id)
    rejection = org.reject("CheckInRecorded", {**CHECK_IN, "value": 31}, event_id=event_id)
    assert rejection.reason is ReasonCode.CONFLICT
    assert rejection.event_id == event_id
    assert org.sequencer.state.org("acme").last_sequence == 12


def test_the_same_source_event_id_with_other_content_is_a_conflict(org: Org) -> None:
    org.accept("CheckInRecorded", CHECK_IN, key="jira-9")
    rejection = org.reject("CheckInRecorded", CHECK_IN, key="jira-9", actor="bob")
    assert rejection.reason is ReasonCode.CONFLICT


def test_a_conflict_is_found_before_the_rules_and_the_clock(org: Org) -> None:
    event_id = "0b7e4c2d-9a10-4c1e-9c1a-6f1d4b0e8a57"
    org.accept("CheckInRecorded", CHECK_IN, event_id=event_id)
    future = (NOW + timedelta(days=1)).isoformat()
    rejection = org.reject("CheckInRecorded", CHECK_IN, event_id=event_id, occurred_at=future)
    assert rejection.reason is ReasonCode.CONFLICT


def test_a_rejected_submission_can_be_resubmitted_once_it_is_valid() -> None:
    org = Org(setup=False)
    theme = {"theme_id": "t1", "name": "T"}
    org.reject("ThemeRevised", theme, key="r1")
    org.accept("ThemeAdded", theme, key="a1")
    event = org.accept("ThemeRevised", theme, key="r1")
    assert event.sequence == 2


# --- clock_skew ----------------------------------------------------------------------------


def test_an_event_five_minutes_ahead_is_accepted(org: Org) -> None:
    org.accept("CheckInRecorded", CHECK_IN, occurred_at=(NOW + timedelta(minutes=5)).isoformat())


def test_an_event_more_than_five_minutes_ahead_is_clock_skew(org: Org) -> None:
    ahead = (NOW + timedelta(minutes=5, seconds=1)).isoformat()
    rejection = org.reject("CheckInRecorded", CHECK_IN, occurred_at=ahead)
    assert rejection.reason is ReasonCode.CLOCK_SKEW
    assert _locations(rejection) == {"occurred_at"}


def test_clock_skew_compares_instants_not_local_times(org: Org) -> None:
    org.accept("CheckInRecorded", CHECK_IN, occurred_at="2026-11-23T13:04:00+01:00")
    rejection = org.reject("CheckInRecorded", CHECK_IN, occurred_at="2026-11-23T07:06:00-05:00")
    assert rejection.reason is ReasonCode.CLOCK_SKEW


def test_the_allowed_skew_is_a_policy() -> None:
    strict = Org(policy=Policy(clock_skew=timedelta(0)))
    strict.accept("CheckInRecorded", CHECK_IN, occurred_at=NOW.isoformat())
    ahead = (NOW + timedelta(seconds=1)).isoformat()
    assert strict.reject("CheckInRecorded", CHECK_IN, occurred_at=ahead).reason == "clock_skew"
    lenient = Org(policy=Policy(clock_skew=timedelta(days=2)))
    lenient.accept("CheckInRecorded", CHECK_IN, occurred_at=(NOW + timedelta(days=1)).isoformat())


def test_events_from_long_ago_are_accepted(org: Org) -> None:
    org.accept("CheckInRecorded", CHECK_IN, occurred_at="1999-12-31T23:59:59Z")


# --- decide() is pure, and what an accepted event is ---------------------------------------


def test_decide_never_changes_the_state(org: Org) -> None:
    state = org.sequencer.state
    before = copy.deepcopy(state)
    lines = [
        raw("CheckInRecorded", CHECK_IN),
        raw("ObjectiveAligned", {"objective_id": "o1", "parent_objective_id": "o2"}),
        raw("StrategyDefined", {"mission": "m", "vision": "v"}, org_id="new-org"),
        raw("ThemeRetired", {"theme_id": "t1", "reason": "x"}),
        raw("KeyResultRetired", {"key_result_id": "kr1", "reason": "x"}),
        raw("ObjectiveStatusChanged", {"objective_id": "o1", "status": "abandoned"}),
        b"{not json",
    ]
    outcomes = [decide(state, line, now=NOW) for line in lines]
    assert state == before
    assert [type(o).__name__ for o in outcomes] == [
        "Accepted",
        "Rejection",  # a cycle: o2 is o1's child
        "Accepted",
        "Accepted",
        "Accepted",
        "Accepted",
        "Rejection",
    ]
    assert {
        o.event.sequence for o in outcomes if isinstance(o, Accepted) and o.event.org_id == "acme"
    } == {12}
    again = [decide(state, line, now=NOW) for line in lines]
    assert again == outcomes


def test_an_accepted_event_continues_its_orgs_chain(org: Org) -> None:
    head = org.sequencer.state.org("acme")
    previous_hash = head.last_hash
    event = org.accept("CheckInRecorded", CHECK_IN, correlation_id="c-1", causation_id="x-2")
    assert event.sequence == 12
    assert event.prev_hash == previous_hash
    assert event.hash == event_hash(event.to_record())
    assert event.recorded_at == "2026-11-23T12:00:00Z"
    assert (event.correlation_id, event.causation_id) == ("c-1", "x-2")
    assert org.sequencer.state.org("acme").last_hash == event.hash


def test_each_org_has_its_own_sequence_from_genesis(org: Org) -> None:
    event = org.accept("StrategyDefined", {"mission": "m", "vision": "v"}, org_id="globex")
    assert (event.sequence, event.prev_hash) == (1, GENESIS_HASH)
    assert org.accept("CheckInRecorded", CHECK_IN).sequence == 12


def test_accepted_data_is_normalised(org: Org) -> None:
    data = {"theme_id": "t8", "name": "  Ops  ", "description": None}
    assert org.accept("ThemeAdded", data).data == {"theme_id": "t8", "name": "Ops"}
    kr = {"key_result_id": "kr8", "objective_id": "o1", "title": "T", "kind": "increase"}
    event = org.accept("KeyResultDefined", {**kr, "start": 1, "target": 2, "unit": "u"})
    assert event.data["weight"] == 1.0
    assert event.data["checkin_every_days"] == 7
    assert isinstance(event.data["start"], float)


def test_occurred_at_keeps_its_offset_in_rfc_3339(org: Org) -> None:
    event = org.accept("CheckInRecorded", CHECK_IN, occurred_at="2026-11-02T09:00:00.250+01:00")
    assert event.occurred_at == "2026-11-02T09:00:00.250000+01:00"
    utc = org.accept("CheckInRecorded", CHECK_IN, occurred_at="2026-11-02T08:00:00+00:00")
    assert utc.occurred_at == "2026-11-02T08:00:00Z"


def test_the_content_digest_of_a_stored_event_equals_the_decided_one(org: Org) -> None:
    outcome = org.submit("CheckInRecorded", CHECK_IN)
    assert isinstance(outcome, Accepted)
    assert content_digest(outcome.event) == outcome.digest


def test_a_rejection_keeps_the_exact_bytes_and_the_line(org: Org) -> None:
    line = b'{"type":"CheckInRecorded","org_id":"acme","data":{}}  '
    outcome = decide(org.sequencer.state, line, now=NOW, line=17)
    assert isinstance(outcome, Rejection)
    assert (outcome.raw, outcome.line, outcome.org_id) == (line, 17, "acme")
    assert outcome.recorded_at == "2026-11-23T12:00:00Z"


def test_a_rejection_does_not_advance_the_sequence() -> None:
    sequencer = Sequencer()
    sequencer.submit(b"{", now=NOW)
    assert sequencer.state.orgs == {}
    assert sequencer.state.known == {}


def test_the_rejection_json_carries_the_reason_code_and_the_raw_text(org: Org) -> None:
    document = rejected(org, b"\xff{").to_json()
    assert document["reason_code"] == "invalid_json"
    assert document["raw"] is None
    assert document["raw_base64"] == "/3s="
    assert rejected(org, b"[]").to_json()["raw"] == "[]"


def test_an_event_id_is_a_canonical_lowercase_uuid(org: Org) -> None:
    event = org.accept("CheckInRecorded", CHECK_IN, event_id="6A1B1C8E2F574D1E9C1A0B7E4C2D9A10")
    assert event.event_id == str(UUID("6a1b1c8e-2f57-4d1e-9c1a-0b7e4c2d9a10"))


# --- every reason code ---------------------------------------------------------------------

REASON_EXAMPLES = {
    ReasonCode.INVALID_JSON: b'{"type": ',
    ReasonCode.TOO_LARGE: raw("CheckInRecorded", {**CHECK_IN, "comment": "x" * 70_000}),
    ReasonCode.SCHEMA_VIOLATION: raw("CheckInRecorded", {**CHECK_IN, "confidence": 7}),
    ReasonCode.UNKNOWN_TYPE: raw("CheckInDeleted", CHECK_IN),
    ReasonCode.CONFLICT: raw("CheckInRecorded", {**CHECK_IN, "value": 21}, event_id=CHECK_IN_ID),
    ReasonCode.UNKNOWN_REFERENCE: raw("CheckInRecorded", {**CHECK_IN, "key_result_id": "kr9"}),
    ReasonCode.ALREADY_EXISTS: raw("ThemeAdded", {"theme_id": "t1", "name": "Again"}),
    ReasonCode.INVALID_STATE: raw(
        "ObjectiveStatusChanged", {"objective_id": "o1", "status": "active"}
    ),
    ReasonCode.INVALID_DEFINITION: raw("KeyResultDefined", key_result("k", "o1", "increase", 5, 5)),
    ReasonCode.CYCLE: raw("ObjectiveAligned", {"objective_id": "o1", "parent_objective_id": "o2"}),
    ReasonCode.CLOCK_SKEW: raw(
        "CheckInRecorded", CHECK_IN, occurred_at=(NOW + timedelta(hours=1)).isoformat()
    ),
}


SEQUENCER_REASONS = [
    r
    for r in ReasonCode
    if r not in (ReasonCode.INVALID_RECORD, ReasonCode.FORBIDDEN, ReasonCode.UNKNOWN_HOOK)
]
"""``invalid_record`` is about the Kafka intake record, not the submission: the Kafka
sequencer gives it (tests/kafka/test_intake_records.py). ``forbidden`` and ``unknown_hook``
are the HTTP API's refusals (tests/http/)."""


@pytest.mark.parametrize("reason", SEQUENCER_REASONS, ids=str)
def test_every_reason_code_is_given_by_the_sequencer(reason: ReasonCode) -> None:
    org = Org()
    rejection = rejected(org, REASON_EXAMPLES[reason])
    assert rejection.reason is reason
    assert rejection.to_json()["reason_code"] == reason.value
    assert org.sequencer.state.org("acme").last_sequence == 11


def test_an_event_id_is_scoped_to_its_org() -> None:
    """As on Kafka, where no partition sees another's ids: the same id in two orgs is two
    events; again in the same org it is a duplicate or, with other content, a conflict."""
    event_id = "11111111-1111-4111-8111-111111111111"
    first = raw("StrategyDefined", {"mission": "m", "vision": "v"}, event_id=event_id)
    elsewhere = raw(
        "StrategyDefined", {"mission": "other", "vision": "v"}, event_id=event_id, org_id="globex"
    )
    changed = raw("StrategyDefined", {"mission": "changed", "vision": "v"}, event_id=event_id)
    outcomes = sequence_all([first, elsewhere, first, changed])
    assert [o.status for o in outcomes] == ["accepted", "accepted", "duplicate", "rejected"]
    assert isinstance(outcomes[3], Rejection)
    assert outcomes[3].reason is ReasonCode.CONFLICT


# --- idempotency by the source's id --------------------------------------------------------

FIRST_ID = "0b7e4c2d-9a10-4c1e-9c1a-6f1d4b0e8a57"
RETRY_ID = "5d1f4b0e-8a57-4c1e-9c1a-0b7e4c2d9a10"


def test_a_sources_retry_with_a_new_event_id_is_a_duplicate_of_the_first(org: Org) -> None:
    first = org.accept("CheckInRecorded", CHECK_IN, event_id=FIRST_ID, source_event_id="jira-7")
    state_before = copy.deepcopy(org.sequencer.state)
    again = org.submit("CheckInRecorded", CHECK_IN, event_id=RETRY_ID, source_event_id="jira-7")
    assert again == Duplicate(first.event_id, "acme")
    assert org.sequencer.state == state_before


def test_a_sources_retry_is_a_duplicate_with_or_without_its_own_event_id(org: Org) -> None:
    explicit = org.accept("CheckInRecorded", CHECK_IN, event_id=FIRST_ID, source_event_id="a")
    assert org.submit("CheckInRecorded", CHECK_IN, key="a") == Duplicate(FIRST_ID, "acme")
    derived = org.accept("CheckInRecorded", CHECK_IN, key="b")
    retried = org.submit("CheckInRecorded", CHECK_IN, event_id=RETRY_ID, source_event_id="b")
    assert retried == Duplicate(derived.event_id, "acme")
    assert explicit.sequence + 1 == derived.sequence


def test_a_sources_retry_with_a_new_event_id_and_other_content_is_a_conflict(org: Org) -> None:
    org.accept("CheckInRecorded", CHECK_IN, event_id=FIRST_ID, source_event_id="jira-7")
    changed = {**CHECK_IN, "value": 31}
    rejection = org.reject("CheckInRecorded", changed, event_id=RETRY_ID, source_event_id="jira-7")
    assert rejection.reason is ReasonCode.CONFLICT
    assert rejection.event_id == RETRY_ID
    assert FIRST_ID in rejection.message
    assert "jira-7" in rejection.message
    assert org.sequencer.state.org("acme").last_sequence == 12


def test_a_source_event_id_is_scoped_to_its_org_and_source(org: Org) -> None:
    org.accept("CheckInRecorded", CHECK_IN, event_id=FIRST_ID, source_event_id="x")
    other_source = org.accept(
        "CheckInRecorded", CHECK_IN, event_id=RETRY_ID, source_event_id="x", source="crm"
    )
    assert other_source.event_id == RETRY_ID


def test_a_sequencer_rebuilt_from_the_ledger_knows_the_sources_ids() -> None:
    first = raw("StrategyDefined", {"mission": "m", "vision": "v"}, event_id=FIRST_ID,
                source_event_id="s1")  # fmt: skip
    live = Sequencer()
    accepted = live.submit(first, now=NOW)
    assert isinstance(accepted, Accepted)
    rebuilt = Sequencer.from_ledger([accepted.event])
    assert rebuilt.state == live.state
    retry = raw("StrategyDefined", {"mission": "m", "vision": "v"}, event_id=RETRY_ID,
                source_event_id="s1")  # fmt: skip
    assert rebuilt.submit(retry, now=NOW) == Duplicate(FIRST_ID, "acme")


# --- an accepted event's bytes, piece by piece ------------------------------------------------

_ENVELOPE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"))
    | st.sampled_from('"\\/\u2028\u00e9\U0001f600'),
    min_size=1,
    max_size=12,
).filter(lambda text: text.strip() == text)


@settings(max_examples=200, deadline=None)
@given(
    actor=_ENVELOPE_TEXT,
    source=_ENVELOPE_TEXT,
    source_event_id=_ENVELOPE_TEXT,
    correlation_id=st.none() | _ENVELOPE_TEXT,
    causation_id=st.none() | _ENVELOPE_TEXT,
    schema_version=st.none() | st.just(EVENT_TYPES["CheckInRecorded"]),  # latest, given or not
    occurred_at=st.sampled_from(["2026-11-02T09:00:00+01:00", "2026-11-02T08:00:00.250Z"]),
)
def test_an_accepted_events_bytes_are_its_canonical_form_whatever_its_envelope_strings(
    *,
    actor: str,
    source: str,
    source_event_id: str,
    correlation_id: str | None,
    causation_id: str | None,
    schema_version: int | None,
    occurred_at: str,
) -> None:
    """The sequencer writes an event's bytes from pieces (events.sequencer._Content), not by
    serialising the whole record: with strings that JSON escapes (quotes, backslashes,
    U+2028), non-ASCII ones, optional members absent or present, the bytes are still the
    record's canonical JSON, its hash the chain's, its digest the content's."""
    envelope: dict[str, Any] = {"actor": actor, "source": source, "occurred_at": occurred_at}
    for name, value in (
        ("correlation_id", correlation_id),
        ("causation_id", causation_id),
        ("schema_version", schema_version),
    ):
        if value is not None:
            envelope[name] = value
    org = Org()
    line = raw("CheckInRecorded", dict(CHECK_IN), key=source_event_id, **envelope)
    outcome = org.submit_raw(line)
    assert isinstance(outcome, Accepted), describe(outcome)
    record = outcome.record
    assert outcome.body == canonical_bytes(record)
    assert record["hash"] == event_hash(record)
    assert outcome.digest == record_digest(record)
    assert (record["correlation_id"], record["causation_id"]) == (correlation_id, causation_id)
