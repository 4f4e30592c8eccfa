"""The ledger service: submissions in, outcomes out, on any :class:`EventLog` it can append to.

It folds the log into a :class:`Sequencer` on start, decides a batch of submissions, and
appends the batch's events and rejections in one atomic step. If another writer got there
first (:class:`SequenceConflictError`), it rebuilds its state from the log and decides the
batch again, so concurrent writers never fork a chain.

A rejection by the rules is not checked by the log, so it could rest on a state that another
writer has since moved on (a duplicate taken for an unknown reference). Before such a batch is
stored, the ledger checks that the log's heads are still the ones it decided on, and decides
the batch again if they are not.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import islice

from events.log import ChainHead, EventLog
from events.outcomes import Accepted, Outcome, Rejection
from events.reasons import ReasonCode
from events.sequencer import DEFAULT_POLICY, Policy, Sequencer
from schemas.envelope import LedgerEvent, utc_now
from schemas.errors import LedgerDamagedError, SequenceConflictError

Line = tuple[bytes, int | None]
"""A submission's bytes and, when it came from a file, its line number."""

STATELESS_REASONS = frozenset(
    {
        ReasonCode.INVALID_JSON,
        ReasonCode.TOO_LARGE,
        ReasonCode.SCHEMA_VIOLATION,
        ReasonCode.UNKNOWN_TYPE,
        ReasonCode.CLOCK_SKEW,
        ReasonCode.CONFLICT,  # known event ids only ever grow: a conflict stays a conflict
    }
)
"""Rejections that no later state of the ledger could turn into anything else."""


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
            if any(r.reason not in STATELESS_REASONS for r in rejections) and self._log_moved(
                events
            ):
                self._resync()
                continue
            try:
                self.log.append(events, rejections)
            except SequenceConflictError:
                self._resync()
                continue
            except BaseException:
                self._sequencer = self._rebuild()  # the in-memory state ran ahead of the log
                raise
            return outcomes
        raise SequenceConflictError(
            "another writer kept appending to the same orgs; try again (if no other writer is "
            "running, the ledger may be damaged: run `okr-ledger verify`)"
        )

    def _resync(self) -> None:
        """Rebuild from the log after a conflict. A head the log files under another hash than
        its stored event has is damage, not another writer: appending can never succeed."""
        self._sequencer = self._rebuild()
        orgs = self._sequencer.state.orgs
        for org_id, head in self.log.heads().items():
            org = orgs.get(org_id)
            if (
                org is not None
                and org.last_sequence == head.sequence
                and org.last_hash != head.hash
            ):
                raise LedgerDamagedError(
                    f"the ledger is damaged: org {org_id!r}'s newest event (sequence "
                    f"{head.sequence}) is filed under hash {head.hash!r}, but its stored content "
                    f"has hash {org.last_hash!r}; nothing was appended. Run `okr-ledger verify`"
                )

    def _log_moved(self, batch_events: list[LedgerEvent]) -> bool:
        """Did another writer append since the batch was decided on this ledger's state?"""
        decided_on = {
            org_id: ChainHead(org.last_sequence, org.last_hash)
            for org_id, org in self._sequencer.state.orgs.items()
        }
        for event in reversed(batch_events):  # the heads before the batch's own events
            decided_on[event.org_id] = ChainHead(event.sequence - 1, event.prev_hash)
        return self.log.heads() != {
            org_id: head for org_id, head in decided_on.items() if head.sequence > 0
        }
