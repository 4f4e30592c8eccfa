"""A small typed face on kafka-python: the only module of the project that imports ``kafka``.

kafka-python ships no type information, so everything it returns is ``Any``; this module turns
it into the few typed operations the Kafka backend needs and turns every Kafka failure into
:class:`~schemas.errors.LedgerUnavailableError`.

Reads use manual partition assignment, never a consumer group (no group coordination, no
committed offsets; and kafka-python's group join is slow on Tansu).
"""

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import (  # type: ignore[import-untyped]
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.admin import ConfigResource, ConfigResourceType  # type: ignore[import-untyped]
from kafka.errors import KafkaError  # type: ignore[import-untyped]
from kafka.partitioner import murmur2  # type: ignore[import-untyped]

from schemas.errors import ConfigurationError, LedgerUnavailableError

_TOPIC_ALREADY_EXISTS = 36
"""Kafka's error code for CreateTopics on an existing topic."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce to an explicit partition."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class InRecord:
    """A record as read from a partition."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a keyed record, as Kafka's default partitioners choose it (murmur2)."""
    digest: int = murmur2(key)
    return (digest & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the brokers are, and how long to wait for them."""

    servers: tuple[str, ...]
    client_id: str = "okr-ledger"
    timeout_s: float = 30.0

    def options(self) -> dict[str, Any]:
        timeout_ms = int(self.timeout_s * 1000)
        return {
            "bootstrap_servers": list(self.servers),
            "client_id": self.client_id,
            "bootstrap_timeout_ms": timeout_ms,
            "request_timeout_ms": timeout_ms,
        }

    def fail(self, action: str, error: BaseException) -> LedgerUnavailableError:
        where = ",".join(self.servers)
        return LedgerUnavailableError(f"Kafka at {where}: cannot {action}: {error}")


class Producer:
    """An idempotent producer (``acks=all``) that sends batches and returns their offsets."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        try:
            self._producer = KafkaProducer(
                **connection.options(),
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                batch_size=512 * 1024,
                max_request_size=4 * 1024 * 1024,
                allow_auto_create_topics=False,
                max_block_ms=int(connection.timeout_s * 1000),
                delivery_timeout_ms=int(connection.timeout_s * 1000) + 5000,
            )
        except KafkaError as error:
            raise connection.fail("create a producer", error) from error

    def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        """Produce ``records`` in order, wait until all are acknowledged; their offsets."""
        try:
            futures = [
                self._producer.send(
                    r.topic,
                    value=r.value,
                    key=r.key,
                    partition=r.partition,
                    headers=list(r.headers) or None,
                )
                for r in records
            ]
            self._producer.flush(timeout=self._connection.timeout_s)
            return [int(f.get(timeout=self._connection.timeout_s).offset) for f in futures]
        except KafkaError as error:
            raise self._connection.fail("produce", error) from error

    def close(self) -> None:
        self._producer.close(timeout=self._connection.timeout_s)


_FETCHER_BUFFERS = (
    "_nodes_with_pending_fetch_requests",
    "_completed_fetches",
    "_paused_completed_fetches",
)
"""What :meth:`Reader._forget_earlier_fetches` reads and clears in kafka-python 3.0's fetcher."""


class Reader:
    """Reads partitions with manual assignment, up to their ends as of the start of a read.

    It reads committed records only (``read_committed``): on a Kafka that isolates aborted
    transactions, a batch a writer did not commit is not part of anything read. (Tansu 0.6
    shows aborted records all the same; every reader then sees them alike.)
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.positions: dict[int, int] = {}
        """After a read: the next offset of every partition read."""
        self._listing: Any = None
        try:
            self._consumer = KafkaConsumer(
                **connection.options(),
                group_id=None,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                fetch_max_wait_ms=10,  # a read takes what is there: never wait for more
                # A fetch's bytes, per partition and in all (Tansu heeds only the latter).
                max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_bytes=8 * 1024 * 1024,
                max_poll_records=5000,
                isolation_level="read_committed",
            )
        except KafkaError as error:
            raise connection.fail("create a consumer", error) from error

    def topics(self) -> set[str]:
        """Every topic's name (asking for all topics does not auto-create any)."""
        try:
            return {str(name) for name in self._consumer.topics()}
        except KafkaError as error:
            raise self._connection.fail("list topics", error) from error

    def partitions(self, topic: str) -> list[int]:
        """Partition ids of an existing topic (Tansu creates a topic asked about by name)."""
        try:
            found = self._consumer.partitions_for_topic(topic)
        except KafkaError as error:
            raise self._connection.fail(f"describe topic {topic}", error) from error
        return sorted(int(p) for p in found or ())

    def beginnings(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The first offset still stored in each partition."""
        tps = [TopicPartition(topic, p) for p in partitions]
        try:
            found = self._consumer.beginning_offsets(tps)
        except KafkaError as error:
            raise self._connection.fail(f"list offsets of {topic}", error) from error
        return {int(tp.partition): int(offset) for tp, offset in found.items()}

    def ends(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Where records produced after this call will be, at the earliest: the listed end
        of each partition, counting records of open transactions too (Tansu lists a lower
        offset, its last batch's first + 1, which is still at or before any later record;
        for a committed read it would list 0 while a transaction is open)."""
        tps = [TopicPartition(topic, p) for p in partitions]
        try:
            if self._listing is None:
                self._listing = KafkaConsumer(
                    **self._connection.options(),
                    group_id=None,
                    enable_auto_commit=False,
                    allow_auto_create_topics=False,
                    isolation_level="read_uncommitted",
                )
            found = self._listing.end_offsets(tps)
        except KafkaError as error:
            raise self._connection.fail(f"list offsets of {topic}", error) from error
        return {int(tp.partition): int(offset) for tp, offset in found.items()}

    def read(
        self, topic: str, starts: Mapping[int, int | None], stall_s: float | None = None
    ) -> Iterator[InRecord]:
        """Records from ``starts`` (partition -> offset, ``None``: the beginning) to the ends.
        :class:`schemas.errors.LedgerUnavailableError` once no record came for ``stall_s``
        (the connection's timeout if ``None``).

        The end of each partition is the high watermark its first fetch answers: at least
        everything acknowledged before the call. It is never taken from ListOffsets: Tansu 0.6
        answers ListOffsets(latest) with the base offset of the last batch + 1, and, for a
        committed read, with 0 while a transaction is open on the partition. A transaction
        open when the read starts is waited for (it commits or is aborted: committed records
        are read only). Each partition's order is kept.

        The first fetch must be one this read sent: see :meth:`_forget_earlier_fetches`.
        """
        try:
            yield from self._read(topic, starts, stall_s or self._connection.timeout_s)
        except KafkaError as error:
            raise self._connection.fail(f"read {topic}", error) from error

    def _read(
        self, topic: str, starts: Mapping[int, int | None], stall_s: float
    ) -> Iterator[InRecord]:
        consumer = self._consumer
        tps = {p: TopicPartition(topic, p) for p in starts}
        self._forget_earlier_fetches()
        consumer.unsubscribe()  # forget the last read's high watermarks and pauses
        consumer.assign(list(tps.values()))
        unknown = [tp for p, tp in tps.items() if starts[p] is None]
        beginnings = consumer.beginning_offsets(unknown) if unknown else {}
        self.positions = {}
        pending: dict[int, int | None] = {}  # partition -> end, once known
        for p, tp in tps.items():
            given = starts[p]
            start = int(beginnings[tp]) if given is None else given
            self.positions[p] = start
            consumer.seek(tp, start)
            pending[p] = None
        deadline = time.monotonic() + stall_s
        while pending:
            fetched = consumer.poll(timeout_ms=20)
            for messages in fetched.values():
                for m in messages:
                    headers = tuple((str(k), bytes(v)) for k, v in m.headers or ())
                    yield InRecord(int(m.partition), int(m.offset), m.key, m.value, headers)
                    deadline = time.monotonic() + stall_s
            for p in list(pending):
                tp = tps[p]
                end = pending[p]
                if end is None and (high := consumer.highwater(tp)) is not None:
                    pending[p] = end = int(high)
                position = int(consumer.position(tp))
                self.positions[p] = position
                if end is not None and position >= end:
                    consumer.pause(tp)
                    del pending[p]
            if time.monotonic() > deadline:
                where = ", ".join(
                    f"{p} at {self.positions[p]} of {'?' if pending[p] is None else pending[p]}"
                    for p in sorted(pending)
                )
                raise LedgerUnavailableError(
                    f"Kafka at {','.join(self._connection.servers)}: reading {topic} stalled "
                    f"for {stall_s:.0f}s (partitions {where}: a committed "
                    "read waits for every transaction open on a partition)"
                )

    def _forget_earlier_fetches(self) -> None:
        """Drop what the fetches of earlier reads bring.

        A read ends while a fetch of its last position may be in flight. kafka-python keeps
        that fetch's answer (parked while the partition is paused, KAFKA-7548) and hands it to
        the next read of the partition that starts at the same offset, which is the usual
        next read. Its high watermark predates everything written since: taken as the end,
        the read stops before records acknowledged before it began. A fresh fetch in the same
        poll usually overwrites it, but not on a broker slow to answer (seen under load: a
        stale ledger view, a restore that missed records). kafka-python has no public way to
        drop buffered fetches, so this reaches into its fetcher: it waits for the fetches in
        flight (a fetch waits at most ``fetch_max_wait_ms``, 10 ms) and drops every answer not
        yet handed out. ``tests/kafka/test_kafka_client.py`` holds the behaviour with a broker
        stopped by SIGSTOP, so a kafka-python that moves these attributes fails there."""
        fetcher = self._consumer._fetcher
        if not all(hasattr(fetcher, name) for name in _FETCHER_BUFFERS):
            raise ConfigurationError(
                "this kafka-python's fetcher has not the buffers the reader clears "
                f"({', '.join(_FETCHER_BUFFERS)}): install kafka-python 3.0 (pyproject.toml)"
            )
        deadline = time.monotonic() + self._connection.timeout_s
        # Cleared by the fetch's last callback, after its answer is buffered.
        while fetcher._nodes_with_pending_fetch_requests:
            if time.monotonic() > deadline:
                raise LedgerUnavailableError(
                    f"Kafka at {','.join(self._connection.servers)}: a fetch got no answer "
                    f"for {self._connection.timeout_s:.0f}s"
                )
            time.sleep(0.001)
        fetcher._completed_fetches.clear()
        fetcher._paused_completed_fetches.clear()

    def close(self) -> None:
        self._consumer.close()
        if self._listing is not None:
            self._listing.close()


class Admin:
    """Topic creation and configuration."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        try:
            self._admin = KafkaAdminClient(**connection.options())
        except KafkaError as error:
            raise connection.fail("connect", error) from error

    def topics(self) -> set[str]:
        try:
            return {str(name) for name in self._admin.list_topics()}
        except KafkaError as error:
            raise self._connection.fail("list topics", error) from error

    def create_topic(self, name: str, partitions: int, configs: Mapping[str, str]) -> bool:
        """Create ``name``; ``False`` when it already exists."""
        spec = {"num_partitions": partitions, "configs": dict(configs)}
        try:
            result = self._admin.create_topics(
                {name: spec}, raise_errors=False, wait_for_metadata=False
            )
        except KafkaError as error:
            raise self._connection.fail(f"create topic {name}", error) from error
        (answer,) = result["topics"]
        code = int(answer["error_code"])
        if code == _TOPIC_ALREADY_EXISTS:
            return False
        if code:
            raise LedgerUnavailableError(
                f"Kafka refused to create topic {name}: error {code} {answer['error_message']}"
            )
        return True

    def topic_configs(self, name: str) -> dict[str, str]:
        """The configuration the broker reports for a topic (defaults included)."""
        resource = ConfigResource(ConfigResourceType.TOPIC, name, configs=None)
        try:
            described = self._admin.describe_configs([resource], config_filter="all")
        except KafkaError as error:
            raise self._connection.fail(f"describe topic {name}", error) from error
        entries = described.get("topic", {}).get(name, {})
        return {
            str(key): str(entry["value"])
            for key, entry in entries.items()
            if entry.get("value") is not None
        }

    def partition_count(self, name: str) -> int:
        """Partitions of an existing topic (Tansu creates a topic asked about by name)."""
        try:
            (topic,) = self._admin.describe_topics([name])
        except KafkaError as error:
            raise self._connection.fail(f"describe topic {name}", error) from error
        return len(topic["partitions"])

    def close(self) -> None:
        self._admin.close()
