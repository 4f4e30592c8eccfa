"""The sequencer of one intake partition, without transport: intake records in, records out.

Kafka transactions cannot be used (Tansu does not isolate aborted ones), so crash safety
comes from what the outputs themselves record:

- Intake partition ``p`` feeds ledger partition ``p`` (both are murmur2 of the org id over
  the same partition count); one :class:`PartitionSequencer` owns both.
- Every ledger event and every rejection carries an ``okr-intake`` header naming the intake
  record it came from and the first offset of its batch (:class:`Origin`).
- A batch is written in three steps, each acknowledged before the next: rejections, then
  ledger events (in order), then outcomes. Its offsets are never committed anywhere: the
  outputs are the commit.
- :meth:`PartitionSequencer.restore` rebuilds the state from the ledger partition (chain rule)
  and finds the latest batch with any recorded output. Every earlier batch was completed
  (a batch starts only after the previous one was acknowledged), so reading resumes at that
  batch's first offset. Its records that were already recorded are not decided again: only
  their outcome is sent again; the rest are decided against the ledger as it is.

Writing rejections before events keeps every unrecorded decision reproducible: after a crash,
the accepted events still to write are decided again against the same ledger prefix as before.

An intake record whose org belongs to another partition (a producer that did not key by
``org_id`` or used another partitioner) cannot be sequenced here without racing the owner of
that org's chain; it is rejected (``schema_violation`` at ``key``) with an explanation.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from events.kafka_client import partition_for
from events.kafka_records import ChainRule, decode_event, decode_rejection, org_key, placed
from events.outcomes import Accepted, Outcome, Rejection
from events.reasons import ReasonCode
from events.sequencer import DEFAULT_POLICY, Policy, Sequencer, content_digest
from schemas.envelope import LedgerEvent, format_timestamp

INTAKE_HEADER = "okr-intake"
"""On ledger events and rejections: ``partition/offset/batch_start`` of the intake record."""
SUBMISSION_HEADER = "okr-submission-id"
"""Optional on intake records: echoed in the outcome, which it also keys."""
LINE_HEADER = "okr-line"
"""Optional on intake records: the submission's line number in its file, kept on a rejection."""

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an output came from: an intake record, and the first offset of its batch."""

    partition: int
    offset: int
    batch_start: int

    def header(self) -> tuple[str, bytes]:
        return INTAKE_HEADER, f"{self.partition}/{self.offset}/{self.batch_start}".encode()

    @classmethod
    def from_headers(cls, headers: Headers) -> "Origin | None":
        for name, value in headers:
            if name == INTAKE_HEADER:
                try:
                    partition, offset, start = (int(part) for part in value.split(b"/"))
                except ValueError:
                    return None
                return cls(partition, offset, start)
        return None


@dataclass(frozen=True, slots=True)
class IntakeRecord:
    partition: int
    offset: int
    value: bytes
    headers: Headers = ()

    @property
    def submission_id(self) -> str | None:
        for name, value in self.headers:
            if name == SUBMISSION_HEADER:
                return value.decode("utf-8", errors="replace")
        return None

    @property
    def line(self) -> int | None:
        for name, value in self.headers:
            if name == LINE_HEADER:
                return int(value) if value.isdigit() else None
        return None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record read back from the ledger or rejections topic."""

    offset: int
    value: bytes
    headers: Headers = ()
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    partition: int
    key: bytes
    value: bytes


@dataclass(slots=True)
class BatchOutput:
    """What one batch writes, in this order: rejections, events, outcomes."""

    rejections: list[tuple[Rejection, Origin]] = field(default_factory=list)
    events: list[tuple[LedgerEvent, Origin]] = field(default_factory=list)
    outcomes: list[OutcomeRecord] = field(default_factory=list)
    replayed: int = 0
    """Records recorded before a restart: only their outcomes are written again."""


def outcome_record(record: IntakeRecord, outcome: Outcome) -> OutcomeRecord:
    """The outcome a waiting submitter matches: by submission id, or by intake offset."""
    document: dict[str, Any] = {
        "status": outcome.status,
        "org_id": None,
        "event_id": None,
        "submission_id": record.submission_id,
        "intake_partition": record.partition,
        "intake_offset": record.offset,
    }
    if isinstance(outcome, Rejection):
        document |= {
            "org_id": outcome.org_id,
            "event_id": outcome.event_id,
            "reason_code": outcome.reason.value,
            "message": outcome.message,
            "details": outcome.details,
            "recorded_at": outcome.recorded_at,
            "type": outcome.type,
            "source": outcome.source,
            "line": outcome.line,
        }
    else:
        document |= outcome.to_json()
    key = record.submission_id or f"{record.partition}/{record.offset}"
    return OutcomeRecord(record.partition, key.encode(), orjson.dumps(document))


