"""What the worker's consumer hands over after a fetch (:meth:`OkrConsumer._drain`): never
records read from where a partition stood before a seek the agents already count on.

A rebalance gives the agents their new assignment first (restores, checkpoints), then the
barrier seeks each partition there; the fetcher meanwhile reads on from where the assignment
before left it. Handed over, such records reached the projector ahead of those the seek asked
for, and it took those for rows projected already (a rejections lane skipped for good). The
drain runs here on the app's real consumer, with a fetch prepared for it: no broker.
"""

import asyncio
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]
from faust.types import TP

from processors.faust_app import Store, WorkerServices, create_app
from processors.faust_batches import Fetched, OkrConsumer
from processors.kafka_config import WorkerConfig

GENERATION = 6
PARTITION = TP("test.rejections", 1)


class Record(NamedTuple):
    offset: int


class Handed:
    """The delivery: what the drain handed over."""

    def __init__(self) -> None:
        self.batches: list[tuple[TP, list[int], int]] = []

    async def on_batch(self, tp: TP, records: list[Any], generation: int) -> None:
        self.batches.append((tp, [r.offset for r in records], generation))


class Stopped:
    """The fetcher's ``_stopped`` event: set after the first round of the drain."""

    def __init__(self) -> None:
        self.asked = 0

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked > 1


class Fetcher:
    def __init__(self) -> None:
        self._stopped = Stopped()


def drain(sought_at: Mapping[TP, int], seeks_after_the_fetch: int) -> list[Any]:
    """One round of the drain over a fetch of :data:`PARTITION` (offsets 161-162), taken when
    the partition had been sought twice; what it handed over."""
    app = create_app(WorkerConfig(servers=("127.0.0.1:9",)), WorkerServices(_no_store))
    consumer = cast(OkrConsumer, app.consumer)
    handed = Handed()
    consumer.delivery = handed  # type: ignore[assignment]
    consumer.sought_at = dict(sought_at)
    app.consumer_generation_id = GENERATION
    thread = consumer._thread
    thread.seeks[PARTITION] = 2
    fetched = Fetched(
        {TopicPartition(PARTITION.topic, PARTITION.partition): [Record(161), Record(162)]}
    )
    fetched.taken_after[PARTITION] = 2
    thread.seeks[PARTITION] += seeks_after_the_fetch

    async def next_records(timeout: float) -> tuple[Fetched, None]:
        return fetched, None

    consumer._wait_next_records = next_records  # type: ignore[method-assign]
    asyncio.run(consumer._drain(Fetcher()))
    return handed.batches


def test_records_of_a_partition_sought_by_this_generations_barrier_are_handed_over() -> None:
    assert drain({PARTITION: GENERATION}, 0) == [(PARTITION, [161, 162], GENERATION)]


@pytest.mark.parametrize("sought_at", [{}, {PARTITION: GENERATION - 1}])
def test_records_fetched_before_this_generations_barrier_sought_the_partition_are_dropped(
    sought_at: dict[TP, int],
) -> None:
    assert drain(sought_at, 0) == []


def test_records_taken_before_a_later_seek_of_their_partition_are_dropped() -> None:
    assert drain({PARTITION: GENERATION}, 1) == []


def _no_store() -> Store:
    raise AssertionError("the store is not opened here")
