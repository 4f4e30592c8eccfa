"""The Kafka sequencer's core without a broker: crashes at every write, then a restart."""

import contextlib
import functools
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.chain import verify_chain
from events.intake_wire import Origin, intake_message
from events.kafka_client import partition_for
from events.kafka_records import ChainRule, decode_event, encode_event, encode_rejection, org_key
from events.outcomes import Accepted, Duplicate, Outcome, Rejection
from events.sequencer import DEFAULT_POLICY, Sequencer
from okr_ledger.demo import demo_submissions
from processors.kafka_sequencer import (
    BatchOutput,
    IntakeRecord,
    OutcomeRecord,
    PartitionSequencer,
    StoredRecord,
)
from processors.sequencer_state import FileState
from tests.builders import NOW, check_ins, org_setup

VOLATILE = ("recorded_at", "hash", "prev_hash")


class CrashError(Exception):
    """The simulated process died."""


@dataclass
class Topics:
    """In-memory stand-ins for one partition's ledger, the rejections and the outcomes."""

    ledger: list[StoredRecord] = field(default_factory=list)
    rejections: list[StoredRecord] = field(default_factory=list)
    outcomes: list[OutcomeRecord] = field(default_factory=list)
    budget: int | None = None
    """Writes left before the crash; ``None``: no crash."""

    def _spend(self) -> None:
        if self.budget is not None:
            if self.budget == 0:
                raise CrashError
            self.budget -= 1

    def run(self, intake: list[IntakeRecord], batch_size: int, now_step: int = 0) -> None:
        """Restore from the topics, then sequence intake to its end (or the crash)."""
        core = PartitionSequencer.restore(0, 1, self.ledger, self.rejections)
        start = core.resume_offset or 0
        for index in range(start, len(intake), batch_size):
            now = NOW + timedelta(seconds=now_step)
            self._write(core.decide_batch(intake[index : index + batch_size], now))

    def run_on_file(
        self, intake: list[IntakeRecord], batch_size: int, path: Path, now_step: int = 0
    ) -> None:
        """As :meth:`run`, as the worker does with a state file: the state is read from the
        file and brought up to date with what the topics hold after it; each batch is kept
        in the file once written (a crash while writing leaves the file as it was)."""
        state = FileState(path, 0)
        try:
            core, ledger_from, rejections_from = PartitionSequencer.from_state(
                0, 1, DEFAULT_POLICY, state
            )
            core.fold_ledger(s for s in self.ledger if s.offset >= (ledger_from or 0))
            core.fold_rejections(s for s in self.rejections if s.offset >= (rejections_from or 0))
            core.resume()
            start = core.resume_offset or 0
            for index in range(start, len(intake), batch_size):
                now = NOW + timedelta(seconds=now_step)
                with core.deciding(intake[index : index + batch_size], now) as output:
                    self._write(output)
                    ledger_next = len(self.ledger) if output.events else None
                    core.keep(output, ledger_next, len(self.rejections))
        finally:
            state.close()

    def _write(self, output: BatchOutput) -> None:
        for rejection, origin in output.rejections:
            self._spend()
            stored = StoredRecord(len(self.rejections), encode_rejection(rejection))
            self.rejections.append(_with_origin(stored, origin))
        for event, origin in output.events:
            self._spend()
            stored = StoredRecord(len(self.ledger), encode_event(event), key=org_key(event.org_id))
            self.ledger.append(_with_origin(stored, origin))
        for outcome in output.outcomes:
            self._spend()
            self.outcomes.append(outcome)


def _with_origin(stored: StoredRecord, origin: Origin) -> StoredRecord:
    return StoredRecord(stored.offset, stored.value, (origin.header(),), stored.key)


def submissions() -> list[bytes]:
    demo = demo_submissions()
    setup = org_setup("acme")
    early = next(check_ins(1, "acme"))  # rejected: its key result is defined just after it
    acme = [*setup[:-1], early, setup[-1], *check_ins(5, "acme")]
    mixed = [line for pair in zip(demo, acme, strict=False) for line in pair]
    mixed += demo[len(acme) :]
    return mixed + demo[:4] + acme[:3] + [b"{not json", demo[10]]  # duplicates, bad input


def intake_of(raws: list[bytes]) -> list[IntakeRecord]:
    """Intake records as the submitters produce them (keyed by org)."""
    records = []
    for offset, raw in enumerate(raws):
        message = intake_message(raw, f"s{offset}", None)
        records.append(IntakeRecord(0, offset, message.value, message.headers, message.key))
    return records


@functools.cache
def _reference(raws: tuple[bytes, ...]) -> tuple[Outcome, ...]:
    sequencer = Sequencer()
    return tuple(sequencer.submit(raw, now=NOW) for raw in raws)


