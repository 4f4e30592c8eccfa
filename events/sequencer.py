"""The sequencer: (ledger state, submission) -> accepted event, duplicate or rejection.

:func:`decide` is pure: given the same state, bytes, clock reading and policy it always gives
the same outcome, and it never changes the state. :class:`Sequencer` folds accepted events
into the state so that the next decision sees them. Both runtimes (SQLite and Kafka) use it.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from pydantic import ValidationError

from events.canonical import canonical_bytes
from events.chain import event_hash
from events.outcomes import Accepted, Duplicate, Outcome, Oversized, Rejection
from events.reasons import ReasonCode
from events.rules import check
from events.state import LedgerState, OrgState
from events.strict_json import duplicated_key
from schemas.envelope import LedgerEvent, Submission, format_timestamp
from schemas.errors import UnknownEventTypeError
from schemas.payloads import Payload
from schemas.registry import EVENT_TYPES, payload_model, upcast

MAX_SUBMISSION_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Policy:
    """Tunable limits of the rules."""

    clock_skew: timedelta = timedelta(minutes=5)
    max_bytes: int = MAX_SUBMISSION_BYTES


DEFAULT_POLICY = Policy()


def _locations(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, str]]:
    return [
        {"loc": ".".join(str(part) for part in (*prefix, *item["loc"])), "msg": item["msg"]}
        for item in error.errors(include_url=False)
    ]


class _RejectedError(Exception):
    def __init__(self, reason: ReasonCode, message: str, details: list[dict[str, str]]) -> None:
        self.reason, self.message, self.details = reason, message, details


def _parse(raw: bytes, policy: Policy) -> tuple[Submission, int, Payload]:
    """Bytes -> envelope, schema version, payload; raises :class:`_RejectedError`."""
    if len(raw) > policy.max_bytes:
        raise _RejectedError(
            ReasonCode.TOO_LARGE, f"{len(raw)} bytes, over the limit of {policy.max_bytes}", []
        )
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _RejectedError(ReasonCode.INVALID_JSON, f"not valid JSON: {error}", []) from None
    if not isinstance(document, dict):
        raise _RejectedError(ReasonCode.INVALID_JSON, "a submission is a JSON object", [])
    duplicated = duplicated_key(raw, document)
    if duplicated is not None:
        raise _RejectedError(
            ReasonCode.INVALID_JSON,
            f"the key {duplicated!r} appears twice in one object (readers would disagree on "
            "which value was submitted)",
            [],
        )
    type_name = document.get("type")
    if isinstance(type_name, str) and type_name not in EVENT_TYPES:
        raise _RejectedError(ReasonCode.UNKNOWN_TYPE, f"unknown event type {type_name!r}", [])
    try:
        submission = Submission.model_validate(document)
    except ValidationError as error:
        raise _RejectedError(
            ReasonCode.SCHEMA_VIOLATION,
            "the envelope does not match the contract",
            _locations(error),
        ) from None
    version = submission.schema_version or EVENT_TYPES[submission.type]
    try:
        model = payload_model(submission.type, version)
    except UnknownEventTypeError as error:
        raise _RejectedError(
            ReasonCode.SCHEMA_VIOLATION, str(error), [{"loc": "schema_version", "msg": str(error)}]
        ) from None
    try:
        payload = model.model_validate(submission.data)
    except ValidationError as error:
        raise _RejectedError(
            ReasonCode.SCHEMA_VIOLATION,
            f"data does not match {submission.type} v{version}",
            _locations(error, ("data",)),
        ) from None
    return submission, version, payload


def _content(submission: Submission, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """The normalised envelope without its ``event_id``: what "the same content" compares."""
    return {
        "org_id": submission.org_id,
        "type": submission.type,
        "schema_version": version,
        "occurred_at": format_timestamp(submission.occurred_at),
        "actor": submission.actor,
        "source": submission.source,
        "source_event_id": submission.source_event_id,
        "correlation_id": submission.correlation_id,
        "causation_id": submission.causation_id,
        "data": data,
    }


def _digest(content: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical_bytes(content)).digest()[:16]


def _already_recorded(
    state: LedgerState, submission: Submission, event_id: UUID
) -> tuple[UUID, bytes, str] | None:
    """The recorded event this submission repeats: its id, content digest and how it was found.

    By ``event_id`` first: unique within its org (the Kafka ledger is partitioned by org, and
    no partition can see another's ids, so both backends scope it the same way). Then by the
    source's own id, ``(org_id, source, source_event_id)``, whatever ``event_id`` the
    submission carries: a source that retries under a new ``event_id`` must not count twice.
    """
    digest = state.known.get((submission.org_id, event_id.bytes))
    if digest is not None:
        return event_id, digest, f"event_id {event_id}"
    if submission.source_event_id is None:
        return None
    first = state.sources.get((submission.org_id, submission.source, submission.source_event_id))
    if first is None:
        return None
    recorded = UUID(bytes=first)
    return (
        recorded,
        state.known[(submission.org_id, first)],
        f"source_event_id {submission.source_event_id!r} of source {submission.source!r} "
        f"(event {recorded})",
    )


def decide(
    state: LedgerState,
    raw: bytes | Oversized,
    *,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    line: int | None = None,
) -> Outcome:
    """Decide what becomes of one submission. Does not change ``state``.

    ``raw`` is the submitted bytes, or :class:`Oversized` for a submission the reader did not
    hold whole (always ``too_large``).
    """
    recorded_at = format_timestamp(now)
    if isinstance(raw, Oversized):
        too_large = _RejectedError(
            ReasonCode.TOO_LARGE, f"{raw.length} bytes, over the limit of {policy.max_bytes}", []
        )
        return _rejection(too_large, raw, recorded_at, line, {})
    try:
        submission, version, payload = _parse(raw, policy)
    except _RejectedError as rejected:
        return _rejection(rejected, raw, recorded_at, line, _peek(raw))

    event_id = submission.resolved_event_id()
    data = payload.model_dump(mode="json", exclude_none=True)
    content = _content(submission, version, data)
    digest = _digest(content)
    context = {
        "org_id": submission.org_id,
        "event_id": str(event_id),
        "type": submission.type,
        "source": submission.source,
    }
    recorded = _already_recorded(state, submission, event_id)
    if recorded is not None:
        recorded_id, recorded_digest, found_by = recorded
        if recorded_digest == digest:
            return Duplicate(str(recorded_id), submission.org_id)
        return _rejection(
            _RejectedError(
                ReasonCode.CONFLICT, f"{found_by} is already in the ledger with other content", []
            ),
            raw,
            recorded_at,
            line,
            context,
        )
    if submission.occurred_at > now + policy.clock_skew:
        return _rejection(
            _RejectedError(
                ReasonCode.CLOCK_SKEW,
                f"occurred_at {content['occurred_at']} is more than "
                f"{int(policy.clock_skew.total_seconds())}s ahead of the ledger clock",
                [{"loc": "occurred_at", "msg": "in the future"}],
            ),
            raw,
            recorded_at,
            line,
            context,
        )
    org = state.orgs.get(submission.org_id) or OrgState()
    if version != EVENT_TYPES[submission.type]:
        payload = payload_model(submission.type).model_validate(
            upcast(submission.type, version, data)
        )
    violation = check(org, payload)
    if violation is not None:
        return _rejection(
            _RejectedError(violation.reason, violation.message, []), raw, recorded_at, line, context
        )

    record = {
        "sequence": org.last_sequence + 1,
        "event_id": str(event_id),
        **content,
        "recorded_at": recorded_at,
        "prev_hash": org.last_hash,
    }
    record["hash"] = event_hash(record)
    return Accepted(LedgerEvent.from_record(record), digest)


def _peek(raw: bytes) -> dict[str, Any]:
    """Best-effort identification of a rejected submission, for the rejection record."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        key: value[:200]
        for key in ("org_id", "event_id", "type", "source")
        if isinstance(value := document.get(key), str)
    }


