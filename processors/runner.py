"""The embedded runner: reads the ledger from each org's checkpoint and feeds the projector.

It inserts each batch in one go per table (no round trip per event) and records the
checkpoints with the batch. On start it rebuilds the projector's state by replaying the
ledger up to the checkpoint (the rows of that replay are discarded: they are in the store),
from the latest snapshot when there is one.
"""

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from events.log import EventLog
from events.outcomes import Rejection
from processors import tables as t
from processors.projector import (
    LedgerRecord,
    Projector,
    StoredEvent,
    collector_paused,
    project_rejections,
)
from processors.snapshots import Snapshot, SnapshotStore
from processors.state import OrgProjection
from processors.tables import RowBatch

DEFAULT_BATCH_SIZE = 20_000
DEFAULT_REJECTION_BATCH_SIZE = 200
"""Rejections read and projected at a time (each holds at most 64 KiB of submitted bytes)."""
DEFAULT_SNAPSHOT_AFTER = 50_000
"""Save a snapshot after a catch-up that replayed and projected at least this many events."""
Progress = Callable[[int], None]
"""Told how many more events were projected."""


class RowSink(Protocol):
    """Where rows go: the projection store."""

    def insert(self, rows: RowBatch) -> None: ...

    def positions(self, stream: str = t.LEDGER_STREAM) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a catch-up did."""

    events: int
    rejections: int
    replayed: int
    """Events replayed only to rebuild the projector's state."""


def batched(events: Iterable[LedgerRecord], size: int) -> Iterator[list[LedgerRecord]]:
    iterator = iter(events)
    while batch := list(islice(iterator, size)):
        yield batch


def rejection_pages(
    log: EventLog, after: int, size: int, upto: int | None = None
) -> Iterator[list[tuple[int, Rejection]]]:
    """The log's rejections after position ``after`` (up to ``upto``), ``size`` at a time:
    memory holds one page, whatever the number or size of the rejections. Positions increase
    but may skip (on Kafka a transaction's commit marker takes one)."""
    while upto is None or after < upto:
        limit = size if upto is None else min(size, upto - after)
        page = log.rejections_after(after, limit)
        if upto is not None:
            page = [item for item in page if item[0] <= upto]
        if page:
            yield page
            after = page[-1][0]
        if len(page) < limit:
            return


class EmbeddedRunner:
    """Keeps a store caught up with a ledger, in this process."""

    def __init__(
        self,
        log: EventLog,
        sink: RowSink,
        projector: Projector | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        snapshots: SnapshotStore | None = None,
        snapshot_after: int = DEFAULT_SNAPSHOT_AFTER,
        rejection_batch_size: int = DEFAULT_REJECTION_BATCH_SIZE,
    ) -> None:
        self.log = log
        self.sink = sink
        self.projector = projector or Projector()
        self.batch_size = batch_size
        self.rejection_batch_size = rejection_batch_size
        self.snapshots = snapshots
        self.snapshot_after = snapshot_after

    def backlog(self) -> int:
        """Events in the ledger that the store has not projected yet."""
        done = self.sink.positions()
        return sum(
            max(0, head.sequence - done.get(org, 0)) for org, head in self.log.heads().items()
        )

    def catch_up(self, progress: Progress | None = None) -> CatchUp:
        done = self.sink.positions()
        events = replayed = 0
        for org_id, head in self.log.heads().items():
            position = done.get(org_id, 0)
            if position >= head.sequence:
                continue
            restored = self._restore(org_id, position)
            projected = 0
            last_hash = ""
            # Insert one batch while projecting the next: the store's work overlaps ours.
            with collector_paused(), ThreadPoolExecutor(max_workers=1) as inserter:
                pending: Future[None] | None = None
                for batch in batched(self._read(org_id, position + 1), self.batch_size):
                    rows = self.projector.project(batch)
                    if pending is not None:
                        pending.result()  # in order: each batch's checkpoint after the last
                    pending = inserter.submit(self.sink.insert, rows)
                    projected += len(batch)
                    last_hash = batch[-1].hash
                    if progress is not None:
                        progress(len(batch))
                if pending is not None:
                    pending.result()
            if self.snapshots is not None and restored + projected >= self.snapshot_after:
                state = self.projector.state.orgs[org_id]
                self.snapshots.save(Snapshot(org_id, state.last_sequence, last_hash, state))
            events += projected
            replayed += restored
        return CatchUp(events, self._catch_up_rejections(), replayed)

    def _read(self, org_id: str, first: int, last: int | None = None) -> Iterator[LedgerRecord]:
        for record in self.log.read_records(org_id, first, last):
            yield StoredEvent.from_record(record)

    def _restore(self, org_id: str, position: int) -> int:
        """Bring the projector's state for ``org_id`` to ``position`` (the store's checkpoint)."""
        state = self.projector.state
        if state.position(org_id) > position:  # the store lost rows (rebuilt, or a failed insert)
            state.orgs[org_id] = OrgProjection(org_id)
        start = state.position(org_id)
        if start == position:
            return 0
        snapshot = self.snapshots.load(org_id) if self.snapshots is not None else None
        if snapshot is not None and start < snapshot.position <= position:
            at = next(self.log.read_records(org_id, snapshot.position, snapshot.position), None)
            if at is not None and at["hash"] == snapshot.event_hash:  # taken of this ledger
                state.orgs[org_id] = snapshot.state
                start = snapshot.position
        for batch in batched(self._read(org_id, start + 1, position), self.batch_size):
            self.projector.project(batch)
        return position - start

    def _catch_up_rejections(self) -> int:
        """Project the rejections after the store's checkpoint, one bounded page at a time."""
        done = self.sink.positions(t.REJECTION_STREAM).get("", 0)
        projected = 0
        with collector_paused():  # so the store frees each insert's data at once
            for page in rejection_pages(self.log, done, self.rejection_batch_size):
                self.sink.insert(project_rejections(page))
                projected += len(page)
        return projected
