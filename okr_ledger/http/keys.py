"""The HTTP API's keys: what a key may do, how it is made and checked, and the store port.

A key is ``okr_<id>_<secret>``: a public 12-hex-digit id (shown by ``keys list``, named by
``keys revoke``) and 256 random bits. Only the SHA-256 of the whole key is stored, and a
presented key is checked by comparing digests in constant time: a key is random and long,
so a fast hash is the right one (there is nothing to guess, unlike a password).

A key carries scopes: ``write`` (submit for its ``source``, to its orgs, its event types or
any) and ``read`` (query its orgs). The store is a port (:class:`KeyStore`) with one adapter
per runtime (:mod:`okr_ledger.http.key_stores`): every server replica reads the same keys.
This module imports nothing of the web framework, so ``okr-ledger keys`` works without it.
"""

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.types import Identifier, Name


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{12}$")]
_TOKEN = re.compile(r"okr_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
MAX_KEY_RECORD_BYTES = 64 * 1024
"""A stored key record longer than this is not one ``keys create`` wrote."""


class KeyRecord(BaseModel):
    """What is stored of a key: never the key itself, only its digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: KeyId
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    scopes: tuple[Scope, ...] = Field(min_length=1, max_length=2)
    source: Name | None = None
    """The ``source`` every submission of a write key must carry."""
    orgs: tuple[Identifier, ...] = Field(min_length=1, max_length=1000)
    types: tuple[Annotated[str, StringConstraints(max_length=64)], ...] | None = Field(
        default=None, max_length=200
    )
    """The event types a write key may send; ``None``: any."""
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def summary(self) -> dict[str, object]:
        """What ``keys list --json`` shows (no digest)."""
        return self.model_dump(mode="json", exclude={"sha256"})


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_key(
    *,
    scopes: tuple[Scope, ...],
    orgs: tuple[str, ...],
    source: str | None = None,
    types: tuple[str, ...] | None = None,
) -> tuple[str, KeyRecord]:
    """A fresh key and its record (validated: unknown scopes, bad org ids... raise)."""
    key_id = secrets.token_hex(6)
    token = f"okr_{key_id}_{secrets.token_urlsafe(32)}"
    record = KeyRecord(
        key_id=key_id,
        sha256=digest(token),
        scopes=scopes,
        source=source,
        orgs=orgs,
        types=types,
        created_at=datetime.now(UTC),
    )
    return token, record


def key_id_of(token: str) -> str | None:
    """The id of a well-formed key; ``None`` for anything else."""
    match = _TOKEN.fullmatch(token)
    return match[1] if match else None


class KeyStore(Protocol):
    """Where every replica reads the keys."""

    def add(self, record: KeyRecord) -> None: ...

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        """Revoke a key (again: no change); raises ``UnknownNameError`` for an unknown id."""
        ...

    def records(self) -> list[KeyRecord]:
        """Every key, revoked ones too, oldest first."""
        ...

    def find(self, key_id: str) -> KeyRecord | None:
        """The key's record as this replica knows it now (cheap: called per request)."""
        ...

    def close(self) -> None: ...


def authenticate(store: KeyStore, token: str) -> KeyRecord | None:
    """The active key ``token`` is, or ``None`` (compared by digest, in constant time)."""
    key_id = key_id_of(token)
    record = store.find(key_id) if key_id else None
    if record is None or not hmac.compare_digest(record.sha256, digest(token)):
        return None
    return record if record.active else None


def write_refusal(record: KeyRecord, org_id: object, source: object, type_name: object) -> str:
    """Why ``record`` may not submit this (its org, source and type as submitted); ``""``
    when it may. A field that is missing or not a string is left to the rules (they reject
    the submission); one that is there must match the key."""
    if Scope.WRITE not in record.scopes:
        return f"key {record.key_id} has no write scope"
    if isinstance(org_id, str) and org_id not in record.orgs:
        return f"key {record.key_id} may not submit for org {org_id[:200]!r}"
    if isinstance(source, str) and source != record.source:
        return f"key {record.key_id} submits as source {record.source!r}, not {source[:200]!r}"
    if record.types is not None and isinstance(type_name, str) and type_name not in record.types:
        return f"key {record.key_id} may not send {type_name[:64]!r} events"
    return ""


def read_refusal(record: KeyRecord, org_id: str) -> str:
    """Why ``record`` may not read ``org_id``; ``""`` when it may."""
    if Scope.READ not in record.scopes:
        return f"key {record.key_id} has no read scope"
    if org_id not in record.orgs:
        return f"key {record.key_id} may not read org {org_id[:200]!r}"
    return ""
