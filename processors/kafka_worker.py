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

Batches of different partitions run concurrently, never two of one partition. A partition's
lane takes what waits for it when its turn comes: consecutive batches (each one's first offset
right after the previous one's last) up to ``sequencer_batch_size`` records go into one batch,
so one transaction (its fixed round trips to Kafka) covers them, and a lane that waited long
catches up in fewer, larger batches. Nothing is
committed: the outputs are the record of progress. A batch that starts after the offset the
partition needs (records fetched before a seek) is dropped and the partition sought back, once;
if the same gap comes back, the log has nothing in it (a transaction marker, retention).

A write refused because another worker owns the partition now stops the partition until the
rebalance that moves it; any other failure of a write (the state may be ahead of the ledger)
restores the partition from nothing and reads on from where the ledger says.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from processors.faust_batches import Unreadable, records_bytes
from processors.kafka_config import WorkerConfig
from processors.kafka_sequencer import IntakeBatch, IntakeRecord
from processors.metrics import PrometheusMetrics
from processors.sequencer_core import CoreRunner, Restored, Sequenced, Verdict
from schemas.errors import LedgerUnavailableError, WriterFencedError

log = logging.getLogger(__name__)

RESTORE_ATTEMPTS = 3
"""How often an assignment's restore is tried (:meth:`SequencerAgent._restore_all`)."""

Seek = Callable[[int, int], Awaitable[None]]
"""Seek intake ``partition`` to ``offset`` on the group consumer."""


@dataclass(slots=True)
class Lane:
    """The batches of one intake partition, decided and written one at a time."""

    partition: int
    queue: "asyncio.Queue[list[Any]]" = field(default_factory=asyncio.Queue)
    """Unbounded by count: :attr:`queued` bounds it (``sequencer_queue_bytes``)."""
    queued: int = 0
    """Bytes (keys and values) of the batches waiting in :attr:`queue`."""
    room: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever :attr:`queued` goes down: a hand-over waiting for room looks again."""
    owned: bool = False
    """Restored, and not fenced since."""
    generation: int | None = None
    """The group generation whose batches it takes; ``None``: none (revoked, restoring)."""
    expected: int = 0
    """The next intake offset the partition needs."""
    gap: tuple[int, int] | None = None
    """A gap seen once (expected, first offset delivered): if it comes again, it is real."""
    task: "asyncio.Task[None] | None" = None
    cleared: int = 0
    """Moves whenever the batches waiting are dropped (:meth:`clear`)."""

    def clear(self) -> None:
        """Drop the batches waiting (each counted as done)."""
        self.cleared += 1
        _clear(self.queue)
        self.freed(self.queued)

    def freed(self, size: int) -> None:
        """Batches of ``size`` bytes left the queue."""
        self.queued -= size
        self.room.set()

    async def put(self, records: list[Any], limit: int, generation: int) -> bool:
        """Queue ``records`` of ``generation`` once the lane holds less than ``limit`` bytes
        (an empty lane takes a batch of any size); ``False``: dropped, the lane left that
        generation meanwhile."""
        while self.queued >= limit and not self.queue.empty():
            self.room.clear()
            await self.room.wait()
        if self.generation != generation:
            return False
        self.queued += records_bytes(records)
        self.queue.put_nowait(records)
        return True


class SequencerAgent:
    """See the module docstring."""

    def __init__(
        self,
        config: WorkerConfig,
        runner: CoreRunner,
        seek: Seek,
        metrics: PrometheusMetrics,
        crash: Callable[[BaseException], Awaitable[None]],
    ) -> None:
        """``crash``: ends the worker (an error a partition cannot go on after)."""
        self.config = config
        self.runner = runner
        self._seek = seek
        self.metrics = metrics
        self._crash = crash
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
            for partition in partitions:  # no batch of them is being written any more
                await self._idle(partition)
            await self._call("fence", sorted(partitions))
            log.info("fenced %s partitions %s", self.config.topics.intake, sorted(partitions))
            restored = await self._restore_all(sorted(partitions))
        finally:
            self.restoring = False
        for partition, done in restored.items():
            self.metrics.restored(partition, seconds=done.seconds, events=done.folded)
            lane = self._lanes[partition]
            lane.owned, lane.expected, lane.gap = True, done.resume, None
            lane.generation = generation
        self.metrics.assigned(self.config.topics.intake, len(partitions))
        log.info("sequencing %s partitions %s", self.config.topics.intake, sorted(partitions))
        return {partition: done.resume for partition, done in restored.items()}

    async def _restore_all(self, partitions: list[int]) -> dict[int, Restored]:
        """``restore_all``, fenced and tried again when Kafka fails it (at most
        :data:`RESTORE_ATTEMPTS` times): a committed read of a ledger partition once waited
        the whole read timeout on a transaction nothing had ended (a CI run, three workers and
        a paused one), and the worker crashed with partitions that were its own. So is the
        restore of a partition whose write failed (:meth:`_restart`). A fenced writer is not
        tried again: another worker owns the partition."""
        for attempt in range(1, RESTORE_ATTEMPTS + 1):
            try:
                restored: dict[int, Restored] = await self._call("restore_all", partitions)
                return restored
            except LedgerUnavailableError as error:
                if isinstance(error, WriterFencedError) or attempt == RESTORE_ATTEMPTS:
                    raise
                log.warning(
                    "partitions %s: the restore failed (%s); fencing them again (attempt %s of %s)",
                    partitions,
                    error,
                    attempt + 1,
                    RESTORE_ATTEMPTS,
                )
                await self._call("fence", partitions)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def revoke(self, partitions: set[int]) -> None:
        """Take no more batches of ``partitions``, and return once a batch being written has
        ended: this worker rejoins the group (and the next owner, given the partitions,
        fences them) only after that, so a fence never aborts a transaction that its writer
        is committing at the same moment (on Tansu the two ends can leave the transaction
        finished but still holding its partitions' committed reads: docs/ARCHITECTURE.md,
        "One writer per partition"). A worker paused or killed mid-batch is fenced later."""
        self._epoch += 1
        lanes = [lane for p, lane in self._lanes.items() if p in partitions]
        for lane in lanes:
            lane.generation = None
            lane.clear()
        await asyncio.gather(*(lane.queue.join() for lane in lanes))

    async def _idle(self, partition: int) -> None:
        """Until no batch of ``partition`` is queued or being written."""
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = Lane(partition)
            lane.task = asyncio.create_task(self._run(lane), name=f"okr-sequencer-{partition}")
        lane.generation = None
        lane.clear()
        await lane.queue.join()  # the batch being written, if any

    async def _drop(self, partition: int) -> None:
        lane = self._lanes.pop(partition)
        lane.generation = None
        lane.clear()
        await lane.queue.join()
        if lane.task is not None:
            lane.task.cancel()
        await self._call("drop", partition)

    async def _call(self, method: str, *args: Any) -> Any:
        return await self.runner.call(method, *args)

    # -- batches ---------------------------------------------------------------------------

    async def handle(self, partition: int, records: list[Any], generation: int) -> None:
        """Records of intake ``partition`` as fetched (aiokafka records, or
        :class:`~processors.faust_batches.Unreadable`), queued for the partition's lane."""
        lane = self._lanes.get(partition)
        size = self.config.sequencer_batch_size
        if records and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "intake partition %s: offsets %s-%s handed over",
                partition,
                records[0].offset,
                records[-1].offset,
            )
        limit = self.config.sequencer_queue_bytes
        for start in range(0, len(records), size):
            if lane is None or not await lane.put(records[start : start + size], limit, generation):
                return

    async def settle(self) -> dict[int, int]:
        """Finish every queued batch; the next intake offset each owned partition needs."""
        for lane in list(self._lanes.values()):
            await lane.queue.join()
        return {p: lane.expected for p, lane in self._lanes.items() if lane.owned is not None}

    async def _run(self, lane: Lane) -> None:
        try:
            await self._work(lane)
        except Exception as error:  # restarting the worker is always safe; going on is not
            log.exception("partition %s: the sequencer failed; stopping the worker", lane.partition)
            await self._crash(error)

    async def _work(self, lane: Lane) -> None:
        size = self.config.sequencer_batch_size
        while True:
            runs = [await lane.queue.get()]
            taken, cleared = 1, lane.cleared
            took = records_bytes(runs[0])
            while not lane.queue.empty():  # take what waits: one transaction for all of it
                more = lane.queue.get_nowait()
                taken += 1
                took += records_bytes(more)
                last = runs[-1]
                if len(last) + len(more) <= size and more[0].offset == last[-1].offset + 1:
                    runs[-1] = [*last, *more]
                else:
                    runs.append(more)
            lane.freed(took)
            try:
                for records in runs:
                    await self._batch(lane, records)
                    if lane.cleared != cleared:  # dropped, sought back, restored: read anew
                        break
            finally:
                for _ in range(taken):
                    lane.queue.task_done()

    async def _batch(self, lane: Lane, records: list[Any]) -> None:
        """Decide and write one batch of the lane's partition (consecutive records)."""
        if not lane.owned or lane.generation is None:
            return
        if not self._contiguous(lane, records):
            return
        batch = IntakeBatch([intake_record(lane.partition, r) for r in records])
        done: Sequenced = await self._call("sequence", lane.partition, batch)
        if done.resume is not None:
            lane.expected = max(lane.expected, done.resume)
        if done.outcomes:
            self.decided += done.outcomes
            self.metrics.sequenced(
                lane.partition,
                events=done.events,
                rejections=done.rejections,
                duplicates=done.duplicates,
                outcomes=done.outcomes,
                seconds=done.seconds,
            )
            if (oldest := oldest_timestamp(records)) is not None:
                self.metrics.fresh("sequenced", oldest)
        if done.verdict is Verdict.FENCED:
            log.warning(
                "partition %s: another worker owns it now; waiting for the rebalance",
                lane.partition,
            )
            self.metrics.fenced(lane.partition)
            lane.owned, lane.generation = False, None
        elif done.verdict is Verdict.RESTORE and lane.generation is not None:
            await self._restart(lane)  # otherwise the coming assignment restores it

    async def _restart(self, lane: Lane) -> None:
        """Restore a partition from nothing while it stays assigned, and read on from there."""
        generation, lane.generation = lane.generation, None
        epoch = self._epoch
        lane.clear()
        restored = (await self._restore_all([lane.partition]))[lane.partition]
        lane.expected, lane.gap = restored.resume, None
        if epoch == self._epoch:  # else a rebalance came: its assignment restores again
            await self._seek_to(lane.partition, restored.resume, epoch)
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
        lane.clear()
        seek = self._seek_to(lane.partition, lane.expected, self._epoch)
        asyncio.get_running_loop().create_task(seek)
        return False

    def close(self) -> None:
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        self.runner.close()


def intake_record(partition: int, message: Any) -> IntakeRecord:
    """An intake record as the sequencer takes it (headers as they are), from an aiokafka
    record, or from an offset that could not be read."""
    if isinstance(message, Unreadable):
        return IntakeRecord(partition, message.offset, b"", unreadable=message.why)
    headers = message.headers
    if type(headers) is not tuple:  # aiokafka's are a tuple of (str, bytes | None) already
        headers = tuple((str(name), value) for name, value in headers or ())
    return _new_record(
        IntakeRecord, (partition, message.offset, message.value or b"", headers, message.key, None)
    )


def oldest_timestamp(records: list[Any]) -> float | None:
    """The earliest Kafka timestamp of ``records``, in Unix seconds (None if none has one)."""
    stamps = [r.timestamp for r in records if not isinstance(r, Unreadable) and r.timestamp >= 0]
    return min(stamps) / 1000 if stamps else None


_new_record = tuple.__new__
"""Makes an :class:`IntakeRecord` from all its fields without its Python ``__new__`` (one
record per intake record handed over)."""


def _clear(queue: "asyncio.Queue[Any]") -> None:
    """Drop what waits in ``queue`` (each counted as done)."""
    while not queue.empty():
        queue.get_nowait()
        queue.task_done()
