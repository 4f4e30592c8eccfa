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

Every intake record gets exactly one outcome, whatever it holds (``invalid_record`` for a bad
framing or an unexpected failure; see :meth:`PartitionSequencer.decide_batch`). A record whose
key is not its ``org_id``, or whose org belongs to another partition (a producer that did not
key by ``org_id`` or used another partitioner), cannot be sequenced here without racing the
owner of that org's chain; it is rejected (``invalid_record`` at ``key`` or ``partition``) with
an explanation.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from events.intake_wire import (
    Headers,
    Intake,
    Origin,
    encode_outcome,
    identify,
    outcome_key,
    parse_intake,
    peek_org,
    refused,
)
from events.kafka_records import GENESIS, ChainReader, decode_rejection, org_key
from events.log import ChainHead
from events.outcomes import Accepted, Outcome, Rejection
from events.reasons import ReasonCode
from events.sequencer import DEFAULT_POLICY, Policy, Sequencer, content_digest, decide
from schemas.envelope import LedgerEvent, format_timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntakeRecord:
    partition: int
    offset: int
    value: bytes
    headers: Headers = ()
    key: bytes | None = None
    unreadable: str | None = None
    """Why the consumer could not read this record (its key, value and headers are then
    unknown and left empty)."""


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
    restore: bool = False
    """The batch was cut short because the state could not take an accepted event: write
    it, then restore the sequencer from the topics before reading on."""


def outcome_record(record: IntakeRecord, intake: Intake, outcome: Outcome) -> OutcomeRecord:
    """The outcome a waiting submitter matches: by submission id, or by intake offset."""
    submission_id = intake.submission_id
    value = encode_outcome(outcome, submission_id, record.partition, record.offset)
    key = outcome_key(submission_id, record.partition, record.offset)
    return OutcomeRecord(record.partition, key, value)


