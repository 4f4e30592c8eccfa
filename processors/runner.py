"""The embedded runner: reads the ledger from each org's checkpoint and feeds the projector.

It projects the ledger a batch at a time and hands each batch's rows to the store, which keeps
them (as Arrow) until they are worth inserting: one insert per table once
:data:`DEFAULT_COMMIT_BYTES` are staged, the checkpoints last
(:meth:`~projections.store.ProjectionStore.commit`). The store's work runs in another thread
while the next batch is projected (pyarrow and chDB work outside the GIL). On
start it brings the projector's state to the store's checkpoint: from the saved state when
there is one (:mod:`processors.snapshots`; only what an event needs of it is read), else by
replaying the ledger (the rows of that replay are discarded: they are in the store). It saves
the state after a catch-up, and during a long one every :data:`DEFAULT_SAVE_EVERY` events (at a
commit, while the store inserts), so that the check-ins saved leave memory
(:meth:`processors.snapshots.SqliteSnapshots.save`): what the projector holds does not grow
with the ledger.
"""

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol, TypeVar

from events.collector import collector_paused
from events.log import EventLog
from events.outcomes import Rejection
from processors import tables as t
from processors.backlog import Backlog, read_backlog
from processors.projector import Projector
from processors.rejections import project_rejections
from processors.snapshots import Snapshot, SnapshotStore
from processors.state import OrgProjection
from processors.tables import RowBatch
from schemas.errors import UnusableSnapshotError

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4_000
"""Events projected at a time (their rows are Python objects until staged as Arrow)."""
DEFAULT_COMMIT_BYTES = 16 << 20
"""Commit the staged rows once they take this much (each table's insert has a fixed cost)."""
DEFAULT_REJECTION_BATCH_SIZE = 200
"""Rejections read and projected at a time (each holds at most 64 KiB of submitted bytes)."""
DEFAULT_SNAPSHOT_AFTER = 1
"""Save the state after a catch-up that replayed and projected at least this many events
(saving writes only what changed since the last save)."""
DEFAULT_SAVE_EVERY = 100_000
"""During a catch-up (or a replay), save the state once this many events were projected since
the last save, at the next commit: the check-ins in memory are at most those of the events
since (~6 MiB per 100,000 check-ins) and each key result's last chunk."""
Progress = Callable[[int], None]
"""Told how many more events were projected."""
Item = TypeVar("Item")


