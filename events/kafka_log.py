"""The event log on Kafka: a ledger topic keyed by org and a rejections topic.

All of one org's events go to one partition (murmur2 of the org id, as Kafka's default
partitioner), so an org is read from its partition alone. What belongs to the ledger is
defined by the chain rule (:class:`events.kafka_records.ChainReader`): records that do not
continue their org's chain are orphans, skipped by every reader and listed by
:meth:`KafkaEventLog.orphans`.

**One write path.** Everything written to the ledger goes through :class:`LedgerWriter`: the
event log's :meth:`~KafkaEventLog.append`, and the Kafka worker, which owns a partition and
writes it through :meth:`KafkaEventLog.partition_writer` (a transactional id of its own, so
that the next owner fences it). A batch is written in steps, each acknowledged before the next,
in one transaction (:mod:`events.kafka_transactions`):

1. the rejections, to the writer's own lane of the rejections topic (see below);
2. the events, after checking that each continues its org's head (otherwise
   :class:`SequenceConflictError` and nothing is written); then their offsets are checked:
   if another writer's record landed before or among them, whether they continue the chain is
   for the chain rule to say, and the writer reports the partition as *moved*;
3. what answers for the batch (the worker's outcomes), only when no partition moved.

On a Kafka that isolates aborted transactions (readers ``read_committed``), a batch is all or
none. Tansu 0.6 (the broker of the tests) does not: a crash in the middle leaves a prefix of
the steps visible, and the order above keeps every prefix meaningful (see docs/ARCHITECTURE.md,
"The Kafka runtime"). A transaction's commit marker takes an offset in each partition it wrote,
so a writer expects its next batch one offset after its last event plus one.

**Rejection lanes** (:class:`events.kafka_records.RejectionLanes`). A partition writer sends
its rejections to its own partition of the rejections topic, so that no partition is written
by two transactional ids. Tansu ends a transaction only from an end that finds every other
unfinished transaction sharing a partition with it prepared too; while the rejections topic
had one partition, shared by every worker, a worker's last transaction could stay unfinished
after it left or died, and every committed read of its partitions waited for good
(docs/ARCHITECTURE.md, "One writer per partition"). The event log's own writer (not a
worker's) sends a rejection to its org's lane, lane 0 when it has none.

The event log itself (a ``Ledger`` on ``kafka://``, the tests) has no lock: it catches up with
its orgs' partitions first, and if a partition moved under a batch it reads it again and raises
:class:`SequenceConflictError` if any of the batch's events became an orphan.
"""

import heapq
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

from events.chain import ChainReport, ChainVerifier
from events.kafka_client import Connection, InRecord, OutRecord, Reader
from events.kafka_records import (
    ChainReader,
    ChainRule,
    RejectionLanes,
    decode_event,
    encode_event,
    encode_rejection,
    org_key,
    org_of_key,
    read_rejection,
)
from events.kafka_transactions import BatchProducer
from events.log import ChainHead, Decider, Mark, NewEvents
from events.outcomes import Accepted, Rejection
from events.stored import StoredBytes, parse_event
from schemas.envelope import LedgerEvent
from schemas.errors import (
    ConfigurationError,
    LedgerDamagedError,
    LedgerUnavailableError,
    SequenceConflictError,
)

Headers = tuple[tuple[str, bytes], ...]

DEFAULT_PORT = 9092


def servers_from_url(url: str) -> tuple[str, ...]:
    """``kafka://host:port[,host2:port]`` -> bootstrap servers (the port defaults to 9092)."""
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc or parts.path not in ("", "/"):
        raise ConfigurationError(f"not a Kafka URL: {url!r} (expected kafka://host:port[,...])")
    servers = []
    for server in parts.netloc.split(","):
        host, _, port = server.strip().rpartition(":") if ":" in server else (server, "", "")
        if not host or (port and not port.isdigit()):
            raise ConfigurationError(f"{url!r}: {server!r} is not host:port")
        servers.append(f"{host}:{port or DEFAULT_PORT}")
    return tuple(servers)


