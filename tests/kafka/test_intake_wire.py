"""The intake wire format and the partition sequencer on hostile input, without a broker.

Every part of an intake record is parsed with bounds; nothing a record holds makes the
sequencer raise, and every record gets exactly one outcome.
"""

import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.intake_wire import (
    INTAKE_VALUE_LIMIT,
    LENGTH_HEADER,
    LINE_HEADER,
    MAX_CLAIMED_LENGTH,
    MAX_REFUSAL_MESSAGE_BYTES,
    SHA256_HEADER,
    SUBMISSION_HEADER,
    AcceptedAnswer,
    Origin,
    Refusal,
    RejectedAnswer,
    decode_outcome,
    encode_outcome,
    intake_message,
    parse_intake,
    stand_in_message,
)
from events.kafka_client import partition_for
from events.kafka_records import (
    MAX_DETAILS,
    UNREADABLE_AT,
    decode_rejection,
    encode_event,
    encode_rejection,
    org_key,
    read_rejection,
)
from events.outcomes import RAW_LIMIT, Accepted, Rejection
from events.reasons import ReasonCode
from events.sequencer import MAX_SUBMISSION_BYTES, Decider, Sequencer
from events.state import LedgerState
from processors import kafka_sequencer
from processors.kafka_sequencer import IntakeRecord, PartitionSequencer, StoredRecord
from tests.builders import NOW, check_ins, org_setup

LIMIT = MAX_SUBMISSION_BYTES


def locs(headers: list[tuple[str, bytes | None]], value: bytes = b"{}") -> list[str]:
    return [p["loc"] for p in parse_intake(value, headers, LIMIT).problems]


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"99999999999999999999999", b"9" * 5000, b"-1", b"+3", b" 3", b"3.0", b"", b"\xd9\xa3"],
    ids=["23 digits", "5000 digits", "negative", "sign", "space", "float", "empty", "arabic 3"],
)
def test_an_okr_line_that_is_not_a_small_number_is_a_problem_not_an_error(value: bytes) -> None:
    intake = parse_intake(b"{}", [(LINE_HEADER, value)], LIMIT)
    assert intake.line is None
    ((problem),) = intake.problems
    assert problem["loc"] == "headers.okr-line"
    assert "at most 12 digits" in problem["msg"]
    assert len(problem["msg"]) < 200  # the value is quoted only in part


def test_good_headers_are_read() -> None:
    intake = parse_intake(
        b"{}", [(SUBMISSION_HEADER, "sub-1 ✓".encode()), (LINE_HEADER, b"000000000042")], LIMIT
    )
    assert (intake.submission_id, intake.line, intake.problems) == ("sub-1 ✓", 42, ())


@pytest.mark.parametrize(
    ("headers", "loc"),
    [
        ([(SUBMISSION_HEADER, b"\xff\xfe")], "headers.okr-submission-id"),
        ([(SUBMISSION_HEADER, b"x" * 129)], "headers.okr-submission-id"),
        ([(SUBMISSION_HEADER, b"")], "headers.okr-submission-id"),
        ([(SUBMISSION_HEADER, None)], "headers.okr-submission-id"),
        ([(SUBMISSION_HEADER, b"a"), (SUBMISSION_HEADER, b"b")], "headers.okr-submission-id"),
        ([(LINE_HEADER, b"1"), (LINE_HEADER, b"1")], "headers.okr-line"),
        ([("x", b"y")] * 33, "headers"),
        ([("trace", b"t" * 17_000)], "headers"),
    ],
    ids=["not utf-8", "too long", "empty", "null", "twice", "line twice", "too many", "huge"],
)
def test_malformed_headers_are_named(headers: list[tuple[str, bytes | None]], loc: str) -> None:
    intake = parse_intake(b"{}", headers, LIMIT)
    assert loc in [p["loc"] for p in intake.problems]
    if loc == "headers.okr-submission-id":
        assert intake.submission_id is None  # the outcome is keyed by position instead


