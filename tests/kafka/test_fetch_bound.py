"""A worker's fetch brings at most ``OKR_KAFKA_FETCH_BYTES`` (``WorkerConfig.fetch_bytes``): with
a backlog, that bounds what its consumer holds until the agents take it, not the backlog."""

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]
from faust.types import TP

from events.kafka_client import Connection, OutRecord, Producer
from processors.faust_app import Store, WorkerServices, create_app
from processors.faust_batches import OkrConsumer
from processors.kafka_config import GroupTimings, Topics, WorkerConfig

pytestmark = pytest.mark.kafka

VALUE = b"v" * 1000
RECORDS = 3000  # ~3 MB in the partition: a backlog larger than either bound
PER_BATCH = 10  # records per produce call: record batches of ~10 KB, below either bound
SMALL, LARGE = 64 * 1024, 1 << 20
WAIT_MS = 70


def test_one_fetch_of_a_backlog_holds_at_most_the_fetch_bytes(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    topic = topics["rejections"]  # its partition 0: a topic no worker here writes
    producer = Producer(kafka)
    try:
        for _ in range(RECORDS // PER_BATCH):
            producer.send_all([OutRecord(topic, 0, b"k", VALUE) for _ in range(PER_BATCH)])
    finally:
        producer.close()

    held = {}
    for bound in (SMALL, LARGE):
        config = WorkerConfig(
            servers=kafka.servers,
            app_id=f"okr-test-fetch-{bound}",
            topics=Topics(**topics),
            data_dir=tmp_path / str(bound),
            fetch_bytes=bound,
            timings=GroupTimings(fetch_max_wait_ms=WAIT_MS),
        )
        app = create_app(config, WorkerServices(_no_store))
        held[bound], fetcher = asyncio.run(_first_fetch(app, TP(topic, 0)))
        # What the app was told is what aiokafka's fetcher got (the wait too: the consumer's
        # thread is made before the app sets its values).
        assert fetcher._fetch_max_bytes == fetcher._max_partition_fetch_bytes == bound
        assert fetcher._fetch_max_wait_ms == WAIT_MS

    batch = PER_BATCH * len(VALUE)  # a broker may exceed the bound by one record batch
    assert 0 < held[SMALL] <= SMALL + batch, held
    assert held[LARGE] > SMALL + batch, held  # the bound, not the broker, made it small
    assert held[LARGE] <= LARGE + batch, held


async def _first_fetch(app: Any, tp: TP) -> tuple[int, Any]:
    """Bytes of the values the consumer holds after its first fetch of ``tp`` (from offset 0),
    and aiokafka's fetcher."""
    consumer = cast(OkrConsumer, app.consumer)
    thread = consumer._thread
    await thread.start()
    try:
        aiokafka_consumer = thread._ensure_consumer()
        await thread.call_thread(aiokafka_consumer.assign, [TopicPartition(tp.topic, 0)])
        for _ in range(200):
            records = await thread.getmany({tp}, 0.1)
            if records:
                held = sum(len(r.value) for batch in records.values() for r in batch)
                return held, aiokafka_consumer._fetcher
        raise AssertionError("nothing fetched in 20 s")
    finally:
        await thread.stop()


def _no_store() -> Store:
    raise AssertionError("the store is not opened here")
