"""Submitting on Kafka: produce to the intake topic, wait for each outcome on the outcomes topic.

Each submission is produced (idempotent, ``acks=all``) as :func:`events.intake_wire.intake_message`
builds it: keyed by its ``org_id``, to the partition Kafka's default partitioner would choose,
with an ``okr-submission-id`` header (unique per run) and, from a file, an ``okr-line`` header.
A submission without a readable ``org_id`` (not JSON, no ``org_id``) is produced all the same:
the worker rejects it with the same reason code as the embedded ledger and records the
rejection. A line too long for intake goes as a stand-in (its first 64 KiB, its length and
SHA-256), which the worker records as a ``too_large`` rejection. The outcomes topic is read with
manual assignment from its ends as they were before the first submission was produced, so no
answer is missed; outcomes are matched by submission id (a worker may send one again after a
crash: the first counts) and yielded in submission order. An outcome record that is not one
the worker wrote is ignored (and logged): the submission's own answer still comes.
"""

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from events.intake_wire import (
    Answer,
    Refusal,
    decode_outcome,
    intake_message,
    stand_in_message,
)
from events.kafka_client import Connection, OutRecord, Producer, Reader, partition_for
from events.kafka_log import servers_from_url
from events.ledger import ReadLine
from events.outcomes import Oversized
from okr_ledger.runtime import Refused
from okr_ledger.settings import Settings
from okr_ledger.submit_outcome import SubmitOutcome
from schemas.errors import LedgerUnavailableError

log = logging.getLogger(__name__)

CHUNK = 500
"""Submissions produced (and acknowledged) at a time."""
WINDOW = 20_000
"""At most this many submissions produced and not yet reported."""


class SubmitTimeoutError(LedgerUnavailableError):
    """No worker answered in time; the submissions produced stay on intake."""