def test_other_headers_are_ignored_and_an_intake_header_on_intake_is_one_of_them() -> None:
    headers = [("traceparent", b"00-ab"), ("okr-intake", b"9" * 5000), ("", b""), ("k", None)]
    assert locs(headers) == []


# -- stand-ins for lines too long for intake -------------------------------------------------


def test_a_long_line_is_sent_as_a_stand_in_with_its_length_and_hash() -> None:
    line = b'{"org_id": "acme", "x": "' + b"y" * INTAKE_VALUE_LIMIT + b'"}'
    message = intake_message(line, "s1", 7)
    assert message.key is None
    assert message.value == line[:RAW_LIMIT]
    headers = dict(message.headers)
    assert headers[LENGTH_HEADER] == str(len(line)).encode()
    assert headers[SHA256_HEADER] == hashlib.sha256(line).hexdigest().encode()
    intake = parse_intake(message.value, message.headers, LIMIT)
    assert intake.problems == ()
    assert intake.stand_in is not None
    assert (intake.stand_in.length, intake.line) == (len(line), 7)
    short = intake_message(b'{"org_id": "acme"}', "s2", None)
    assert (short.key, short.value, dict(short.headers)) == (
        b"acme",
        b'{"org_id": "acme"}',
        {SUBMISSION_HEADER: b"s2"},
    )


SHA = hashlib.sha256(b"whatever").hexdigest()


@pytest.mark.parametrize(
    ("length", "sha256", "value_size", "loc"),
    [
        (b"9" * 5000, SHA, RAW_LIMIT, "headers.okr-raw-length"),
        (str(MAX_CLAIMED_LENGTH + 1).encode(), SHA, RAW_LIMIT, "headers.okr-raw-length"),
        (b"-5", SHA, RAW_LIMIT, "headers.okr-raw-length"),
        (str(LIMIT).encode(), SHA, RAW_LIMIT, "headers.okr-raw-length"),  # not over the limit
        (b"5000000", SHA.upper(), RAW_LIMIT, "headers.okr-raw-sha256"),
        (b"5000000", "ab", RAW_LIMIT, "headers.okr-raw-sha256"),
        (b"5000000", SHA, RAW_LIMIT + 1, "value"),
        (b"5000000", SHA, 10, "value"),
        (b"5000000", None, RAW_LIMIT, "headers.okr-raw-sha256"),
        (None, SHA, RAW_LIMIT, "headers.okr-raw-length"),
    ],
)
def test_a_stand_in_cannot_claim_anything_impossible(
    length: bytes | None, sha256: str | None, value_size: int, loc: str
) -> None:
    headers: list[tuple[str, bytes | None]] = []
    if length is not None:
        headers.append((LENGTH_HEADER, length))
    if sha256 is not None:
        headers.append((SHA256_HEADER, sha256.encode()))
    intake = parse_intake(b"x" * value_size, headers, LIMIT)
    assert intake.stand_in is None
    assert loc in [p["loc"] for p in intake.problems]


def test_a_stand_in_of_a_line_under_64_kib_must_carry_it_whole_with_its_hash() -> None:
    line = b"z" * 5000
    right = stand_in_message(line, len(line), hashlib.sha256(line).hexdigest(), "s", None)
    assert parse_intake(right.value, right.headers, 4096).stand_in is not None
    wrong = stand_in_message(line, len(line), SHA, "s", None)
    assert [p["loc"] for p in parse_intake(wrong.value, wrong.headers, 4096).problems] == [
        "headers.okr-raw-sha256"
    ]
    assert locs(list(right.headers), right.value) == ["headers.okr-raw-length"]  # not too long


# -- the okr-intake header on ledger events and rejections -----------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"0/99999999999999999999999/0",
        b"0/" + b"9" * 5000 + b"/0",
        b"0/9223372036854775808/0",
        b"0/5/6",  # the batch cannot start after the record
        b"0/5",
        b"a/b/c",
        b"0/5/5/5",
        b"\xff",
        None,
    ],
)
def test_a_malformed_origin_is_none(value: bytes | None) -> None:
    assert Origin.from_headers([("okr-intake", value)]) is None