def reference(raws: list[bytes]) -> tuple[Outcome, ...]:
    return _reference(tuple(raws))


def ledger_records(topics: Topics) -> list[tuple[dict[str, Any], Origin | None]]:
    rule = ChainRule()
    admitted = []
    for stored in topics.ledger:
        record = decode_event(stored.value)
        if rule.admit(record):
            admitted.append((record, Origin.from_headers(stored.headers)))
    return admitted


def assert_recorded_exactly_once(topics: Topics, raws: list[bytes]) -> None:
    expected = reference(raws)
    ledger = ledger_records(topics)
    for org_id in {record["org_id"] for record, _ in ledger}:
        chain = [record for record, _ in ledger if record["org_id"] == org_id]
        assert verify_chain(org_id, chain).ok
    recorded = Counter(origin.offset for _, origin in ledger if origin is not None)
    recorded.update(
        o.offset for s in topics.rejections if (o := Origin.from_headers(s.headers)) is not None
    )
    for offset, outcome in enumerate(expected):
        wanted = 0 if isinstance(outcome, Duplicate) else 1
        assert recorded[offset] == wanted, (offset, outcome.status)
    # the same events as one uninterrupted run, apart from recorded_at and the hashes
    accepted = [o.event.to_record() for o in expected if isinstance(o, Accepted)]
    assert len(ledger) == len(accepted)
    for (record, _), want in zip(ledger, accepted, strict=True):
        assert {k: v for k, v in record.items() if k not in VOLATILE} == {
            k: v for k, v in want.items() if k not in VOLATILE
        }
    # every submission has an answer, and every answer agrees with the uninterrupted run
    answers: dict[str, set[str]] = {}
    for outcome_record in topics.outcomes:
        document = orjson.loads(outcome_record.value)
        assert outcome_record.key == document["submission_id"].encode()
        answers.setdefault(document["submission_id"], set()).add(document["status"])
    assert answers == {f"s{offset}": {o.status} for offset, o in enumerate(expected)}


def test_without_a_crash_the_core_matches_the_embedded_sequencer() -> None:
    raws = submissions()
    topics = Topics()
    topics.run(intake_of(raws), batch_size=16)
    assert_recorded_exactly_once(topics, raws)
    statuses = Counter(o.status for o in reference(raws))
    assert statuses["duplicate"] >= 7
    assert statuses["rejected"] >= 3
    assert "unknown_reference" in {o.reason for o in reference(raws) if isinstance(o, Rejection)}
    assert len(topics.outcomes) == len(raws)


@pytest.mark.parametrize("batch_size", [5, 64])
def test_a_crash_at_every_write_loses_and_duplicates_nothing(batch_size: int) -> None:
    raws = submissions()
    intake = intake_of(raws)
    clean = Topics()
    clean.run(intake, batch_size)
    writes = len(clean.ledger) + len(clean.rejections) + len(clean.outcomes)
    for crash_at in range(writes):
        topics = Topics(budget=crash_at)
        with pytest.raises(CrashError):
            topics.run(intake, batch_size)
        topics.budget = None
        topics.run(intake, batch_size, now_step=1)  # restarted, a second later
        assert_recorded_exactly_once(topics, raws)


@pytest.mark.parametrize("batch_size", [5, 64])
def test_a_crash_at_every_write_with_a_state_file_loses_and_duplicates_nothing(
    batch_size: int, tmp_path: Path
) -> None:
    """The worker's state files: a restart reads the state from the file and only what the
    topics hold after it, also after a restart that was itself cut short."""
    raws = submissions()
    intake = intake_of(raws)
    clean = Topics()
    clean.run(intake, batch_size)
    writes = len(clean.ledger) + len(clean.rejections) + len(clean.outcomes)
    for crash_at in range(0, writes, 3):
        topics = Topics(budget=crash_at)
        path = tmp_path / f"state-{crash_at}.db"
        with pytest.raises(CrashError):
            topics.run_on_file(intake, batch_size, path)
        topics.budget = crash_at % 7  # the restart is cut short too, early on
        with contextlib.suppress(CrashError):
            topics.run_on_file(intake, batch_size, path, now_step=1)
        topics.budget = None
        topics.run_on_file(intake, batch_size, path, now_step=2)
        assert_recorded_exactly_once(topics, raws)