@dataclass(frozen=True, slots=True)
class Appended:
    """What :meth:`LedgerWriter.append` wrote."""

    offsets: dict[int, list[int]]
    """Per ledger partition, the offsets of the batch's events, in order."""
    rejections: list[int]
    """The offsets of the batch's rejections in their lane, in order."""
    moved: frozenset[int]
    """Partitions where another writer's record landed before or among the batch's events:
    the writer does not know whether they continue their chains (read them back), and sent
    no answers."""


class LedgerWriter:
    """Writes batches to the ledger: see "One write path" in the module docstring.

    ``chain`` holds the heads the events must continue and ``positions`` the offset each
    partition's next event must land at; both advance with every batch written whole (the
    event log shares them with its catch-up reads). ``partitions`` limits the partitions it
    may write (a worker's writer owns one). Not thread-safe.
    """

    def __init__(
        self,
        producer: BatchProducer,
        chain: ChainReader,
        positions: dict[int, int],
        *,
        ledger_topic: str,
        rejections_topic: str,
        lanes: RejectionLanes,
        partitions: Collection[int] | None = None,
    ) -> None:
        self.producer = producer
        self.chain = chain
        self.positions = positions
        self.ledger_topic, self.rejections_topic = ledger_topic, rejections_topic
        self.lanes = lanes
        self.partitions = partitions
        self.lane: int | None = None
        """The one lane of a partition's writer (``None``: each rejection its org's)."""
        if partitions is not None and len(partitions) == 1:
            self.lane = lanes.of(next(iter(partitions)))

    def append(
        self,
        events: Sequence[tuple[Accepted | LedgerEvent, Headers]],
        rejections: Sequence[tuple[Rejection, Headers]] = (),
        answers: Sequence[OutRecord] = (),
    ) -> Appended:
        """Write a batch (see the module docstring). Every event's partition must have a
        position. Raises :class:`SequenceConflictError`, writing nothing, when an event does
        not continue its org's head; Kafka failures as :class:`LedgerUnavailableError`
        (:class:`~schemas.errors.WriterFencedError` when another writer took the partition)."""
        records, heads = self._event_records(events)
        rejected = [
            OutRecord(
                self.rejections_topic,
                self._lane_of(r),
                org_key(r.org_id) if r.org_id is not None else None,
                encode_rejection(r),
                headers,
            )
            for r, headers in rejections
        ]
        producer = self.producer
        with producer.transaction():
            rejection_offsets = producer.send(rejected)
            offsets = producer.send(records)
            written: dict[int, list[int]] = {}
            for record, offset in zip(records, offsets, strict=True):
                written.setdefault(record.partition, []).append(offset)
            moved = frozenset(
                p
                for p, mine in written.items()
                if mine != list(range(self.positions[p], self.positions[p] + len(mine)))
            )
            if not moved:  # committing waits for them (no offsets needed)
                producer.send_last(answers)
        marker = 1 if producer.transactional else 0
        admitted = self.chain.rule.heads  # each event was checked to continue its org's head
        for org_id, (partition, head) in heads.items():
            if partition not in moved:
                admitted[org_id] = head
        for p, mine in written.items():
            if p not in moved:
                self.positions[p] = mine[-1] + 1 + marker
        return Appended(written, rejection_offsets, moved)

    def _lane_of(self, rejection: Rejection) -> int:
        if self.lane is not None:
            return self.lane
        org_id = rejection.org_id
        return 0 if org_id is None else self.lanes.of(self.chain.owner(org_id))

    def resume(self, partition: int, next_offset: int, heads: Callable[[str], ChainHead]) -> None:
        """Start (again) from a partition's state as read: the offset its next event must land
        at, and the chain heads its orgs' next events must continue."""
        self.positions[partition] = next_offset
        self.chain.rule = ChainRule(heads)

    def _event_records(
        self, events: Sequence[tuple[Accepted | LedgerEvent, Headers]]
    ) -> tuple[list[OutRecord], dict[str, tuple[int, ChainHead]]]:
        """The events' records, once each is known to continue its org's head (an accepted
        event is stored as the canonical bytes the sequencer made for it), and each org's
        partition and head after them."""
        heads: dict[str, ChainHead] = {}
        placed: dict[str, tuple[int, ChainHead]] = {}
        records = []
        for event, headers in events:
            fields = _fields(event)
            org_id, sequence = fields["org_id"], fields["sequence"]
            head = heads.get(org_id) or self.chain.rule.head(org_id)
            if sequence != head.sequence + 1 or fields["prev_hash"] != head.hash:
                raise SequenceConflictError(
                    f"org {org_id!r}: event {sequence} does not continue the chain "
                    f"at {head.sequence}"
                )
            heads[org_id] = ChainHead(sequence, fields["hash"])
            partition = self.chain.owner(org_id)
            if self.partitions is not None and partition not in self.partitions:
                raise SequenceConflictError(
                    f"org {org_id!r} belongs to ledger partition {partition}, which this "
                    f"writer does not own"
                )
            placed[org_id] = partition, heads[org_id]
            value = encode_event(event)
            records.append(OutRecord(self.ledger_topic, partition, org_key(org_id), value, headers))
        return records, placed

    def close(self) -> None:
        self.producer.close()