def test_an_origin_is_read_once() -> None:
    header = Origin(2, 9223372036854775807, 5).header()
    assert Origin.from_headers([header]) == Origin(2, 9223372036854775807, 5)
    assert Origin.from_headers([header, header]) is None


# -- outcomes and rejections read back --------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"[]",
        b'{"status": "accepted"}',
        b'{"status": "gone"}',
        b'{"status": "accepted", "event_id": "e", "org_id": "o", "sequence": 1e400, "hash": "h"}',
        b'{"status": "accepted", "event_id": "e", "org_id": "o", "sequence": '
        + b"9" * 30
        + b', "hash": "h"}',
        b'{"status": "rejected", "reason_code": "no_such_reason"}',
        b'{"status": "rejected", "reason_code": "conflict", "details": [1]}',
        b'{"status": "duplicate", "event_id": "' + b"e" * 5000 + b'", "org_id": "o"}',
        None,
    ],
)
def test_an_outcome_record_the_worker_did_not_write_is_none(value: bytes | None) -> None:
    assert decode_outcome(value) is None


def test_the_outcomes_the_worker_writes_are_read_back() -> None:
    rejection = Rejection(
        ReasonCode.INVALID_RECORD,
        "m" * 5000,
        b"raw",
        "2026-11-23T12:00:00Z",
        details=[{"loc": f"l{n}", "msg": "x" * 900} for n in range(300)],
        line=3,
    )
    answer = decode_outcome(encode_outcome(rejection, None, 1, 2))
    assert isinstance(answer, RejectedAnswer)
    assert (answer.reason_code, answer.line) == (ReasonCode.INVALID_RECORD, 3)
    assert len(answer.message) <= 2000
    assert len(answer.details) == MAX_DETAILS
    assert answer.details[-1].msg == f"{300 - MAX_DETAILS + 1} more problems not kept"
    sequencer = Sequencer()
    accepted = sequencer.submit(org_setup("acme")[0], now=NOW)
    assert isinstance(accepted, Accepted)
    answer = decode_outcome(encode_outcome(accepted, "s", 0, 0))
    assert isinstance(answer, AcceptedAnswer)
    assert (answer.sequence, answer.org_id) == (1, "acme")


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"{}",
        b'{"reason_code": "conflict"}',
        b"\xff\xfe",
        b"",
        None,
    ],
)
def test_a_rejections_record_that_is_not_one_is_shown_as_invalid_record(
    value: bytes | None,
) -> None:
    assert decode_rejection(value) is None
    shown = read_rejection(value)
    assert (shown.reason, shown.recorded_at, shown.raw) == (
        ReasonCode.INVALID_RECORD,
        UNREADABLE_AT,
        value or b"",
    )


def _stored_rejection(**changes: Any) -> bytes:
    good = Rejection(ReasonCode.INVALID_JSON, "bad", b"{", "2026-11-23T12:00:00Z", line=4)
    document = orjson.loads(encode_rejection(good))
    return json.dumps(document | changes).encode()  # json: integers of any size


@pytest.mark.parametrize(
    "changes",
    [
        {"line": 10**23},
        {"line": -1},
        {"line": "7"},
        {"recorded_at": "yesterday"},
        {"recorded_at": "2026-11-23T12:00:00"},  # no offset
        {"recorded_at": "9999-12-31T00:00:00Z"},  # out of a DateTime64's range
        {"raw_base64": "%%%"},
        {"raw_base64": "eHh4" * 30_000},  # over 64 KiB
        {"raw_length": 0},  # shorter than the bytes kept
        {"raw_sha256": "z" * 64},
        {"reason_code": "made_up"},
        {"details": [{"loc": 1, "msg": "m"}]},
        {"details": "none"},
    ],
)
def test_a_tampered_rejection_record_is_not_read_as_a_rejection(changes: dict[str, Any]) -> None:
    assert decode_rejection(_stored_rejection()) is not None
    assert decode_rejection(_stored_rejection(**changes)) is None


