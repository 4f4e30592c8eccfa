"""A stored event exactly as its backend holds it, and reading its bytes with bounds.

What is stored is the truth an auditor checks: the bytes, not a re-serialisation of what some
parser made of them. :class:`StoredBytes` carries those bytes and whatever the backend keeps
beside them (SQLite's indexed columns, a Kafka record's key), which must agree with the bytes.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from events.canonical import canonical_bytes
from events.strict_json import deeper_than, duplicated_key
from schemas.envelope import LedgerEvent
from schemas.errors import LedgerDamagedError

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The largest stored event read; far above what the ledger writes (a submission is at most
64 KiB by default, and its event adds a few hundred bytes)."""

MAX_DEPTH = 32
"""The deepest nesting of arrays and objects read in a stored event; the contract's events
nest at most a few levels (the envelope, ``data``, a list in it)."""

EVENT_KEYS = frozenset(LedgerEvent.model_fields)
"""The keys of every ledger event (docs/ledger-format.md, section 2)."""

STORED_COLUMNS = ("org_id", "sequence", "event_id", "type", "occurred_at", "recorded_at", "hash")
"""The columns SQLite keeps beside each body (indexed, or read without parsing it): copies of
its fields, in the order of a stored row after its body (``SqliteEventLog.stored_rows``)."""


@dataclass(frozen=True, slots=True)
class StoredBytes:
    """One stored event, byte for byte, with what its backend files it under."""

    body: bytes
    """The stored bytes: a SQLite row's body, a Kafka record's value, a line of an export."""
    columns: Mapping[str, Any] = field(default_factory=dict)
    """Copies of the event's fields that the backend keeps beside the body and finds it by
    (SQLite: org_id, sequence, event_id, type, occurred_at, recorded_at, hash; Kafka: the
    record key as org_id). Each must equal the body's field of the same name."""
    location: str | None = None
    """Where it is stored, when its sequence may not say: ``partition 2, offset 17``, ``line 9``."""

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> "StoredBytes":
        """A stored row: its body (bytes, or None) followed by the :data:`STORED_COLUMNS`."""
        return cls(row[0] or b"", dict(zip(STORED_COLUMNS, row[1:], strict=True)))

    @property
    def org_id(self) -> str | None:
        """The org the backend files the event under, whatever its body says."""
        org_id = self.columns.get("org_id")
        return org_id if isinstance(org_id, str) else None


def parse_event(body: bytes) -> dict[str, Any]:
    """Stored bytes -> the event object, within bounds; :class:`LedgerDamagedError` if malformed.

    Malformed: over :data:`MAX_EVENT_BYTES`, not UTF-8, a byte order mark, not JSON (NaN,
    Infinity, a lone surrogate), a number beyond the range of doubles, nesting deeper than
    :data:`MAX_DEPTH`, or anything but an object at the top.
    """
    if len(body) > MAX_EVENT_BYTES:
        raise LedgerDamagedError(f"{len(body)} bytes, over the limit of {MAX_EVENT_BYTES}")
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise LedgerDamagedError(f"not JSON: {error}") from None
    if type(record) is not dict:
        raise LedgerDamagedError(f"not a JSON object but {_json_kind(record)}")
    if deeper_than(body, record, MAX_DEPTH):
        raise LedgerDamagedError(f"nested deeper than {MAX_DEPTH} levels")
    return record


def read_event(body: bytes, org_id: Any, sequence: Any) -> dict[str, Any]:
    """:func:`parse_event` for a reader that needs the event: a malformed one stops it with an
    error that names it (``okr-ledger verify`` reports every check)."""
    try:
        return parse_event(body)
    except LedgerDamagedError as error:
        raise LedgerDamagedError(
            f"the ledger is damaged: the stored event of org {org_id!r} at sequence "
            f"{sequence!r} is malformed ({error}); run `okr-ledger verify`"
        ) from None


def export_lines(stream: IO[bytes]) -> Iterator[StoredBytes]:
    """The events of an export (NDJSON), each a line's bytes without its ``\\n``, streamed.

    At most :data:`MAX_EVENT_BYTES` + 2 bytes are held: a longer line comes as its first bytes
    (so it is malformed: over the limit) and the rest of it is skipped. A blank line comes as
    it is: an export has none, so it stands for an empty (malformed) stored event.
    """
    number = 0
    while line := stream.readline(MAX_EVENT_BYTES + 2):
        number += 1
        ended = line.endswith(b"\n")
        body = line[:-1] if ended else line
        if not ended and len(line) > MAX_EVENT_BYTES + 1:  # cut by the limit: skip the rest
            while (rest := stream.readline(MAX_EVENT_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield StoredBytes(body, location=f"line {number}")


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def canonical_problem(body: bytes, record: dict[str, Any]) -> str | None:
    """Why ``body`` (parsed as ``record``) is not byte for byte the canonical form of its
    content (RFC 8785); None when it is."""
    try:
        canonical = canonical_bytes(record)
    except (ValueError, TypeError) as error:
        return f"cannot be put in canonical form: {error}"
    if canonical == body:
        return None
    duplicated = duplicated_key(body, record)
    if duplicated is not None:
        return f"the key {duplicated!r} appears twice in one object"
    at = next(
        (i for i, (a, b) in enumerate(zip(body, canonical, strict=False)) if a != b),
        min(len(body), len(canonical)),
    )
    return (
        "the stored bytes are not the canonical form (RFC 8785) of their content: "
        f"they differ from it at byte {at}"
    )
