"""The per-org hash chain: computing an event's hash and verifying a sequence of events."""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from events.canonical import canonical_bytes
from schemas.envelope import GENESIS_HASH


def event_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over ``prev_hash`` (ASCII hex) followed by the JCS of the event without ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    digest = hashlib.sha256(str(record["prev_hash"]).encode("ascii"))
    digest.update(canonical_bytes(body))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verdict on one org's chain."""

    org_id: str
    ok: bool
    events: int
    first_bad_sequence: int | None = None
    problem: str | None = None
    head_hash: str = GENESIS_HASH

    def to_json(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "ok": self.ok,
            "events": self.events,
            "first_bad_sequence": self.first_bad_sequence,
            "problem": self.problem,
            "head_hash": self.head_hash,
        }


def verify_chain(org_id: str, records: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Check one org's events, given in stored order: sequence 1, 2, 3..., links and hashes.

    Names the first sequence whose position, link or content does not match.
    """
    expected_sequence = 1
    prev_hash = GENESIS_HASH
    count = 0
    for record in records:
        sequence = record.get("sequence")
        if sequence != expected_sequence:
            return ChainReport(
                org_id,
                False,
                count,
                expected_sequence,
                f"expected sequence {expected_sequence}, found {sequence}",
                prev_hash,
            )
        if record.get("prev_hash") != prev_hash:
            return ChainReport(
                org_id,
                False,
                count,
                expected_sequence,
                "prev_hash does not link to the previous event's hash",
                prev_hash,
            )
        if event_hash(record) != record.get("hash"):
            return ChainReport(
                org_id,
                False,
                count,
                expected_sequence,
                "content does not match its hash",
                prev_hash,
            )
        prev_hash = str(record["hash"])
        expected_sequence += 1
        count += 1
    return ChainReport(org_id, True, count, head_hash=prev_hash)