# -- the partition sequencer ----------------------------------------------------------------


def record(
    offset: int,
    value: bytes,
    headers: tuple[tuple[str, bytes | None], ...] = (),
    key: bytes | None = None,
    partition: int = 0,
) -> IntakeRecord:
    return IntakeRecord(partition, offset, value, headers, key)


def keyed(offset: int, value: bytes, *headers: tuple[str, bytes | None]) -> IntakeRecord:
    org_id = orjson.loads(value)["org_id"]
    return record(offset, value, tuple(headers), org_key(org_id))


def outcomes(output: kafka_sequencer.BatchOutput) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in output.outcomes]


@pytest.mark.parametrize("line", [b"99999999999999999999999", b"9" * 5000])
def test_the_reported_okr_line_is_a_recorded_rejection_and_the_next_record_is_decided(
    line: bytes,
) -> None:
    setup = org_setup("acme")
    core = PartitionSequencer(0, 1)
    output = core.decide_batch([keyed(0, setup[0], (LINE_HEADER, line)), keyed(1, setup[0])], NOW)
    ((rejection, _origin),) = output.rejections
    assert rejection.reason is ReasonCode.INVALID_RECORD
    assert rejection.details[0]["loc"] == "headers.okr-line"
    assert rejection.org_id == "acme"
    encode_rejection(rejection)  # writable: this is where it used to raise
    assert [d["status"] for d in outcomes(output)] == ["rejected", "accepted"]
    assert len(output.events) == 1


def test_a_record_whose_key_is_not_its_org_is_rejected() -> None:
    acme = org_setup("acme")[0]
    core = PartitionSequencer(0, 1)
    output = core.decide_batch(
        [
            record(0, acme),
            record(1, acme, key=b"globex"),
            record(2, acme, key=b"\xff"),
            record(3, acme, key=b"ACME"),
            record(4, acme, key=b"acme"),
        ],
        NOW,
    )
    rejected = [r for r, _ in output.rejections]
    assert [r.reason for r in rejected] == [ReasonCode.INVALID_RECORD] * 4
    assert {r.details[0]["loc"] for r in rejected} == {"key"}
    assert "key must be the org_id 'acme'" in rejected[0].message
    assert [e.record["sequence"] for e, _ in output.events] == [1]


def test_a_record_without_a_readable_org_is_decided_by_the_rules_whatever_its_key() -> None:
    core = PartitionSequencer(0, 1)
    output = core.decide_batch([record(0, b"{oops", key=b"\xff"), record(1, b"[]")], NOW)
    assert [r.reason for r, _ in output.rejections] == [ReasonCode.INVALID_JSON] * 2


def test_a_stand_in_becomes_a_too_large_rejection_with_its_figures() -> None:
    line = b"q" * 3_000_000
    message = intake_message(line, "big", 12)
    core = PartitionSequencer(0, 1)
    output = core.decide_batch([record(0, message.value, message.headers)], NOW)
    ((rejection, _origin),) = output.rejections
    assert rejection.reason is ReasonCode.TOO_LARGE
    assert (rejection.raw, rejection.raw_length, rejection.raw_sha256, rejection.line) == (
        line[:RAW_LIMIT],
        len(line),
        hashlib.sha256(line).hexdigest(),
        12,
    )
    stored = decode_rejection(encode_rejection(rejection))
    assert stored == rejection
    assert orjson.loads(encode_rejection(rejection))["raw_length"] == len(line)
    assert outcomes(output)[0]["submission_id"] == "big"


