"""At most one Kafka transaction per process: the sequencer core's batches of different
partitions run side by side, their transactions one at a time (on the Tansu broker)."""

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from events.intake_wire import intake_message
from events.kafka_client import partition_for
from events.kafka_records import org_key
from events.kafka_transactions import BatchProducer
from processors.kafka_config import Topics, WorkerConfig
from processors.kafka_sequencer import IntakeRecord
from processors.sequencer_core import Sequenced, SequencerCore, Verdict
from tests.builders import check_ins, org_setup
from tests.kafka.conftest import TEST_PARTITIONS


class Overlap:
    """How many of something are under way at once, and the most ever."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = self.most = self.total = 0

    @contextmanager
    def one(self) -> Iterator[None]:
        with self._lock:
            self.now += 1
            self.total += 1
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1


class WatchedProducer(BatchProducer):
    """The partition writer's own producer (its librdkafka producer, its transactional id),
    noting each transaction from before it begins to after it commits; it holds each open a
    little longer, so that two would overlap if nothing kept them apart."""

    def __init__(self, producer: BatchProducer, transactions: Overlap) -> None:
        self.__dict__.update(producer.__dict__)
        self.transactions = transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.transactions.one(), super().transaction():
            time.sleep(0.05)
            yield


class WatchedCore(SequencerCore):
    """The real core, noting the batches under way."""

    def __init__(self, config: WorkerConfig) -> None:
        super().__init__(config)
        self.batches = Overlap()

    def sequence(self, partition: int, records: list[IntakeRecord]) -> Sequenced:
        with self.batches.one():
            return super().sequence(partition, records)


def test_batches_of_different_partitions_overlap_their_transactions_never(
    kafka_address: str, topics: dict[str, str], tmp_path: Path
) -> None:
    """Three partitions' batches are sent at once, four rounds: the batches run side by side
    (deciding one while another writes), yet never two transactions are open at a time, and
    every batch is written."""
    config = WorkerConfig(
        servers=(kafka_address,), topics=Topics(**topics), data_dir=tmp_path, timeout_s=15.0
    )
    partitions = list(range(TEST_PARTITIONS))
    intake: dict[int, list[IntakeRecord]] = {}
    for partition in partitions:
        org = next(
            o
            for o in (f"org{i}" for i in range(1000))
            if partition_for(org_key(o), TEST_PARTITIONS) == partition
        )
        raws = [*org_setup(org), *check_ins(40, org)]
        intake[partition] = [
            IntakeRecord(partition, offset, m.value, tuple(m.headers), m.key)
            for offset, raw in enumerate(raws)
            if (m := intake_message(raw, f"s{partition}-{offset}", None))
        ]
    core = WatchedCore(config)
    transactions = Overlap()
    try:
        core.fence(partitions)
        assert {p: r.resume for p, r in core.restore_all(partitions).items()} == dict.fromkeys(
            partitions, 0
        )
        for partition in partitions:
            writer = core._owned[partition].writer
            writer.producer = WatchedProducer(writer.producer, transactions)
        size = 10
        rounds = 4
        with ThreadPoolExecutor(len(partitions)) as pool:
            for start in range(0, size * rounds, size):
                done = list(
                    pool.map(
                        lambda p, s=start: core.sequence(p, intake[p][s : s + size]), partitions
                    )
                )
                assert [d.verdict for d in done] == [Verdict.WRITTEN] * len(partitions)
                assert [d.resume for d in done] == [start + size] * len(partitions)
    finally:
        core.close()
    assert core.batches.most >= 2  # the batches did run side by side
    assert transactions.total == rounds * len(partitions)  # each batch, one transaction
    assert transactions.most == 1