def test_a_worker_taking_its_partition_back_reads_on_after_another_owners_batches() -> None:
    """A held the partition, B took it over (restored from A's outputs, replayed A's last
    batch and decided on), and A gets it back: A folds only what came after its own writes
    and must neither decide again what either of them wrote nor skip what B left."""
    raws = submissions()
    intake = intake_of(raws)
    topics = Topics()

    def write(core: PartitionSequencer, records: list[IntakeRecord]) -> None:
        with core.deciding(records, NOW) as output:
            topics._write(output)
            ledger_next = len(topics.ledger) if output.events else None
            core.keep(output, ledger_next, len(topics.rejections))

    a = PartitionSequencer.restore(0, 1, topics.ledger, topics.rejections)
    for index in range(0, 40, 10):
        write(a, intake[index : index + 10])
    a_ledger, a_rejections = a.state.ledger_next or 0, len(topics.rejections)
    b = PartitionSequencer.restore(0, 1, topics.ledger, topics.rejections)
    assert b.resume_offset == 30  # A's last batch, replayed
    write(b, intake[30:55])
    a.fold_ledger(s for s in topics.ledger if s.offset >= a_ledger)
    a.fold_rejections(s for s in topics.rejections if s.offset >= a_rejections)
    a.resume()
    assert a.resume_offset == 40  # B's batch started at 30: A wrote up to 40 whole
    assert a.pending_recorded >= 1  # what B decided after 40 is only replayed
    for index in range(40, len(intake), 10):
        write(a, intake[index : index + 10])
    assert_recorded_exactly_once(topics, raws)


def test_repeated_crashes_and_a_stale_writer_are_survived() -> None:
    raws = submissions()
    intake = intake_of(raws)
    chance = random.Random(4)
    topics = Topics()
    for restart in range(40):
        topics.budget = chance.randrange(0, 12)
        with contextlib.suppress(CrashError):
            topics.run(intake, chance.choice([1, 5, 20]), now_step=restart)
        if restart == 20 and topics.ledger:  # a zombie's copy of an old event: an orphan
            topics.ledger.append(
                StoredRecord(
                    len(topics.ledger),
                    topics.ledger[0].value,
                    topics.ledger[0].headers,
                    topics.ledger[0].key,
                )
            )
    topics.budget = None
    topics.run(intake, 10, now_step=99)
    assert_recorded_exactly_once(topics, raws)


def test_a_record_of_another_partitions_org_is_rejected_with_an_explanation() -> None:
    partitions = 3
    acme = org_setup("acme")[0]
    owner = partition_for(org_key("acme"), partitions)
    wrong = (owner + 1) % partitions
    core = PartitionSequencer(wrong, partitions)
    output = core.decide_batch([IntakeRecord(wrong, 0, acme, key=b"acme")], NOW)
    ((rejection, origin),) = output.rejections
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "invalid_record"
    assert f"belongs to intake partition {owner}" in rejection.message
    assert rejection.details[0]["loc"] == "partition"
    assert origin == Origin(wrong, 0, 0)
    assert output.events == []
    right = PartitionSequencer(owner, partitions).decide_batch(
        [IntakeRecord(owner, 0, acme, key=b"acme")], NOW
    )
    assert len(right.events) == 1


def test_records_before_the_resume_point_are_not_decided_again() -> None:
    raws = org_setup("acme")
    topics = Topics()
    topics.run(intake_of(raws), batch_size=2)
    core = PartitionSequencer.restore(0, 1, topics.ledger, topics.rejections)
    assert core.resume_offset == len(raws) - 2 + len(raws) % 2
    replay = core.decide_batch(intake_of(raws), NOW)  # e.g. a consumer that starts too early
    assert replay.events == []
    assert replay.rejections == []
    statuses = {orjson.loads(o.value)["status"] for o in replay.outcomes}
    assert statuses == {"accepted"}


def test_a_restored_sequencer_knows_the_sources_ids_whatever_event_id_a_retry_carries() -> None:
    def check_in(event_id: str, value: int) -> bytes:
        document = orjson.loads(next(check_ins(1, "acme")))
        document |= {"event_id": event_id, "source_event_id": "jira-1"}
        document["data"]["value"] = value
        return orjson.dumps(document)

    first = check_in("0b7e4c2d-9a10-4c1e-9c1a-6f1d4b0e8a57", 12)
    topics = Topics()
    topics.run(intake_of([*org_setup("acme"), first]), batch_size=3)
    retry = check_in("5d1f4b0e-8a57-4c1e-9c1a-0b7e4c2d9a10", 12)
    changed = check_in("6d1f4b0e-8a57-4c1e-9c1a-0b7e4c2d9a10", 13)
    intake = intake_of([*org_setup("acme"), first, retry, changed])
    core = PartitionSequencer.restore(0, 1, topics.ledger, topics.rejections)
    output = core.decide_batch(intake[len(intake) - 2 :], NOW)
    documents = [orjson.loads(o.value) for o in output.outcomes]
    assert [d["status"] for d in documents] == ["duplicate", "rejected"]
    assert documents[0]["event_id"] == "0b7e4c2d-9a10-4c1e-9c1a-6f1d4b0e8a57"
    assert documents[1]["reason_code"] == "conflict"
    assert output.events == []
