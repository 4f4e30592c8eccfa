"""One partition's sequencer core on the broker: its topics, a workload, the reference outcomes of
the embedded sequencer, and the check that each submission was recorded exactly once."""

import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from events.chain import verify_chain
from events.intake_wire import Origin, intake_message
from events.kafka_records import ChainRule, decode_event, encode_event, encode_rejection, org_key
from events.outcomes import Accepted, Duplicate, Outcome
from events.sequencer import DEFAULT_POLICY, Sequencer
from okr_ledger.demo import demo_submissions
from processors.kafka_sequencer import (
    BatchOutput,
    IntakeRecord,
    OutcomeRecord,
    PartitionSequencer,
    StoredRecord,
)
from processors.sequencer_state import FileState
from tests.builders import NOW, check_ins, org_setup

VOLATILE = ("recorded_at", "hash", "prev_hash")


class CrashError(Exception):
    """The simulated process died."""


@dataclass
class Topics:
    """In-memory stand-ins for one partition's ledger, the rejections and the outcomes."""

    ledger: list[StoredRecord] = field(default_factory=list)
    rejections: list[StoredRecord] = field(default_factory=list)
    outcomes: list[OutcomeRecord] = field(default_factory=list)
    budget: int | None = None
    """Writes left before the crash; ``None``: no crash."""

    def _spend(self) -> None:
        if self.budget is not None:
            if self.budget == 0:
                raise CrashError
            self.budget -= 1

    def run(self, intake: list[IntakeRecord], batch_size: int, now_step: int = 0) -> None:
        """Restore from the topics, then sequence intake to its end (or the crash)."""
        core = PartitionSequencer.restore(0, 1, self.ledger, self.rejections)
        start = core.resume_offset or 0
        for index in range(start, len(intake), batch_size):
            now = NOW + timedelta(seconds=now_step)
            self._write(core.decide_batch(intake[index : index + batch_size], now))

    def run_on_file(
        self, intake: list[IntakeRecord], batch_size: int, path: Path, now_step: int = 0
    ) -> None:
        """As :meth:`run`, as the worker does with a state file: the state is read from the
        file and brought up to date with what the topics hold after it; each batch is kept
        in the file once written (a crash while writing leaves the file as it was)."""
        state = FileState(path, 0)
        try:
            core, ledger_from, rejections_from = PartitionSequencer.from_state(
                0, 1, DEFAULT_POLICY, state
            )
            core.fold_ledger(s for s in self.ledger if s.offset >= (ledger_from or 0))
            core.fold_rejections(s for s in self.rejections if s.offset >= (rejections_from or 0))
            core.resume()
            start = core.resume_offset or 0
            for index in range(start, len(intake), batch_size):
                now = NOW + timedelta(seconds=now_step)
                with core.deciding(intake[index : index + batch_size], now) as output:
                    self._write(output)
                    ledger_next = len(self.ledger) if output.events else None
                    core.keep(output, ledger_next, len(self.rejections))
        finally:
            state.close()

    def _write(self, output: BatchOutput) -> None:
        for rejection, origin in output.rejections:
            self._spend()
            stored = StoredRecord(len(self.rejections), encode_rejection(rejection))
            self.rejections.append(_with_origin(stored, origin))
        for event, origin in output.events:
            self._spend()
            stored = StoredRecord(len(self.ledger), encode_event(event), key=org_key(event.org_id))
            self.ledger.append(_with_origin(stored, origin))
        for outcome in output.outcomes:
            self._spend()
            self.outcomes.append(outcome)


def _with_origin(stored: StoredRecord, origin: Origin) -> StoredRecord:
    return StoredRecord(stored.offset, stored.value, (origin.header(),), stored.key)


def submissions() -> list[bytes]:
    demo = demo_submissions()
    setup = org_setup("acme")
    early = next(check_ins(1, "acme"))  # rejected: its key result is defined just after it
    acme = [*setup[:-1], early, setup[-1], *check_ins(5, "acme")]
    mixed = [line for pair in zip(demo, acme, strict=False) for line in pair]
    mixed += demo[len(acme) :]
    return mixed + demo[:4] + acme[:3] + [b"{not json", demo[10]]  # duplicates, bad input


def intake_of(raws: list[bytes]) -> list[IntakeRecord]:
    """Intake records as the submitters produce them (keyed by org)."""
    records = []
    for offset, raw in enumerate(raws):
        message = intake_message(raw, f"s{offset}", None)
        records.append(IntakeRecord(0, offset, message.value, message.headers, message.key))
    return records


@functools.cache
def _reference(raws: tuple[bytes, ...]) -> tuple[Outcome, ...]:
    sequencer = Sequencer()
    return tuple(sequencer.submit(raw, now=NOW) for raw in raws)


def reference(raws: list[bytes]) -> tuple[Outcome, ...]:
    return _reference(tuple(raws))


def ledger_records(topics: Topics) -> list[tuple[dict[str, Any], Origin | None]]:
    rule = ChainRule()
    admitted = []
    for stored in topics.ledger:
        record = decode_event(stored.value)
        if rule.admit(record):
            admitted.append((record, Origin.from_headers(stored.headers)))
    return admitted


def assert_recorded_exactly_once(topics: Topics, raws: list[bytes]) -> None:
    expected = reference(raws)
    ledger = ledger_records(topics)
    for org_id in {record["org_id"] for record, _ in ledger}:
        chain = [record for record, _ in ledger if record["org_id"] == org_id]
        assert verify_chain(org_id, chain).ok
    recorded = Counter(origin.offset for _, origin in ledger if origin is not None)
    recorded.update(
        o.offset for s in topics.rejections if (o := Origin.from_headers(s.headers)) is not None
    )
    for offset, outcome in enumerate(expected):
        wanted = 0 if isinstance(outcome, Duplicate) else 1
        assert recorded[offset] == wanted, (offset, outcome.status)
    # the same events as one uninterrupted run, apart from recorded_at and the hashes
    accepted = [o.event.to_record() for o in expected if isinstance(o, Accepted)]
    assert len(ledger) == len(accepted)
    for (record, _), want in zip(ledger, accepted, strict=True):
        assert {k: v for k, v in record.items() if k not in VOLATILE} == {
            k: v for k, v in want.items() if k not in VOLATILE
        }
    # every submission has an answer, and every answer agrees with the uninterrupted run
    answers: dict[str, set[str]] = {}
    for outcome_record in topics.outcomes:
        document = orjson.loads(outcome_record.value)
        assert outcome_record.key == document["submission_id"].encode()
        answers.setdefault(document["submission_id"], set()).add(document["status"])
    assert answers == {f"s{offset}": {o.status} for offset, o in enumerate(expected)}
