"""Intake records exactly as a careless or hostile producer sends them, and what the worker
recorded and answered for each, found by the record's position (partition, offset).

The header names are written out (``okr-line``...): they are the documented wire format.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaProducer  # type: ignore[import-untyped]

from events.kafka_client import Connection, Reader, partition_for
from okr_ledger.client import LedgerClient
from okr_ledger.settings import Settings
from okr_ledger.submit_outcome import SubmitOutcome
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.worker_support import Worker

Position = tuple[int, int]
"""An intake record's (partition, offset)."""


class NotUtf8(str):
    """A header name that kafka-python writes as the given bytes, which are not UTF-8 (Kafka
    clients in other languages let a producer do this)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> "NotUtf8":
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


@dataclass(frozen=True)
class RawRecord:
    """One intake record as it is produced: no framing is added."""

    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None
    """``None``: the producer's partitioner chooses (by key; any partition without one)."""


def home(org_id: str) -> int:
    """The intake partition of an org (murmur2 of its key, as the submitters produce)."""
    return partition_for(org_id.encode(), TEST_PARTITIONS)


@dataclass
class RawProducer:
    kafka: Connection
    topic: str
    linger_ms: int = 0
    _producer: Any = field(init=False)

    def __post_init__(self) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=list(self.kafka.servers),
            acks="all",
            enable_idempotence=True,
            linger_ms=self.linger_ms,
        )

    def send(self, records: list[RawRecord]) -> list[Position]:
        """Produce ``records`` (one request per partition when linger allows); positions."""
        futures = [
            self._producer.send(
                self.topic,
                value=r.value,
                key=r.key,
                headers=list(r.headers) or None,
                partition=r.partition,
            )
            for r in records
        ]
        self._producer.flush()
        return [(int((m := f.get(timeout=15)).partition), int(m.offset)) for f in futures]

    def send_to(
        self,
        topic: str,
        value: bytes,
        headers: tuple[tuple[str, bytes], ...] = (),
        key: bytes | None = None,
        partition: int = 0,
    ) -> None:
        """Write to another topic, as anyone with access to the broker could."""
        future = self._producer.send(
            topic, value=value, key=key, headers=list(headers) or None, partition=partition
        )
        self._producer.flush()
        future.get(timeout=15)

    def close(self) -> None:
        self._producer.close()


class Outcomes:
    """The outcomes topic, read on and on, by the intake position each answers."""

    def __init__(self, kafka: Connection, topic: str) -> None:
        self.topic = topic
        self.reader = Reader(kafka)
        self.positions: dict[int, int | None] = dict.fromkeys(self.reader.partitions(topic))
        self.found: dict[Position, list[dict[str, Any]]] = {}

    def wait(
        self, wanted: list[Position], worker: Worker, timeout_s: float = 60.0
    ) -> dict[Position, list[dict[str, Any]]]:
        """Every wanted position's outcome documents (all that came so far)."""
        deadline = time.monotonic() + timeout_s
        while not set(wanted) <= self.found.keys():
            assert worker.alive(), f"the worker exited:\n{worker.log_tail()}"
            missing = sorted(set(wanted) - self.found.keys())
            assert time.monotonic() < deadline, (
                f"no outcome for {missing[:10]} after {timeout_s:.0f}s; worker log:\n"
                f"{worker.log_tail()}"
            )
            for record in self.reader.read(self.topic, self.positions):
                document = orjson.loads(record.value)
                position = (document["intake_partition"], document["intake_offset"])
                self.found.setdefault(position, []).append(document)
            self.positions.update(self.reader.positions)
            time.sleep(0.05)
        return {p: self.found[p] for p in wanted}

    def close(self) -> None:
        self.reader.close()


def kafka_settings(kafka: Connection, topics: dict[str, str], timeout_s: float = 30) -> Settings:
    return Settings(
        ledger_url=f"kafka://{kafka.servers[0]}",
        kafka_topic_intake=topics["intake"],
        kafka_topic_ledger=topics["ledger"],
        kafka_topic_rejections=topics["rejections"],
        kafka_topic_outcomes=topics["outcomes"],
        kafka_partitions=TEST_PARTITIONS,
        submit_timeout_seconds=timeout_s,
    )


def submit(kafka: Connection, topics: dict[str, str], events: list[bytes]) -> list[SubmitOutcome]:
    """Submit through the Python client (the product's own submitter), waiting for answers."""
    with LedgerClient(settings=kafka_settings(kafka, topics)) as client:
        return client.submit_many(events)
