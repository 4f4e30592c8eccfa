"""What became of a submission: accepted, duplicate or rejected. Never anything else."""

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from events.reasons import ReasonCode
from schemas.envelope import LedgerEvent


@dataclass(slots=True, eq=False)
class Accepted:
    """A new ledger event, as the sequencer made it (never changed once made).

    It carries the event's fields as a plain dict and its canonical bytes, which is what the
    log stores; the :class:`LedgerEvent` model is built only when asked for (:attr:`event`).
    Not a frozen dataclass: one is made per accepted submission, and freezing costs a
    microsecond of ``object.__setattr__`` each.
    """

    record: dict[str, Any]
    """The event's fields (docs/ledger-format.md, section 2), in the model's field order."""
    digest: bytes
    """Digest of the normalised submission; the state keeps it to tell duplicates from conflicts."""
    body: bytes | None = None
    """The event's canonical JSON (RFC 8785) when the sequencer made it: the bytes to store."""
    submitted: bytes | None = None
    """Digest of the exact bytes submitted (``events.sequencer.submission_digest``), when known:
    a byte-identical resubmission is then a duplicate without being validated again."""
    key: bytes | None = None
    """The 16 bytes of its ``event_id``, when the sequencer made it (so no one parses the text)."""
    _event: LedgerEvent | None = field(default=None, repr=False)
    status: Literal["accepted"] = "accepted"

    @classmethod
    def of(cls, event: LedgerEvent, digest: bytes) -> "Accepted":
        """An outcome for an event that exists already (read back from a log)."""
        return cls(event.to_record(), digest, _event=event)

    @property
    def event(self) -> LedgerEvent:
        if self._event is None:
            self._event = LedgerEvent.from_record(self.record)
        return self._event

    @property
    def org_id(self) -> str:
        org_id: str = self.record["org_id"]
        return org_id

    def __eq__(self, other: object) -> bool:
        """The same event and digest (the bytes and the submitted digest follow from them)."""
        if not isinstance(other, Accepted):
            return NotImplemented
        return self.record == other.record and self.digest == other.digest

    def __hash__(self) -> int:
        r = self.record
        return hash((r["org_id"], r["event_id"], r["hash"], self.digest))

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "status": self.status,
            "event_id": r["event_id"],
            "org_id": r["org_id"],
            "sequence": r["sequence"],
            "hash": r["hash"],
        }


@dataclass(slots=True, unsafe_hash=True)
class Duplicate:
    """A submission the ledger holds already: the event it names.

    Never changed once made, but not a frozen dataclass (hashable all the same, by its
    fields): a rerun makes one per line, and freezing costs ``object.__setattr__`` per field.
    """

    event_id: str
    org_id: str
    status: Literal["duplicate"] = "duplicate"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "event_id": self.event_id, "org_id": self.org_id}


RAW_LIMIT = 64 * 1024
"""Submitted bytes a rejection keeps. A longer submission keeps its first RAW_LIMIT bytes with
its whole length and SHA-256: a record of any size could fill the rejection log (and exceed a
Kafka message), and a rejection that cannot be written would stop its writer."""


@dataclass(frozen=True, slots=True)
class Oversized:
    """A submission too long to hold whole: its first :data:`RAW_LIMIT` bytes, its length and
    SHA-256 (lowercase hex). The line reader gives one for a line over the size limit, so a
    submission of any size is decided (``too_large``) without ever being in memory."""

    prefix: bytes
    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused submission, recorded with the bytes that were submitted.

    ``raw`` holds at most :data:`RAW_LIMIT` bytes. When the submission was longer, ``raw`` is
    its first RAW_LIMIT bytes, and ``raw_length`` and ``raw_sha256`` give the length and the
    SHA-256 of the whole submission; otherwise ``raw`` is exact and both are ``None``. The
    bound is applied here, on construction, so no backend or caller can store more.
    """

    reason: ReasonCode
    message: str
    raw: bytes
    recorded_at: str
    details: list[dict[str, str]] = field(default_factory=list)
    org_id: str | None = None
    event_id: str | None = None
    type: str | None = None
    source: str | None = None
    line: int | None = None
    """Line number in the submitted file, when it came from one."""
    raw_length: int | None = None
    """Length of the whole submission, when ``raw`` is only its first RAW_LIMIT bytes."""
    raw_sha256: str | None = None
    """SHA-256 (lowercase hex) of the whole submission, when ``raw`` is only a prefix."""
    status: Literal["rejected"] = "rejected"

    def __post_init__(self) -> None:
        if len(self.raw) > RAW_LIMIT:  # frozen: set once, here, before anyone can see it
            if self.raw_length is None:
                object.__setattr__(self, "raw_length", len(self.raw))
                object.__setattr__(self, "raw_sha256", hashlib.sha256(self.raw).hexdigest())
            object.__setattr__(self, "raw", self.raw[:RAW_LIMIT])

    @property
    def truncated(self) -> bool:
        """Whether ``raw`` is only the first bytes of the submission."""
        return self.raw_length is not None

    def to_json(self) -> dict[str, Any]:
        raw_text: str | None
        try:
            raw_text = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            raw_text = None
        return {
            "status": self.status,
            "reason_code": self.reason.value,
            "message": self.message,
            "details": self.details,
            "recorded_at": self.recorded_at,
            "org_id": self.org_id,
            "event_id": self.event_id,
            "type": self.type,
            "source": self.source,
            "line": self.line,
            "raw": raw_text,
            "raw_base64": None if raw_text is not None else base64.b64encode(self.raw).decode(),
            "raw_length": self.raw_length,
            "raw_sha256": self.raw_sha256,
        }


Outcome = Accepted | Duplicate | Rejection
