"""What the Kafka backend writes and how it reads it back: pure code, no broker."""

import hashlib
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.kafka_client import partition_for
from events.kafka_log import servers_from_url
from events.kafka_records import (
    ChainRule,
    RejectionLanes,
    decode_event,
    decode_rejection,
    encode_event,
    encode_rejection,
    placed,
)
from events.outcomes import RAW_LIMIT, Rejection
from events.reasons import ReasonCode
from okr_ledger.settings import Settings
from okr_ledger.wiring import open_event_log
from schemas.errors import ConfigurationError, MissingExtraError
from tests.builders import chained_events


def test_kafka_urls_name_one_or_more_brokers() -> None:
    assert servers_from_url("kafka://localhost:9092") == ("localhost:9092",)
    assert servers_from_url("kafka://a:1,b:2") == ("a:1", "b:2")
    assert servers_from_url("kafka://kafka") == ("kafka:9092",)
    for bad in ("http://a:1", "kafka://", "kafka://a:x", "kafka://a:1/topic"):
        with pytest.raises(ConfigurationError):
            servers_from_url(bad)


def test_orgs_are_partitioned_as_kafkas_java_client_does() -> None:
    # murmur2 test vectors of Kafka's UtilsTest: "21" -> -973932308, "abc" -> 479470107
    assert partition_for(b"21", 1_000_003) == (-973932308 & 0x7FFFFFFF) % 1_000_003
    assert partition_for(b"abc", 7) == 479470107 % 7


def test_an_event_is_stored_as_its_canonical_json() -> None:
    event = chained_events("acme")[0]
    assert decode_event(encode_event(event)) == event.to_record()
    assert b" " not in encode_event(event).replace(b"Happy customers", b"")


def test_a_rejection_keeps_every_field_and_the_exact_bytes() -> None:
    rejection = Rejection(
        reason=ReasonCode.SCHEMA_VIOLATION,
        message="m",
        raw=b"\xff\x00{not json",
        recorded_at="2026-11-23T12:00:00Z",
        details=[{"loc": "data", "msg": "x"}],
        org_id="acme",
        event_id="e",
        type="T",
        source="s",
        line=3,
    )
    assert decode_rejection(encode_rejection(rejection)) == rejection


def test_the_chain_rule_admits_only_continuations() -> None:
    first, second, third = (e.to_record() for e in chained_events("acme")[:3])
    rule = ChainRule()
    assert not rule.admit(second)  # a gap
    assert rule.admit(first)
    assert not rule.admit(first)  # a repeat
    assert not rule.admit({**second, "prev_hash": third["hash"]})  # a wrong link
    assert not rule.admit({**second, "sequence": True})  # not an integer
    assert not rule.admit(decode_event(b"\xff not json"))
    assert decode_event(b"[1]") == {"undecodable": "[1]"}
    assert rule.admit(second)
    assert rule.head("acme").sequence == 2


def test_kafka_without_kafka_python_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kafka", None)  # what Python does for a missing package
    for module in ("events.kafka_log", "events.kafka_client"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingExtraError) as raised:
        open_event_log(Settings(ledger_url="kafka://localhost:9092"))
    assert (raised.value.package, raised.value.extra) == ("kafka-python", "kafka")


def test_a_record_is_placed_only_under_its_orgs_key_in_its_orgs_partition() -> None:
    record = {"org_id": "acme", "sequence": 1}
    owner = {"acme": 3}.__getitem__
    assert placed(record, b"acme", 3, owner)
    assert not placed(record, b"acme", 2, owner)  # another org's partition
    assert not placed(record, b"globex", 3, owner)  # another key
    assert not placed(record, None, 3, owner)  # no key
    assert not placed({"sequence": 1}, b"acme", 3, owner)  # no org at all


def test_the_sequencer_restore_ignores_an_orgs_event_stored_in_another_partition() -> None:
    from processors.kafka_sequencer import PartitionSequencer, StoredRecord
    from tests.builders import chained_events

    events = chained_events("acme")
    home = partition_for(b"acme", 4)
    stray = StoredRecord(0, encode_event(events[0]), key=b"acme")
    other = next(p for p in range(4) if p != home)
    assert PartitionSequencer.restore(other, 4, [stray], []).state.head("acme").sequence == 0
    restored = PartitionSequencer.restore(home, 4, [stray], [])
    assert restored.state.head("acme").sequence == 1


def test_a_huge_rejected_submission_fits_one_kafka_message_and_stays_identifiable() -> None:
    raw = b"x" * (3 * 1024 * 1024)
    rejection = Rejection(ReasonCode.TOO_LARGE, "too large", raw, "2026-11-23T12:00:00Z")
    encoded = encode_rejection(rejection)
    assert len(encoded) < 128 * 1024  # far below a broker's default 1 MB message limit
    document = orjson.loads(encoded)
    assert document["raw_length"] == len(raw)
    assert document["raw_sha256"] == hashlib.sha256(raw).hexdigest()
    decoded = decode_rejection(encoded)
    assert decoded is not None
    assert decoded.raw == raw[:RAW_LIMIT]
    assert (decoded.raw_length, decoded.raw_sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert decoded == rejection


def test_a_small_rejected_submission_keeps_its_exact_bytes() -> None:
    raw = b'{"type": \xff'
    rejection = Rejection(ReasonCode.INVALID_JSON, "bad", raw, "2026-11-23T12:00:00Z")
    decoded = decode_rejection(encode_rejection(rejection))
    assert decoded is not None
    assert (decoded.raw, decoded.raw_length, decoded.raw_sha256) == (raw, None, None)


@given(
    lanes=st.integers(1, 16),
    records=st.lists(st.tuples(st.integers(0, 15), st.integers(0, 10_000)), max_size=40),
)
def test_rejection_positions_are_unique_across_lanes_and_resume_each_lane(
    lanes: int, records: list[tuple[int, int]]
) -> None:
    """A position names one record of one lane; from any position of a lane, ``next_offset``
    is the first offset of that lane above it (what a reader resumes at)."""
    lane_of = RejectionLanes(lanes)
    placed = {(q % lanes, offset) for q, offset in records}
    positions = {lane_of.position(q, offset): (q, offset) for q, offset in placed}
    assert len(positions) == len(placed)  # no position in two lanes
    for position, (q, offset) in positions.items():
        assert position >= 1
        assert lane_of.next_offset(q, position) == offset + 1
        assert lane_of.next_offset(q, position - 1) == offset
    assert all(lane_of.next_offset(q, 0) == 0 for q in range(lanes))
    assert RejectionLanes(1).position(0, 41) == 42  # one partition: offset + 1, as before
