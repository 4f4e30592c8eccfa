"""What the Kafka backend writes to its topics, and the rule that reads the ledger back.

Ledger topic: key = ``org_id`` (UTF-8), value = the event's canonical JSON (RFC 8785), the same
bytes the SQLite log stores. Rejections topic: key = ``org_id`` or none, value = a JSON object
with the rejection's fields and the submitted bytes as ``raw_base64`` (exact up to
:data:`~events.outcomes.RAW_LIMIT`, bounded by :class:`~events.outcomes.Rejection` itself;
``raw_length`` and ``raw_sha256`` always describe the whole submission).

**The chain rule.** Kafka cannot refuse a record that does not continue its org's chain, so
the ledger is defined by reading: in partition order, a record belongs to the ledger when it
continues its org's chain (``sequence`` = head + 1 and ``prev_hash`` = head's hash); any other
record is an *orphan* (a writer that lost a race, or a retry after a partial failure) and is
not part of the ledger. Every reader applies the same rule to the same order, so every reader
sees the same ledger.
"""

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from events.canonical import canonical_bytes
from events.log import ChainHead
from events.outcomes import Rejection
from events.reasons import ReasonCode
from events.stored import parse_event
from schemas.envelope import GENESIS_HASH, LedgerEvent
from schemas.errors import LedgerDamagedError


def org_key(org_id: str) -> bytes:
    return org_id.encode("utf-8")


def encode_event(event: LedgerEvent) -> bytes:
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


def encode_rejection(rejection: Rejection) -> bytes:
    raw = rejection.raw  # at most RAW_LIMIT bytes: a rejection bounds itself
    return orjson.dumps(
        {
            "reason_code": rejection.reason.value,
            "message": rejection.message,
            "details": rejection.details,
            "recorded_at": rejection.recorded_at,
            "org_id": rejection.org_id,
            "event_id": rejection.event_id,
            "type": rejection.type,
            "source": rejection.source,
            "line": rejection.line,
            "raw_base64": base64.b64encode(raw).decode("ascii"),
            "raw_length": rejection.raw_length or len(raw),
            "raw_sha256": rejection.raw_sha256 or hashlib.sha256(raw).hexdigest(),
        }
    )


def decode_rejection(value: bytes) -> Rejection:
    """The stored rejection; :class:`LedgerDamagedError` for a value that is not one."""
    try:
        fields = orjson.loads(value)
        raw = base64.b64decode(fields["raw_base64"], validate=True)
        whole = fields.get("raw_length", len(raw)) != len(raw)
        return Rejection(
            reason=ReasonCode(fields["reason_code"]),
            message=fields["message"],
            raw=raw,
            recorded_at=fields["recorded_at"],
            details=fields["details"],
            org_id=fields["org_id"],
            event_id=fields["event_id"],
            type=fields["type"],
            source=fields["source"],
            line=fields["line"],
            raw_length=fields["raw_length"] if whole else None,
            raw_sha256=fields["raw_sha256"] if whole else None,
        )
    except (ValueError, KeyError, TypeError) as error:  # also JSON and base64 errors
        raise LedgerDamagedError(
            f"not a rejection record ({type(error).__name__}: {error})"
        ) from None


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
