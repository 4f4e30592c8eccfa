"""The ledger service: submissions in, outcomes out, on any :class:`EventLog` it can append to.

It folds the log into a :class:`Sequencer` on start, decides a batch of submissions, and
appends the batch's events and rejections in one atomic step. If another writer got there
first (:class:`SequenceConflictError`), it rebuilds its state from the log and decides the
batch again, so concurrent writers never fork a chain.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import islice

from events.log import EventLog
from events.outcomes import Accepted, Outcome, Rejection
from events.sequencer import DEFAULT_POLICY, Policy, Sequencer
from schemas.envelope import LedgerEvent, utc_now
from schemas.errors import SequenceConflictError

Line = tuple[bytes, int | None]
"""A submission's bytes and, when it came from a file, its line number."""


class Ledger:
    def __init__(
        self,
        log: EventLog,
        policy: Policy = DEFAULT_POLICY,
        clock: Callable[[], datetime] = utc_now,
        batch_size: int = 1000,
    ) -> None:
        self.log = log
        self.policy = policy
        self.clock = clock
        self.batch_size = batch_size
        self._sequencer = self._rebuild()

    def _rebuild(self) -> Sequencer:
        return Sequencer.from_ledger(self.log.read(), self.policy)

    def submit(self, raw: bytes) -> Outcome:
        return next(self.submit_many([(raw, None)]))

    def submit_many(self, lines: Iterable[Line]) -> Iterator[Outcome]:
        """Decide and store every submission; yield one outcome each, in order."""
        iterator = iter(lines)
        while batch := list(islice(iterator, self.batch_size)):
            yield from self._submit_batch(batch)

    def _submit_batch(self, batch: list[Line]) -> list[Outcome]:
        for _attempt in range(5):
            now = self.clock()
            outcomes = [self._sequencer.submit(raw, now=now, line=line) for raw, line in batch]
            events: list[LedgerEvent] = [o.event for o in outcomes if isinstance(o, Accepted)]
            rejections = [o for o in outcomes if isinstance(o, Rejection)]
            try:
                self.log.append(events, rejections)
            except SequenceConflictError:
                self._sequencer = self._rebuild()
                continue
            except BaseException:
                self._sequencer = self._rebuild()  # the in-memory state ran ahead of the log
                raise
            return outcomes
        raise SequenceConflictError("another writer kept appending to the same orgs; try again")
