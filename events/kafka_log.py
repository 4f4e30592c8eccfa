"""The event log on Kafka: a ledger topic keyed by org and a rejections topic (kafka-python).

All of one org's events go to one partition (murmur2 of the org id, as Kafka's default
partitioner), so an org is read from its partition alone. What belongs to the ledger is
defined by the chain rule (:mod:`events.kafka_records`): records that do not continue their
org's chain are orphans, skipped by every reader and listed by :meth:`KafkaEventLog.orphans`.

**Appends are not transactional.** Tansu 0.6 accepts transactional producers but does not tell
consumers which transactions were aborted, so aborted records stay visible; transactions
cannot make an append all-or-none there. Instead an append:

1. catches up with its orgs' partitions and refuses (:class:`SequenceConflictError`, nothing
   written) events that do not continue their org's head;
2. produces the events (idempotent, ``acks=all``) and checks their offsets: if no other
   writer's record landed before them, they continue the chain; otherwise it reads the
   partition again, and if any of them became an orphan raises ``SequenceConflictError``;
3. only then produces the rejections.

So concurrent writers never fork a chain, and the loser learns it. What is not all-or-none:
a crash or a Kafka error in step 2 or 3 can leave a prefix of an org's events in the ledger
(a valid chain) without the rest of the batch or its rejections; and a lost race can leave
another org's events of the same batch stored. Resubmitting is safe: the stored events are
duplicates. One writer per partition (the sequencer owning it) makes races rare.
"""

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from events.kafka_client import (
    Connection,
    InRecord,
    OutRecord,
    Producer,
    Reader,
    partition_for,
)
from events.kafka_records import (
    ChainRule,
    decode_event,
    encode_event,
    encode_rejection,
    org_key,
    org_of_key,
    placed,
    read_rejection,
)
from events.log import ChainHead, Decider, Mark
from events.outcomes import Accepted, Rejection
from events.stored import StoredBytes, parse_event
from schemas.envelope import LedgerEvent
from schemas.errors import (
    ConfigurationError,
    LedgerDamagedError,
    LedgerUnavailableError,
    SequenceConflictError,
)

DEFAULT_PORT = 9092
REJECTIONS_PARTITION = 0
"""The rejections topic has one partition (``events.kafka_admin`` creates it so)."""


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