def _fields(event: Accepted | LedgerEvent) -> dict[str, Any]:
    return event.record if isinstance(event, Accepted) else event.to_record()


class KafkaEventLog:
    """:class:`~events.log.EventLog` on a Kafka ledger topic and a rejections topic.

    The topics must exist (:func:`events.kafka_admin.ensure_topics`). Not thread-safe: use
    one object per thread. ``transactions``: its writes are Kafka transactions (see the
    module docstring); off, they are only idempotent.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        *,
        ledger_topic: str = "okr.ledger",
        rejections_topic: str = "okr.rejections",
        client_id: str = "okr-ledger",
        timeout_s: float = 30.0,
        read_only: bool = False,
        transactions: bool = True,
    ) -> None:
        servers = (bootstrap_servers,) if isinstance(bootstrap_servers, str) else bootstrap_servers
        self._connection = Connection(tuple(servers), client_id, timeout_s)
        self.ledger_topic, self.rejections_topic = ledger_topic, rejections_topic
        self.read_only, self.transactions = read_only, transactions
        self._reader = Reader(self._connection)
        self._writer: LedgerWriter | None = None
        self._closed = False
        try:
            missing = sorted({ledger_topic, rejections_topic} - self._reader.topics())
            if missing:
                raise LedgerUnavailableError(
                    f"Kafka at {','.join(servers)} has no topic {', '.join(missing)}: create "
                    "the topics first (events.kafka_admin.ensure_topics)"
                )
            self._partitions = self._reader.partitions(ledger_topic)
            self.lanes = RejectionLanes(len(self._reader.partitions(rejections_topic)))
        except BaseException:
            self.close()
            raise
        self._chain = ChainReader(len(self._partitions))
        self._positions: dict[int, int] = {}
        """Per ledger partition: the next offset the chain reader has not seen."""

    @classmethod
    def from_url(
        cls, url: str, *, create: bool = True, read_only: bool = False, **options: Any
    ) -> "KafkaEventLog":
        """``create`` is accepted for symmetry: topics are made by ``ensure_topics``, never here.
        ``read_only`` opens no producer."""
        return cls(servers_from_url(url), read_only=read_only, **options)

    @property
    def partition_count(self) -> int:
        return len(self._partitions)

    def partition_of(self, org_id: str) -> int:
        return self._chain.owner(org_id)

    # -- writing ---------------------------------------------------------------------------

    def partition_writer(
        self, partition: int, transactional_id: str | None, client_id: str = "okr-worker"
    ) -> LedgerWriter:
        """A writer of ledger ``partition`` alone, for the one process that owns it: creating
        it fences every earlier writer with the same ``transactional_id`` (``None``: an
        idempotent writer, not fenced). Before writing, give it the partition's state as read
        (:meth:`LedgerWriter.resume`); see :mod:`processors.kafka_worker`."""
        if partition not in self._partitions:
            raise ConfigurationError(f"{self.ledger_topic} has no partition {partition}")
        producer = BatchProducer(
            self._connection.servers,
            transactional_id=transactional_id,
            client_id=client_id,
            timeout_s=self._connection.timeout_s,
        )
        return LedgerWriter(
            producer,
            ChainReader(len(self._partitions)),
            {},
            ledger_topic=self.ledger_topic,
            rejections_topic=self.rejections_topic,
            lanes=self.lanes,
            partitions={partition},
        )

    def append(self, events: Sequence[LedgerEvent], rejections: Sequence[Rejection] = ()) -> None:
        self._append(events, rejections)

    def _append(self, events: NewEvents, rejections: Sequence[Rejection]) -> None:
        if not events and not rejections:
            return
        self._catch_up({self.partition_of(e.org_id) for e in events})
        appended = self._ledger_writer().append(
            [(e, ()) for e in events], [(r, ()) for r in rejections]
        )
        orphaned = 0
        for partition in sorted(appended.moved):
            orphans = self._catch_up({partition})
            orphaned += sum(offset in orphans for offset in appended.offsets[partition])
        if orphaned:
            raise SequenceConflictError(
                f"another writer appended to the same orgs first: {orphaned} of "
                f"{len(events)} events did not continue their chain and are not in the ledger"
            )

    def _ledger_writer(self) -> LedgerWriter:
        if self.read_only or self._closed:
            raise LedgerUnavailableError("the Kafka event log is closed or read-only")
        if self._writer is None:
            producer = BatchProducer(
                self._connection.servers,
                transactional_id=f"okr-ledger-log-{uuid4()}" if self.transactions else None,
                client_id=self._connection.client_id,
                timeout_s=self._connection.timeout_s,
            )
            self._writer = LedgerWriter(
                producer,
                self._chain,
                self._positions,
                ledger_topic=self.ledger_topic,
                rejections_topic=self.rejections_topic,
                lanes=self.lanes,
            )
        return self._writer

    def append_decided(self, decider: Decider, mark: Mark) -> Mark:
        """Catch up (chain rule from the decider's heads), decide, append. Kafka has no lock:
        another writer can append between the catch-up and the write (see the module)."""
        positions = dict(mark)
        chain = ChainReader(len(self._partitions), decider.head)
        starts = {p: positions.get(p) for p in self._partitions}
        for message in self._reader.read(self.ledger_topic, starts):
            # The decider's own events come back on the next call: its heads are past them.
            record = chain.admit(message.partition, message.key, message.value)
            if record is not None:
                decider.fold(LedgerEvent.from_record(record))
        positions.update(self._reader.positions)
        self._append(*decider.decide())
        return positions

    def state_store(self) -> None:
        """None: the ledger folds a Kafka log into memory (see ``events.state_store``)."""

    def _catch_up(self, partitions: set[int]) -> set[int]:
        """Apply the chain rule to what is new in ``partitions``; the orphans' offsets."""
        orphans: set[int] = set()
        starts = {p: self._positions.get(p) for p in sorted(partitions)}
        for message in self._reader.read(self.ledger_topic, starts):
            if self._chain.admit(message.partition, message.key, message.value) is None:
                orphans.add(message.offset)
        self._positions.update(self._reader.positions)
        return orphans

    # -- reading ---------------------------------------------------------------------------

    def read(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[LedgerEvent]:
        """Events in sequence order per org; with no org, orgs interleave (partition order)."""
        for record in self.read_records(org_id, from_sequence, to_sequence):
            yield LedgerEvent.from_record(record)

    def read_records(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[dict[str, Any]]:
        for record, admitted in self._scan(org_id):
            if not admitted:
                continue
            sequence = record["sequence"]
            if to_sequence is not None and sequence > to_sequence:
                if org_id is not None:
                    return
                continue
            if sequence >= from_sequence:
                yield record

    def read_stored(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[StoredBytes]:
        """The ledger's records byte for byte (their key as ``org_id``, their offset as location),
        with every record under an org's key in its partition that is not a well-formed event:
        the chain rule skips those as orphans, but no writer of the ledger makes them, so
        ``verify`` must see them. Well-formed orphans are not part of the ledger: left out."""
        chain = ChainReader(len(self._partitions))
        for message in self._messages(org_id):
            owner = org_of_key(message.key)
            if owner is None or self.partition_of(owner) != message.partition:
                continue  # not under an org's key in its partition: an orphan for every reader
            try:
                parse_event(message.value)
            except LedgerDamagedError:
                position = chain.rule.head(owner).sequence + 1  # where the chain stands
            else:
                record = chain.admit(message.partition, message.key, message.value)
                if record is None:
                    continue  # a well-formed orphan
                position = record["sequence"]
            if position >= from_sequence and (to_sequence is None or position <= to_sequence):
                location = f"partition {message.partition}, offset {message.offset}"
                yield StoredBytes(message.value, {"org_id": owner}, location)

    def verify(self, org_id: str | None = None) -> list[ChainReport]:
        """Every org's chain (or ``org_id``'s), checked on :meth:`read_stored`'s records."""
        verifier = ChainVerifier()
        for stored in self.read_stored(org_id):
            verifier.add(stored)
        return verifier.reports()

    def orphans(self, org_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Records in the ledger topic that are not part of the ledger (see the chain rule)."""
        for record, admitted in self._scan(org_id):
            if not admitted:
                yield record

    def _scan(self, org_id: str | None) -> Iterator[tuple[dict[str, Any], bool]]:
        """Every record of the org's partition (or of all), with the chain rule's verdict."""
        chain = ChainReader(len(self._partitions))
        for message in self._messages(org_id):
            admitted = chain.admit(message.partition, message.key, message.value)
            record = admitted if admitted is not None else decode_event(message.value)
            if org_id is None or record.get("org_id") == org_id:
                yield record, admitted is not None

    def _messages(self, org_id: str | None) -> Iterator[InRecord]:
        """The ledger topic's records under the org's key in its partition (or all records)."""
        partitions = self._partitions if org_id is None else [self.partition_of(org_id)]
        key = None if org_id is None else org_key(org_id)
        reader = Reader(self._connection)
        try:
            for message in reader.read(self.ledger_topic, dict.fromkeys(partitions)):
                if key is None or message.key == key:
                    yield message
        finally:
            reader.close()

    def heads(self) -> dict[str, ChainHead]:
        self._catch_up(set(self._partitions))
        return dict(sorted(self._chain.rule.heads.items()))

    def rejection_lanes(self) -> list[str]:
        return self.lanes.names()

    def rejections_after(
        self, position: int, limit: int, *, lane: str
    ) -> list[tuple[int, Rejection]]:
        """From the lane's partition (:class:`~events.kafka_records.RejectionLanes`: the
        position of an offset of a lane is offset * lanes + lane + 1; a commit
        marker takes an offset but holds no rejection)."""
        if lane not in self.lanes.names():
            raise ValueError(f"{self.rejections_topic} has no lane {lane!r}")
        q = int(lane)
        start = self.lanes.next_offset(q, position)
        records = self._reader.read(self.rejections_topic, {q: start})
        after = (r for r in records if r.offset >= start)
        return [
            (self.lanes.position(q, r.offset), read_rejection(r.value))
            for r in islice(after, limit)
        ]

    def rejections(self) -> Iterator[Rejection]:
        """The lanes merged oldest first (by ``recorded_at``, then position), one record of
        each lane held at a time."""
        lanes = [self._lane(q) for q in range(self.lanes.count)]
        for _, rejection in heapq.merge(*lanes, key=itemgetter(0)):
            yield rejection

    def _lane(self, lane: int) -> Iterator[tuple[tuple[str, int], Rejection]]:
        reader = Reader(self._connection)
        try:
            for record in reader.read(self.rejections_topic, {lane: None}):
                rejection = read_rejection(record.value)
                yield (rejection.recorded_at, self.lanes.position(lane, record.offset)), rejection
        finally:
            reader.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        self._reader.close()
