"""The event-log contract: one abstract suite that every ledger backend subclasses.

A backend's test module defines ``class TestXxxEventLog(EventLogContract)`` and implements
:meth:`EventLogContract.open_log` (and :meth:`reopen` if the backend is durable).
"""

import hashlib
from collections.abc import Iterator

import orjson
import pytest

from events.canonical import canonical_bytes
from events.chain import ChainVerifier
from events.log import Batch, ChainHead, EventLog
from events.outcomes import RAW_LIMIT, Rejection
from events.reasons import ReasonCode
from schemas.envelope import GENESIS_HASH, LedgerEvent
from schemas.errors import SequenceConflictError
from tests.builders import NOW, chained_events


def _rejection(raw: bytes, reason: ReasonCode = ReasonCode.INVALID_JSON, **kw: object) -> Rejection:
    return Rejection(
        reason=reason,
        message=f"{reason.value} for test",
        raw=raw,
        recorded_at="2026-11-23T12:00:00Z",
        **kw,  # type: ignore[arg-type]
    )


class _Writer:
    """A decider that stores a given batch, noting every event the log folds into it."""

    folds = True

    def __init__(self, folded: list[LedgerEvent]) -> None:
        self.folded = folded
        self.batch: Batch = ([], [])

    def head(self, org_id: str) -> ChainHead:
        mine = [e for e in self.folded if e.org_id == org_id]
        return ChainHead(mine[-1].sequence, mine[-1].hash) if mine else ChainHead(0, GENESIS_HASH)

    def fold(self, event: LedgerEvent) -> None:
        assert event.sequence == self.head(event.org_id).sequence + 1, "folded out of order"
        self.folded.append(event)

    def decide(self) -> Batch:
        self.folded.extend(self.batch[0])  # as a sequencer folds what it accepts
        return self.batch


