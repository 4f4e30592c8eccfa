"""Faust's group consumer, handing over whole per-partition batches of records.

Faust's stream layer delivers one message at a time (a task and a future each, the conductor,
the stream queues, the sensors): measured here at 3-4 % of what a bare aiokafka consumer reads
from the same broker. This subclass of Faust's aiokafka consumer keeps everything Faust is for
(the consumer group, assignment, rebalances, revocation and generation checks, the web server,
the sensors) and replaces only the per-message delivery: each fetch is handed over as one batch
per partition, in offset order (:meth:`Delivery.on_batch`), to the app's agents.

The barrier of an assignment is :meth:`OkrConsumer.perform_seek`: Faust awaits it after
resuming the assigned partitions and before it resumes the flow of records, so the app restores
each new partition's state there and says where each partition is to be read from
(:meth:`Delivery.on_assignment`). Nothing is ever committed: where to read from comes from what
the agents wrote (the ledger, the rejections, the projections), never from the group's offsets.

It overrides internals of faust-streaming 0.15.3 (pinned in pyproject.toml); the test
``tests/kafka/test_faust_internals.py`` fails loudly if any of them changes:
``Consumer._drain_messages``, ``Consumer._wait_next_records``, ``Consumer.perform_seek``,
``Consumer.on_partitions_revoked``, ``Consumer.seek``, ``ThreadDelegateConsumer._seek``,
``AIOKafkaConsumer._new_consumer_thread``, ``AIOKafkaConsumerThread._create_worker_consumer``,
``AIOKafkaConsumerThread.seek`` and ``AIOKafkaConsumerThread._fetch_records``; it calls
aiokafka's ``GroupCoordinator.request_rejoin`` (:meth:`OkrConsumer.rejoin`).

**Seeks run on the consumer thread.** Faust runs aiokafka's consumer in a thread of its own
(the consumer thread, with its own event loop); aiokafka's fetcher is not thread-safe. Faust's
``ThreadDelegateConsumer._seek`` seeks from the app's thread, where a seek deletes the
partition's fetched records while ``Fetcher.fetched_records`` on the consumer thread is handing
them out: a ``KeyError`` at ``del self._records[tp]`` that ended the worker right after an
assignment (robinhood/aiokafka #19). :meth:`OkrConsumer._seek` runs every seek (the barrier's,
the salvage's, the sequencer's) on the consumer thread instead, between two of its fetches;
:meth:`FastFetchThread.seek` refuses any other caller.

**Records taken before a seek are dropped.** The drain takes a fetch's records, then hands
them over. Records of a partition that this generation's barrier has not sought yet (the
agents already have their new assignment, and the fetcher still reads from where the last one
left the partition) are dropped (:attr:`OkrConsumer.sought_at`); so are records taken before a
later seek of their partition (the barrier's, the sequencer's): they were read from where the
partition stood before it (the consumer thread counts each partition's seeks, and a fetch
returns the counts as of when it took its records: :meth:`FastFetchThread.sought_since`).
The partition is read again from where the seek put it. Handed over, such records reached
the projector ahead of the records the seek asked for, and it took those for rows projected
already (:meth:`OkrConsumer.stale`).

**Records that cannot be read.** aiokafka decodes header names as UTF-8, strictly, and a record
batch from its first record on: one record whose header name is not UTF-8 (Java clients allow
it) fails every fetch that reaches it, for every partition fetched with it. The consumer then
lets the agents finish what they hold (:meth:`Delivery.settle`), goes back to where each
partition's agent stands, and reads every partition record by record: an offset that cannot be
read is handed over as :class:`Unreadable` and stepped over, until a record reads again.
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.errors import CorruptRecordException  # type: ignore[import-untyped]
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

log = logging.getLogger(__name__)

UNREADABLE = (UnicodeDecodeError, CorruptRecordException)
"""What aiokafka raises for a record it cannot decode."""
SALVAGE_BATCH = 500
"""Records read one by one per partition after a fetch that could not be decoded."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An offset whose record could not be decoded (what it holds is unknown)."""

    offset: int
    why: str


def records_bytes(records: list[Any]) -> int:
    """Bytes of the keys and values of records as handed over (an :class:`Unreadable` has
    none): what the agents' bounds count."""
    return sum(
        len(r.key or b"") + len(r.value or b"") for r in records if not isinstance(r, Unreadable)
    )


class Delivery(Protocol):
    """Where the consumer hands its batches (the app, which passes them to its agents)."""

    async def on_assignment(self, assigned: set[TP], generation: int) -> Mapping[TP, int]:
        """Restore what the new assignment needs; the offset to read each partition from."""
        ...

    async def on_batch(self, tp: TP, records: list[Any], generation: int) -> None:
        """Records of ``tp`` in offset order (aiokafka records, or :class:`Unreadable`)."""
        ...

    async def settle(self) -> Mapping[TP, int]:
        """Finish every batch handed over; the offset each assigned partition's agent needs
        next."""
        ...

    async def revoked(self, revoked: set[TP]) -> None:
        """A rebalance takes ``revoked`` away: take no more batches of them, and finish (or
        drop) what is under way before the group assigns them again."""
        ...


