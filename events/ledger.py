"""The ledger service: submissions in, outcomes out, on any :class:`EventLog` it can append to.

The sequencer's state is the log's own when it keeps one (SQLite: tables in the same file,
updated by every append in the same transaction; see :mod:`events.state_store`), otherwise
a state in memory folded from the log (Kafka: the whole ledger on the first batch, then what
other writers append).

Each batch is decided and stored in one step of the log (:meth:`EventLog.append_decided`):
the log catches the state up with what other writers appended since its last batch, the
sequencer decides the batch on it, and the log stores its events and rejections, all or none.
The submissions are parsed before that step (:func:`~events.sequencer.probe`), so that the
state can read what they name in bulk. A batch whose every submission is a byte-identical
repeat of a stored event (a rerun) stores nothing: the embedded store decides it on the rows
it read before the lock (:meth:`StateStore.repeats`), without a transaction.

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
from operator import itemgetter

from events.collector import collector_paused
from events.log import ChainHead, Decided, EventLog
from events.outcomes import Accepted, Outcome, Oversized, Rejection
from events.sequencer import DEFAULT_POLICY, Policy, Probe, decide_batch, parse_ahead, probe
from events.state_store import MemoryStateStore, StateStore
from schemas.envelope import LedgerEvent, utc_now
from schemas.errors import SequenceConflictError

Line = tuple[bytes, int | None]
"""A submission's bytes and, when it came from a file, its line number."""
ReadLine = tuple[bytes | Oversized, int | None]
"""A :data:`Line` as a bounded reader gives it: a line over the size limit is only measured."""


@dataclass(slots=True)
class _PendingBatch:
    """A batch of submissions and the state it is decided on: the log's :class:`Decider`."""

    store: StateStore
    lines: list[ReadLine]
    probes: list[Probe | None]
    clock: Callable[[], datetime]
    policy: Policy
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def folds(self) -> bool:
        return self.store.folds

    def head(self, org_id: str) -> ChainHead:
        return self.store.head(org_id)

    def fold(self, event: LedgerEvent) -> None:
        self.store.fold(event)

    def decide(self) -> Decided:
        now = self.clock()  # read under the lock: recorded_at follows the order of commits
        state = self.store.view(self.probes)
        self.outcomes = decide_batch(
            state, self.lines, now=now, policy=self.policy, probes=self.probes
        )
        accepted: list[Accepted] = []
        rejected: list[Rejection] = []
        for outcome in self.outcomes:  # one pass (most are accepted, or duplicates)
            if type(outcome) is Accepted:
                accepted.append(outcome)
            elif type(outcome) is Rejection:
                rejected.append(outcome)
        return accepted, rejected


_STEP = 64
"""Lines read at a time into a batch between two looks at its size in bytes."""
_FIRST = itemgetter(0)
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024
"""Bytes of submissions after which a ledger transaction takes no more
(``OKR_SUBMIT_BATCH_BYTES``)."""


def _batches(lines: Iterable[ReadLine], size: int, max_bytes: int) -> Iterator[list[ReadLine]]:
    """``lines`` in lists of ``size``, a list ended early once its submissions' bytes reach
    ``max_bytes`` (looked at every :data:`_STEP` lines, so it holds at most that many more;
    an oversized line counts as nothing: only its length is held)."""
    iterator = iter(lines)
    batch: list[ReadLine] = []
    held = 0
    while more := list(islice(iterator, min(size - len(batch), _STEP))):
        batch += more
        try:
            held += sum(map(len, map(_FIRST, more)))
        except TypeError:  # an Oversized line among them
            held += sum([len(raw) for raw, _ in more if type(raw) is bytes])
        if len(batch) >= size or held >= max_bytes:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


class Ledger:
    def __init__(
        self,
        log: EventLog,
        policy: Policy = DEFAULT_POLICY,
        clock: Callable[[], datetime] = utc_now,
        batch_size: int = 1000,
        retry_for: float = 30.0,
        *,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self.log = log
        self.policy = policy
        self.clock = clock
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.retry_for = retry_for
        self._store: StateStore = log.state_store() or MemoryStateStore()

    def submit(self, raw: bytes) -> Outcome:
        return next(self.submit_many([(raw, None)]))

    def submit_many(self, lines: Iterable[ReadLine]) -> Iterator[Outcome]:
        """Decide and store every submission; yield one outcome each, in order.

        A transaction holds ``batch_size`` submissions, or fewer once they reach
        ``batch_bytes`` together (see :func:`_batches`): what a batch holds is bounded."""
        for outcomes in self.submit_batches(lines):
            yield from outcomes

    def submit_batches(self, lines: Iterable[ReadLine]) -> Iterator[list[Outcome]]:
        """:meth:`submit_many`, one list of outcomes per stored batch (a caller that converts
        every outcome maps a list, without a generator step per submission)."""
        for batch in _batches(lines, self.batch_size, self.batch_bytes):
            yield self._submit_batch(batch)

    def _submit_batch(self, lines: list[ReadLine]) -> list[Outcome]:
        with collector_paused():
            probes = [probe(raw, self.policy) for raw, _ in lines]
            self._store.prepare(probes)  # outside the lock: other writers need not wait for it
            repeated = self._store.repeats(probes)
            if repeated is not None:  # byte-identical repeats of stored events: nothing to store
                return repeated
            # What depends only on the lines, before the lock: it is held only for the rest.
            parse_ahead(lines, probes, self.policy, self._store.read_ahead())
            return self._append_batch(lines, probes)

    def _append_batch(self, lines: list[ReadLine], probes: list[Probe | None]) -> list[Outcome]:
        deadline = time.monotonic() + self.retry_for
        pause = 0.01
        while True:
            batch = _PendingBatch(self._store, lines, probes, self.clock, self.policy)
            try:
                self._store.advance(self.log.append_decided(batch, self._store.mark()))
                return batch.outcomes
            except SequenceConflictError:
                self._store.forget()
                if time.monotonic() + pause > deadline:
                    raise SequenceConflictError(
                        f"another writer kept appending to the same orgs for "
                        f"{self.retry_for:.0f}s; try again"
                    ) from None
            except BaseException:
                self._store.forget()  # it may have run ahead of the log
                raise
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 1.0)
