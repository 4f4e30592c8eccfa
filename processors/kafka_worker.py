"""The Kafka sequencer loop: a plain aiokafka consumer with manual assignment.

No consumer group and no committed offsets: where to resume is derived from the ledger and
rejections topics (:mod:`processors.kafka_sequencer`), so there is no second copy of the
progress that could disagree with the record. One worker per intake partition; a worker
sequences every partition unless ``OKR_SEQUENCER_PARTITIONS`` names some.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import CorruptRecordException  # type: ignore[import-untyped]

from events.kafka_client import Connection, OutRecord, Producer, Reader
from events.kafka_log import servers_from_url
from events.kafka_records import encode_event, encode_rejection, org_key
from events.sequencer import DEFAULT_POLICY, Policy
from okr_ledger.settings import Settings
from processors.kafka_consumer import manual_consumer
from processors.kafka_sequencer import (
    BatchOutput,
    IntakeRecord,
    PartitionSequencer,
    StoredRecord,
)
from processors.metrics import PrometheusMetrics
from schemas.envelope import utc_now
from schemas.errors import ConfigurationError, SequenceConflictError

log = logging.getLogger(__name__)

UNREADABLE = (UnicodeDecodeError, CorruptRecordException)
"""What aiokafka raises for a record it cannot decode (a header name that is not UTF-8, a
corrupt batch). It raises it for every fetch that reaches the record, so it must be stepped
past (:meth:`SequencerWorker._read_past_unreadable`)."""

Hook = Callable[["asyncio.Event"], Coroutine[Any, Any, None]]
"""Another long-running part of the worker (the projector agent), given the stop event."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    servers: tuple[str, ...]
    intake: str = "okr.intake"
    ledger: str = "okr.ledger"
    rejections: str = "okr.rejections"
    outcomes: str = "okr.outcomes"
    batch_size: int = 2000
    partitions: tuple[int, ...] = ()
    """Intake partitions to sequence; empty: all."""
    policy: Policy = DEFAULT_POLICY
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkerConfig":
        url = settings.resolved_ledger_url
        if not url.startswith("kafka://"):
            raise ConfigurationError(f"the worker needs OKR_LEDGER_URL=kafka://..., not {url!r}")
        chosen = settings.sequencer_partitions.replace(" ", "")
        try:
            partitions = tuple(int(p) for p in chosen.split(",")) if chosen else ()
        except ValueError:
            raise ConfigurationError(
                f"OKR_SEQUENCER_PARTITIONS={chosen!r}: expected numbers like 0,1,2"
            ) from None
        return cls(
            servers=servers_from_url(url),
            intake=settings.kafka_topic_intake,
            ledger=settings.kafka_topic_ledger,
            rejections=settings.kafka_topic_rejections,
            outcomes=settings.kafka_topic_outcomes,
            batch_size=settings.sequencer_batch_size,
            partitions=partitions,
            policy=settings.policy,
        )


def restore(
    config: WorkerConfig, partitions: Sequence[int], count: int
) -> dict[int, tuple[PartitionSequencer, int, int]]:
    """Rebuild the sequencers of ``partitions`` from the topics (blocking: run in a thread).

    Returns partition -> (sequencer, next ledger offset, first intake offset to read).
    """
    reader = Reader(Connection(config.servers, "okr-sequencer-restore", config.timeout_s))
    try:
        ledger: dict[int, list[StoredRecord]] = {p: [] for p in partitions}
        for r in reader.read(config.ledger, dict.fromkeys(partitions)):
            ledger[r.partition].append(StoredRecord(r.offset, r.value, r.headers, r.key))
        ends = dict(reader.positions)
        beginnings = reader.beginnings(config.intake, partitions)
        rejections = [
            StoredRecord(r.offset, r.value, r.headers)
            for p in reader.partitions(config.rejections)
            for r in reader.read(config.rejections, {p: None})
        ]
    finally:
        reader.close()
    restored = {}
    for p in partitions:
        sequencer = PartitionSequencer.restore(p, count, ledger[p], rejections, config.policy)
        resume = sequencer.resume_offset
        restored[p] = sequencer, ends.get(p, 0), beginnings[p] if resume is None else resume
    return restored


