"""The embedded runner: reads the ledger from each org's checkpoint and feeds the projector.

It inserts each batch in one go per table (no round trip per event) and records the
checkpoints with the batch. On start it rebuilds the projector's state by replaying the
ledger up to the checkpoint (the rows of that replay are discarded: they are in the store).
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from events.log import EventLog
from processors import tables as t
from processors.projector import Projector, project_rejections
from processors.state import OrgProjection
from processors.tables import RowBatch
from schemas.envelope import LedgerEvent

DEFAULT_BATCH_SIZE = 20_000
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


def batched(events: Iterable[LedgerEvent], size: int) -> Iterator[list[LedgerEvent]]:
    iterator = iter(events)
    while batch := list(islice(iterator, size)):
        yield batch


class EmbeddedRunner:
    """Keeps a store caught up with a ledger, in this process."""

    def __init__(
        self,
        log: EventLog,
        sink: RowSink,
        projector: Projector | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.log = log
        self.sink = sink
        self.projector = projector or Projector()
        self.batch_size = batch_size

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
            replayed += self._restore(org_id, position)
            for batch in batched(self.log.read(org_id, position + 1), self.batch_size):
                self.sink.insert(self.projector.project(batch))
                events += len(batch)
                if progress is not None:
                    progress(len(batch))
        return CatchUp(events, self._catch_up_rejections(), replayed)

    def _restore(self, org_id: str, position: int) -> int:
        """Bring the projector's state for ``org_id`` to ``position`` (the store's checkpoint)."""
        state = self.projector.state
        if state.position(org_id) > position:  # the store lost rows (rebuilt, or a failed insert)
            state.orgs[org_id] = OrgProjection(org_id)
        start = state.position(org_id)
        if start == position:
            return 0
        for batch in batched(self.log.read(org_id, start + 1, position), self.batch_size):
            self.projector.project(batch)
        return position - start

    def _catch_up_rejections(self) -> int:
        done = self.sink.positions(t.REJECTION_STREAM).get("", 0)
        pending = []
        for number, rejection in enumerate(self.log.rejections(), start=1):
            if number > done:
                pending.append(rejection)
        if pending:
            self.sink.insert(project_rejections(done + 1, pending))
        return len(pending)
