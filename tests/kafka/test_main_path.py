"""The worker main process's hand-overs, as its hot paths make them: an intake batch crosses
the pipe to the sequencer process unchanged, an intake record keeps aiokafka's headers, the
projector refuses a ledger record with fields a ledger event does not have, and both agents
tell where their batches' freshness starts from."""

import pickle
from datetime import timedelta
from multiprocessing.reduction import ForkingPickler
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord  # type: ignore[import-untyped]

from events.kafka_records import RejectionLanes, encode_event, org_key
from events.outcomes import Accepted
from events.sequencer import Sequencer
from processors.faust_batches import Unreadable
from processors.kafka_projector import LedgerProjection
from processors.kafka_sequencer import IntakeBatch, IntakeRecord
from processors.kafka_worker import intake_record, oldest_timestamp
from tests.builders import NOW, chained_events, check_ins, org_setup


def consumer_record(offset: int, headers: Any) -> ConsumerRecord:
    return ConsumerRecord("intake", 3, offset, 0, 0, b"acme", b"{}", None, 4, 2, headers)


def test_an_intake_batch_crosses_the_pipe_unchanged() -> None:
    batch = IntakeBatch(
        [
            IntakeRecord(3, 7, b'{"a":1}', (("okr-line", b"12"), ("x", None)), b"acme"),
            IntakeRecord(3, 8, b"", unreadable="UnicodeDecodeError: no"),
            IntakeRecord(3, 9, b"v"),
        ]
    )
    received = pickle.loads(ForkingPickler.dumps((1, "sequence", (3, batch))))[2][1]
    assert received == batch
    assert type(received) is IntakeBatch
    assert all(type(record) is IntakeRecord for record in received)
    assert received[1].unreadable == "UnicodeDecodeError: no"
    assert received[2].headers == ()


def test_an_intake_record_keeps_the_headers_as_pairs_of_name_and_value() -> None:
    headers = (("okr-submission-id", b"s-1"), ("okr-line", None))
    record = intake_record(3, consumer_record(5, headers))
    assert record == IntakeRecord(3, 5, b"{}", headers, b"acme")
    assert type(record) is IntakeRecord
    # not a tuple (another client's records): made one, name by name
    listed = intake_record(3, consumer_record(6, [("okr-line", b"1")]))
    assert listed.headers == (("okr-line", b"1"),)
    assert intake_record(3, consumer_record(7, None)).headers == ()
    unreadable = intake_record(3, Unreadable(8, "CorruptRecordException: crc"))
    assert unreadable == IntakeRecord(3, 8, b"", unreadable="CorruptRecordException: crc")


class NoStore:
    """A sink that has nothing stored and keeps what it is given."""

    def __init__(self) -> None:
        self.inserted: list[Any] = []

    def positions(self, stream: str = "ledger") -> dict[str, int]:
        return {}

    def checkpoints(self) -> dict[str, dict[str, int]]:
        return {}

    def insert(self, rows: Any, owners: Any = None) -> None:
        self.inserted.append(rows)


@pytest.mark.parametrize("change", ["added", "missing"])
def test_the_projector_refuses_a_ledger_record_with_other_fields(change: str) -> None:
    """A record that continues its org's chain but is not a ledger event's shape (a field it
    does not have, or one of its fields missing) stops the projector, as it always did."""
    event = chained_events("acme", check_in_count=0)[0]
    record = orjson.loads(encode_event(event))
    if change == "added":
        record["extra"] = 1
    else:
        del record["actor"]
    projection = LedgerProjection(NoStore(), 1, RejectionLanes(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        projection.apply([(0, 0, org_key("acme"), orjson.dumps(record))], [])


@pytest.mark.parametrize("optional", ["present", "absent"])
def test_the_projector_projects_ledger_records_with_or_without_the_optional_fields(
    optional: str,
) -> None:
    """Every event projected, whether its record names the optional fields (source event id,
    correlation and causation ids) or leaves them out."""
    events = chained_events("acme", check_in_count=3)
    records = [orjson.loads(encode_event(e)) for e in events]
    if optional == "absent":
        for record in records:
            for name in ("source_event_id", "correlation_id", "causation_id"):
                del record[name]
    sink = NoStore()
    projection = LedgerProjection(sink, 1, RejectionLanes(1))  # type: ignore[arg-type]
    projection.apply(
        [(0, i, org_key("acme"), orjson.dumps(record)) for i, record in enumerate(records)], []
    )
    assert projection.projected == len(events)
    assert sum(len(rows["audit_events"]) for rows in sink.inserted) == len(events)


def test_a_rejection_at_or_below_its_lanes_checkpoint_is_not_projected_again_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each lane is read in order from after its checkpoint: a record handed over behind it
    (delivered out of order) cannot be projected any more, and says so."""
    sink = NoStore()
    projection = LedgerProjection(sink, 1, RejectionLanes(1))  # type: ignore[arg-type]
    projection.apply([], [(0, 5, b"not a rejection")])
    assert sum(len(rows["rejections"]) for rows in sink.inserted) == 1
    with caplog.at_level("WARNING", logger="processors.kafka_projector"):
        projection.apply([], [(0, 3, b"not a rejection"), (0, 5, b"not a rejection")])
    assert sum(len(rows.get("rejections", ())) for rows in sink.inserted) == 1
    assert "rejections lane 0: 2 records at or below its checkpoint" in caplog.text


class Projected(NoStore):
    """A sink whose ``acme`` is projected up to sequence 2 already."""

    def positions(self, stream: str = "ledger") -> dict[str, int]:
        return {"acme": 2} if stream == "ledger" else {}


def test_the_projector_tells_when_the_oldest_event_it_projected_was_recorded() -> None:
    """The ``projected`` freshness starts from the oldest event a batch inserted: not from
    one replayed (projected already), and there is none for a batch with no new event."""
    raws = org_setup("acme") + list(check_ins(2, "acme"))
    sequencer = Sequencer()
    outcomes = [sequencer.submit(raw, now=NOW + timedelta(seconds=i)) for i, raw in enumerate(raws)]
    events = [outcome.event for outcome in outcomes if isinstance(outcome, Accepted)]
    assert len(events) == len(raws)
    projection = LedgerProjection(Projected(), 1, RejectionLanes(1))  # type: ignore[arg-type]
    projection.apply([(0, i, org_key("acme"), encode_event(e)) for i, e in enumerate(events)], [])
    assert (projection.replayed, projection.projected) == (2, len(events) - 2)
    assert projection.oldest == (NOW + timedelta(seconds=2)).timestamp()
    projection.apply([], [(0, 0, b"not a rejection")])
    assert projection.oldest is None


def test_the_sequencer_tells_the_oldest_timestamp_of_a_batch() -> None:
    """From the records' Kafka timestamps (ms), leaving out what has none: an unreadable
    offset, or -1 (a record written without one)."""

    def stamped(offset: int, timestamp: int) -> ConsumerRecord:
        return ConsumerRecord("intake", 3, offset, timestamp, 0, b"acme", b"{}", None, 4, 2, ())

    batch = [stamped(1, 5_000), Unreadable(2, "no"), stamped(3, 3_500), stamped(4, -1)]
    assert oldest_timestamp(batch) == 3.5
    assert oldest_timestamp([Unreadable(2, "no"), stamped(4, -1)]) is None