@pytest.mark.parametrize("reason", [ReasonCode.FORBIDDEN, ReasonCode.UNKNOWN_HOOK])
def test_a_refused_line_too_long_for_intake_is_recorded_under_its_refusal(
    reason: ReasonCode,
) -> None:
    """Sent as a stand-in that keeps its refusal: recorded as refused, with the whole line's
    length and hash; a tool's payload (``unknown_hook``) is filed under no org."""
    line = b'{"org_id": "globex", "type": "issue_updated", "pad": "' + b"q" * 1_500_000 + b'"}'
    message = intake_message(line, "big", None, Refusal(reason, "refused " + "é" * 900))
    output = PartitionSequencer(0, 1).decide_batch([record(0, message.value, message.headers)], NOW)
    ((rejection, _origin),) = output.rejections
    assert rejection.reason is reason
    assert len(rejection.message.encode()) <= MAX_REFUSAL_MESSAGE_BYTES
    assert rejection.message.startswith("refused é")
    assert (rejection.raw, rejection.raw_length, rejection.raw_sha256) == (
        line[:RAW_LIMIT],
        len(line),
        hashlib.sha256(line).hexdigest(),
    )
    assert (rejection.org_id, rejection.type) == (None, None)  # a prefix is not read


def test_a_tool_payload_refused_for_no_hook_is_filed_under_no_org() -> None:
    payload = b'{"org_id": "globex", "type": "issue_updated", "source": "x", "event_id": "e"}'
    for reason, org in ((ReasonCode.UNKNOWN_HOOK, None), (ReasonCode.FORBIDDEN, "globex")):
        message = intake_message(payload, "s", None, Refusal(reason, "no"))
        output = PartitionSequencer(0, 1).decide_batch(
            [record(0, message.value, message.headers, key=message.key)], NOW
        )
        ((rejection, _origin),) = output.rejections
        assert (rejection.reason, rejection.org_id, rejection.raw) == (reason, org, payload)


def test_an_unreadable_record_is_recorded_as_invalid_record() -> None:
    core = PartitionSequencer(0, 1)
    unreadable = IntakeRecord(0, 0, b"", unreadable="UnicodeDecodeError: header name")
    output = core.decide_batch([unreadable], NOW)
    ((rejection, origin),) = output.rejections
    assert rejection.reason is ReasonCode.INVALID_RECORD
    assert "could not be read" in rejection.message
    assert origin == Origin(0, 0, 0)
    assert outcomes(output)[0]["intake_offset"] == 0


def test_an_exception_while_deciding_is_a_rejection_and_leaves_the_state_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = org_setup("acme")
    poisoned, after = check_ins(2, "acme")
    real = Decider.__call__

    def failing(decider: Decider, state: LedgerState, raw: bytes, *args: Any) -> Any:
        if raw == poisoned:
            raise KeyError("a bug in a rule")
        return real(decider, state, raw, *args)

    monkeypatch.setattr(Decider, "__call__", failing)
    core = PartitionSequencer(0, 1)
    raws = [*setup, poisoned, after]
    output = core.decide_batch([keyed(n, raw) for n, raw in enumerate(raws)], NOW)
    statuses = [d["status"] for d in outcomes(output)]
    assert statuses == ["accepted"] * len(setup) + ["rejected", "accepted"]
    ((rejection, _),) = output.rejections
    assert rejection.reason is ReasonCode.INVALID_RECORD
    assert "KeyError" in rejection.message
    assert not output.restore
    assert [e.record["sequence"] for e, _ in output.events] == list(range(1, len(setup) + 2))


def test_an_exception_while_applying_cuts_the_batch_and_asks_for_a_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = org_setup("acme")
    failing_at = len(setup) + 1  # the first check-in
    real = LedgerState.apply_record

    def half_applied(self: LedgerState, record: Any, *args: Any) -> None:
        if record["sequence"] == failing_at:
            self.org(record["org_id"]).last_sequence = failing_at  # changed, then failed
            raise RuntimeError("a bug in the state")
        real(self, record, *args)

    monkeypatch.setattr(LedgerState, "apply_record", half_applied)
    core = PartitionSequencer(0, 1)
    intake = [keyed(n, raw) for n, raw in enumerate([*setup, *check_ins(3, "acme")])]
    output = core.decide_batch(intake, NOW)
    assert output.restore
    assert [d["status"] for d in outcomes(output)] == ["accepted"] * len(setup) + ["rejected"]
    assert core.resume_offset == len(setup) + 1
    monkeypatch.setattr(LedgerState, "apply_record", real)
    ledger = [
        StoredRecord(n, encode_event(e), (o.header(),), org_key(e.org_id))
        for n, (e, o) in enumerate(output.events)
    ]
    rejections = [
        StoredRecord(n, encode_rejection(r), (o.header(),))
        for n, (r, o) in enumerate(output.rejections)
    ]
    restored = PartitionSequencer.restore(0, 1, ledger, rejections)
    assert restored.state.head("acme").sequence == len(setup)
    rest = restored.decide_batch(intake, NOW)
    assert rest.replayed == len(setup) + 1
    assert [e.record["sequence"] for e, _ in rest.events] == [len(setup) + 1, len(setup) + 2]


