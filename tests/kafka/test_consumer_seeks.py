"""The worker's group consumer seeks on its consumer thread, never racing the thread's fetches.

Faust runs aiokafka's consumer in a thread of its own; aiokafka's fetcher is not thread-safe.
A seek from the app's thread (Faust's ``ThreadDelegateConsumer._seek``) deletes a partition's
fetched records under ``Fetcher.fetched_records`` running on the consumer thread: a
``KeyError`` at ``del self._records[tp]`` crashed workers right after an assignment (the
barrier's seeks; robinhood/aiokafka #19). Here the real consumer thread of the worker's app
fetches from the broker while the app's loop seeks, as the barrier, the salvage and the
sequencer do.
"""

import asyncio
import random
import threading
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]
from aiokafka.consumer.fetcher import Fetcher  # type: ignore[import-untyped]
from faust.types import TP

from events.kafka_client import Connection, OutRecord, Producer
from processors.faust_app import Store, WorkerServices, create_app
from processors.faust_batches import OkrConsumer
from processors.kafka_config import Topics, WorkerConfig

pytestmark = pytest.mark.kafka

RECORDS = 20_000
SEEKS = 400


def test_seeks_run_on_the_consumer_thread_while_it_fetches(
    kafka: Connection, topics: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = topics["rejections"]  # its partition 0: a topic no worker here writes
    producer = Producer(kafka)
    try:
        value = b"x" * 200
        producer.send_all([OutRecord(topic, 0, b"k", value) for _ in range(RECORDS)])
    finally:
        producer.close()

    seekers: list[threading.Thread] = []
    real_seek_to = Fetcher.seek_to

    def seek_to(fetcher: Any, tp: Any, offset: int) -> None:  # the real seek, and who made it
        seekers.append(threading.current_thread())
        real_seek_to(fetcher, tp, offset)

    monkeypatch.setattr(Fetcher, "seek_to", seek_to)
    config = WorkerConfig(
        servers=kafka.servers,
        app_id=f"test-seeks-{uuid.uuid4().hex[:8]}",
        topics=Topics(**topics),
        data_dir=tmp_path,
    )
    app = create_app(config, WorkerServices(_no_store))
    fetched, fetcher_threads = asyncio.run(_fetch_while_seeking(app, TP(topic, 0)))

    assert fetched > 0
    assert len(seekers) == SEEKS
    assert set(seekers) == fetcher_threads  # the consumer thread's, not the test's
    assert threading.main_thread() not in seekers


async def _fetch_while_seeking(app: Any, tp: TP) -> tuple[int, set[threading.Thread]]:
    """Fetch ``tp`` in a loop (as the consumer's drain does) while the app's loop seeks it
    about (as the barrier and the sequencer do); how many records came, and the fetches'
    threads."""
    consumer = cast(OkrConsumer, app.consumer)
    thread = consumer._thread
    await thread.start()
    try:
        aiokafka_consumer = thread._ensure_consumer()
        await thread.call_thread(aiokafka_consumer.assign, [TopicPartition(tp.topic, 0)])
        done = asyncio.Event()
        fetched = 0
        fetcher_threads: set[threading.Thread] = set()

        async def note_thread() -> None:
            fetcher_threads.add(threading.current_thread())

        async def fetch() -> None:
            nonlocal fetched
            while not done.is_set():
                records = await thread.getmany({tp}, 0.05)
                fetched += sum(len(batch) for batch in records.values())
                await thread.call_thread(note_thread)

        async def seek() -> None:
            chance = random.Random(19)
            try:
                for _ in range(SEEKS):
                    await consumer.seek(tp, chance.randrange(RECORDS))
                    await asyncio.sleep(chance.random() * 0.004)
                # Records fetched after the last seek: fetching went on through them all (on a
                # loaded machine a fetch may not complete between two seeks).
                before = fetched
                while fetched == before:
                    await asyncio.sleep(0.01)
            finally:
                done.set()

        await asyncio.wait_for(asyncio.gather(fetch(), seek()), timeout=120)
        return fetched, fetcher_threads
    finally:
        await thread.stop()


def test_a_seek_off_the_consumer_thread_is_refused() -> None:
    """The thread's own seek refuses a caller on another thread (as Faust's
    ``ThreadDelegateConsumer._seek`` would be), before it touches the consumer."""
    app = create_app(WorkerConfig(servers=("127.0.0.1:9",)), WorkerServices(_no_store))
    thread = cast(OkrConsumer, app.consumer)._thread
    with pytest.raises(RuntimeError, match="off the consumer thread"):
        thread.seek(TP("t", 0), 0)


def _no_store() -> Store:
    raise AssertionError("the store is not opened here")
