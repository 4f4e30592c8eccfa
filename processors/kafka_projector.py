"""The projector agent: the ledger topic (and the rejections topic) into the projection store.

It reads the ledger partitions this worker owns from their beginning, applies the chain rule
(:class:`events.kafka_records.ChainRule`: orphans are not part of the ledger), and feeds the
same :meth:`processors.projector.Projector.project` as the embedded runner. Events at or below
an org's checkpoint in the store are *replayed*: they rebuild the projector's state and their
rows are discarded (they are in the store). Later events are projected in batches (up to
``batch_size`` records, or what arrived within ``linger_s``) and inserted once per table per
batch, the checkpoints last (:meth:`projections.store.ProjectionStore.insert`).

A crash anywhere loses nothing: the checkpoints only move after the batch's rows are stored,
and a batch projected again yields the same rows (versioned by ``sequence``), which collapse.
The rejections topic has one partition; a rejection's position is its offset + 1 (the same
numbering as the embedded runner reading it from the start), so a re-insert collapses too.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition  # type: ignore[import-untyped]

from events.kafka_client import partition_for
from events.kafka_records import ChainRule, decode_event, org_key, placed, read_rejection
from processors import tables as t
from processors.kafka_consumer import manual_consumer
from processors.metrics import PrometheusMetrics
from processors.projector import Projector, StoredEvent
from processors.rejections import project_rejections
from processors.runner import RowSink
from processors.tables import RowBatch
from schemas.errors import ConfigurationError

log = logging.getLogger(__name__)

REJECTIONS_PARTITION = 0
"""The rejections topic's only partition; the worker owning ledger partition 0 projects it."""


@dataclass(frozen=True, slots=True)
class ProjectorConfig:
    servers: tuple[str, ...]
    ledger: str = "okr.ledger"
    rejections: str = "okr.rejections"
    partitions: tuple[int, ...] = ()
    """Ledger partitions to project; empty: all."""
    batch_size: int = 5000
    linger_s: float = 0.2


@dataclass(slots=True)
class Fetched:
    """Records read since the last flush: ledger values in partition order, rejections."""

    ledger: list[tuple[int, bytes | None, bytes]]
    """(partition, key, value) of ledger records, each partition's in order."""
    rejections: list[tuple[int, bytes]]
    first_at: float
    newest: dict[int, float] = field(default_factory=dict)
    """Per ledger partition, the broker timestamp (epoch seconds) of its last record here."""

    def __len__(self) -> int:
        return len(self.ledger) + len(self.rejections)


class LedgerProjection:
    """The agent's core without transport: records in, rows into the sink (blocking calls)."""

    def __init__(
        self, sink: RowSink, partition_count: int, projector: Projector | None = None
    ) -> None:
        """``partition_count``: of the ledger topic, to tell where each org's records belong."""
        self.sink = sink
        self.partition_count = partition_count
        self.projector = projector or Projector()
        self.rule = ChainRule()
        sink.discard_unfinished()  # the rows of a batch cut short, before it is projected again
        self.checkpoints = sink.positions()
        self.rejections_done = sink.positions(t.REJECTION_STREAM).get("", 0)
        self.projected = self.replayed = 0

    def apply(
        self, ledger: list[tuple[int, bytes | None, bytes]], rejections: list[tuple[int, bytes]]
    ) -> None:
        """Project ``ledger`` records ((partition, key, value), each partition's in order) and
        ``(offset, value)`` rejections; store the rows in one insert per table."""
        replay: list[StoredEvent] = []
        live: list[StoredEvent] = []
        for partition, key, value in ledger:
            record = decode_event(value)
            if not (placed(record, key, partition, self._owner) and self.rule.admit(record)):
                continue  # an orphan (chain rule)
            event = StoredEvent.from_record(record)
            done = self.checkpoints.get(event.org_id, 0)
            (replay if event.sequence <= done else live).append(event)
        if replay:
            self.projector.project(replay)  # state only: those rows are stored already
            self.replayed += len(replay)
        rows = self.projector.project(live) if live else t.empty_batch()
        self.projected += len(live)
        t.merge(rows, self._rejection_rows(rejections))
        if any(rows.values()):
            self.sink.insert(rows)  # the checkpoints last

    def _owner(self, org_id: str) -> int:
        return partition_for(org_key(org_id), self.partition_count)

    def _rejection_rows(self, rejections: list[tuple[int, bytes]]) -> RowBatch:
        pending = [
            (o + 1, read_rejection(v)) for o, v in rejections if o + 1 > self.rejections_done
        ]
        if not pending:
            return {}
        self.rejections_done = pending[-1][0]
        return project_rejections(pending)