def test_a_restore_ignores_forged_rejections_and_origins() -> None:
    setup = org_setup("acme")
    core = PartitionSequencer(0, 1)
    output = core.decide_batch([keyed(0, setup[0]), record(1, b"{")], NOW)
    (event, origin), ((rejection, rejected_at),) = output.events[0], output.rejections
    ledger = [StoredRecord(0, encode_event(event), (origin.header(),), b"acme")]
    rejections = [
        StoredRecord(0, encode_rejection(rejection), (rejected_at.header(),)),
        StoredRecord(1, b"not a rejection", (Origin(0, 5, 5).header(),)),
        StoredRecord(
            2, encode_rejection(rejection), (("okr-intake", b"0/" + b"9" * 5000 + b"/0"),)
        ),
        StoredRecord(
            3, encode_rejection(rejection), (("okr-intake", b"0/10000000000000000000000/0"),)
        ),
    ]
    restored = PartitionSequencer.restore(0, 1, ledger, rejections)
    assert restored.resume_offset == 0
    assert restored.pending_recorded == 2
    assert restored.state.head("acme").sequence == 1


# -- anything at all ------------------------------------------------------------------------

HEADER_NAMES = st.sampled_from(
    [SUBMISSION_HEADER, LINE_HEADER, LENGTH_HEADER, SHA256_HEADER, "okr-intake", "x", ""]
) | st.text(max_size=12)
HEADER_VALUES = (
    st.none()
    | st.binary(max_size=40)
    | st.sampled_from([b"9" * 23, b"9" * 5000, b"0", b"5000000", SHA.encode(), b"\xff"])
)
SUBMISSIONS = [*org_setup("acme"), *check_ins(3, "acme"), *org_setup("globex")]


@st.composite
def intake_records(draw: st.DrawFn) -> list[IntakeRecord]:
    records = []
    for offset in range(draw(st.integers(1, 6))):
        value = draw(st.sampled_from(SUBMISSIONS) | st.binary(max_size=80))
        key = draw(st.none() | st.binary(max_size=8) | st.sampled_from([b"acme", b"globex"]))
        headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5))
        unreadable = draw(st.none() | st.just("UnicodeDecodeError"))
        records.append(IntakeRecord(0, offset, value, tuple(headers), key, unreadable))
    return records


@settings(max_examples=300, deadline=None)
@given(intake_records())
def test_any_records_get_one_outcome_each_and_the_sequencer_never_raises(
    records: list[IntakeRecord],
) -> None:
    partitions = 2
    core = PartitionSequencer(0, partitions)
    output = core.decide_batch(records, NOW)
    documents = outcomes(output)
    assert [d["intake_offset"] for d in documents] == [r.offset for r in records]
    assert len(output.events) + len(output.rejections) + sum(
        d["status"] == "duplicate" for d in documents
    ) == len(records)
    for rejection, _ in output.rejections:
        assert decode_rejection(encode_rejection(rejection)) is not None
    for event, _ in output.events:
        assert partition_for(org_key(event.org_id), partitions) == 0
    assert all(decode_outcome(o.value) is not None for o in output.outcomes)
    again = records[0]._replace(offset=len(records))
    core.decide_batch([again], NOW)
