"""The ledger service: submissions in, outcomes out, on any :class:`EventLog` it can append to.

Each batch is decided and stored in one step of the log (:meth:`EventLog.append_decided`):
the log catches the sequencer up with what other writers appended since its last batch
(only those events: the whole ledger is read once, on the first batch), the sequencer
decides the batch, and the log stores its events and rejections, all or none.

On SQLite that step holds the write lock from the catch-up to the commit, so a batch is
always decided on the ledger as stored: it never conflicts with another writer and is never
decided twice, and every rejection by the rules (an unknown reference, an entity that
already exists) rests on the ledger as it was when the rejection was recorded. Concurrent
writers wait for the lock (up to the log's busy timeout) instead of failing.

Kafka has no lock: a writer that appends between the catch-up and the write makes the step
raise :class:`SequenceConflictError`. The state then ran ahead of the log; it is rebuilt
from the log and the batch decided again, with a growing pause, for up to ``retry_for``
seconds. (In production one sequencer writes each partition, so this does not arise.)
"""

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from events.log import Batch, ChainHead, EventLog, Mark
from events.outcomes import Accepted, Outcome, Oversized, Rejection
from events.sequencer import DEFAULT_POLICY, Policy, Sequencer
from schemas.envelope import GENESIS_HASH, LedgerEvent, utc_now
from schemas.errors import SequenceConflictError

Line = tuple[bytes, int | None]
"""A submission's bytes and, when it came from a file, its line number."""
ReadLine = tuple[bytes | Oversized, int | None]
"""A :data:`Line` as a bounded reader gives it: a line over the size limit is only measured."""


@dataclass(slots=True)
class _PendingBatch:
    """A batch of submissions and the sequencer that decides it: the log's :class:`Decider`."""

    sequencer: Sequencer
    lines: list[ReadLine]
    clock: Callable[[], datetime]
    outcomes: list[Outcome] = field(default_factory=list)

    def head(self, org_id: str) -> ChainHead:
        org = self.sequencer.state.orgs.get(org_id)
        return ChainHead(org.last_sequence, org.last_hash) if org else ChainHead(0, GENESIS_HASH)

    def fold(self, event: LedgerEvent) -> None:
        self.sequencer.fold(event)

    def decide(self) -> Batch:
        now = self.clock()  # read under the lock: recorded_at follows the order of commits
        self.outcomes = [self.sequencer.submit(raw, now=now, line=n) for raw, n in self.lines]
        events = [o.event for o in self.outcomes if isinstance(o, Accepted)]
        return events, [o for o in self.outcomes if isinstance(o, Rejection)]


class Ledger:
    def __init__(
        self,
        log: EventLog,
        policy: Policy = DEFAULT_POLICY,
        clock: Callable[[], datetime] = utc_now,
        batch_size: int = 1000,
        retry_for: float = 30.0,
    ) -> None:
        self.log = log
        self.policy = policy
        self.clock = clock
        self.batch_size = batch_size
        self.retry_for = retry_for
        self._sequencer = Sequencer(policy=policy)
        self._mark: Mark = {}
        """How far the sequencer has folded the log (nothing yet: the first batch reads it)."""

    def submit(self, raw: bytes) -> Outcome:
        return next(self.submit_many([(raw, None)]))

    def submit_many(self, lines: Iterable[ReadLine]) -> Iterator[Outcome]:
        """Decide and store every submission; yield one outcome each, in order."""
        iterator = iter(lines)
        while batch := list(islice(iterator, self.batch_size)):
            yield from self._submit_batch(batch)

    def _submit_batch(self, lines: list[ReadLine]) -> list[Outcome]:
        deadline = time.monotonic() + self.retry_for
        pause = 0.01
        while True:
            batch = _PendingBatch(self._sequencer, lines, self.clock)
            try:
                self._mark = self.log.append_decided(batch, self._mark)
                return batch.outcomes
            except SequenceConflictError:
                self._forget()
                if time.monotonic() + pause > deadline:
                    raise SequenceConflictError(
                        f"another writer kept appending to the same orgs for "
                        f"{self.retry_for:.0f}s; try again"
                    ) from None
            except BaseException:
                self._forget()
                raise
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 1.0)

    def _forget(self) -> None:
        """The state ran ahead of the log (a failed append): read it again from the start."""
        self._sequencer = Sequencer(policy=self.policy)
        self._mark = {}
