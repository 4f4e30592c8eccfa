"""The sequencer agent: the intake partitions this worker owns -> ledger, rejections, outcomes.

Its partitions come from the consumer group (:mod:`processors.faust_app`). For each one it owns:

- **On assignment** (:meth:`SequencerAgent.assign`, inside the consumer's seek barrier) it
  *fences* the partition, creating its writer with the transactional id
  ``<app id>-seq-<p>`` (every earlier owner's writes are refused by the broker from then on),
  and only then *restores* its state: it folds the ledger partition (chain rule) and the
  rejections it has not seen into the sequencer's state and finds where to resume
  (:meth:`processors.kafka_sequencer.PartitionSequencer.resume`). A partition the worker held
  before the rebalance, with every write of it whole, keeps its state and folds only what
  came after; any other starts from nothing.
- **Then** it decides the partition's batches one at a time, in offset order, and writes each
  in one transaction through the event log's partition writer
  (:class:`events.kafka_log.LedgerWriter`): rejections, events, outcomes.

Batches of different partitions run concurrently, never two of one partition. Nothing is
committed: the outputs are the record of progress. A batch that starts after the offset the
partition needs (records fetched before a seek) is dropped and the partition sought back, once;
if the same gap comes back, the log has nothing in it (a transaction marker, retention).

A write refused because another worker owns the partition now stops the partition until the
rebalance that moves it; any other failure of a write (the state may be ahead of the ledger)
restores the partition from nothing and reads on from where the ledger says.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from events.kafka_client import Connection, OutRecord, Reader
from events.kafka_log import KafkaEventLog, LedgerWriter
from processors.faust_batches import Unreadable
from processors.kafka_config import WorkerConfig
from processors.kafka_sequencer import IntakeRecord, PartitionSequencer, StoredRecord
from processors.worker_metrics import WorkerMetrics
from schemas.envelope import utc_now
from schemas.errors import LedgerUnavailableError, SequenceConflictError, WriterFencedError

log = logging.getLogger(__name__)

Seek = Callable[[int, int], Awaitable[None]]
"""Seek intake ``partition`` to ``offset`` on the group consumer."""

LANE_DEPTH = 2
"""Batches of a partition waiting for their turn (the consumer waits when they are full)."""


@dataclass(slots=True)
class Owned:
    """An intake partition this worker owns: its sequencer and its fenced writer."""

    partition: int
    sequencer: PartitionSequencer
    writer: LedgerWriter
    rejections_next: int
    """Every rejections-topic record before this offset is folded."""
    intact: bool = True
    """False once a write failed or was cut short: the state may be ahead of the ledger."""


class Verdict(Enum):
    WRITTEN = "written"
    RESTORE = "restore"
    FENCED = "fenced"


@dataclass(slots=True)
class Lane:
    """The batches of one intake partition, decided and written one at a time."""

    partition: int
    queue: "asyncio.Queue[list[Any]]" = field(default_factory=lambda: asyncio.Queue(LANE_DEPTH))
    owned: Owned | None = None
    generation: int | None = None
    """The group generation whose batches it takes; ``None``: none (revoked, restoring)."""
    expected: int = 0
    """The next intake offset the partition needs."""
    gap: tuple[int, int] | None = None
    """A gap seen once (expected, first offset delivered): if it comes again, it is real."""
    task: "asyncio.Task[None] | None" = None


class SequencerAgent:
    """See the module docstring."""

    def __init__(
        self, config: WorkerConfig, log_: KafkaEventLog, seek: Seek, metrics: WorkerMetrics
    ) -> None:
        self.config = config
        self.log = log_
        self._seek = seek
        self.metrics = metrics
        self._threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="okr-sequencer")
        self._lanes: dict[int, Lane] = {}
        self._epoch = 0
        """Moves at every revocation and assignment: a seek decided before must not land."""
        self.decided = 0
        self.restoring = False

    # -- assignment ------------------------------------------------------------------------

    async def assign(self, partitions: set[int], generation: int) -> dict[int, int]:
        """Fence and restore every partition of a new assignment; where to read each from."""
        self._epoch += 1
        self.restoring = True
        try:
            for partition in set(self._lanes) - partitions:
                await self._drop(partition)
            offsets = await asyncio.gather(*(self._acquire(p, generation) for p in partitions))
        finally:
            self.restoring = False
        self.metrics.assigned(self.config.topics.intake, len(partitions))
        log.info("sequencing %s partitions %s", self.config.topics.intake, sorted(partitions))
        return dict(zip(partitions, offsets, strict=True))

    def revoke(self, partitions: set[int]) -> None:
        """Take no more batches of ``partitions``; a batch being written finishes (or is
        refused by the broker once the next owner fences it)."""
        self._epoch += 1
        for partition in partitions:
            lane = self._lanes.get(partition)
            if lane is not None:
                lane.generation = None
                _clear(lane.queue)

    async def _acquire(self, partition: int, generation: int) -> int:
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = Lane(partition)
            lane.task = asyncio.create_task(self._run(lane), name=f"okr-sequencer-{partition}")
        lane.generation = None
        _clear(lane.queue)
        await lane.queue.join()  # the batch being written, if any
        held = lane.owned if lane.owned is not None and lane.owned.intact else None
        loop = asyncio.get_running_loop()
        lane.owned, resume = await loop.run_in_executor(
            self._threads, self._restore, partition, held
        )
        lane.expected, lane.gap, lane.generation = resume, None, generation
        return resume

    async def _drop(self, partition: int) -> None:
        lane = self._lanes.pop(partition)
        lane.generation = None
        _clear(lane.queue)
        await lane.queue.join()
        if lane.task is not None:
            lane.task.cancel()
        if lane.owned is not None:
            lane.owned.writer.close()

    def _restore(self, partition: int, held: Owned | None) -> tuple[Owned, int]:
        """Fence, then fold what the ledger and the rejections hold beyond ``held`` (or all
        of it); the partition's state and the intake offset to read from (blocking)."""
        started = time.monotonic()
        c = self.config
        transactional_id = c.transactional_id(partition) if c.transactions else None
        writer = self.log.partition_writer(partition, transactional_id)  # fences
        if held is not None:
            held.writer.close()
            sequencer = held.sequencer
            ledger_from: int | None = held.writer.positions[partition]
            rejections_from: int | None = held.rejections_next
        else:
            sequencer = PartitionSequencer(partition, self.log.partition_count, c.policy)
            ledger_from = rejections_from = None
        reader = Reader(Connection(c.servers, "okr-sequencer-restore", c.timeout_s))
        folded = 0
        try:

            def ledger() -> Any:
                nonlocal folded
                for r in reader.read(c.topics.ledger, {partition: ledger_from}):
                    folded += 1
                    yield StoredRecord(r.offset, r.value, r.headers, r.key)

            sequencer.fold_ledger(ledger())
            ledger_next = reader.positions[partition]
            sequencer.fold_rejections(
                StoredRecord(r.offset, r.value, r.headers)
                for r in reader.read(c.topics.rejections, {0: rejections_from})
            )
            rejections_next = reader.positions[0]
            sequencer.resume()
            resume = sequencer.resume_offset
            if resume is None:
                resume = reader.beginnings(c.topics.intake, [partition])[partition]
        except BaseException:
            writer.close()
            raise
        finally:
            reader.close()
        writer.resume(partition, ledger_next, sequencer.heads())
        seconds = time.monotonic() - started
        self.metrics.restored(partition, seconds=seconds, events=folded)
        log.info(
            "partition %s: %s in %.2fs (%s ledger records read), resuming at %s "
            "(%s records there already recorded)",
            partition,
            "caught up" if held is not None else "restored",
            seconds,
            folded,
            resume,
            sequencer.pending_recorded,
        )
        return Owned(partition, sequencer, writer, rejections_next), resume

    # -- batches ---------------------------------------------------------------------------

    async def handle(self, partition: int, records: list[Any], generation: int) -> None:
        """Records of intake ``partition`` as fetched (aiokafka records, or
        :class:`~processors.faust_batches.Unreadable`), queued for the partition's lane."""
        lane = self._lanes.get(partition)
        size = self.config.sequencer_batch_size
        for start in range(0, len(records), size):
            if lane is None or lane.generation != generation:
                return
            await lane.queue.put(records[start : start + size])

    async def settle(self) -> dict[int, int]:
        """Finish every queued batch; the next intake offset each owned partition needs."""
        for lane in list(self._lanes.values()):
            await lane.queue.join()
        return {p: lane.expected for p, lane in self._lanes.items() if lane.owned is not None}

    async def _run(self, lane: Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            records = await lane.queue.get()
            try:
                owned = lane.owned
                if owned is None or lane.generation is None or not self._contiguous(lane, records):
                    continue
                batch = [intake_record(lane.partition, r) for r in records]
                verdict = await loop.run_in_executor(self._threads, self._sequence, owned, batch)
                lane.expected = max(lane.expected, owned.sequencer.resume_offset or 0)
                if verdict is Verdict.FENCED:
                    log.warning(
                        "partition %s: another worker owns it now; waiting for the rebalance",
                        lane.partition,
                    )
                    self.metrics.fenced(lane.partition)
                    lane.owned, lane.generation = None, None
                    owned.writer.close()
                elif verdict is Verdict.RESTORE and lane.generation is not None:
                    await self._restart(lane)  # otherwise the coming assignment restores it
            finally:
                lane.queue.task_done()

    async def _restart(self, lane: Lane) -> None:
        """Restore a partition from nothing while it stays assigned, and read on from there."""
        generation, lane.generation = lane.generation, None
        epoch = self._epoch
        _clear(lane.queue)
        if lane.owned is not None:
            lane.owned.writer.close()
        loop = asyncio.get_running_loop()
        lane.owned, resume = await loop.run_in_executor(
            self._threads, self._restore, lane.partition, None
        )
        lane.expected, lane.gap = resume, None
        if epoch == self._epoch:  # else a rebalance came: its assignment restores again
            await self._seek_to(lane.partition, resume, epoch)
            lane.generation = generation

    async def _seek_to(self, partition: int, offset: int, epoch: int) -> None:
        """Seek intake ``partition``, unless a rebalance came since ``epoch``."""
        if epoch != self._epoch:
            return
        try:
            await self._seek(partition, offset)
        except Exception as error:  # the partition went away meanwhile: its next owner reads
            log.warning("partition %s: cannot seek to %s (%s)", partition, offset, error)

    def _contiguous(self, lane: Lane, records: list[Any]) -> bool:
        """Whether a batch may be decided: it must not start after the offset the partition
        needs, unless that gap was seen before (see the module docstring)."""
        first = records[0].offset
        if first <= lane.expected:
            return True
        if lane.gap == (lane.expected, first):
            lane.gap = None
            return True
        lane.gap = (lane.expected, first)
        log.info(
            "partition %s: a batch starts at %s, the partition needs %s: reading it again",
            lane.partition,
            first,
            lane.expected,
        )
        _clear(lane.queue)
        seek = self._seek_to(lane.partition, lane.expected, self._epoch)
        asyncio.get_running_loop().create_task(seek)
        return False

    def _sequence(self, owned: Owned, records: list[IntakeRecord]) -> Verdict:
        """Decide a batch and write it (blocking)."""
        started = time.monotonic()
        output = owned.sequencer.decide_batch(records, utc_now())
        if not output.outcomes:
            return Verdict.WRITTEN
        owned.intact = False  # until the batch is written whole
        c = self.config
        try:
            appended = owned.writer.append(
                [(event, (origin.header(),)) for event, origin in output.events],
                [(rejection, (origin.header(),)) for rejection, origin in output.rejections],
                [
                    OutRecord(c.topics.outcomes, o.partition, o.key, o.value)
                    for o in output.outcomes
                ],
            )
        except WriterFencedError:
            return Verdict.FENCED
        except (LedgerUnavailableError, SequenceConflictError) as error:
            log.warning("partition %s: %s; restoring from the ledger", owned.partition, error)
            return Verdict.RESTORE
        if appended.moved:
            log.warning(
                "partition %s: another writer appended to the ledger partition; restoring",
                owned.partition,
            )
            return Verdict.RESTORE
        if appended.rejections:
            owned.rejections_next = max(owned.rejections_next, appended.rejections[-1] + 1)
        owned.intact = not output.restore
        self.decided += len(output.outcomes)
        reasons = Counter(r.reason.value for r, _ in output.rejections)
        self.metrics.sequenced(
            owned.partition,
            events=len(output.events),
            rejections=reasons,
            duplicates=len(output.outcomes)
            - len(output.events)
            - len(output.rejections)
            - output.replayed,
            outcomes=len(output.outcomes),
            seconds=time.monotonic() - started,
        )
        log.debug(
            "partition %s: offsets %s-%s, %s events, %s rejections, %s replayed",
            owned.partition,
            records[0].offset,
            records[-1].offset,
            len(output.events),
            len(output.rejections),
            output.replayed,
        )
        return Verdict.RESTORE if output.restore else Verdict.WRITTEN

    def close(self) -> None:
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
            if lane.owned is not None:
                lane.owned.writer.close()
        self._threads.shutdown(wait=False, cancel_futures=True)


def intake_record(partition: int, message: Any) -> IntakeRecord:
    """An intake record as the sequencer takes it (headers as they are), from an aiokafka
    record, or from an offset that could not be read."""
    if isinstance(message, Unreadable):
        return IntakeRecord(partition, message.offset, b"", unreadable=message.why)
    headers = tuple((str(name), value) for name, value in message.headers or ())
    return IntakeRecord(partition, message.offset, message.value or b"", headers, message.key)


def _clear(queue: "asyncio.Queue[Any]") -> None:
    """Drop what waits in ``queue`` (each counted as done)."""
    while not queue.empty():
        queue.get_nowait()
        queue.task_done()
