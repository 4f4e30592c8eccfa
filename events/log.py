"""The event-log port: what every ledger backend (SQLite, Kafka) provides."""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from events.chain import ChainReport
from events.outcomes import Accepted, Rejection
from events.stored import StoredBytes
from schemas.envelope import LedgerEvent
from schemas.errors import UnknownNameError

if TYPE_CHECKING:
    from events.state_store import StateStore


@dataclass(frozen=True, slots=True)
class ChainHead:
    """An org's last sequence and hash."""

    sequence: int
    hash: str


NewEvents = Sequence[Accepted | LedgerEvent]
"""Events to append: as the sequencer accepted them (with their canonical bytes), or bare."""

Batch = tuple[Sequence[LedgerEvent], Sequence[Rejection]]
"""What one decided batch stores: its accepted events and its rejections."""

Decided = tuple[NewEvents, Sequence[Rejection]]
"""A :data:`Batch` as a decider gives it: its events may be the sequencer's ``Accepted``
outcomes, which carry the canonical bytes to store."""

Mark = Mapping[int, int]
"""How far a state has read a log: per partition (SQLite has one, 0), the next position to
read. ``{}``: nothing read yet. Only the backend that returned a mark understands it."""


class Decider(Protocol):
    """A state that folds the ledger and decides a batch on it (the ledger's sequencer)."""

    @property
    def folds(self) -> bool:
        """Whether it needs the events other writers appended folded into it (False: it decides
        on the log's own state store, which the log keeps current under its lock; a log that
        keeps one then folds nothing)."""
        ...

    def head(self, org_id: str) -> ChainHead:
        """The org's last event folded so far (sequence 0 and the genesis hash if none)."""
        ...

    def fold(self, event: LedgerEvent) -> None:
        """Fold an event that is in the ledger; each org's come in sequence order."""
        ...

    def decide(self) -> Decided:
        """Decide the pending submissions on the state as folded; what to store."""
        ...


class EventLog(Protocol):
    """An append-only, per-org sequenced log of ledger events, and a log of rejections."""

    def append(self, events: Sequence[LedgerEvent], rejections: Sequence[Rejection] = ()) -> None:
        """Store events and rejections atomically: all or none.

        Each org's events must continue its chain (sequence head + 1, ``prev_hash`` = head's
        hash); otherwise :class:`~schemas.errors.SequenceConflictError` and nothing is stored.
        """
        ...

    def state_store(self) -> "StateStore | None":
        """The sequencer's state this log keeps beside its events, updated in the same
        transaction as every append (SQLite); None if it keeps none (Kafka: the ledger folds
        the log into memory)."""
        ...

    def append_decided(self, decider: Decider, mark: Mark) -> Mark:
        """Catch ``decider`` up with the events appended since ``mark``, let it decide a batch,
        and store the batch as :meth:`append` does. Returns the mark after every event the
        decider now knows (its own batch included).

        SQLite holds its write lock from the last of the catch-up to the commit: the batch is
        decided on the ledger as stored and never conflicts; concurrent writers wait for the
        lock. Kafka cannot lock: a writer that appends between the catch-up and the write makes
        this raise :class:`~schemas.errors.SequenceConflictError`, and the decider's state
        (which holds the batch) must be rebuilt from ``{}``.
        """
        ...

    def read(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[LedgerEvent]:
        """Events of one org (or of all, org by org) in sequence order, as stored."""
        ...

    def read_records(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The same events as plain dicts, parsed from what is stored."""
        ...

    def read_stored(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[StoredBytes]:
        """The same events byte for byte as stored, with what the backend files them under
        (SQLite: its indexed columns; Kafka: the record key, and the offset as location):
        what ``verify`` checks and ``export`` writes.

        Also yields stored events too malformed to parse, which :meth:`read_records` cannot
        give (SQLite: any row; Kafka: any record under the org's key in its partition whose
        value is not a JSON object, where the chain rule reaches it).
        """
        ...

    def verify(self, org_id: str | None = None) -> list[ChainReport]:
        """Every org's chain (or ``org_id``'s) checked on the bytes :meth:`read_stored`
        gives, by the backend's fastest way of reading them: ``verify``'s whole work."""
        ...

    def heads(self) -> dict[str, ChainHead]:
        """Last sequence and hash of every org."""
        ...

    def rejections(self) -> Iterator[Rejection]:
        """Every recorded rejection, oldest first (streamed, not held)."""
        ...

    def rejection_lanes(self) -> list[str]:
        """The names of the rejection log's lanes, each read on its own (SQLite: one, ``""``;
        Kafka: one per partition of the rejections topic, ``"0"``, ``"1"``...)."""
        ...

    def rejections_after(
        self, position: int, limit: int, *, lane: str
    ) -> list[tuple[int, Rejection]]:
        """At most ``limit`` rejections of ``lane`` after ``position``, oldest first, each
        with its position: at least 1, larger for each later one of the lane, and never the
        same in two lanes (SQLite: 1 for the first rejection ever recorded, one more for each
        next; Kafka: :class:`events.kafka_records.RejectionLanes`, which skips the offsets
        that transactions' commit markers take)."""
        ...

    def close(self) -> None: ...


def require_org(log: EventLog, org_id: str, also_known: Iterable[str] = ()) -> None:
    """Raise :class:`~schemas.errors.UnknownNameError` unless the ledger has ``org_id``
    (an org exists once it has an event); suggestions come from its heads and ``also_known``."""
    heads = log.heads()
    if org_id not in heads:
        raise UnknownNameError("org", org_id, [*heads, *also_known])
