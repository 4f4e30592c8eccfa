"""The contract: the committed JSON Schema export, validation with it, the models' own limits,
and upcasting of older event versions."""

import math
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from events.outcomes import Accepted, Duplicate, Rejection
from events.reasons import ReasonCode
from events.sequencer import Sequencer, decide
from events.state import LedgerState
from okr_ledger.demo import demo_submissions
from schemas import EVENT_TYPES, LedgerEvent, Submission, latest_version, payload_model
from schemas.errors import UnknownEventTypeError
from schemas.export import all_schemas, render
from schemas.legacy import CheckInRecordedV1
from schemas.payloads import LATEST_PAYLOADS, CheckInRecorded, KeyResultDefined
from schemas.registry import upcast, versions
from tests.builders import NOW, chained_events, submission
from tests.ledger.support import CHECK_IN_ID, Org, base_setup, describe

EXPORT = Path(__file__).resolve().parents[2] / "schemas" / "json"


SCHEMAS = all_schemas()


@cache
def validator(relative: str) -> Draft202012Validator:
    schema = orjson.loads((EXPORT / relative).read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# --- the committed export cannot drift ------------------------------------------------------


@pytest.mark.parametrize("relative", sorted(SCHEMAS))
def test_the_committed_schema_file_equals_the_models(relative: str) -> None:
    assert (EXPORT / relative).read_bytes() == render(SCHEMAS[relative]), (
        f"schemas/json/{relative} is stale: run `make schema`"
    )


def test_the_export_holds_no_stale_file() -> None:
    on_disk = {str(p.relative_to(EXPORT)) for p in EXPORT.rglob("*") if p.is_file()}
    assert on_disk == set(SCHEMAS)


def test_every_type_and_version_has_a_data_schema() -> None:
    expected = {f"data/{t}.v{v}.schema.json" for t in EVENT_TYPES for v in versions(t)}
    assert expected <= set(SCHEMAS)
    assert "data/CheckInRecorded.v1.schema.json" in expected


# --- validating submissions with the JSON Schema alone --------------------------------------

CHECK_IN = {"key_result_id": "kr1", "value": 30, "confidence": 0.7}
V1_CHECK_IN = {"key_result_id": "kr1", "value": 30, "confidence_percent": 70}


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


INVALID = {
    "missing org_id": _without(submission("CheckInRecorded", CHECK_IN), "org_id"),
    "an unknown envelope field": {**submission("CheckInRecorded", CHECK_IN), "x": 1},
    "an unknown data field": submission("CheckInRecorded", {**CHECK_IN, "x": 1}),
    "confidence 7": submission("CheckInRecorded", {**CHECK_IN, "confidence": 7}),
    "a value as text": submission("CheckInRecorded", {**CHECK_IN, "value": "30"}),
    "v1 data without its version": submission("CheckInRecorded", V1_CHECK_IN),
    "v2 data as version 1": submission("CheckInRecorded", CHECK_IN, schema_version=1),
    "schema_version 99": submission("CheckInRecorded", CHECK_IN, schema_version=99),
    "no event_id nor source_event_id": _without(
        submission("CheckInRecorded", CHECK_IN), "source_event_id"
    ),
    "an unknown type": submission("CheckInDeleted", CHECK_IN),
    "a bad org_id": submission("CheckInRecorded", CHECK_IN, org_id="a b"),
    "a number for occurred_at": {**submission("CheckInRecorded", CHECK_IN), "occurred_at": 1},
    "an unknown enum value": submission(
        "ObjectiveStatusChanged", {"objective_id": "o1", "status": "paused"}
    ),
}


def valid_documents() -> list[dict[str, Any]]:
    documents = [orjson.loads(line) for line in base_setup()]
    documents.append(submission("CheckInRecorded", V1_CHECK_IN, schema_version=1))
    documents.append(submission("CheckInRecorded", CHECK_IN, schema_version=2))
    documents.append(submission("CheckInRecorded", CHECK_IN, event_id=CHECK_IN_ID))
    return documents


def test_real_submissions_are_valid_against_the_submission_schema() -> None:
    check = validator("submission.schema.json")
    for document in valid_documents():
        errors = list(check.iter_errors(document))
        assert errors == [], (document["type"], [e.message for e in errors])


@pytest.mark.parametrize("name", sorted(INVALID))
def test_broken_submissions_are_invalid_against_the_submission_schema(name: str) -> None:
    assert not validator("submission.schema.json").is_valid(INVALID[name])


@pytest.mark.parametrize("name", sorted(INVALID))
def test_the_sequencer_refuses_what_the_schema_refuses(name: str) -> None:
    outcome = decide(LedgerState(), orjson.dumps(INVALID[name]), now=NOW)
    assert isinstance(outcome, Rejection), describe(outcome)
    assert outcome.reason in (ReasonCode.SCHEMA_VIOLATION, ReasonCode.UNKNOWN_TYPE)


def test_the_schema_and_the_sequencer_agree_on_every_demo_submission() -> None:
    check = validator("submission.schema.json")
    sequencer = Sequencer()
    compared = 0
    for line in demo_submissions():
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        outcome = sequencer.submit(line, now=NOW)
        refused = isinstance(outcome, Rejection) and outcome.reason in (
            ReasonCode.SCHEMA_VIOLATION,
            ReasonCode.UNKNOWN_TYPE,
        )
        assert check.is_valid(document) is not refused, describe(outcome)
        compared += 1
    assert compared > 50


def test_ledger_events_are_valid_against_the_ledger_event_schema() -> None:
    check = validator("ledger-event.schema.json")
    for event in chained_events("acme"):
        assert check.is_valid(event.to_record())
    assert not check.is_valid({**chained_events("acme")[0].to_record(), "extra": 1})


def test_data_schemas_validate_each_version_of_a_type() -> None:
    v1 = validator("data/CheckInRecorded.v1.schema.json")
    v2 = validator("data/CheckInRecorded.v2.schema.json")
    assert v1.is_valid(V1_CHECK_IN)
    assert not v1.is_valid({**V1_CHECK_IN, "confidence_percent": 150})
    assert not v1.is_valid(CHECK_IN)
    assert v2.is_valid(CHECK_IN)
    assert not v2.is_valid(V1_CHECK_IN)


# --- the models -----------------------------------------------------------------------------

FLOAT_FIELDS = [
    (CheckInRecorded, "value", CHECK_IN),
    (CheckInRecorded, "confidence", CHECK_IN),
    (CheckInRecordedV1, "confidence_percent", V1_CHECK_IN),
    (CheckInRecordedV1, "value", V1_CHECK_IN),
    (
        KeyResultDefined,
        "target",
        {
            "key_result_id": "k",
            "objective_id": "o",
            "title": "t",
            "kind": "increase",
            "start": 0,
            "target": 1,
            "unit": "u",
        },
    ),
]


@pytest.mark.parametrize(("model", "field", "valid"), FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1", True])
def test_number_fields_take_finite_numbers_only(
    model: type[BaseModel], field: str, valid: dict[str, Any], bad: object
) -> None:
    model.model_validate(valid)
    with pytest.raises(ValidationError):
        model.model_validate({**valid, field: bad})


@pytest.mark.parametrize(
    "model",
    [*LATEST_PAYLOADS, CheckInRecordedV1, Submission, LedgerEvent],
    ids=lambda m: m.__name__,
)
def test_every_model_forbids_unknown_fields(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate({"surely_not_a_field": 1})


def test_every_latest_payload_is_registered_at_its_latest_version() -> None:
    assert {m.type_name for m in LATEST_PAYLOADS} == set(EVENT_TYPES)
    for model in LATEST_PAYLOADS:
        assert payload_model(model.type_name) is model
        assert payload_model(model.type_name, latest_version(model.type_name)) is model


def test_unknown_types_and_versions_are_errors_of_the_contract() -> None:
    with pytest.raises(UnknownEventTypeError):
        latest_version("CheckInDeleted")
    with pytest.raises(UnknownEventTypeError, match="versions 1 to 2"):
        payload_model("CheckInRecorded", 3)
    with pytest.raises(UnknownEventTypeError):
        payload_model("ThemeAdded", 2)


# --- upcasting: CheckInRecorded v1 ----------------------------------------------------------


def test_upcasting_v1_to_v2_turns_a_percentage_into_a_fraction() -> None:
    data = dict(V1_CHECK_IN, comment="ok")
    upcast_data = upcast("CheckInRecorded", 1, data)
    assert upcast_data == {"key_result_id": "kr1", "value": 30, "confidence": 0.7, "comment": "ok"}
    assert data == dict(V1_CHECK_IN, comment="ok")  # the input is left alone
    CheckInRecorded.model_validate(upcast_data)


def test_upcasting_the_latest_version_changes_nothing() -> None:
    assert upcast("CheckInRecorded", 2, CHECK_IN) == CHECK_IN
    assert upcast("ThemeAdded", 1, {"theme_id": "t"}) == {"theme_id": "t"}


def test_a_v1_check_in_is_accepted_and_stored_as_submitted() -> None:
    org = Org()
    event = org.accept("CheckInRecorded", V1_CHECK_IN, schema_version=1)
    assert event.schema_version == 1
    assert event.data == V1_CHECK_IN
    assert upcast(event.type, event.schema_version, event.data)["confidence"] == 0.7


def test_a_check_in_without_a_version_is_the_latest() -> None:
    event = Org().accept("CheckInRecorded", CHECK_IN)
    assert event.schema_version == 2


@pytest.mark.parametrize(
    ("data", "version"),
    [
        pytest.param({**V1_CHECK_IN, "confidence_percent": 150}, 1, id="v1 over 100 percent"),
        pytest.param(V1_CHECK_IN, None, id="v1 data as the latest"),
        pytest.param(CHECK_IN, 1, id="v2 data as v1"),
    ],
)
def test_data_of_the_wrong_version_is_a_schema_violation(
    data: dict[str, Any], version: int | None
) -> None:
    envelope = {} if version is None else {"schema_version": version}
    rejection = Org().reject("CheckInRecorded", data, **envelope)
    assert rejection.reason is ReasonCode.SCHEMA_VIOLATION


def test_corrections_and_retractions_of_a_v1_check_in_work() -> None:
    org = Org()
    v1_id = "00000000-0000-4000-8000-0000000000d1"
    org.accept("CheckInRecorded", V1_CHECK_IN, schema_version=1, event_id=v1_id)
    fix = {"key_result_id": "kr1", "corrects_event_id": v1_id, "value": 31, "reason": "typo"}
    org.accept("CheckInCorrected", fix)
    org.accept(
        "CheckInRetracted", {"key_result_id": "kr1", "retracts_event_id": v1_id, "reason": "x"}
    )
    again = org.reject("CheckInCorrected", fix)
    assert again.reason is ReasonCode.INVALID_STATE


def test_a_v1_check_in_resubmitted_is_a_duplicate_and_survives_a_rebuild() -> None:
    v1_line = orjson.dumps(submission("CheckInRecorded", V1_CHECK_IN, schema_version=1))
    live = Sequencer()
    outcomes = [live.submit(line, now=NOW) for line in [*base_setup(), v1_line]]
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert isinstance(live.submit(v1_line, now=NOW), Duplicate)
    rebuilt = Sequencer.from_ledger(o.event for o in outcomes if isinstance(o, Accepted))
    assert rebuilt.state == live.state
    assert isinstance(decide(rebuilt.state, v1_line, now=NOW), Duplicate)
