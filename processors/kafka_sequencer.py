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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from events.intake_wire import (
    Headers,
    Intake,
    Origin,
    encode_outcome,
    identify,
    outcome_key,
    parse_intake,
    refused,
)
from events.kafka_records import ChainReader, decode_event, decode_rejection, org_key, placed
from events.outcomes import Accepted, Outcome, Rejection
from events.reasons import ReasonCode
from events.sequencer import DEFAULT_POLICY, Decider, Policy, Probe, probe, record_digest
from events.state import LedgerState
from processors.sequencer_state import FOLD_CHUNK, MemoryState, PartitionState
from schemas.envelope import format_timestamp

log = logging.getLogger(__name__)


class IntakeRecord(NamedTuple):
    """An intake record as the sequencer takes it. A named tuple, not a dataclass: a batch of
    them crosses the pipe to the sequencer process, and pickle moves tuples about three times
    faster than slotted dataclasses (which it rebuilds field by field)."""

    partition: int
    offset: int
    value: bytes
    headers: Headers = ()
    key: bytes | None = None
    unreadable: str | None = None
    """Why the consumer could not read this record (its key, value and headers are then
    unknown and left empty)."""


class IntakeBatch(list[IntakeRecord]):
    """A batch of intake records, as it crosses the pipe to the sequencer process: pickled as
    plain tuples (pickle rebuilds a named tuple through its class, record by record: about
    twice the cost of the tuple) and made records again on the other side."""

    def __reduce__(self) -> tuple[Any, tuple[list[tuple[Any, ...]]]]:
        return _intake_batch, (list(map(tuple, self)),)