class RowSink(Protocol):
    """Where rows go: the projection store."""

    def insert(
        self, rows: RowBatch, owners: Mapping[str, tuple[str, int]] | None = None
    ) -> None: ...

    def stage(self, rows: RowBatch) -> None:
        """Keep rows to insert with the next commit."""
        ...

    def commit(self) -> None:
        """Insert the rows staged, the checkpoints last."""
        ...

    @property
    def staged_bytes(self) -> int: ...

    def positions(self, stream: str = t.LEDGER_STREAM) -> dict[str, int]: ...

    def checkpoints(self) -> dict[str, dict[str, int]]:
        """Every stream's positions (:meth:`positions`), in one read."""
        ...

    def discard_unfinished(
        self,
        checkpoints: dict[str, dict[str, int]] | None = None,
        owners: Mapping[str, tuple[str, int]] | None = None,
    ) -> list[str]:
        """Remove the rows of a batch cut short (beyond its org's checkpoint); the orgs.
        ``checkpoints``: what :meth:`checkpoints` returned, if read already. ``owners``: org
        -> (its partition's owner key, claim): remove an org's rows only while that
        claim is the partition's latest."""
        ...


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a catch-up did."""

    events: int
    rejections: int
    replayed: int
    """Events replayed only to rebuild the projector's state."""


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def rejection_pages(
    log: EventLog, after: int, size: int, upto: int | None = None, *, lane: str
) -> Iterator[list[tuple[int, Rejection]]]:
    """The rejections of the log's ``lane`` after position ``after`` (up to ``upto``), ``size``
    at a time: memory holds one page, whatever the number or size of the rejections. Positions
    increase but may skip (on Kafka: the other lanes' and the commit markers')."""
    while upto is None or after < upto:
        limit = size if upto is None else min(size, upto - after)
        page = log.rejections_after(after, limit, lane=lane)
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
        commit_bytes: int = DEFAULT_COMMIT_BYTES,
        save_every: int = DEFAULT_SAVE_EVERY,
    ) -> None:
        self.log = log
        self.sink = sink
        self.projector = projector or Projector()
        self.batch_size = batch_size
        self.rejection_batch_size = rejection_batch_size
        self.snapshots = snapshots
        self.snapshot_after = snapshot_after
        self.commit_bytes = commit_bytes
        self.save_every = save_every

    def backlog(self) -> Backlog:
        """What the store has not projected yet."""
        return read_backlog(self.log, self.sink)

    def catch_up(self, progress: Progress | None = None, backlog: Backlog | None = None) -> CatchUp:
        """Project what ``backlog`` (read now if not given) says the store lacks."""
        backlog = backlog or self.backlog()
        done = backlog.done
        if backlog.behind and self.sink.discard_unfinished(backlog.checkpoints or None):
            done = self.sink.positions()
        events = replayed = 0
        for org_id in backlog.behind:
            try:
                moved = self._catch_up_org(org_id, done.get(org_id, 0), progress, saved=True)
            except UnusableSnapshotError as error:  # found while loading part of it lazily
                log.warning("the saved state of %r is unusable (%s): replaying", org_id, error)
                self.projector.state.orgs.pop(org_id, None)
                position = self.sink.positions().get(org_id, 0)
                moved = self._catch_up_org(org_id, position, progress, saved=False)
            events += moved[0]
            replayed += moved[1]
        return CatchUp(events, self._catch_up_rejections(backlog.rejections), replayed)

    def _catch_up_org(
        self, org_id: str, position: int, progress: Progress | None, *, saved: bool
    ) -> tuple[int, int]:
        restored = self._restore(org_id, position, saved)
        projected = unsaved = 0
        last_hash = ""
        # Stage (and commit) one batch while projecting the next: the store's work overlaps ours.
        with collector_paused(), ThreadPoolExecutor(max_workers=1) as writer:
            pending: Future[None] | None = None
            try:
                for batch in batched(self._read(org_id, position + 1), self.batch_size):
                    rows = self.projector.project_records(batch, current=False)
                    if pending is not None:
                        pending.result()  # in order: each batch's checkpoint after the last
                    commit = self.sink.staged_bytes >= self.commit_bytes
                    if commit:
                        t.merge(rows, self.projector.current_rows())
                    pending = writer.submit(self._write, rows, commit)
                    projected += len(batch)
                    unsaved += len(batch)
                    last_hash = batch[-1]["hash"]
                    if progress is not None:
                        progress(len(batch))
                    if commit and unsaved >= self.save_every and self.snapshots is not None:
                        # While that commit runs: a state saved ahead of the store's checkpoint
                        # (cut short) is not used, only replayed (``_restore``).
                        self._save(org_id, last_hash)
                        unsaved = 0
            finally:
                if pending is not None:
                    pending.result()
            writer.submit(self._write, self.projector.current_rows(), True).result()
        worth_saving = unsaved and restored + projected >= self.snapshot_after
        if worth_saving:
            self._save(org_id, last_hash)
        return projected, restored

    def _save(self, org_id: str, last_hash: str) -> None:
        """Save the org's state (``last_hash``: the hash of its last event projected)."""
        state = self.projector.state.orgs.get(org_id)
        if self.snapshots is not None and state is not None:
            self.snapshots.save(Snapshot(org_id, state.last_sequence, last_hash, state))

    def _write(self, rows: RowBatch, commit: bool) -> None:
        self.sink.stage(rows)
        if commit:
            self.sink.commit()

    def _read(self, org_id: str, first: int, last: int | None = None) -> Iterator[dict[str, Any]]:
        return self.log.read_records(org_id, first, last)

    def _restore(self, org_id: str, position: int, saved: bool) -> int:
        """Bring the projector's state for ``org_id`` to ``position`` (the store's checkpoint);
        the events replayed to do so."""
        state = self.projector.state
        if state.position(org_id) > position:  # the store lost rows (rebuilt, or a failed insert)
            state.orgs[org_id] = OrgProjection(org_id)
        start = state.position(org_id)
        if start == position:
            return 0
        snapshot = self.snapshots.load(org_id) if saved and self.snapshots is not None else None
        if snapshot is not None and start < snapshot.position <= position:
            at = next(self.log.read_records(org_id, snapshot.position, snapshot.position), None)
            if at is not None and at["hash"] == snapshot.event_hash:  # taken of this ledger
                state.orgs[org_id] = snapshot.state
                start = snapshot.position
        unsaved = 0
        for batch in batched(self._read(org_id, start + 1, position), self.batch_size):
            self.projector.project_records(batch)
            unsaved += len(batch)
            if unsaved >= self.save_every:  # the store has these events: a usable state
                self._save(org_id, batch[-1]["hash"])
                unsaved = 0
        return position - start

    def _catch_up_rejections(self, done: dict[str, int]) -> int:
        """Project each lane's rejections after the store's checkpoint of the lane (``done``),
        one bounded page at a time."""
        projected = 0
        with collector_paused():
            for lane in self.log.rejection_lanes():
                pages = rejection_pages(
                    self.log, done.get(lane, 0), self.rejection_batch_size, lane=lane
                )
                for page in pages:
                    self.sink.insert(project_rejections(page, lane=lane))
                    projected += len(page)
        return projected
