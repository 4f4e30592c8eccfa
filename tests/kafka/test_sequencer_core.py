"""The Kafka sequencer's core without a broker: crashes at every write, then a restart."""

import contextlib
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from events.intake_wire import Origin
from events.kafka_client import partition_for
from events.kafka_records import org_key
from events.outcomes import Rejection
from processors.kafka_sequencer import (
    IntakeRecord,
    PartitionSequencer,
    StoredRecord,
)
from tests.builders import NOW, check_ins, org_setup
from tests.kafka.sequencer_support import (
    CrashError,
    Topics,
    assert_recorded_exactly_once,
    intake_of,
    reference,
    submissions,
)


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
