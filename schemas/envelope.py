"""The envelope: what a source submits, and what the ledger records."""

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.types import Count, ExternalRef, Identifier, Name, Timestamp

EVENT_ID_NAMESPACE = UUID("6f1d4b0e-8a57-4c1e-9c1a-0b7e4c2d9a10")
"""Namespace of the UUIDv5 event ids derived from ``source_event_id`` (see ledger-format.md)."""

GENESIS_HASH = "0" * 64
"""``prev_hash`` of every org's first event."""


_NAMESPACE_SHA1 = hashlib.sha1(EVENT_ID_NAMESPACE.bytes, usedforsecurity=False)
"""SHA-1 with the namespace taken in (copied for each name)."""
_VERSION_5 = tuple(bytes(((byte & 0x0F) | 0x50,)) for byte in range(256))
_VARIANT_10 = tuple(bytes(((byte & 0x3F) | 0x80,)) for byte in range(256))
"""UUIDv5 (RFC 9562) over SHA-1's first 16 bytes: byte 6 gets the version nibble 5, byte 8
the variant bits 10 (each byte's replacement, looked up)."""


def derive_event_key(org_id: str, source: str, source_event_id: str) -> bytes:
    """The 16 bytes of :func:`derive_event_id`, without building a ``UUID`` on the way."""
    sha1 = _NAMESPACE_SHA1.copy()
    sha1.update(f"{org_id}\x1f{source}\x1f{source_event_id}".encode())
    digest = sha1.digest()
    return digest[:6] + _VERSION_5[digest[6]] + digest[7:8] + _VARIANT_10[digest[8]] + digest[9:16]


def derive_event_id(org_id: str, source: str, source_event_id: str) -> UUID:
    """The event id of a submission that names only its ``source_event_id``.

    The org is part of the name because the ledger is partitioned by org: two orgs fed by
    one source with overlapping ids must not collide.
    """
    return UUID(bytes=derive_event_key(org_id, source, source_event_id))


def original_check_in_key(org_id: str, source: str, data: Mapping[str, Any]) -> bytes:
    """The 16-byte id of the check-in a ``CheckInCorrected`` / ``CheckInRetracted`` names
    (``data`` at its latest version, as JSON): its ``corrects_event_id`` /
    ``retracts_event_id``, or else the id derived from ``corrects_source_event_id`` /
    ``retracts_source_event_id`` as the correction's own ``source`` submitted it (the id a
    check-in submitted without an ``event_id`` of its own has, :func:`derive_event_id`)."""
    for verb in ("corrects", "retracts"):
        named = data.get(f"{verb}_event_id")
        if named is not None:
            return UUID(str(named)).bytes
        by_source = data.get(f"{verb}_source_event_id")
        if by_source is not None:
            return derive_event_key(org_id, source, by_source)
    raise ValueError("a correction or retraction names no check-in")


def event_id_text(key: bytes) -> str:
    """An event id's 16 bytes as the ledger writes it: ``str(UUID(bytes=key))``."""
    h = key.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 with the offset kept, ``Z`` for UTC, microseconds only when present."""
    text = moment.isoformat()  # timespec "auto": microseconds only when there are any
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
        return UUID(bytes=self.resolved_event_key())

    def resolved_event_key(self) -> bytes:
        """The 16 bytes of :meth:`resolved_event_id`."""
        if self.event_id is not None:
            return self.event_id.bytes
        assert self.source_event_id is not None  # the validator guarantees it
        return derive_event_key(self.org_id, self.source, self.source_event_id)


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