class KafkaSubmitter:
    """Submits to a Kafka ledger and returns the worker's outcomes. Not thread-safe."""

    def __init__(
        self,
        servers: tuple[str, ...],
        *,
        intake: str = "okr.intake",
        outcomes: str = "okr.outcomes",
        timeout_s: float = 30.0,
    ) -> None:
        self.intake, self.outcomes, self.timeout_s = intake, outcomes, timeout_s
        self._connection = Connection(servers, "okr-submit")
        self._reader = Reader(self._connection)
        self._producer: Producer | None = None
        try:
            missing = sorted({intake, outcomes} - self._reader.topics())
            if missing:
                raise LedgerUnavailableError(
                    f"Kafka at {','.join(servers)} has no topic {', '.join(missing)}: "
                    "run `okr-ledger init`"
                )
            self._partitions = len(self._reader.partitions(intake))
            self._outcome_partitions = self._reader.partitions(outcomes)
            self._producer = Producer(self._connection)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_settings(cls, settings: Settings) -> "KafkaSubmitter":
        return cls(
            servers_from_url(settings.resolved_ledger_url),
            intake=settings.kafka_topic_intake,
            outcomes=settings.kafka_topic_outcomes,
            timeout_s=settings.submit_timeout_seconds,
        )

    def submit_many(self, lines: Iterable[ReadLine]) -> Iterator[SubmitOutcome]:
        """Produce every submission and yield its outcome, in order.

        Raises :class:`SubmitTimeoutError` when no answer came for ``timeout_s``.
        """
        run = _Run(self, self._reader.ends(self.outcomes, self._outcome_partitions))
        iterator = iter(lines)
        while chunk := list(islice(iterator, CHUNK)):
            run.produce(chunk)
            yield from run.collect(until=WINDOW - CHUNK, exhausted=False)
        yield from run.collect(until=0, exhausted=True)

    def submit(self, raw: bytes) -> SubmitOutcome:
        return next(self.submit_many([(raw, None)]))

    def refuse(self, refused: Sequence[Refused]) -> list[SubmitOutcome]:
        """Produce each refused submission with its ``okr-refusal`` headers; the worker
        records it as that rejection (only the worker writes the rejections topic)."""
        run = _Run(self, self._reader.ends(self.outcomes, self._outcome_partitions))
        run.produce(
            [(raw, line) for raw, _, line in refused], [refusal for _, refusal, _ in refused]
        )
        return list(run.collect(until=0, exhausted=True))

    def _produce(self, records: list[OutRecord]) -> None:
        if self._producer is None:
            raise LedgerUnavailableError("the Kafka submitter is closed")
        self._producer.send_all(records)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()
        self._reader.close()

    def __enter__(self) -> "KafkaSubmitter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Run:
    """One ``submit_many``: what was produced, what was answered, where the outcomes are read."""

    def __init__(self, submitter: KafkaSubmitter, positions: dict[int, int]) -> None:
        self.submitter = submitter
        self.prefix = uuid.uuid4().hex
        self.positions: dict[int, int | None] = dict(positions)
        self.pending: dict[str, ReadLine] = {}  # in submission order
        self.answers: dict[str, Answer] = {}
        self.produced = 0
        self.last_progress = time.monotonic()

    def produce(self, chunk: list[ReadLine], refusals: Sequence[Refusal] = ()) -> None:
        s = self.submitter
        records = []
        for n, (raw, line) in enumerate(chunk):
            submission_id = f"{self.prefix}-{self.produced}"
            if isinstance(raw, Oversized):  # the reader never held it whole
                message = stand_in_message(raw.prefix, raw.length, raw.sha256, submission_id, line)
            else:
                refusal = refusals[n] if refusals else None
                message = intake_message(raw, submission_id, line, refusal)
            key = message.key
            partition = partition_for(key or submission_id.encode(), s._partitions)
            records.append(OutRecord(s.intake, partition, key, message.value, message.headers))
            self.pending[submission_id] = (raw, line)
            self.produced += 1
        s._produce(records)
        self.last_progress = time.monotonic()

    def collect(self, until: int, exhausted: bool) -> Iterator[SubmitOutcome]:
        """Yield answered outcomes in order until at most ``until`` are pending."""
        self._read_or_give_up(exhausted)
        while True:
            yield from self._ready()
            if len(self.pending) <= until:
                return
            if not self._read_or_give_up(exhausted):
                if time.monotonic() - self.last_progress > self.submitter.timeout_s:
                    raise self._timeout(exhausted)
                time.sleep(0.05)

    def _ready(self) -> Iterator[SubmitOutcome]:
        while self.pending:
            submission_id = next(iter(self.pending))
            value = self.answers.pop(submission_id, None)
            if value is None:
                return
            raw, line = self.pending.pop(submission_id)
            yield SubmitOutcome.from_kafka(value, raw, line)

    def _read(self) -> bool:
        """Read new outcome records; whether any answered a pending submission. A read that
        stalls (a worker killed inside its transaction holds committed reads until the broker
        aborts it) gives up when the submitter's ``timeout_s`` since the last progress has
        passed, not after the connection's 30 s: a request is answered within it."""
        s = self.submitter
        found = False
        left_s = s.timeout_s - (time.monotonic() - self.last_progress)
        for record in s._reader.read(s.outcomes, self.positions, stall_s=max(0.1, left_s)):
            submission_id = record.key.decode("utf-8", "replace") if record.key else ""
            if submission_id in self.pending and submission_id not in self.answers:
                answer = decode_outcome(record.value)
                if answer is None:
                    log.warning(
                        "%s offset %s: not an outcome record, ignored", s.outcomes, record.offset
                    )
                    continue
                self.answers[submission_id] = answer
                found = True
        self.positions.update(s._reader.positions)
        if found:
            self.last_progress = time.monotonic()
        return found

    def _read_or_give_up(self, exhausted: bool) -> bool:
        """:meth:`_read`; a read of the outcomes that stalls (a worker killed inside its
        transaction holds committed reads until the broker aborts it) is no outcome in time."""
        try:
            return self._read()
        except LedgerUnavailableError as error:
            raise self._timeout(exhausted, cause=str(error)) from error

    def _timeout(self, exhausted: bool, cause: str = "") -> SubmitTimeoutError:
        s = self.submitter
        rest = "" if exhausted else "; the rest of the input was not submitted"
        because = f" ({cause})" if cause else ""
        return SubmitTimeoutError(
            f"{len(self.pending)} of {self.produced} submissions have no outcome after "
            f"{s.timeout_s:g}s{because}: is a worker running? Start one with `okr-ledger "
            f"worker`. They stay on {s.intake} and will be decided when it runs (submitting "
            f"them again is safe: a retry never counts twice){rest}"
        )
