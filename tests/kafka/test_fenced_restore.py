"""A worker SIGKILLed in the middle of a Kafka transaction: the survivor's restore is not held up.

The dead worker's transaction stays open on the broker (Tansu never ends an abandoned
transaction by itself, whatever its timeout: only the next producer with the same transactional
id does). A committed read of a partition that transaction wrote (its ledger partition, its
rejections lane, the outcomes it answered on) waits for it; on Tansu a committed read also
waits for transactions *committed after it* on any partition they share with it, which is why
no partition is written by two transactional ids (each intake partition's rejections have a
lane of their own). The survivor fences the dead worker's partitions before it reads them, and
its restore must then finish well within the restore reader's bound (``timeout_s``), with the
cut batch decided again.
"""

import multiprocessing
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from events import kafka_transactions
from events.kafka_client import Connection, OutRecord, Reader
from events.kafka_records import ChainRule, decode_event
from events.kafka_transactions import BatchProducer, transaction_timeout_ms
from processors.kafka_sequencer import IntakeRecord
from processors.sequencer_core import Verdict
from schemas.errors import LedgerUnavailableError, WriterFencedError
from tests.kafka.core_support import (
    TIMEOUT_S,
    Place,
    intake_batches,
    new_topics,
    org_of,
    write_all,
)

pytestmark = pytest.mark.kafka

PROMPT_S = 5.0
"""A restore after a crash must finish within this (a third of the bound)."""


def _die_inside_a_transaction(
    place: Place, data_dir: Path, partition: int, batches: list[list[IntakeRecord]]
) -> None:
    """A worker of ``partition`` that writes whole batches, then is SIGKILLed in the next one
    after its rejections and events are acknowledged, before its outcomes and its commit."""
    core, topics = place.core(data_dir), place.topics
    core.restore(partition)
    write_all(core, partition, batches[:-1])
    send = kafka_transactions.BatchProducer.send

    def send_then_die(self: kafka_transactions.BatchProducer, records: Any) -> list[int]:
        offsets = send(self, records)
        if any(r.topic == topics.ledger for r in records):
            os.kill(os.getpid(), signal.SIGKILL)
        return offsets

    kafka_transactions.BatchProducer.send = send_then_die  # type: ignore[method-assign]
    core.sequence(partition, batches[-1])
    raise AssertionError("not killed")


