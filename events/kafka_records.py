"""What the Kafka backend writes to its topics, and the rule that reads the ledger back.

Ledger topic: key = ``org_id`` (UTF-8), value = the event's canonical JSON (RFC 8785), the same
bytes the SQLite log stores. Rejections topic: key = ``org_id`` or none, value = a JSON object
with the rejection's fields and the submitted bytes as ``raw_base64`` (exact up to
:data:`~events.outcomes.RAW_LIMIT`, bounded by :class:`~events.outcomes.Rejection` itself;
``raw_length`` and ``raw_sha256`` always describe the whole submission).
Records are written within bounds (:func:`bounded_message`, :func:`bounded_details`) and read
back with validation: a record that is not one the sequencer wrote never stops a reader.

**The chain rule.** Kafka cannot refuse a record that does not continue its org's chain, so
the ledger is defined by reading: in partition order, a record belongs to the ledger when it
continues its org's chain (``sequence`` = head + 1 and ``prev_hash`` = head's hash); any other
record is an *orphan* (a writer that lost a race, or a retry after a partial failure) and is
not part of the ledger. Every reader applies the same rule to the same order, so every reader
sees the same ledger.

**Rejection lanes.** Each partition of the rejections topic is a *lane*
(:class:`RejectionLanes`): intake partition *p*'s rejections go to lane *p* mod the lane count.
A rejection's *position* is unique across the lanes and increases within one (the record's
offset + 1 when the topic has one partition); readers keep one checkpoint per lane.
"""

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from events.canonical import canonical_bytes
from events.log import ChainHead
from events.outcomes import RAW_LIMIT, Accepted, Rejection
from events.reasons import ReasonCode
from events.stored import parse_event
from schemas.envelope import GENESIS_HASH, LedgerEvent
from schemas.errors import LedgerDamagedError