class KafkaEventLog:
    """:class:`~events.log.EventLog` on a Kafka ledger topic and a rejections topic.

    The topics must exist (:func:`events.kafka_admin.ensure_topics`). Not thread-safe: use
    one object per thread.
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
    ) -> None:
        servers = (bootstrap_servers,) if isinstance(bootstrap_servers, str) else bootstrap_servers
        self._connection = Connection(tuple(servers), client_id, timeout_s)
        self.ledger_topic, self.rejections_topic = ledger_topic, rejections_topic
        self._reader = Reader(self._connection)
        self._producer: Producer | None = None
        self._closed = False
        try:
            missing = sorted({ledger_topic, rejections_topic} - self._reader.topics())
            if missing:
                raise LedgerUnavailableError(
                    f"Kafka at {','.join(servers)} has no topic {', '.join(missing)}: create "
                    "the topics first (events.kafka_admin.ensure_topics)"
                )
            self._partitions = self._reader.partitions(ledger_topic)
            if not read_only:
                self._producer = Producer(self._connection)
        except BaseException:
            self.close()
            raise
        self._rule = ChainRule()
        self._positions: dict[int, int] = {}
        """Per ledger partition: the next offset the rule has not seen."""

    @classmethod
    def from_url(
        cls, url: str, *, create: bool = True, read_only: bool = False, **options: Any
    ) -> "KafkaEventLog":
        """``create`` is accepted for symmetry: topics are made by ``ensure_topics``, never here.
        ``read_only`` opens no producer."""
        return cls(servers_from_url(url), read_only=read_only, **options)

    def partition_of(self, org_id: str) -> int:
        return self._partitions[partition_for(org_key(org_id), len(self._partitions))]

    # -- writing ---------------------------------------------------------------------------

    def append(self, events: Sequence[LedgerEvent], rejections: Sequence[Rejection] = ()) -> None:
        if events:
            self._append_events(events)
        if rejections:
            self._send(
                OutRecord(
                    self.rejections_topic,
                    0,
                    org_key(r.org_id) if r.org_id is not None else None,
                    encode_rejection(r),
                )
                for r in rejections
            )

    def append_decided(self, decider: Decider, mark: Mark) -> Mark:
        """Catch up (chain rule from the decider's heads), decide, append. Kafka has no lock:
        another writer can append between the catch-up and the write (see the module)."""
        positions = dict(mark)
        rule = ChainRule(start=decider.head)
        starts = {p: positions.get(p) for p in self._partitions}
        for message in self._reader.read(self.ledger_topic, starts):
            record = decode_event(message.value)
            # The decider's own events come back on the next call: its heads are past them.
            if self._placed(record, message.key, message.partition) and rule.admit(record):
                decider.fold(LedgerEvent.from_record(record))
        positions.update(self._reader.positions)
        events, rejections = decider.decide()
        self.append([e.event if isinstance(e, Accepted) else e for e in events], rejections)
        return positions

    def state_store(self) -> None:
        """None: the ledger folds a Kafka log into memory (see ``events.state_store``)."""

    def _append_events(self, events: Sequence[LedgerEvent]) -> None:
        partitions = {e.org_id: self.partition_of(e.org_id) for e in events}
        self._catch_up(set(partitions.values()))
        self._check_continuity(events)
        records = [
            OutRecord(self.ledger_topic, partitions[e.org_id], org_key(e.org_id), encode_event(e))
            for e in events
        ]
        offsets = self._send(records)
        written: dict[int, list[tuple[int, LedgerEvent]]] = {}
        for event, record, offset in zip(events, records, offsets, strict=True):
            written.setdefault(record.partition, []).append((offset, event))
        orphaned = 0
        for partition, mine in sorted(written.items()):
            start = self._positions[partition]  # set by the catch-up above
            if [o for o, _ in mine] == list(range(start, start + len(mine))):
                for offset, event in mine:  # nobody wrote in between: they continue the chain
                    self._rule.admit(event.to_record())
                    self._positions[partition] = offset + 1
            else:
                orphans = self._catch_up({partition})
                orphaned += sum(offset in orphans for offset, _ in mine)
        if orphaned:
            raise SequenceConflictError(
                f"another writer appended to the same orgs first: {orphaned} of "
                f"{len(events)} events did not continue their chain and are not in the ledger"
            )

    def _check_continuity(self, events: Sequence[LedgerEvent]) -> None:
        heads: dict[str, ChainHead] = {}
        for event in events:
            head = heads.get(event.org_id) or self._rule.head(event.org_id)
            if event.sequence != head.sequence + 1 or event.prev_hash != head.hash:
                raise SequenceConflictError(
                    f"org {event.org_id!r}: event {event.sequence} does not continue the chain "
                    f"at {head.sequence}"
                )
            heads[event.org_id] = ChainHead(event.sequence, event.hash)

    def _send(self, records: Iterable[OutRecord]) -> list[int]:
        if self._producer is None or self._closed:
            raise LedgerUnavailableError("the Kafka event log is closed or read-only")
        return self._producer.send_all(list(records))

    def _catch_up(self, partitions: set[int]) -> set[int]:
        """Apply the chain rule to what is new in ``partitions``; the orphans' offsets."""
        orphans: set[int] = set()
        starts = {p: self._positions.get(p) for p in sorted(partitions)}
        for message in self._reader.read(self.ledger_topic, starts):
            record = decode_event(message.value)
            if not (
                self._placed(record, message.key, message.partition) and self._rule.admit(record)
            ):
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
        rule = ChainRule()
        for message in self._messages(org_id):
            owner = org_of_key(message.key)
            if owner is None or self.partition_of(owner) != message.partition:
                continue  # not under an org's key in its partition: an orphan for every reader
            try:
                record: dict[str, Any] | None = parse_event(message.value)
            except LedgerDamagedError:
                record = None
            if record is None:
                position = rule.head(owner).sequence + 1  # where the chain stands
            elif self._placed(record, message.key, message.partition) and rule.admit(record):
                position = record["sequence"]
            else:
                continue  # a well-formed orphan
            if position >= from_sequence and (to_sequence is None or position <= to_sequence):
                location = f"partition {message.partition}, offset {message.offset}"
                yield StoredBytes(message.value, {"org_id": owner}, location)

    def orphans(self, org_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Records in the ledger topic that are not part of the ledger (see the chain rule)."""
        for record, admitted in self._scan(org_id):
            if not admitted:
                yield record

    def _scan(self, org_id: str | None) -> Iterator[tuple[dict[str, Any], bool]]:
        """Every record of the org's partition (or of all), with the chain rule's verdict."""
        rule = ChainRule()
        for message in self._messages(org_id):
            record = decode_event(message.value)
            if org_id is None or record.get("org_id") == org_id:
                placed = self._placed(record, message.key, message.partition)
                yield record, placed and rule.admit(record)

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

    def _placed(self, record: dict[str, Any], key: bytes | None, partition: int) -> bool:
        return placed(record, key, partition, self.partition_of)

    def heads(self) -> dict[str, ChainHead]:
        self._catch_up(set(self._partitions))
        return dict(sorted(self._rule.heads.items()))

    def rejections_after(self, position: int, limit: int) -> list[tuple[int, Rejection]]:
        """From the rejections topic's one partition: position = offset + 1."""
        topic, partition = self.rejections_topic, REJECTIONS_PARTITION
        # Tansu lists a partition's end as its last batch's first offset + 1, and a read that
        # starts at or past the listed end reads nothing: start no later than that batch.
        listed_end = self._reader.ends(topic, [partition])[partition]
        records = self._reader.read(topic, {partition: min(position, max(listed_end - 1, 0))})
        after = (r for r in records if r.offset >= position)
        return [(r.offset + 1, read_rejection(r.value)) for r in islice(after, limit)]

    def rejections(self) -> Iterator[Rejection]:
        reader = Reader(self._connection)
        try:
            for partition in reader.partitions(self.rejections_topic):
                for record in reader.read(self.rejections_topic, {partition: None}):
                    yield read_rejection(record.value)
        finally:
            reader.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._producer is not None:
            self._producer.close()
        self._reader.close()
