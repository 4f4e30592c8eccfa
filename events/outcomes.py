"""What became of a submission: accepted, duplicate or rejected. Never anything else."""

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

from events.reasons import ReasonCode
from schemas.envelope import LedgerEvent


@dataclass(frozen=True, slots=True)
class Accepted:
    event: LedgerEvent
    digest: bytes
    """Digest of the normalised submission; the state keeps it to tell duplicates from conflicts."""
    status: Literal["accepted"] = "accepted"

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {
            "status": self.status,
            "event_id": e.event_id,
            "org_id": e.org_id,
            "sequence": e.sequence,
            "hash": e.hash,
        }


@dataclass(frozen=True, slots=True)
class Duplicate:
    event_id: str
    org_id: str
    status: Literal["duplicate"] = "duplicate"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "event_id": self.event_id, "org_id": self.org_id}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused submission, recorded with the exact bytes that were submitted."""

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
    """Length of the whole submission when ``raw`` is only its prefix."""
    raw_sha256: str | None = None
    """SHA-256 (hex) of the whole submission when ``raw`` is only its prefix."""
    status: Literal["rejected"] = "rejected"

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
        }


Outcome = Accepted | Duplicate | Rejection