class ProjectorAgent:
    """Runs :class:`LedgerProjection` on an aiokafka consumer (manual assignment, no group)."""

    def __init__(
        self,
        config: ProjectorConfig,
        sink: RowSink,
        store_thread: ThreadPoolExecutor,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        """``store_thread``: the one thread that uses ``sink`` (a blocking client)."""
        self.config = config
        self.sink = sink
        self._thread = store_thread
        self.metrics = metrics or PrometheusMetrics()
        self.projection: LedgerProjection | None = None
        self._newest: dict[int, float] = {}
        """Per ledger partition, the broker timestamp (epoch seconds) of the newest record
        projected."""

    async def _blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def run(self, stop: asyncio.Event) -> None:
        c = self.config
        consumer = manual_consumer(c.servers, "okr-projector")
        try:
            await consumer.start()
            available = sorted(consumer.partitions_for_topic(self.config.ledger) or ())
            if not available:
                raise ConfigurationError(f"no topic {self.config.ledger}: run `okr-ledger init`")
            projection = await self._blocking(LedgerProjection, self.sink, len(available))
            self.projection = projection
            await self._assign(consumer, projection, available)
            await self._loop(consumer, projection, stop)
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await consumer.stop()

    async def _assign(
        self, consumer: Any, projection: LedgerProjection, available: list[int]
    ) -> None:
        c = self.config
        mine = list(c.partitions) or available
        ledger = [TopicPartition(c.ledger, p) for p in mine]
        tps = list(ledger)
        if REJECTIONS_PARTITION in mine:
            tps.append(TopicPartition(c.rejections, REJECTIONS_PARTITION))
        consumer.assign(tps)
        beginnings = await consumer.beginning_offsets(ledger)
        for tp in ledger:
            consumer.seek(tp, beginnings[tp])  # from the start: the chain rule needs it all
        if len(tps) > len(ledger):
            consumer.seek(tps[-1], projection.rejections_done)
        self.metrics.assigned(c.ledger, len(mine))
        self.metrics.projecting(mine)
        log.info("projecting %s partitions %s", c.ledger, mine)

    async def _loop(self, consumer: Any, projection: LedgerProjection, stop: asyncio.Event) -> None:
        c = self.config
        pending = Fetched([], [], 0.0)
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=50, max_records=c.batch_size)
            for tp, messages in fetched.items():
                if not pending:
                    pending.first_at = time.monotonic()
                if tp.topic == c.ledger:
                    pending.ledger.extend((m.partition, m.key, m.value or b"") for m in messages)
                    pending.newest[tp.partition] = messages[-1].timestamp / 1000
                else:
                    pending.rejections.extend((m.offset, m.value or b"") for m in messages)
            due = len(pending) >= c.batch_size or (
                time.monotonic() - pending.first_at >= c.linger_s
            )
            if pending and (not fetched or due):
                started = time.monotonic()
                await self._blocking(projection.apply, pending.ledger, pending.rejections)
                self.metrics.projected(
                    events=len(pending.ledger),
                    rejections=len(pending.rejections),
                    seconds=time.monotonic() - started,
                )
                self._newest.update(pending.newest)
                await self._report_lag(consumer)
                log.debug("projected %s records", len(pending))
                pending = Fetched([], [], 0.0)

    async def _report_lag(self, consumer: Any) -> None:
        """Per ledger partition: records fetched up to the broker's high watermark not read
        yet, and the age of the newest record projected."""
        for tp in consumer.assignment():
            if tp.topic != self.config.ledger:
                continue
            high = consumer.highwater(tp)
            if high is None:
                continue
            behind = max(0, high - await consumer.position(tp))
            newest = self._newest.get(tp.partition)
            age = time.time() - newest if newest is not None else 0.0
            self.metrics.projector_lag(tp.partition, events=behind, seconds=age)