class Fetched(dict[Any, Any]):
    """What a fetch returned (partition -> records), with the seeks made of each partition when
    it took them (each fetch its own: another fetch, such as the salvage's, cannot change
    them)."""

    def __init__(self, records: Mapping[Any, Any]) -> None:
        super().__init__(records)
        self.taken_after: dict[TP, int] = {}


class FastFetchThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, with the app's fetch wait (Faust fixes it at 1,500 ms) and
    fetch size, reading committed records only (a real Kafka then hides aborted transactions).

    The fetch size bounds what the consumer holds when the agents are behind: aiokafka keeps
    each fetched partition's records until they are taken, and fetches it again only then.
    Faust sets only the bytes per partition, which Tansu ignores; the bytes of the whole
    response (aiokafka's ``fetch_max_bytes``, 50 MiB by default), which Tansu and Kafka both
    honour, are set here too."""

    consumer: "OkrConsumer"
    seeks: dict[TP, int]
    """Per partition, the seeks so far (counted on the consumer thread, where they run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.seeks = {}
        super().__init__(*args, **kwargs)

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # The app's values, as set on its consumer after it made this thread; read by
        # AIOKafkaConsumer.start(), which makes the fetcher.
        consumer._fetch_max_wait_ms = self.consumer.fetch_max_wait_ms
        consumer._fetch_max_bytes = self.consumer.fetch_bytes
        consumer._max_partition_fetch_bytes = self.consumer.fetch_bytes
        consumer._isolation_level = "read_committed"
        return consumer

    def seek(self, partition: TP, offset: int) -> None:
        """Seek on the consumer thread only (see :meth:`OkrConsumer._seek`): anywhere else this
        raises rather than race the thread's fetches."""
        if not self.on_consumer_thread():
            raise RuntimeError(
                f"a seek of {partition} off the consumer thread: aiokafka's fetcher is not "
                "thread-safe (seek through the consumer: OkrConsumer.seek)"
            )
        super().seek(partition, offset)
        key = TP(partition.topic, partition.partition)
        self.seeks[key] = self.seeks.get(key, 0) + 1

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        records = await super()._fetch_records(consumer, active_partitions, timeout, max_records)
        fetched = Fetched(records)
        seeks = self.seeks
        for tp in records:
            key = TP(tp.topic, tp.partition)
            fetched.taken_after[key] = seeks.get(key, 0)
        return fetched

    def sought_since(self, fetched: Any, tp: TP) -> bool:
        """Whether ``tp`` was sought after the fetch that returned ``fetched`` took its
        records: they were read from where it stood before, and the seek says where to read
        from now."""
        taken_after = fetched.taken_after if isinstance(fetched, Fetched) else {}
        return tp in taken_after and self.seeks.get(tp, 0) != taken_after[tp]

    async def request_rejoin(self) -> None:
        """On the consumer thread: have aiokafka's coordinator rejoin the group."""
        self._ensure_consumer()._coordinator.request_rejoin()

    async def seek_on_thread(self, partition: TP, offset: int) -> None:
        """Seek ``partition`` on the consumer thread (awaited from the app's loop)."""
        await self.call_thread(self._seek_here, partition, offset)

    async def _seek_here(self, partition: TP, offset: int) -> None:
        self.seek(partition, offset)

    def on_consumer_thread(self) -> bool:
        """Whether the caller runs on this thread's event loop (where aiokafka's consumer
        lives)."""
        try:
            return asyncio.get_running_loop() is self.thread_loop
        except RuntimeError:  # no running loop: not this thread's
            return False


class OkrConsumer(AIOKafkaConsumer):
    """See the module docstring. ``delivery`` is set by the app that creates it."""

    delivery: Delivery
    fetch_max_wait_ms = 100
    fetch_bytes = 4 << 20
    late_topics: frozenset[str] = frozenset()
    """Topics whose batches are handed over after the others of the same fetch: their
    agent may make the hand-over wait (the sequencer, when its lanes are full), and the
    records of the other topics (the ledger, for the projector) must not wait behind it."""
    _thread: FastFetchThread
    sought_at: dict[TP, int]
    """Per partition, the generation whose barrier has sought it. Until then, what a fetch
    returns of it was read from where the assignment before left it: not handed over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sought_at = {}
        super().__init__(*args, **kwargs)

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return FastFetchThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """The assignment's barrier (see the module docstring)."""
        await super().perform_seek()  # to the group's offsets: none, we never commit
        generation = self.app.consumer_generation_id
        assigned = set(self.assignment())
        offsets = await self.delivery.on_assignment(assigned, generation)
        for tp, offset in offsets.items():
            await self.seek(tp, offset)
            self.sought_at[tp] = generation
        for tp in assigned - set(offsets):  # none: every partition is read from a place
            self.sought_at[tp] = generation

    async def rejoin(self) -> None:
        """Ask the group for a rebalance: every member's partitions are revoked, and assigned
        again through the barrier (:meth:`perform_seek`), under a new generation. The projector
        takes its partitions again this way after its store failed
        (:class:`processors.kafka_projector.Outage`): what was fetched before is dropped by
        the generation, as on any rebalance."""
        await self._thread.call_thread(self._thread.request_rejoin)

    async def _seek(self, partition: TP, offset: int) -> None:
        # Faust's ThreadDelegateConsumer._seek calls the thread's seek right here, on the app's
        # thread, while the consumer thread fetches: aiokafka's Fetcher.seek_to then deletes
        # the partition's fetched records (Fetcher._records) under Fetcher.fetched_records on
        # the other thread (a KeyError there, records skipped) and resolves the thread loop's
        # futures from the wrong thread. Every seek (the barrier's, the salvage's, the
        # sequencer's) goes through Consumer.seek to here: run it on the consumer thread.
        await self._thread.seek_on_thread(partition, offset)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self.delivery.revoked(set(revoked))  # first: no batch of them after
        await super().on_partitions_revoked(revoked)

    async def _wait_next_records(self, timeout: float) -> Any:
        # Faust sleeps a whole second when no partition is active (just after a rebalance);
        # a worker that just took over partitions must not wait that long.
        if self.flow_active and not self._get_active_partitions():
            await asyncio.sleep(0.05)
            return {}, set()
        return await super()._wait_next_records(timeout)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Replaces Faust's per-message loop: one hand-over per partition per fetch."""
        stopping: tuple[type[BaseException], ...] = (
            *self.consumer_stopped_errors,
            asyncio.CancelledError,
        )
        try:
            await self._drain(fetcher)
        except stopping:
            if self.transport.app.should_stop:  # as Faust's own: stopping anyway
                return
            raise

    async def _drain(self, fetcher: Any) -> None:
        fetcher_stopped = fetcher._stopped.is_set
        while not (self.should_stop or fetcher_stopped()):
            try:
                records, active = await self._wait_next_records(0.2)
            except UNREADABLE as error:
                await self._salvage(error)
                continue
            if not records or self.should_stop:
                continue
            generation = self.app.consumer_generation_id
            late = self.late_topics
            for tp, batch in sorted(records.items(), key=lambda item: item[0].topic in late):
                # Faust's own guards (Consumer.getmany): stop at a revocation or a new generation
                if not self.flow_active or self.app.consumer_generation_id != generation:
                    break
                if active is not None and tp not in active:
                    continue
                key = TP(tp.topic, tp.partition)
                if self.stale(key, batch, generation, records):
                    continue
                await self.delivery.on_batch(key, batch, generation)

    def stale(self, tp: TP, batch: list[Any], generation: int, fetched: Any) -> bool:
        """Whether ``batch`` (of ``tp``, in what a fetch returned) was read from where the
        partition stood before a seek: before this generation's barrier sought it (the agents
        have their new assignment already), or before a later seek. Logged, and dropped by the
        caller: the seek has put the partition where it must be read from."""
        if self.sought_at.get(tp) != generation:
            why = "before this assignment's seek"
        elif self._thread.sought_since(fetched, tp):
            why = "before a seek"
        else:
            return False
        log.info(
            "%s partition %s: %d records (offsets %s-%s) fetched %s, dropped",
            tp.topic,
            tp.partition,
            len(batch),
            batch[0].offset,
            batch[-1].offset,
            why,
        )
        return True

    async def _salvage(self, error: Exception) -> None:
        """After a fetch that could not be decoded (see the module docstring)."""
        log.warning("a fetched record cannot be read (%s); reading on record by record", error)
        generation = self.app.consumer_generation_id
        positions = await self.delivery.settle()
        for tp, position in positions.items():
            await self.seek(tp, position)  # the failed fetch may have passed records over
        for tp in positions:
            records: list[Any] = []
            stepped = False
            while len(records) < SALVAGE_BATCH and self.flow_active:
                got = await self._next_record(tp)
                if got is None:
                    break
                if not isinstance(got, Exception):
                    records.append(got)
                    if stepped:
                        break
                    continue
                offset = await self._thread.position(tp)
                if offset is None:
                    break
                records.append(Unreadable(offset, f"{type(got).__name__}: {got}"[:300]))
                await self.seek(tp, offset + 1)
                stepped = True
            # (a partition the barrier has not sought yet: it seeks it after)
            if records and self.app.consumer_generation_id == generation == self.sought_at.get(tp):
                await self.delivery.on_batch(tp, records, generation)

    async def _next_record(self, tp: TP, idle_s: float = 1.0) -> Any:
        """The next record of ``tp``, the error reading it raised, or ``None`` at the end as
        last fetched, or when nothing came for ``idle_s`` (longer than a fetch round)."""
        thread = self._thread
        high = self.highwater(tp)
        position = await thread.position(tp)
        if high is not None and position is not None and position >= high:
            return None
        consumer = thread._ensure_consumer()
        deadline = time.monotonic() + idle_s
        while True:
            try:
                fetched = await thread.call_thread(
                    thread._fetch_records, consumer, {tp}, timeout=0, max_records=1
                )
            except UNREADABLE as error:
                return error
            if messages := fetched.get(tp):
                return messages[0]
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.02)