def _killed_inside_a_transaction(
    place: Place, data_dir: Path, partition: int, batches: list[list[IntakeRecord]]
) -> None:
    child = multiprocessing.get_context("fork").Process(
        target=_die_inside_a_transaction, args=(place, data_dir, partition, batches)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL


def _ledger(kafka: Connection, topic: str, partition: int) -> list[dict[str, Any]]:
    reader = Reader(kafka)
    try:
        rule = ChainRule()
        events = [decode_event(r.value) for r in reader.read(topic, {partition: None})]
        return [e for e in events if rule.admit(e)]
    finally:
        reader.close()


@pytest.fixture
def place(kafka: Connection, kafka_address: str) -> Place:
    return Place(kafka_address, new_topics(kafka), f"test-{uuid.uuid4().hex[:8]}")


def test_the_survivor_restores_promptly_after_a_worker_is_killed_inside_a_transaction(
    kafka: Connection, place: Place, tmp_path: Path
) -> None:
    """The survivor keeps writing its own partition, which shares no partition with the dead
    transaction, so is readable at once; then it takes the dead worker's partition over:
    fence, restore both, well within the bound; the cut batch is decided again and written."""
    topics, address = place.topics, place.address
    dead, alive = 0, 1
    dead_batches, alive_batches = intake_batches(dead, 3), intake_batches(alive, 4)
    survivor = place.core(tmp_path / "survivor")
    try:
        survivor.restore(alive)
        write_all(survivor, alive, alive_batches[:2])
        _killed_inside_a_transaction(place, tmp_path / "dead", dead, dead_batches)
        write_all(survivor, alive, alive_batches[2:])  # while the dead transaction is open
        assert not _readable(address, topics.rejections, dead)  # it holds its lane up
        assert not _readable(address, topics.ledger, dead)
        assert _readable(address, topics.rejections, alive)  # and nothing else
        assert _readable(address, topics.ledger, alive)

        started = time.monotonic()
        survivor.fence([dead, alive])
        restored = survivor.restore_all([dead, alive])
        took = time.monotonic() - started
        assert took < PROMPT_S, f"the restore took {took:.1f}s (bound {TIMEOUT_S:.0f}s)"

        cut = dead_batches[-1]
        assert restored[dead].resume == cut[0].offset  # the cut batch was not answered
        assert survivor.sequence(dead, cut).verdict is Verdict.WRITTEN
        org = org_of(dead)
        accepted = sum(1 for batch in dead_batches for r in batch if r.value != b"{broken")
        chain = [e for e in _ledger(kafka, topics.ledger, dead) if e["org_id"] == org]
        assert [e["sequence"] for e in chain] == list(range(1, accepted + 1))
    finally:
        survivor.close()


def test_a_restore_does_not_wait_for_a_dead_writer_of_another_partition(
    place: Place, tmp_path: Path
) -> None:
    """The dead worker's partition is not fenced yet (it goes to another worker, which has not
    joined): this one restores its own partition, its ledger and its rejections lane, at once,
    while the dead transaction still holds the dead partition's lane up."""
    topics, address = place.topics, place.address
    dead, mine = 0, 1
    survivor = place.core(tmp_path / "survivor")
    try:
        survivor.restore(mine)
        write_all(survivor, mine, intake_batches(mine, 1))
        _killed_inside_a_transaction(place, tmp_path / "dead", dead, intake_batches(dead, 2))
        survivor.drop(mine)  # a rebalance: everything is assigned again

        assert not _readable(address, topics.rejections, dead)  # the dead transaction
        started = time.monotonic()
        survivor.fence([mine])
        restored = survivor.restore_all([mine])
        assert time.monotonic() - started < PROMPT_S
        assert restored[mine].resume == sum(len(batch) for batch in intake_batches(mine, 1))
        assert not _readable(address, topics.rejections, dead)  # still open: not needed
    finally:
        survivor.close()


# -- what ends an abandoned transaction on the test broker -----------------------------------


def _abandoned(
    address: str, transactional_id: str, records: list[OutRecord]
) -> tuple[BatchProducer, object]:
    """A writer whose transaction is left open with ``records`` in it (as a SIGKILL leaves it:
    the producer is never used again); and the transaction, kept from being collected (which
    would abort it)."""
    producer = BatchProducer((address,), transactional_id=transactional_id, timeout_s=2.0)
    transaction = producer.transaction()
    transaction.__enter__()
    producer.send(records)
    return producer, transaction


def _readable(address: str, topic: str, partition: int) -> bool:
    """Whether a committed read of the partition reaches its end (within 2 s)."""
    reader = Reader(Connection((address,), "okr-tests", 2.0))
    try:
        list(reader.read(topic, {partition: None}))
        return True
    except LedgerUnavailableError:
        return False
    finally:
        reader.close()


def test_the_writers_transactions_time_out_within_the_readers_bound() -> None:
    """On a real Kafka, a transaction nobody fences is aborted before a committed read that
    waits for it gives up (the readers' bound is the same ``timeout_s``)."""
    for timeout_s in (2.0, 15.0, 30.0, 90.0):
        assert transaction_timeout_ms(timeout_s) < timeout_s * 1000
    assert transaction_timeout_ms(0.5) == 1000  # librdkafka's minimum


def test_on_tansu_only_the_fence_ends_an_abandoned_transaction(
    kafka: Connection, kafka_address: str
) -> None:
    """Tansu 0.6 keeps an abandoned transaction open past its timeout (1 s here, waited 3 s):
    the only thing that ends it is the next producer with the same transactional id."""
    topics = new_topics(kafka)
    transactional_id = f"test-{uuid.uuid4().hex[:8]}"
    producer, _open = _abandoned(
        kafka_address, transactional_id, [OutRecord(topics.rejections, 0, None, b"r")]
    )
    assert transaction_timeout_ms(2.0) == 1000
    time.sleep(3)
    assert not _readable(kafka_address, topics.rejections, 0)
    BatchProducer((kafka_address,), transactional_id=transactional_id, timeout_s=2.0).close()
    assert _readable(kafka_address, topics.rejections, 0)
    producer.close()


def test_a_read_held_by_an_open_transaction_says_where_it_stands(
    kafka: Connection, kafka_address: str
) -> None:
    """The error of a committed read that an open transaction holds up names each partition's
    position and end, so that an operator sees it waits (not that nothing is there)."""
    topics = new_topics(kafka)
    producer, _open = _abandoned(
        kafka_address,
        f"test-{uuid.uuid4().hex[:8]}",
        [OutRecord(topics.rejections, 0, None, b"r")],
    )
    reader = Reader(Connection((kafka_address,), "okr-tests", 2.0))
    try:
        with pytest.raises(LedgerUnavailableError, match=r"partitions 0 at 0 of 1: a committed"):
            list(reader.read(topics.rejections, {0: None}))
    finally:
        reader.close()
        producer.close()


def test_on_tansu_a_fenced_transaction_ends_only_once_no_transaction_sharing_a_partition_is_open(
    kafka: Connection, kafka_address: str
) -> None:
    """A dead writer's transaction (ledger partition 0, rejections, outcomes 1) is fenced, but
    another transaction left open on outcomes partition 1 (a writer nobody fences) keeps it
    from ending: the ledger partition and the rejections stay unreadable. That is why no
    partition is written by two transactional ids (a worker's last transaction could stay
    unfinished behind another worker's), and why a writer whose transactional id nobody takes
    over (``KafkaEventLog.append``'s) must not die inside a transaction."""
    topics = new_topics(kafka)
    dead_id, other_id = (f"test-{uuid.uuid4().hex[:8]}" for _ in range(2))
    dead, _dead_open = _abandoned(
        kafka_address,
        dead_id,
        [
            OutRecord(topics.ledger, 0, None, b"e"),
            OutRecord(topics.rejections, 0, None, b"r"),
            OutRecord(topics.outcomes, 1, None, b"o"),
        ],
    )
    other, _other_open = _abandoned(
        kafka_address, other_id, [OutRecord(topics.outcomes, 1, None, b"o")]
    )
    BatchProducer((kafka_address,), transactional_id=dead_id, timeout_s=2.0).close()  # fenced
    assert not _readable(kafka_address, topics.ledger, 0)
    assert not _readable(kafka_address, topics.rejections, 0)
    BatchProducer((kafka_address,), transactional_id=other_id, timeout_s=2.0).close()
    assert _readable(kafka_address, topics.ledger, 0)
    assert _readable(kafka_address, topics.rejections, 0)
    dead.close()
    other.close()


# -- a fenced writer is told so ------------------------------------------------------------


def test_a_fenced_writer_is_told_so_by_its_next_batch(place: Place) -> None:
    """The refusal of a fenced producer's first write comes while flush() runs the delivery
    callbacks: it is a :class:`WriterFencedError` (it was a ``SystemError`` from inside
    confluent-kafka, which stopped the worker), and so is every later one."""
    topic, transactional_id = place.topics.rejections, f"test-{uuid.uuid4().hex[:8]}"
    old = BatchProducer((place.address,), transactional_id=transactional_id, timeout_s=5.0)
    with old.transaction():
        old.send([OutRecord(topic, 0, None, b"before")])
    new = BatchProducer((place.address,), transactional_id=transactional_id, timeout_s=5.0)
    for _ in range(3):
        with pytest.raises(WriterFencedError), old.transaction():
            old.send([OutRecord(topic, 0, None, b"after")])
    old.close()
    new.close()


def test_the_last_step_is_sent_by_the_commit_and_refused_with_it_once_fenced(
    place: Place,
) -> None:
    """``send_last`` (the outcomes: no offsets needed) queues without a delivery report and
    without waiting: the commit waits for its records, so they are readable once it returns;
    a fenced writer's ``send_last`` fails its transaction as a :class:`WriterFencedError`
    (never a silent success), and an idempotent writer sends and waits as ``send`` does."""
    topic, transactional_id = place.topics.outcomes, f"test-{uuid.uuid4().hex[:8]}"
    reader = Reader(Connection((place.address,), "okr-tests", 5.0))
    start = reader.ends(topic, [0])[0]
    writer = BatchProducer((place.address,), transactional_id=transactional_id, timeout_s=5.0)
    with writer.transaction():
        writer.send([OutRecord(topic, 0, None, b"acknowledged")])
        writer.send_last([OutRecord(topic, 0, b"k", b"last %d" % i) for i in range(500)])
    values = [r.value for r in reader.read(topic, {0: start})]
    assert values[0] == b"acknowledged"
    assert values[1:] == [b"last %d" % i for i in range(500)]
    taker = BatchProducer((place.address,), transactional_id=transactional_id, timeout_s=5.0)
    with pytest.raises(WriterFencedError), writer.transaction():
        writer.send_last([OutRecord(topic, 0, None, b"fenced")])
    plain = BatchProducer((place.address,), timeout_s=5.0)
    plain.send_last([OutRecord(topic, 0, None, b"idempotent")])
    values = [r.value for r in reader.read(topic, {0: start})]
    assert b"fenced" not in values
    assert values[-1] == b"idempotent"
    for producer in (writer, taker, plain):
        producer.close()
    reader.close()


def test_a_last_step_that_cannot_be_delivered_fails_its_transaction_and_not_the_next(
    place: Place,
) -> None:
    """An ordinary delivery failure in ``send_last`` (no delivery report of its own: only the
    commit sees it) fails the transaction with :class:`LedgerUnavailableError`, not a silent
    success: a record for a partition the topic does not have, and one over the producer's
    size limit (refused when queued). The writer's next transaction commits as usual."""
    topic, transactional_id = place.topics.outcomes, f"test-{uuid.uuid4().hex[:8]}"
    reader = Reader(Connection((place.address,), "okr-tests", 5.0))
    start = reader.ends(topic, [0])[0]
    writer = BatchProducer((place.address,), transactional_id=transactional_id, timeout_s=5.0)
    with pytest.raises(LedgerUnavailableError), writer.transaction():
        writer.send_last([OutRecord(topic, 0, None, b"before"), OutRecord(topic, 999, None, b"x")])
    with pytest.raises(LedgerUnavailableError, match="produce"), writer.transaction():
        writer.send_last([OutRecord(topic, 0, None, b"y" * (9 * 1024 * 1024))])
    with writer.transaction():
        writer.send_last([OutRecord(topic, 0, None, b"after")])
    values = [r.value for r in reader.read(topic, {0: start})]
    assert values[-1] == b"after"
    assert not any(value.startswith(b"y") for value in values)
    writer.close()
    reader.close()


def test_a_worker_whose_partition_was_taken_over_gets_fenced_not_an_error(
    place: Place, tmp_path: Path
) -> None:
    """A paused worker wakes up and writes its batch: the verdict is FENCED (wait for the
    rebalance), not an error that stops the worker and not a restore that would initialise
    the transactional id again and fence the new owner."""
    partition = 0
    batches = intake_batches(partition, 2)
    paused, owner = place.core(tmp_path / "paused"), place.core(tmp_path / "owner")
    try:
        paused.restore(partition)
        write_all(paused, partition, batches[:1])
        owner.fence([partition])
        owner.restore(partition)
        assert paused.sequence(partition, batches[1]).verdict is Verdict.FENCED
        write_all(owner, partition, batches[1:])  # the owner's writer was not fenced back
    finally:
        paused.close()
        owner.close()