def _intake_batch(rows: list[tuple[Any, ...]]) -> IntakeBatch:
    new = tuple.__new__
    return IntakeBatch([new(IntakeRecord, row) for row in rows])


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
    events: list[tuple[Accepted, Origin]] = field(default_factory=list)
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

    def __init__(
        self,
        partition: int,
        partitions: int,
        policy: Policy = DEFAULT_POLICY,
        state: PartitionState | None = None,
        lane: int = 0,
    ) -> None:
        """``lane``: the partition of the rejections topic this partition's rejections go to."""
        self.partition, self.partitions, self.policy = partition, partitions, policy
        self.state: PartitionState = state or MemoryState()
        self.lane = lane
        self._chain = ChainReader(partitions)  # for the partition of each org
        self.resume_offset: int | None = None
        """First intake offset to read; ``None``: the beginning (nothing recorded yet). Every
        record before it was decided and written whole (its outcome sent)."""
        self._recorded: dict[int, Outcome] = {}
        """Intake records at or after the resume point that are recorded already."""
        self._found: dict[int, tuple[int, Outcome]] = {}
        """What the folds found: intake offset -> (its batch's first offset, its outcome)."""

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
        """Rebuild from ledger partition ``partition`` and the whole of its rejections lane."""
        self = cls(partition, partitions, policy)
        self.fold_ledger(ledger)
        self.fold_rejections(rejections)
        self.resume()
        return self

    @classmethod
    def from_state(
        cls,
        partition: int,
        partitions: int,
        policy: Policy,
        state: PartitionState,
        lane: int = 0,
    ) -> tuple["PartitionSequencer", int | None, int | None]:
        """A sequencer on a state kept from before (a state file), and where to read the
        ledger and the rejections (``lane`` of the rejections topic) from (``None``: their
        beginning) to bring it up to date. A state that noted an offset of another lane (the
        topic's partitions changed) reads the lane from its beginning.

        The state notes where its owner resumed, and, while a restore's replays are not
        written yet, where that restore started reading: a restore cut short may have folded
        records whose intake records still had to be replayed, so the next one reads again
        from there (those records it only notes, if the state folded them)."""
        self = cls(partition, partitions, policy, state, lane)
        notes = state.notes()
        same_lane = notes.get("rejections_lane", 0) == lane
        ledger_from = state.ledger_next
        rejections_from = notes.get("rejections_next") if same_lane else None
        if "resume" in notes:
            self.resume_offset = notes["resume"]
        if notes.get("replay_ledger", -1) >= 0:
            ledger_from = min(notes["replay_ledger"], ledger_from or 0)
        if same_lane and notes.get("replay_rejections", -1) >= 0:
            rejections_from = min(notes["replay_rejections"], rejections_from or 0)
        state.note({"replay_ledger": ledger_from or 0, "replay_rejections": rejections_from or 0})
        return self, ledger_from, rejections_from

    def fold_ledger(self, ledger: Iterable[StoredRecord]) -> int:
        """Fold ledger records of this partition that this state does not reflect yet, in
        partition order (the chain rule decides which are part of the ledger), and note the
        intake records they record. Records before the state's ``ledger_next`` (re-read to
        find what a restore cut short must replay) are only noted, if the state folded them.
        Then :meth:`fold_rejections`, then :meth:`resume`. Returns the records read."""
        folded_to = self.state.ledger_next
        chain = ChainReader(self.partitions, self.state.head)
        chunk: list[dict[str, Any]] = []
        seen: list[tuple[dict[str, Any], Origin]] = []
        read = last = 0
        for stored in ledger:
            read += 1
            origin = Origin.from_headers(stored.headers)
            mine = origin is not None and origin.partition == self.partition
            if folded_to is not None and stored.offset < folded_to:
                before = decode_event(stored.value)
                if (
                    origin is not None
                    and mine
                    and _event_like(before, stored, self.partition, chain)
                ):
                    seen.append((before, origin))
                continue
            record = chain.admit(self.partition, stored.key, stored.value)
            if record is None:
                continue  # an orphan: not part of the ledger (chain rule)
            chunk.append(record)
            last = stored.offset
            if origin is not None:
                accepted = Accepted(record, record_digest(record))
                self._found[origin.offset] = origin.batch_start, accepted
            if len(chunk) >= FOLD_CHUNK:
                self.state.fold(chunk, last + 1)
                chunk = []
        if chunk:
            self.state.fold(chunk, last + 1)
        self._note_known(seen)
        return read

    def _note_known(self, seen: list[tuple[dict[str, Any], Origin]]) -> None:
        """Note the intake records of events read before the state's end that it folded."""
        if not seen:
            return
        folded = self.state.knows([record for record, _ in seen])
        for (record, origin), known in zip(seen, folded, strict=True):
            if known:
                accepted = Accepted(record, record_digest(record))
                self._found[origin.offset] = origin.batch_start, accepted

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
        batch that left a trace (every earlier batch is complete), or this state's own resume
        point if that is later (every record before it was written whole by this state, so
        the traces it finds there are its own). Records at or after the resume point that are
        recorded already are not decided again; only their outcome is sent again."""
        found, self._found = self._found, {}
        if not found:
            return
        latest = max(start for start, _ in found.values())
        resume = latest if self.resume_offset is None else max(latest, self.resume_offset)
        self.resume_offset = resume
        pending = {offset: o for offset, o in self._recorded.items() if offset >= resume}
        pending.update((offset, o) for offset, (_, o) in found.items() if offset >= resume)
        self._recorded = pending

    def _owner(self, org_id: str) -> int:
        """The intake and ledger partition of ``org_id`` (murmur2, as producers key it)."""
        return self._chain.owner(org_id)

    @contextmanager
    def deciding(self, records: Sequence[IntakeRecord], now: datetime) -> Iterator[BatchOutput]:
        """Decide a batch (consecutive records of this partition, in offset order) in the
        state's transaction; write it, then :meth:`keep` it, before the block ends.

        Every record gets exactly one outcome, whatever it holds. Should the state fail to
        take an accepted event (a bug), that record is rejected, the batch ends there and
        ``output.restore`` asks for the state to be rebuilt from the topics. If the block
        raises, this sequencer must not decide again: restore one.
        """
        live = [r for r in records if self.resume_offset is None or r.offset >= self.resume_offset]
        max_bytes = self.policy.max_bytes
        intakes = [parse_intake(r.value, r.headers, max_bytes) for r in live]
        probes = [probe(r.value, self.policy) for r in live]
        with self.state.deciding(probes) as state:
            yield self._decide_all(state, live, intakes, probes, now)

    def keep(self, output: BatchOutput, ledger_next: int | None, rejections_next: int) -> None:
        """The batch decided in :meth:`deciding` is written: keep it (``ledger_next``: the
        offset after its last event, if it wrote any; ``rejections_next``: the offset of
        :attr:`lane` up to which the state is folded)."""
        accepted = [outcome for outcome, _ in output.events]
        notes = {
            "resume": self.resume_offset or 0,
            "rejections_next": rejections_next,
            "rejections_lane": self.lane,
        }
        if not self._recorded:  # nothing left to replay: a restore need not look back
            notes |= {"replay_ledger": -1, "replay_rejections": -1}
        self.state.keep(accepted, ledger_next, notes)

    def decide_batch(self, records: Sequence[IntakeRecord], now: datetime) -> BatchOutput:
        """:meth:`deciding` and :meth:`keep` at once, for a state in memory whose outputs are
        written afterwards (the tests; a failed write then needs a restore all the same)."""
        with self.deciding(records, now) as output:
            self.keep(output, None, 0)
        return output

    def _decide_all(
        self,
        state: LedgerState,
        live: list[IntakeRecord],
        intakes: list[Intake],
        probes: list[Probe | None],
        now: datetime,
    ) -> BatchOutput:
        output = BatchOutput()
        if not live:
            return output
        start = live[0].offset
        decider = Decider(now, self.policy)
        for record, intake, probed in zip(live, intakes, probes, strict=True):
            if record.partition != self.partition:
                raise ValueError(
                    f"record of partition {record.partition} given to {self.partition}"
                )
            outcome = self._recorded.pop(record.offset, None)
            if outcome is not None:
                output.replayed += 1
            else:
                outcome, output.restore = self._decide(state, record, intake, probed, decider)
                origin = Origin(self.partition, record.offset, start)
                if isinstance(outcome, Accepted):
                    output.events.append((outcome, origin))
                elif isinstance(outcome, Rejection):
                    output.rejections.append((outcome, origin))
            output.outcomes.append(outcome_record(record, intake, outcome))
            self.resume_offset = record.offset + 1
            if output.restore:
                break
        return output

    def _decide(
        self,
        state: LedgerState,
        record: IntakeRecord,
        intake: Intake,
        probed: Probe | None,
        decider: Decider,
    ) -> tuple[Outcome, bool]:
        """The record's outcome, and whether the state must be restored from the topics
        (``probed``: the record's :func:`~events.sequencer.probe`, made for the state's load,
        used again to decide it)."""
        now = decider.now
        try:
            outcome = self._framing(record, intake, probed, now) or decider(
                state, record.value, probed, intake.line
            )
        except Exception as error:  # decide() is pure: the state is as it was
            log.exception("partition %s offset %s: deciding failed", self.partition, record.offset)
            return self._failed(record, intake, now, error), False
        if not isinstance(outcome, Accepted):
            return outcome, False
        try:
            fields = outcome.record
            key = outcome.key or bytes.fromhex(fields["event_id"].replace("-", ""))
            state.apply_record(fields, key, outcome.digest, outcome.submitted)
        except Exception as error:  # the state may be half-changed: rebuild it
            log.exception("partition %s offset %s: applying failed", self.partition, record.offset)
            return self._failed(record, intake, now, error), True
        return outcome, False

    def _framing(
        self, record: IntakeRecord, intake: Intake, probed: Probe | None, now: datetime
    ) -> Rejection | None:
        """The rejection of a record whose framing is wrong (unreadable, bad headers, key
        or partition), of a stand-in (``too_large``) or of a submission its submitter refused
        (``okr-refusal``: recorded as it says, never decided); ``None``: the rules decide."""
        if record.unreadable is not None:
            message = f"the intake record could not be read: {record.unreadable}"
            return self._invalid(record, intake, now, [{"loc": "record", "msg": message}])
        if intake.problems:
            return self._invalid(record, intake, now, list(intake.problems))
        if intake.refusal is not None:  # of a stand-in too: recorded under the refusal
            limit = self.policy.max_bytes
            return refused(
                record.value,
                intake.refusal,
                format_timestamp(now),
                intake.line,
                limit,
                stand_in=intake.stand_in,
            )
        if intake.stand_in is not None:
            claimed = intake.stand_in
            return Rejection(
                reason=ReasonCode.TOO_LARGE,
                message=(
                    f"{claimed.length} bytes, over the limit of {self.policy.max_bytes} "
                    f"(too long for intake: the submitter sent its first {len(record.value)} "
                    "bytes, its length and SHA-256)"
                ),
                raw=record.value,
                recorded_at=format_timestamp(now),
                line=intake.line,
                raw_length=claimed.length,
                raw_sha256=claimed.sha256,
            )
        org_id = None if probed is None else probed.org_id  # the value's, if it is readable
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
        found = identify(record.value, self.policy.max_bytes)
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


def _event_like(
    record: dict[str, Any], stored: StoredRecord, partition: int, chain: ChainReader
) -> bool:
    """Under its org's key in its org's partition, with an event id: what a state may have
    folded (whether it did is the state's to say)."""
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not placed(record, stored.key, partition, chain.owner):
        return False
    try:
        UUID(event_id)
    except ValueError:
        return False
    return True