def _rejection(
    rejected: _RejectedError,
    raw: bytes | Oversized,
    recorded_at: str,
    line: int | None,
    context: dict[str, Any],
) -> Rejection:
    oversized = raw if isinstance(raw, Oversized) else None
    return Rejection(
        reason=rejected.reason,
        message=rejected.message,
        raw=raw if isinstance(raw, bytes) else raw.prefix,
        recorded_at=recorded_at,
        details=rejected.details,
        line=line,
        raw_length=oversized.length if oversized else None,
        raw_sha256=oversized.sha256 if oversized else None,
        **context,
    )


class Sequencer:
    """Holds a :class:`LedgerState` and advances it with every accepted event."""

    def __init__(self, state: LedgerState | None = None, policy: Policy = DEFAULT_POLICY) -> None:
        self.state = state or LedgerState()
        self.policy = policy

    @classmethod
    def from_ledger(
        cls, events: Iterable[LedgerEvent], policy: Policy = DEFAULT_POLICY
    ) -> "Sequencer":
        """Rebuild the state by folding the ledger (every org, in sequence order)."""
        sequencer = cls(policy=policy)
        for event in events:
            sequencer.fold(event)
        return sequencer

    def fold(self, event: LedgerEvent) -> None:
        """Fold an event that is in the ledger already (read on start, or another writer's)."""
        self.state.apply(event, content_digest(event))

    def submit(self, raw: bytes | Oversized, *, now: datetime, line: int | None = None) -> Outcome:
        outcome = decide(self.state, raw, now=now, policy=self.policy, line=line)
        if isinstance(outcome, Accepted):
            self.state.apply(outcome.event, outcome.digest)
        return outcome


_NOT_CONTENT = frozenset({"event_id", "sequence", "recorded_at", "prev_hash", "hash"})


def content_digest(event: LedgerEvent) -> bytes:
    """The digest :func:`decide` computed for the submission that became ``event``."""
    return _digest({k: v for k, v in event.to_record().items() if k not in _NOT_CONTENT})