class PartitionSequencer:
    """Decides the intake records of one partition; see the module docstring."""

    def __init__(self, partition: int, partitions: int, policy: Policy = DEFAULT_POLICY) -> None:
        self.partition, self.partitions = partition, partitions
        self.sequencer = Sequencer(policy=policy)
        self.resume_offset: int | None = None
        """First intake offset to read; ``None``: the beginning (nothing recorded yet)."""
        self._recorded: dict[int, Outcome] = {}

    @property
    def pending_recorded(self) -> int:
        """Records at or after the resume point that are recorded already (a cut batch)."""
        return len(self._recorded)

    @classmethod
    def restore(
        cls,
        partition: int,
        partitions: int,
        ledger: Iterable[StoredRecord],
        rejections: Iterable[StoredRecord],
        policy: Policy = DEFAULT_POLICY,
    ) -> "PartitionSequencer":
        """Rebuild from ledger partition ``partition`` and the whole rejections topic."""
        self = cls(partition, partitions, policy)
        rule = ChainRule()
        recorded: dict[int, tuple[int, Outcome]] = {}  # intake offset -> batch start, outcome
        for stored in ledger:
            record = decode_event(stored.value)
            if not (placed(record, stored.key, partition, self._owner) and rule.admit(record)):
                continue  # an orphan: not part of the ledger (chain rule)
            event = LedgerEvent.from_record(record)
            digest = content_digest(event)
            self.sequencer.state.apply(event, digest)
            origin = Origin.from_headers(stored.headers)
            if origin is not None and origin.partition == partition:
                recorded[origin.offset] = origin.batch_start, Accepted(event, digest)
        for stored in rejections:
            origin = Origin.from_headers(stored.headers)
            if origin is not None and origin.partition == partition:
                recorded[origin.offset] = origin.batch_start, decode_rejection(stored.value)
        if recorded:
            self.resume_offset = max(start for start, _ in recorded.values())
            self._recorded = {
                offset: outcome
                for offset, (_, outcome) in recorded.items()
                if offset >= self.resume_offset
            }
        return self

    def _owner(self, org_id: str) -> int:
        """The intake and ledger partition of ``org_id`` (murmur2, as producers key it)."""
        return partition_for(org_key(org_id), self.partitions)

    def decide_batch(self, records: Sequence[IntakeRecord], now: datetime) -> BatchOutput:
        """Decide a batch (consecutive records of this partition, in offset order)."""
        output = BatchOutput()
        live = [r for r in records if self.resume_offset is None or r.offset >= self.resume_offset]
        if not live:
            return output
        start = live[0].offset
        for record in live:
            if record.partition != self.partition:
                raise ValueError(
                    f"record of partition {record.partition} given to {self.partition}"
                )
            outcome = self._recorded.pop(record.offset, None)
            if outcome is not None:
                output.replayed += 1
            else:
                outcome = self._decide(record, now)
                origin = Origin(self.partition, record.offset, start)
                if isinstance(outcome, Accepted):
                    output.events.append((outcome.event, origin))
                elif isinstance(outcome, Rejection):
                    output.rejections.append((outcome, origin))
            output.outcomes.append(outcome_record(record, outcome))
        self.resume_offset = live[-1].offset + 1
        return output

    def _decide(self, record: IntakeRecord, now: datetime) -> Outcome:
        misrouted = self._misrouted(record, now)
        if misrouted is not None:
            return misrouted
        return self.sequencer.submit(record.value, now=now, line=record.line)

    def _misrouted(self, record: IntakeRecord, now: datetime) -> Rejection | None:
        try:
            document = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return None  # the rules reject it; no org to route by
        org_id = document.get("org_id") if isinstance(document, dict) else None
        if not isinstance(org_id, str):
            return None
        owner = self._owner(org_id)
        if owner == self.partition:
            return None
        message = (
            f"org {org_id!r} belongs to intake partition {owner}, not {self.partition}: key "
            "intake records by org_id with Kafka's default (murmur2) partitioner"
        )
        return Rejection(
            reason=ReasonCode.SCHEMA_VIOLATION,
            message=message,
            raw=record.value,
            recorded_at=format_timestamp(now),
            details=[{"loc": "key", "msg": message}],
            org_id=org_id[:200],
            event_id=_text(document, "event_id"),
            type=_text(document, "type"),
            source=_text(document, "source"),
            line=record.line,
        )


def _text(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value[:200] if isinstance(value, str) else None