class EventLogContract:
    """What every :class:`EventLog` backend must do. Not collected itself (no ``Test`` prefix)."""

    consecutive_rejection_positions = True
    """Position n is the n-th rejection ever recorded. A backend whose positions increase
    but may skip (Kafka: a transaction's commit marker takes an offset) says so."""

    def open_log(self) -> EventLog:
        raise NotImplementedError

    def reopen(self, log: EventLog) -> EventLog:
        """Close ``log`` and open the same store again (durable backends)."""
        log.close()
        return self.open_log()

    @pytest.fixture
    def log(self) -> Iterator[EventLog]:
        log = self.open_log()
        yield log
        log.close()

    def test_a_new_log_is_empty(self, log: EventLog) -> None:
        assert log.heads() == {}
        assert list(log.read()) == []
        assert list(log.rejections()) == []

    def test_appended_events_read_back_in_sequence_order_per_org(self, log: EventLog) -> None:
        events = chained_events("acme", "globex")
        log.append(events)
        for org in ("acme", "globex"):
            mine = [e for e in events if e.org_id == org]
            assert list(log.read(org)) == mine
            assert list(log.read_records(org)) == [e.to_record() for e in mine]
        assert sorted(e.event_id for e in log.read()) == sorted(e.event_id for e in events)

    def test_reading_all_orgs_keeps_each_orgs_order(self, log: EventLog) -> None:
        events = chained_events("acme", "globex")
        log.append(events)
        for org in ("acme", "globex"):
            assert [e.sequence for e in log.read() if e.org_id == org] == list(
                range(1, 1 + sum(e.org_id == org for e in events))
            )

    def test_stored_bytes_are_each_events_canonical_form_filed_under_its_org(
        self, log: EventLog
    ) -> None:
        events = chained_events("acme", "globex")
        log.append(events)
        for org in ("acme", "globex"):
            records = [e.to_record() for e in events if e.org_id == org]
            stored = list(log.read_stored(org))
            assert [s.body for s in stored] == [canonical_bytes(r) for r in records]
            for item, record in zip(stored, records, strict=True):
                assert item.org_id == org
                assert {name: record[name] for name in item.columns} == dict(item.columns)
        everything = sorted(s.body for s in log.read_stored())
        assert everything == sorted(canonical_bytes(e.to_record()) for e in events)

    def test_read_stored_a_range_of_sequences(self, log: EventLog) -> None:
        log.append(chained_events("acme"))
        stored = log.read_stored("acme", from_sequence=3, to_sequence=5)
        assert [orjson.loads(s.body)["sequence"] for s in stored] == [3, 4, 5]
        assert list(log.read_stored("nobody")) == []

    def test_what_is_stored_verifies_byte_for_byte(self, log: EventLog) -> None:
        events = chained_events("acme", "globex")
        log.append(events)
        verifier = ChainVerifier()
        for stored in log.read_stored():
            verifier.add(stored)
        assert [(r.org_id, r.ok, r.events) for r in verifier.reports()] == [
            ("acme", True, 10),
            ("globex", True, 10),
        ]

    def test_verify_answers_what_the_reference_path_gives_on_the_stored_bytes(
        self, log: EventLog
    ) -> None:
        log.append(chained_events("acme", "globex"))
        reference = ChainVerifier()
        for stored in log.read_stored():
            reference.add(stored)
        assert log.verify() == reference.reports()
        assert [(r.org_id, r.ok, r.events) for r in log.verify("globex")] == [("globex", True, 10)]
        assert log.verify("nobody") == []

    def test_heads_are_the_last_sequence_and_hash_per_org(self, log: EventLog) -> None:
        events = chained_events("acme", "globex")
        log.append(events)
        last = {e.org_id: e for e in events}
        assert log.heads() == {
            org: ChainHead(e.sequence, e.hash) for org, e in sorted(last.items())
        }

    def test_read_a_range_of_sequences(self, log: EventLog) -> None:
        events = chained_events("acme")
        log.append(events)
        assert [e.sequence for e in log.read("acme", from_sequence=3, to_sequence=5)] == [3, 4, 5]
        assert [e.sequence for e in log.read("acme", from_sequence=9)] == [9, 10]
        assert list(log.read("nobody")) == []

    def test_appends_in_several_batches_continue_the_chain(self, log: EventLog) -> None:
        events = chained_events("acme")
        log.append(events[:4])
        log.append(events[4:])
        assert list(log.read("acme")) == events

    def test_an_append_that_skips_a_sequence_stores_nothing(self, log: EventLog) -> None:
        events = chained_events("acme")
        log.append(events[:2])
        with pytest.raises(SequenceConflictError):
            log.append([events[3]], [_rejection(b"{")])
        assert list(log.read("acme")) == events[:2]
        assert list(log.rejections()) == []

    def test_an_append_that_repeats_a_sequence_stores_nothing(self, log: EventLog) -> None:
        events = chained_events("acme")
        log.append(events[:2])
        with pytest.raises(SequenceConflictError):
            log.append([events[1]])
        assert log.heads()["acme"] == ChainHead(2, events[1].hash)

    def test_an_append_with_a_wrong_link_stores_nothing(self, log: EventLog) -> None:
        events = chained_events("acme")
        log.append(events[:2])
        forged = LedgerEvent.from_record({**events[2].to_record(), "prev_hash": GENESIS_HASH})
        with pytest.raises(SequenceConflictError):
            log.append([forged])
        assert len(list(log.read("acme"))) == 2

    def test_a_failed_batch_stores_none_of_its_events(self, log: EventLog) -> None:
        acme, globex = chained_events("acme"), chained_events("globex")
        with pytest.raises(SequenceConflictError):
            log.append([*acme[:3], *globex[1:2]])  # globex's batch does not start at 1
        assert list(log.read()) == []

    def test_rejections_keep_reason_message_details_and_raw_bytes(self, log: EventLog) -> None:
        stored = [
            _rejection(b'{"type": ', line=7),
            _rejection(
                b'{"type":"X"}',
                ReasonCode.UNKNOWN_TYPE,
                org_id="acme",
                type="X",
                source="jira",
                event_id="e1",
            ),
            _rejection(
                b"\xff\xfe not utf-8",
                ReasonCode.SCHEMA_VIOLATION,
                details=[{"loc": "data.value", "msg": "finite number"}],
            ),
        ]
        log.append([], stored)
        assert list(log.rejections()) == stored

    def test_events_and_rejections_of_a_batch_land_together(self, log: EventLog) -> None:
        events = chained_events("acme")
        log.append(events[:3], [_rejection(b"x")])
        assert len(list(log.read())) == 3
        assert len(list(log.rejections())) == 1

    def test_an_empty_append_changes_nothing(self, log: EventLog) -> None:
        log.append([], [])
        assert log.heads() == {}

    def test_what_was_appended_survives_a_reopen(self, log: EventLog) -> None:
        events = chained_events("acme")
        log.append(events, [_rejection(b"{")])
        reopened = self.reopen(log)
        try:
            assert list(reopened.read("acme")) == events
            assert len(list(reopened.rejections())) == 1
            assert reopened.heads()["acme"].hash == events[-1].hash
        finally:
            reopened.close()

    def test_recorded_times_are_kept(self, log: EventLog) -> None:
        events = chained_events("acme")
        log.append(events)
        assert {e.recorded for e in log.read()} == {NOW}

    def test_rejections_are_read_in_bounded_pages_by_position(self, log: EventLog) -> None:
        """Positions follow the order of recording; a page holds at most ``limit``."""
        stored = [_rejection(f"{{{n}".encode(), line=n) for n in range(7)]
        log.append([], stored[:4])
        log.append(chained_events("acme")[:1], stored[4:])
        lane = log.rejection_lanes()[0]  # where rejections without an org go

        def after(position: int, limit: int) -> list[tuple[int, Rejection]]:
            return log.rejections_after(position, limit, lane=lane)

        everything = after(0, 100)
        assert [rejection for _, rejection in everything] == stored
        positions = [position for position, _ in everything]
        if self.consecutive_rejection_positions:
            assert positions == list(range(1, 8))
        assert positions == sorted(set(positions))
        assert positions[0] >= 1
        assert after(0, 3) == everything[:3]
        assert after(positions[2], 3) == everything[3:6]
        assert after(positions[5], 3) == everything[6:]
        assert after(positions[6], 3) == []
        assert after(positions[1], 1) == everything[2:3]
        assert after(positions[2] - 1, 1) == everything[2:3]

    def test_every_rejection_is_in_one_lane_at_a_position_no_other_lane_has(
        self, log: EventLog
    ) -> None:
        """Lanes are read on their own: together they hold each rejection once, each lane in
        the order of recording, and no position is in two lanes (rows are stored by it)."""
        orgs = [f"org{i}" for i in range(12)]
        stored = [_rejection(f"{{{n}".encode(), line=n, org_id=org) for n, org in enumerate(orgs)]
        stored += [_rejection(b"{", line=99)]
        log.append([], stored[:5])
        log.append([], stored[5:])
        lanes = {lane: log.rejections_after(0, 100, lane=lane) for lane in log.rejection_lanes()}
        found = [rejection for page in lanes.values() for _, rejection in page]
        assert sorted(r.line or 0 for r in found) == sorted(r.line or 0 for r in stored)
        for page in lanes.values():
            lines = [r.line for _, r in page]
            assert lines == [r.line for r in stored if r.line in lines]  # recording order
        positions = [position for page in lanes.values() for position, _ in page]
        assert len(positions) == len(set(positions)) == len(stored)
        assert sorted(r.line or 0 for r in log.rejections()) == sorted(r.line or 0 for r in stored)

    def test_every_rejection_is_read_back_oldest_first_whatever_its_lane(
        self, log: EventLog
    ) -> None:
        stored = [
            Rejection(
                reason=ReasonCode.INVALID_JSON,
                message="not JSON",
                raw=b"{",
                recorded_at=f"2026-11-23T12:00:{n:02d}.000000Z",
                org_id=f"org{(7 * n) % 12}",  # every lane, in no lane's order
                line=n,
            )
            for n in range(24)
        ]
        for start in range(0, len(stored), 5):
            log.append([], stored[start : start + 5])
        assert [r.line for r in log.rejections()] == list(range(24))

    def test_an_oversized_rejection_keeps_a_bounded_prefix_and_the_whole_length_and_hash(
        self, log: EventLog
    ) -> None:
        raw = bytes(range(256)) * (4 * RAW_LIMIT // 256) + b"tail"
        log.append([], [_rejection(raw, ReasonCode.TOO_LARGE, line=3), _rejection(b"{")])
        big, small = log.rejections()
        assert big.raw == raw[:RAW_LIMIT]
        assert (big.raw_length, big.raw_sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
        assert (big.reason, big.line) == (ReasonCode.TOO_LARGE, 3)
        assert (small.raw, small.raw_length, small.raw_sha256) == (b"{", None, None)
        lane = log.rejection_lanes()[0]
        assert [r for _, r in log.rejections_after(0, 2, lane=lane)] == [big, small]

    def test_append_decided_folds_only_what_others_appended_then_stores_the_batch(
        self, log: EventLog
    ) -> None:
        events = chained_events("acme", "globex", check_in_count=6)
        acme = [e for e in events if e.org_id == "acme"]
        globex = [e for e in events if e.org_id == "globex"]
        log.append(acme[:3])  # another writer
        writer = _Writer([])
        writer.batch = (acme[3:5], [_rejection(b"{")])
        mark = log.append_decided(writer, {})
        assert writer.folded == acme[:5]
        log.append([*globex[:4], *acme[5:7]])  # the other writer again
        writer.batch = (acme[7:], [])
        log.append_decided(writer, mark)
        assert [e for e in writer.folded if e.org_id == "acme"] == acme
        assert [e for e in writer.folded if e.org_id == "globex"] == globex[:4]
        assert list(log.read("acme")) == acme
        assert [r.raw for r in log.rejections()] == [b"{"]
