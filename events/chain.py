"""The per-org hash chain: computing an event's hash, and verifying stored events byte for byte."""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from events.canonical import canonical_bytes
from events.stored import EVENT_KEYS, StoredBytes, canonical_problem, parse_event
from schemas.envelope import GENESIS_HASH
from schemas.errors import LedgerDamagedError


def event_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over ``prev_hash`` (ASCII hex) followed by the JCS of the event without ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    digest = hashlib.sha256(str(record["prev_hash"]).encode("ascii"))
    digest.update(canonical_bytes(body))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verdict on one org's chain."""

    org_id: str | None
    """None for what names no org: a line of an export that is not an event with an org_id."""
    ok: bool
    events: int
    """Events verified before the first bad one (all of them when ``ok``)."""
    first_bad_sequence: int | None = None
    """None when the bad event's sequence cannot be known (see ``location``)."""
    problem: str | None = None
    head_hash: str = GENESIS_HASH
    location: str | None = None
    """Where the first bad event is stored, where the backend says more than its sequence:
    ``partition 2, offset 17`` on Kafka, ``line 9`` in an export file."""

    def to_json(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "ok": self.ok,
            "events": self.events,
            "first_bad_sequence": self.first_bad_sequence,
            "problem": self.problem,
            "head_hash": self.head_hash,
            "location": self.location,
        }


def _same(stored: Any, value: Any) -> bool:
    return type(stored) is type(value) and stored == value


@dataclass(slots=True)
class _Chain:
    """One org's progress through :class:`ChainVerifier`."""

    events: int = 0
    head: str = GENESIS_HASH
    broken: ChainReport | None = None


class ChainVerifier:
    """Checks stored events one at a time; orgs may interleave, each org's come in order.

    For each event, in this order (docs/ledger-format.md, section 6): the sequence the backend
    files it under, that its bytes are a well-formed JSON object, that they are byte for byte
    the canonical form of their content, its keys, that the backend's columns agree with it,
    its sequence, its link to the previous event's hash, and its own hash. The first failure
    names the org's first bad event; that org's later events are not looked at. Memory is one
    small record per org, whatever the number of events.
    """

    def __init__(self) -> None:
        self._chains: dict[str | None, _Chain] = {}

    def add(self, stored: StoredBytes) -> None:
        try:
            record: dict[str, Any] | None = parse_event(stored.body)
            malformed = None
        except LedgerDamagedError as error:
            record, malformed = None, f"malformed: {error}"
        org_id = _org_of(stored, record)
        chain = self._chains.setdefault(org_id, _Chain())
        if chain.broken is not None:
            return
        expected = chain.events + 1
        problem = _position_problem(stored, expected) or malformed
        if problem is None and org_id is None:
            problem = "not an event with an org_id"
        if problem is None and record is not None:
            problem = _event_problem(stored, record, expected, chain.head)
        if problem is None and record is not None:
            chain.events, chain.head = expected, record["hash"]
            return
        # A malformed event's place is known where the backend files it by sequence (SQLite),
        # or by nothing (a line in a file: it stands at its org's next place); a Kafka record
        # is filed by org alone: its location says where it is.
        placed = record is not None or "sequence" in stored.columns or not stored.columns
        chain.broken = ChainReport(
            org_id,
            False,
            chain.events,
            expected if placed and org_id is not None else None,
            problem,
            chain.head,
            stored.location,
        )

    def report(self, org_id: str | None) -> ChainReport:
        chain = self._chains.get(org_id) or _Chain()
        return chain.broken or ChainReport(org_id, True, chain.events, head_hash=chain.head)

    def reports(self) -> list[ChainReport]:
        """One report per org seen, by org id (what names no org last)."""
        orgs = sorted(self._chains, key=lambda org: (org is None, org or ""))
        return [self.report(org) for org in orgs]


def _org_of(stored: StoredBytes, record: dict[str, Any] | None) -> str | None:
    """The org an event is filed under, else the one its body names (read leniently when it
    is malformed, only to name it in the report); None if neither says."""
    if stored.org_id is not None:
        return stored.org_id
    if record is None:
        try:
            record = json.loads(stored.body.decode("utf-8", "replace").lstrip("\ufeff"))
        except (ValueError, RecursionError):
            return None
    org_id = record.get("org_id") if isinstance(record, dict) else None
    return org_id if isinstance(org_id, str) else None


def _position_problem(stored: StoredBytes, expected: int) -> str | None:
    if "sequence" in stored.columns and not _same(stored.columns["sequence"], expected):
        return f"expected sequence {expected}, found {stored.columns['sequence']!r}"
    return None


def _event_problem(
    stored: StoredBytes, record: dict[str, Any], expected: int, head: str
) -> str | None:
    problem = canonical_problem(stored.body, record)
    if problem is not None:
        return problem
    if set(record) != EVENT_KEYS:
        return f"keys {sorted(set(record) ^ EVENT_KEYS)} missing or unexpected"
    for name, value in stored.columns.items():
        if not _same(record[name], value):
            return (
                f"the stored {name} column is {value!r} but the event's {name} is {record[name]!r}"
            )
    if not _same(record["sequence"], expected):
        return f"expected sequence {expected}, found {record['sequence']!r}"
    if record["prev_hash"] != head:
        return "prev_hash does not link to the previous event's hash"
    try:
        intact = event_hash(record) == record["hash"]
    except (UnicodeEncodeError, ValueError, TypeError):
        intact = False
    return None if intact else "content does not match its hash"


def verify_chain(org_id: str, records: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Check one org's already parsed events, in stored order: sequence, links and hashes.

    There are no stored bytes here: each record stands for its canonical form. What a backend
    stores is checked byte for byte by :class:`ChainVerifier` over ``EventLog.read_stored``.
    """
    verifier = ChainVerifier()
    for record in records:
        try:
            body = canonical_bytes(record)
        except (ValueError, TypeError):
            body = b""  # not JSON: malformed
        verifier.add(StoredBytes(body, {"org_id": org_id}))
    return verifier.report(org_id)
