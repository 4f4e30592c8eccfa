"""The envelope: what a source submits, and what the ledger records."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.types import Count, ExternalRef, Identifier, Name, Timestamp

EVENT_ID_NAMESPACE = UUID("6f1d4b0e-8a57-4c1e-9c1a-0b7e4c2d9a10")
"""Namespace of the UUIDv5 event ids derived from ``source_event_id`` (see ledger-format.md)."""

GENESIS_HASH = "0" * 64
"""``prev_hash`` of every org's first event."""


def derive_event_id(org_id: str, source: str, source_event_id: str) -> UUID:
    """The event id of a submission that names only its ``source_event_id``.

    The org is part of the name because the ledger is partitioned by org: two orgs fed by
    one source with overlapping ids must not collide.
    """
    return uuid5(EVENT_ID_NAMESPACE, f"{org_id}\x1f{source}\x1f{source_event_id}")


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 with the offset kept, ``Z`` for UTC, microseconds only when present."""
    timespec = "microseconds" if moment.microsecond else "seconds"
    text = moment.isoformat(timespec=timespec)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def utc_now() -> datetime:
    return datetime.now(UTC)


class Submission(BaseModel):
    """One event as a source submits it. ``data`` is checked against the type's payload model."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: UUID | None = Field(
        default=None,
        description="UUID chosen by the source. May be left out when source_event_id is given; "
        "it is then derived from org_id, source and source_event_id.",
    )
    type: str = Field(
        min_length=1, max_length=64, description="The event type, e.g. CheckInRecorded"
    )
    schema_version: Count | None = Field(
        default=None, ge=1, le=1000, description="Version of the type's data; latest when omitted."
    )
    org_id: Identifier
    occurred_at: Timestamp = Field(description="Business time, RFC 3339 with an offset.")
    actor: Name = Field(description="Who did it: a person or a system account.")
    source: Name = Field(description="The system that submitted it, e.g. jira, crm, cli.")
    source_event_id: ExternalRef | None = None
    correlation_id: ExternalRef | None = None
    causation_id: ExternalRef | None = None
    data: dict[str, Any]

    @model_validator(mode="after")
    def _identified(self) -> "Submission":
        if self.event_id is None and self.source_event_id is None:
            raise ValueError("give event_id, or source_event_id to derive it from")
        return self

    def resolved_event_id(self) -> UUID:
        if self.event_id is not None:
            return self.event_id
        assert self.source_event_id is not None  # the validator guarantees it
        return derive_event_id(self.org_id, self.source, self.source_event_id)


class LedgerEvent(BaseModel):
    """One immutable ledger event: the normalised submission plus its place in the chain.

    Every field is JSON-native so that what is hashed, stored and exported is the same.
    ``hash`` covers every other field (see ``docs/ledger-format.md``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sequence: int = Field(ge=1)
    event_id: str
    org_id: str
    type: str
    schema_version: int
    occurred_at: str
    recorded_at: str
    actor: str
    source: str
    source_event_id: str | None
    correlation_id: str | None
    causation_id: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def occurred(self) -> datetime:
        return datetime.fromisoformat(self.occurred_at)

    @property
    def recorded(self) -> datetime:
        return datetime.fromisoformat(self.recorded_at)

    def to_record(self) -> dict[str, Any]:
        """The event as a plain dict: what is stored and exported."""
        return {name: getattr(self, name) for name in type(self).model_fields}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "LedgerEvent":
        """Rebuild from a stored record without re-validating (storage is verified by hash)."""
        return cls.model_construct(**record)
