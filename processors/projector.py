"""The projector: a batch of ledger events in, rows for every projection table out.

One code path for every runtime: the embedded runner and the Kafka agents both call it. It
does no I/O. Each event that changes an entity yields a new *version* row of it, stamped with
the event's ``sequence`` and ``recorded_at``; so the history rows are a function of the ledger
prefix alone, whatever the batch boundaries, and re-inserting them (after a crash) is harmless:
the store collapses rows with the same key and sequence. The current-state rows (one per
changed key result and objective per batch) are stamped with the event that last changed
each, so their latest version does not depend on the batches either.

Every event type of the contract has a handler (one registry: :mod:`schemas.registry`); an
event of a type the contract does not have is an error, never skipped.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from events.collector import collector_paused
from processors import key_results, objectives, owners, periods, strategy
from processors import tables as t
from processors.audit import audit_row
from processors.batch import Batch, Changes
from processors.state import OrgProjection, ProjectorState
from processors.tables import RowBatch
from schemas.errors import ProjectionError, UnknownEventTypeError
from schemas.registry import EVENT_TYPES, dispatch_table, payload_model, upcast

Record = Mapping[str, Any]

_HANDLERS = {**strategy.HANDLERS, **periods.HANDLERS, **objectives.HANDLERS, **key_results.HANDLERS}
HANDLERS = dispatch_table("projector", {**_HANDLERS, **owners.handlers(_HANDLERS)})
"""Event type -> ``handler(batch, org, record, data)``; the batch holds the event's times."""
_HANDLERS_OF = dict(HANDLERS)
_LATEST_OF = dict(EVENT_TYPES)
"""Plain dicts of the two (a lookup per event: a mapping proxy costs more)."""

RECORD_FIELDS = (
    "sequence", "event_id", "org_id", "type", "schema_version", "occurred_at", "recorded_at",
    "actor", "source", "source_event_id", "correlation_id", "causation_id", "data",
    "prev_hash", "hash",
)  # fmt: skip
"""The fields of a ledger event (docs/ledger-format.md), as the projector reads them."""


class LedgerRecord(Protocol):
    """What the projector reads of a ledger event (a :class:`~schemas.LedgerEvent` will do)."""

    @property
    def sequence(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def org_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def occurred_at(self) -> str: ...
    @property
    def recorded_at(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def source_event_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def causation_id(self) -> str | None: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@dataclass(slots=True)
class StoredEvent:
    """A ledger event read as stored, with attributes (the projector itself reads the stored
    records as they are: :meth:`Projector.project_records`)."""

    sequence: int
    event_id: str
    org_id: str
    type: str
    schema_version: int
    occurred_at: str
    recorded_at: str
    actor: str
    source: str
    data: dict[str, Any]
    prev_hash: str
    hash: str
    source_event_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "StoredEvent":
        return cls(**record)


def micros(text: str) -> int:
    """An RFC 3339 timestamp from the ledger as microseconds since 1970-01-01 UTC (one without
    an offset is taken as UTC)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    since = moment - _EPOCH  # exact: integers (a third faster than dividing the timedelta)
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Projector:
    """Holds the state and turns ledger events into rows."""

    def __init__(self, state: ProjectorState | None = None) -> None:
        self.state = state or ProjectorState()
        self._recorded = ("", 0)
        self._changes = Changes()

    def project(self, events: Iterable[LedgerRecord]) -> RowBatch:
        """:meth:`project_records` of events given as objects (:class:`LedgerRecord`)."""
        return self.project_records(
            {name: getattr(event, name) for name in RECORD_FIELDS} for event in events
        )

    def project_records(self, records: Iterable[Record], *, current: bool = True) -> RowBatch:
        """Apply ``records`` (ledger events as stored: dicts; each org's in sequence order)
        and return the rows they produce.

        Events at or below an org's position were applied before and are skipped, so a batch
        delivered twice yields nothing the second time. A gap in an org's sequence is an error
        (the projection would silently miss an event), and so is an event type the contract
        does not have. With ``current`` false, the current-state rows of what changed are left
        for a later call (:meth:`current_rows`): fewer rows when batches are small.
        """
        batch = Batch(self._changes)
        state, touched, audit = self.state, batch.orgs, batch.audit.append
        times = batch.rows[t.EVENT_TIMES].append
        handlers, latest, to_micros, every = _HANDLERS_OF, _LATEST_OF, micros, t.SNAPSHOT_EVERY
        org_id: str | None = None
        org = OrgProjection("")
        last_text, last_micros = self._recorded
        with collector_paused():
            for record in records:
                if record["org_id"] != org_id:
                    org_id = record["org_id"]
                    org = state.orgs.get(org_id) or state.org(org_id)
                sequence = record["sequence"]
                if sequence != org.last_sequence + 1:
                    if sequence <= org.last_sequence:
                        continue  # applied before
                    raise ProjectionError(
                        f"org {org_id!r}: event {sequence} follows {org.last_sequence}; "
                        "the projector needs every event in order"
                    )
                event_type = record["type"]
                handler = handlers.get(event_type)
                if handler is None:
                    raise UnknownEventTypeError(
                        f"org {org_id!r}, event {sequence}: unknown event type {event_type!r}; "
                        "the projector refuses to skip it (is the ledger newer than this code?)"
                    )
                data = record["data"]
                version = record["schema_version"]
                if version != latest[event_type]:
                    payload_model(event_type, version)  # a version the contract lacks raises
                    data = upcast(event_type, version, data)
                batch.occurred = occurred = to_micros(record["occurred_at"])
                recorded_at = record["recorded_at"]
                if recorded_at != last_text:  # the events of one submission share it
                    last_text, last_micros = recorded_at, to_micros(recorded_at)
                batch.stamp = (sequence, last_micros)
                audit(audit_row(record, data, occurred, last_micros))
                times((org_id, sequence, last_micros))
                handler(batch, org, record, data)
                if not sequence % every:
                    batch.snapshot(org, sequence)
                org.last_sequence = sequence
                org.last_recorded_at = last_micros
                touched[org.org_id] = org
        self._recorded = (last_text, last_micros)
        if current:
            for org, objective in batch.changes.objectives:
                objectives.fresh(org, objective)
        return batch.finish(current)

    def drop_changes(self) -> None:
        """Forget the changes not yet emitted as current-state rows (those of a call that
        failed part way: its orgs are read again from the ledger)."""
        self._changes = Changes()

    def current_rows(self) -> RowBatch:
        """The current-state rows of what changed since they were last emitted."""
        return self.project_records((), current=True)
