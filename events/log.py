"""The event-log port: what every ledger backend (SQLite, Kafka) provides."""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from events.outcomes import Rejection
from events.stored import StoredBytes
from schemas.envelope import LedgerEvent
from schemas.errors import UnknownNameError


@dataclass(frozen=True, slots=True)
class ChainHead:
    """An org's last sequence and hash."""

    sequence: int
    hash: str


class EventLog(Protocol):
    """An append-only, per-org sequenced log of ledger events, and a log of rejections."""

    def append(self, events: Sequence[LedgerEvent], rejections: Sequence[Rejection] = ()) -> None:
        """Store events and rejections atomically: all or none.

        Each org's events must continue its chain (sequence head + 1, ``prev_hash`` = head's
        hash); otherwise :class:`~schemas.errors.SequenceConflictError` and nothing is stored.
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

    def heads(self) -> dict[str, ChainHead]:
        """Last sequence and hash of every org."""
        ...

    def rejections(self) -> Iterator[Rejection]:
        """Every recorded rejection, oldest first."""
        ...

    def close(self) -> None: ...


def require_org(log: EventLog, org_id: str, also_known: Iterable[str] = ()) -> None:
    """Raise :class:`~schemas.errors.UnknownNameError` unless the ledger has ``org_id``
    (an org exists once it has an event); suggestions come from its heads and ``also_known``."""
    heads = log.heads()
    if org_id not in heads:
        raise UnknownNameError("org", org_id, [*heads, *also_known])