@dataclass(frozen=True, slots=True)
class RejectionLanes:
    """The partitions of the rejections topic, as lanes: see the module docstring."""

    count: int

    def of(self, partition: int) -> int:
        """The lane of intake (and ledger) partition ``partition``."""
        return partition % self.count

    def position(self, lane: int, offset: int) -> int:
        """The position of the rejection at ``offset`` of ``lane``."""
        return offset * self.count + lane + 1

    def next_offset(self, lane: int, position: int) -> int:
        """The first offset of ``lane`` whose position is above ``position`` (0: none read)."""
        return max(0, (position - 1 - lane) // self.count + 1)

    def names(self) -> list[str]:
        """The lanes' names (their checkpoint keys): their partition numbers."""
        return [str(lane) for lane in range(self.count)]


def org_key(org_id: str) -> bytes:
    return org_id.encode("utf-8")


def encode_event(event: "LedgerEvent | Accepted") -> bytes:
    """A ledger record's value: the event's canonical JSON (the bytes the sequencer made, when
    it made them)."""
    if isinstance(event, Accepted):
        return event.body if event.body is not None else canonical_bytes(event.record)
    return canonical_bytes(event.to_record())


def org_of_key(key: bytes | None) -> str | None:
    """The org a record key names (UTF-8); None for no key or one that is not UTF-8."""
    try:
        return None if key is None else key.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_event(value: bytes | None) -> dict[str, Any]:
    """The stored event; a value that is not a well-formed JSON object (read with the bounds of
    :func:`events.stored.parse_event`) becomes ``{"undecodable": text}``, which the chain rule
    does not admit (so a stray record cannot block the ledger)."""
    try:
        return parse_event(value or b"")
    except LedgerDamagedError:
        return {"undecodable": (value or b"").decode("utf-8", errors="replace")}


MAX_MESSAGE = 2000
"""Characters of a rejection's message kept in a rejection or outcome record."""
MAX_DETAILS = 100
"""Details kept in a rejection or outcome record; the last one kept says how many more."""
MAX_DETAIL_TEXT = 500
"""Characters of each detail's ``loc`` and ``msg`` kept."""
MAX_REJECTION_BYTES = 8 * 1024 * 1024
"""A record of the rejections topic longer than this is not one the sequencer wrote."""
UNREADABLE_AT = "1970-01-01T00:00:00Z"
"""``recorded_at`` of the stand-in for a rejections-topic record that is not a rejection."""


def bounded_message(message: str) -> str:
    """A rejection's message as records keep it: the bounds keep every record writable."""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def bounded_details(details: list[dict[str, str]]) -> list[dict[str, str]]:
    """A rejection's details as records keep them (at most MAX_DETAILS, each bounded)."""
    kept = [
        {key: text[:MAX_DETAIL_TEXT] for key, text in detail.items()}
        for detail in details[:MAX_DETAILS]
    ]
    if len(details) > MAX_DETAILS:
        more = len(details) - MAX_DETAILS + 1
        kept[-1] = {"loc": "details", "msg": f"{more} more problems not kept"}
    return kept


def encode_rejection(rejection: Rejection) -> bytes:
    raw = rejection.raw  # at most RAW_LIMIT bytes: a rejection bounds itself
    return orjson.dumps(
        {
            "reason_code": rejection.reason.value,
            "message": bounded_message(rejection.message),
            "details": bounded_details(rejection.details),
            "recorded_at": rejection.recorded_at,
            "org_id": rejection.org_id,
            "event_id": rejection.event_id,
            "type": rejection.type,
            "source": rejection.source,
            "line": rejection.line,
            "raw_base64": base64.b64encode(raw).decode("ascii"),
            "raw_length": len(raw) if rejection.raw_length is None else rejection.raw_length,
            "raw_sha256": rejection.raw_sha256 or hashlib.sha256(raw).hexdigest(),
        }
    )


def _timestamp(text: str) -> str:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or not 1900 < moment.year < 2299:
        raise ValueError("not an RFC 3339 timestamp with an offset, in 1901-2298")
    return text


def _base64(text: str) -> str:
    if len(base64.b64decode(text, validate=True)) > RAW_LIMIT:
        raise ValueError(f"over {RAW_LIMIT} bytes")
    return text


_Text = Annotated[str, Field(max_length=MAX_REJECTION_BYTES)]


class _Detail(BaseModel):
    loc: _Text
    msg: _Text


class _RejectionRecord(BaseModel):
    """A rejections-topic value as :func:`encode_rejection` writes it (strict JSON types)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    reason_code: ReasonCode = Field(strict=False)
    message: _Text
    details: list[_Detail]
    recorded_at: Annotated[str, AfterValidator(_timestamp)]
    org_id: _Text | None
    event_id: _Text | None
    type: _Text | None
    source: _Text | None
    line: int | None = Field(ge=0, lt=1 << 63)
    raw_base64: Annotated[str, AfterValidator(_base64)]
    raw_length: int = Field(ge=0, lt=1 << 63)
    raw_sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")]


def decode_rejection(value: bytes | None) -> Rejection | None:
    """A rejections-topic record; ``None`` when it is not one the sequencer wrote."""
    if value is None or len(value) > MAX_REJECTION_BYTES:
        return None
    try:
        fields = _RejectionRecord.model_validate_json(value)
    except ValidationError:
        return None
    raw = base64.b64decode(fields.raw_base64)
    if fields.raw_length < len(raw):
        return None
    prefix = fields.raw_length > len(raw)
    return Rejection(
        reason=fields.reason_code,
        message=fields.message,
        raw=raw,
        recorded_at=fields.recorded_at,
        details=[detail.model_dump() for detail in fields.details],
        org_id=fields.org_id,
        event_id=fields.event_id,
        type=fields.type,
        source=fields.source,
        line=fields.line,
        raw_length=fields.raw_length if prefix else None,
        raw_sha256=fields.raw_sha256 if prefix else None,
    )


def read_rejection(value: bytes | None) -> Rejection:
    """A rejections-topic record for listing and projecting: one that is not a rejection the
    sequencer wrote (a foreign write) is shown as an ``invalid_record`` rejection holding its
    bytes, so that every record keeps its place (position = offset + 1)."""
    decoded = decode_rejection(value)
    if decoded is not None:
        return decoded
    value = value or b""
    return Rejection(
        reason=ReasonCode.INVALID_RECORD,
        message="this record of the rejections topic is not a rejection the sequencer wrote",
        raw=value[:RAW_LIMIT],
        recorded_at=UNREADABLE_AT,
        raw_length=len(value) if len(value) > RAW_LIMIT else None,
        raw_sha256=hashlib.sha256(value).hexdigest() if len(value) > RAW_LIMIT else None,
    )


GENESIS = ChainHead(0, GENESIS_HASH)


def placed(
    record: dict[str, Any], key: bytes | None, partition: int, owner: Callable[[str], int]
) -> bool:
    """The chain rule's first half: a record counts only under its org's key, in its org's
    partition (``owner(org_id)``). One produced elsewhere (by hand, or by a producer with
    another partitioner) is an orphan for every reader."""
    org_id = record.get("org_id")
    return isinstance(org_id, str) and key == org_key(org_id) and partition == owner(org_id)


class ChainRule:
    """Applies the chain rule to records in partition order and keeps every org's head.

    ``start`` gives the heads before the first record read (default: genesis), for a reader
    that resumes where a state left off.
    """

    def __init__(self, start: Callable[[str], ChainHead] | None = None) -> None:
        self.heads: dict[str, ChainHead] = {}
        self._start = start

    def head(self, org_id: str) -> ChainHead:
        head = self.heads.get(org_id)
        if head is not None:
            return head
        return GENESIS if self._start is None else self._start(org_id)

    def admit(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` continues its org's chain; if so it becomes the head."""
        org_id = record.get("org_id")
        if not isinstance(org_id, str):
            return False
        head = self.head(org_id)
        sequence = record.get("sequence")
        if type(sequence) is not int or sequence != head.sequence + 1:
            return False
        if record.get("prev_hash") != head.hash:
            return False
        self.heads[org_id] = ChainHead(head.sequence + 1, str(record.get("hash")))
        return True


class ChainReader:
    """The chain rule as every reader of the Kafka ledger applies it: the event log's reads,
    the sequencer's restore and the projector agent all go through :meth:`admit`.

    ``partitions`` is the ledger topic's partition count (an org's partition is the murmur2
    of its key over it); ``heads`` are the chain heads before the first record read (a reader
    that resumes where a state left off), genesis for any other org.
    """

    MAX_OWNERS = 100_000
    """Orgs whose partition is remembered (a stray writer can name any number of orgs)."""

    def __init__(self, partitions: int, heads: Callable[[str], ChainHead] | None = None) -> None:
        # kafka-python's murmur2, imported when a reader is made: this module (its records'
        # encoding) is on the embedded paths too, which import nothing of Kafka.
        from events.kafka_client import partition_for

        self.partitions = partitions
        self.rule = ChainRule(heads)
        self._partition_for = partition_for
        self._owners: dict[str, int] = {}

    def owner(self, org_id: str) -> int:
        """The ledger (and intake) partition of ``org_id``."""
        owner = self._owners.get(org_id)
        if owner is None:
            owner = self._partition_for(org_key(org_id), self.partitions)
            if len(self._owners) < self.MAX_OWNERS:
                self._owners[org_id] = owner
        return owner

    def admit(
        self, partition: int, key: bytes | None, value: bytes | None
    ) -> dict[str, Any] | None:
        """The event a ledger record holds, if it is part of the ledger (it becomes its org's
        head); ``None`` for an orphan."""
        record = decode_event(value)
        if placed(record, key, partition, self.owner) and self.rule.admit(record):
            return record
        return None