class SequencerWorker:
    """Reads intake, decides batches, writes rejections, events and outcomes in that order."""

    def __init__(self, config: WorkerConfig, metrics: PrometheusMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or PrometheusMetrics()
        self._sequencers: dict[int, PartitionSequencer] = {}
        self._ledger_next: dict[int, int] = {}
        self._reading: dict[int, int] = {}
        """Each partition's first intake offset not decided yet."""
        self.decided = 0

    async def run(self, stop: asyncio.Event, hooks: Iterable[Hook] = ()) -> None:
        config = self.config
        # kafka-python's idempotent producer: aiokafka's fails InitProducerId on Tansu 0.6
        producer = Producer(Connection(config.servers, "okr-sequencer", config.timeout_s))
        consumer = manual_consumer(config.servers, "okr-sequencer")
        try:
            await consumer.start()
            tasks = [asyncio.create_task(hook(stop)) for hook in hooks]
            for task in tasks:  # a failed part ends the worker (below, gather raises its error)
                task.add_done_callback(lambda done: _stop_on_error(done, stop))
            try:
                await self._loop(consumer, producer, stop)
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                # aiokafka's stop() can raise the CancelledError of its own internal task,
                # which would hide the error that got us here
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer.stop()
        finally:
            producer.close()

    async def _loop(self, consumer: Any, producer: Producer, stop: asyncio.Event) -> None:
        available = sorted(consumer.partitions_for_topic(self.config.intake) or ())
        if not available:
            raise ConfigurationError(f"no topic {self.config.intake}: run `okr-ledger init`")
        mine = list(self.config.partitions) or available
        if unknown := sorted(set(mine) - set(available)):
            raise ConfigurationError(f"{self.config.intake} has no partitions {unknown}")
        count = len(available)
        tps = {p: TopicPartition(self.config.intake, p) for p in mine}
        consumer.assign(list(tps.values()))
        await self._restore(consumer, tps, mine, count)
        self.metrics.assigned(self.config.intake, len(mine))
        log.info("sequencing %s partitions %s", self.config.intake, mine)
        while not stop.is_set():
            try:
                fetched = await consumer.getmany(timeout_ms=100, max_records=self.config.batch_size)
            except UNREADABLE as error:
                log.warning(
                    "%s: a record cannot be read (%s); reading on record by record",
                    self.config.intake,
                    error,
                )
                await self._read_past_unreadable(consumer, producer, tps, count)
                continue
            for tp, messages in fetched.items():
                records = [intake_record(tp.partition, m) for m in messages]
                await self._sequence(consumer, producer, tps, count, records)

    async def _sequence(
        self,
        consumer: Any,
        producer: Producer,
        tps: dict[int, Any],
        count: int,
        records: list[IntakeRecord],
    ) -> None:
        """Decide and write ``records`` of one partition; restore it when that is needed."""
        partition = records[0].partition
        try:
            restore = await self._process(producer, partition, records)
        except SequenceConflictError as error:
            log.warning("partition %s: %s; restoring from the ledger", partition, error)
            restore = True
        if restore:
            await self._restore(consumer, tps, [partition], count)

    async def _read_past_unreadable(
        self, consumer: Any, producer: Producer, tps: dict[int, Any], count: int
    ) -> None:
        """After a fetch that could not be decoded, read every partition record by record.

        aiokafka decodes each header name as UTF-8, strictly, and a record batch from its first
        record on, so one such record fails every fetch that reaches it, and so does every
        later record of its batch. A record that cannot be read is recorded as
        ``invalid_record`` and stepped over, until a record is read again: no offset is passed
        without a recorded outcome. The fetch that failed may have consumed other partitions'
        records without handing them over, so every partition first goes back to the first
        offset not decided yet.
        """
        for partition, tp in tps.items():
            consumer.seek(tp, self._reading[partition])
        for partition, tp in tps.items():
            records: list[IntakeRecord] = []
            stepped = False
            while len(records) < self.config.batch_size:
                got = await _next_record(consumer, tp)
                if got is None:
                    break
                if isinstance(got, IntakeRecord):
                    records.append(got)
                    if stepped:
                        break
                    continue
                offset = await consumer.position(tp)
                why = f"{type(got).__name__}: {got}"[:300]
                records.append(IntakeRecord(partition, offset, b"", unreadable=why))
                consumer.seek(tp, offset + 1)
                stepped = True
            if records:
                await self._sequence(consumer, producer, tps, count, records)

    async def _restore(
        self, consumer: Any, tps: dict[int, Any], partitions: list[int], count: int
    ) -> None:
        started = time.monotonic()
        restored = await asyncio.to_thread(restore, self.config, partitions, count)
        seconds = time.monotonic() - started
        for p, (sequencer, ledger_next, resume) in restored.items():
            self.metrics.restored(p, seconds=seconds, events=ledger_next)
            self._sequencers[p], self._ledger_next[p] = sequencer, ledger_next
            self._reading[p] = resume
            log.info(
                "partition %s: restored, resuming at %s (%s records there already recorded)",
                p,
                sequencer.resume_offset,
                sequencer.pending_recorded,
            )
            consumer.seek(tps[p], resume)  # not seek_to_beginning: it can stall under Faust

    async def _process(
        self, producer: Producer, partition: int, records: list[IntakeRecord]
    ) -> bool:
        """Decide and write a batch; whether the partition must be restored from the topics."""
        sequencer = self._sequencers[partition]
        started = time.monotonic()
        output = sequencer.decide_batch(records, utc_now())
        await self._write(producer, partition, output)
        self.metrics.sequenced(
            partition,
            events=len(output.events),
            rejections=Counter(r.reason.value for r, _ in output.rejections),
            duplicates=len(output.outcomes)
            - len(output.events)
            - len(output.rejections)
            - output.replayed,
            outcomes=len(output.outcomes),
            seconds=time.monotonic() - started,
        )
        log.debug(
            "partition %s: offsets %s-%s, %s events, %s rejections, %s replayed",
            partition,
            records[0].offset,
            records[-1].offset,
            len(output.events),
            len(output.rejections),
            output.replayed,
        )
        self.decided += len(output.outcomes)
        if sequencer.resume_offset is not None:
            self._reading[partition] = sequencer.resume_offset
        return output.restore

    async def _write(self, producer: Producer, partition: int, output: BatchOutput) -> None:
        c = self.config
        rejections = [
            OutRecord(
                c.rejections,
                0,
                org_key(r.org_id) if r.org_id else None,
                encode_rejection(r),
                (o.header(),),
            )
            for r, o in output.rejections
        ]
        await _send_all(producer, rejections)
        events = [
            OutRecord(c.ledger, partition, org_key(e.org_id), encode_event(e), (o.header(),))
            for e, o in output.events
        ]
        offsets = await _send_all(producer, events)
        expected = self._ledger_next[partition]
        if offsets != list(range(expected, expected + len(offsets))):
            raise SequenceConflictError(
                f"another writer appended to ledger partition {partition} "
                f"(expected offsets from {expected}, got {offsets[:1]})"
            )
        self._ledger_next[partition] = expected + len(offsets)
        outcomes = [OutRecord(c.outcomes, o.partition, o.key, o.value) for o in output.outcomes]
        await _send_all(producer, outcomes)


async def _next_record(
    consumer: Any, tp: Any, idle_s: float = 1.0
) -> IntakeRecord | UnicodeDecodeError | CorruptRecordException | None:
    """The next record of ``tp``, the error reading it raised, or ``None`` at the partition's
    end as last fetched, or when nothing came for ``idle_s`` (longer than a fetch round)."""
    high = consumer.highwater(tp)
    if high is not None and await consumer.position(tp) >= high:
        return None
    deadline = time.monotonic() + idle_s
    while True:
        try:
            fetched = await consumer.getmany(tp, timeout_ms=0, max_records=1)
        except UNREADABLE as error:
            return error
        if messages := fetched.get(tp):
            return intake_record(tp.partition, messages[0])
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.02)


def intake_record(partition: int, message: Any) -> IntakeRecord:
    """An aiokafka record of intake as the sequencer takes it (headers as they are)."""
    headers = tuple((str(name), value) for name, value in message.headers or ())
    return IntakeRecord(partition, message.offset, message.value or b"", headers, message.key)


def _stop_on_error(task: "asyncio.Task[None]", stop: asyncio.Event) -> None:
    if not task.cancelled() and task.exception() is not None:
        stop.set()


async def _send_all(producer: Producer, records: list[OutRecord]) -> list[int]:
    """Produce in order and wait for every acknowledgement (in a thread); the offsets."""
    return await asyncio.to_thread(producer.send_all, records) if records else []