class PartitionSequencer:
    """Decides the intake records of one partition; see the module docstring."""

    def __init__(self, partition: int, partitions: int, policy: Policy = DEFAULT_POLICY) -> None:
        self.partition, self.partitions = partition, partitions
        self.sequencer = Sequencer(policy=policy)
        self._chain = ChainReader(partitions)  # for the partition of each org
        self.resume_offset: int | None = None
        """First intake offset to read; ``None``: the beginning (nothing recorded yet)."""
        self._recorded: dict[int, Outcome] = {}
        """Intake records at or after the resume point that are recorded already."""
        self._found: dict[int, tuple[int, Outcome]] = {}
        """What the folds found: intake offset -> (its batch's first offset, its outcome)."""
        self._last_batch: tuple[int, dict[int, Outcome]] | None = None
        """The last batch this state decided: its first offset, and the outcomes of its
        records that left a trace (events, rejections)."""

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
        self.fold_ledger(ledger)
        self.fold_rejections(rejections)
        self.resume()
        return self

    def fold_ledger(self, ledger: Iterable[StoredRecord]) -> None:
        """Fold ledger records of this partition that this state does not reflect yet, in
        partition order (the chain rule decides which are part of the ledger), and note the
        intake records they record. Then :meth:`fold_rejections`, then :meth:`resume`."""
        chain = ChainReader(self.partitions, self._head)
        state = self.sequencer.state
        for stored in ledger:
            record = chain.admit(self.partition, stored.key, stored.value)
            if record is None:
                continue  # an orphan: not part of the ledger (chain rule)
            event = LedgerEvent.from_record(record)
            digest = content_digest(event)
            state.apply(event, digest)
            origin = Origin.from_headers(stored.headers)
            if origin is not None and origin.partition == self.partition:
                self._found[origin.offset] = origin.batch_start, Accepted.of(event, digest)

    def fold_rejections(self, rejections: Iterable[StoredRecord]) -> None:
        """Note the intake records of this partition that rejections-topic records record."""
        for stored in rejections:
            origin = Origin.from_headers(stored.headers)
            if origin is None or origin.partition != self.partition:
                continue
            rejection = decode_rejection(stored.value)
            if rejection is None:  # a foreign write: it records nothing
                log.warning("rejections offset %s: not a rejection record, ignored", stored.offset)
                continue
            self._found[origin.offset] = origin.batch_start, rejection

    def resume(self) -> None:
        """Where to read intake from, after what was folded: the first offset of the latest
        batch that left a trace (every earlier batch is complete). Its records already
        recorded are not decided again; only their outcome is sent again.

        A state that decided batches itself and folds only what came after (a worker taking
        its partition back) counts its own last batch among the traces: the same answer as
        folding the whole ledger.
        """
        found, self._found = self._found, {}
        if self._last_batch is not None:
            start, outcomes = self._last_batch
            for offset, outcome in outcomes.items():
                found.setdefault(offset, (start, outcome))
        if not found:
            return
        resume = max(start for start, _ in found.values())
        self.resume_offset = resume
        self._recorded = {
            offset: outcome for offset, (_, outcome) in found.items() if offset >= resume
        }

    def heads(self) -> dict[str, ChainHead]:
        """Every org's chain head as this state has it."""
        return {
            org_id: ChainHead(org.last_sequence, org.last_hash)
            for org_id, org in self.sequencer.state.orgs.items()
        }

    def _owner(self, org_id: str) -> int:
        """The intake and ledger partition of ``org_id`` (murmur2, as producers key it)."""
        return self._chain.owner(org_id)

    def _head(self, org_id: str) -> ChainHead:
        org = self.sequencer.state.orgs.get(org_id)
        return ChainHead(org.last_sequence, org.last_hash) if org else GENESIS

    def decide_batch(self, records: Sequence[IntakeRecord], now: datetime) -> BatchOutput:
        """Decide a batch (consecutive records of this partition, in offset order).

        Every record gets exactly one outcome, whatever it holds. Should the state fail to
        take an accepted event (a bug), that record is rejected, the batch ends there and
        ``output.restore`` asks for the state to be rebuilt from the topics.
        """
        output = BatchOutput()
        live = [r for r in records if self.resume_offset is None or r.offset >= self.resume_offset]
        if not live:
            return output
        start = live[0].offset
        traced: dict[int, Outcome] = {}
        for record in live:
            if record.partition != self.partition:
                raise ValueError(
                    f"record of partition {record.partition} given to {self.partition}"
                )
            intake = parse_intake(record.value, record.headers, self.sequencer.policy.max_bytes)
            outcome = self._recorded.pop(record.offset, None)
            if outcome is not None:
                output.replayed += 1
                traced[record.offset] = outcome
            else:
                outcome, output.restore = self._decide(record, intake, now)
                origin = Origin(self.partition, record.offset, start)
                if isinstance(outcome, Accepted):
                    output.events.append((outcome.event, origin))
                    traced[record.offset] = outcome
                elif isinstance(outcome, Rejection):
                    output.rejections.append((outcome, origin))
                    traced[record.offset] = outcome
            output.outcomes.append(outcome_record(record, intake, outcome))
            self.resume_offset = record.offset + 1
            if output.restore:
                break
        if traced:
            self._last_batch = start, traced
        return output

    def _decide(self, record: IntakeRecord, intake: Intake, now: datetime) -> tuple[Outcome, bool]:
        """The record's outcome, and whether the state must be restored from the topics."""
        try:
            outcome = self._framing(record, intake, now) or decide(
                self.sequencer.state,
                record.value,
                now=now,
                policy=self.sequencer.policy,
                line=intake.line,
            )
        except Exception as error:  # decide() is pure: the state is as it was
            log.exception("partition %s offset %s: deciding failed", self.partition, record.offset)
            return self._failed(record, intake, now, error), False
        if not isinstance(outcome, Accepted):
            return outcome, False
        try:
            self.sequencer.state.apply(outcome.event, outcome.digest)
        except Exception as error:  # the state may be half-changed: rebuild it
            log.exception("partition %s offset %s: applying failed", self.partition, record.offset)
            return self._failed(record, intake, now, error), True
        return outcome, False

    def _framing(self, record: IntakeRecord, intake: Intake, now: datetime) -> Rejection | None:
        """The rejection of a record whose framing is wrong (unreadable, bad headers, key
        or partition), of a stand-in (``too_large``) or of a submission its submitter refused
        (``okr-refusal``: recorded as it says, never decided); ``None``: the rules decide."""
        if record.unreadable is not None:
            message = f"the intake record could not be read: {record.unreadable}"
            return self._invalid(record, intake, now, [{"loc": "record", "msg": message}])
        if intake.problems:
            return self._invalid(record, intake, now, list(intake.problems))
        if intake.stand_in is not None:
            claimed = intake.stand_in
            return Rejection(
                reason=ReasonCode.TOO_LARGE,
                message=(
                    f"{claimed.length} bytes, over the limit of {self.sequencer.policy.max_bytes} "
                    f"(too long for intake: the submitter sent its first {len(record.value)} "
                    "bytes, its length and SHA-256)"
                ),
                raw=record.value,
                recorded_at=format_timestamp(now),
                line=intake.line,
                raw_length=claimed.length,
                raw_sha256=claimed.sha256,
            )
        if intake.refusal is not None:
            limit = self.sequencer.policy.max_bytes
            return refused(record.value, intake.refusal, format_timestamp(now), intake.line, limit)
        org_id = peek_org(record.value, self.sequencer.policy.max_bytes)
        if org_id is None:
            return None  # the rules reject it (not JSON, no org_id...)
        if record.key != org_key(org_id):
            shown = "none" if record.key is None else repr(record.key[:60])
            message = f"the key must be the org_id {org_id[:200]!r} in UTF-8, not {shown}"
            return self._invalid(record, intake, now, [{"loc": "key", "msg": message}])
        owner = self._owner(org_id)
        if owner != self.partition:
            message = (
                f"org {org_id!r} belongs to intake partition {owner}, not {self.partition}: "
                "key intake records by org_id with Kafka's default (murmur2) partitioner"
            )
            return self._invalid(record, intake, now, [{"loc": "partition", "msg": message}])
        return None

    def _failed(
        self, record: IntakeRecord, intake: Intake, now: datetime, error: Exception
    ) -> Rejection:
        message = f"the sequencer failed on this record ({type(error).__name__}); it is kept here"
        return self._invalid(record, intake, now, [{"loc": "record", "msg": message}])

    def _invalid(
        self, record: IntakeRecord, intake: Intake, now: datetime, details: list[dict[str, str]]
    ) -> Rejection:
        """An ``invalid_record`` rejection, identified as far as the value can be read."""
        message = "; ".join(f"{d['loc']}: {d['msg']}" for d in details[:3])
        found = identify(record.value, self.sequencer.policy.max_bytes)
        return Rejection(
            reason=ReasonCode.INVALID_RECORD,
            message=f"invalid intake record: {message}",
            raw=record.value,
            recorded_at=format_timestamp(now),
            details=details,
            org_id=found.get("org_id"),
            event_id=found.get("event_id"),
            type=found.get("type"),
            source=found.get("source"),
            line=intake.line,
        )
