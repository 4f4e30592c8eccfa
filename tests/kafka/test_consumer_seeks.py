"""The worker's group consumer seeks on its consumer thread, never racing the thread's fetches.

Faust runs aiokafka's consumer in a thread of its own; aiokafka's fetcher is not thread-safe.
A seek from the app's thread (Faust's ``ThreadDelegateConsumer._seek``) deletes a partition's
fetched records under ``Fetcher.fetched_records`` running on the consumer thread: a
``KeyError`` at ``del self._records[tp]`` crashed workers right after an assignment (the
barrier's seeks; robinhood/aiokafka #19). Here the real consumer thread of the worker's app
fetches from the broker while the app's loop seeks, as the barrier, the salvage and the
sequencer do; and records a fetch took before a seek are never handed over after it.
"""

import asyncio
import random
import threading
import uuid
from dataclasses import dataclass, field
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
    seen = asyncio.run(_fetch_while_seeking(app, TP(topic, 0)))

    assert seen.fetched > 0
    assert len(seekers) == SEEKS
    assert set(seekers) == seen.threads  # the consumer thread's, not the test's
    assert threading.main_thread() not in seekers
    # What the drain hands over starts where the last seek said, and follows on without a gap
    # until the next one: records taken before a seek (read from where the partition stood
    # then) are told apart and dropped, not handed over after it (a rejections lane's records
    # handed over that way were skipped by the projector for good).
    assert seen.misplaced == []
    assert seen.handed > 0


@dataclass
class Seen:
    fetched: int = 0
    handed: int = 0
    """Batches the drain would hand over (not taken before a seek)."""
    threads: set[threading.Thread] = field(default_factory=set)
    misplaced: list[tuple[int, int]] = field(default_factory=list)
    """(first offset handed over, the offset it should have been)."""


async def _fetch_while_seeking(app: Any, tp: TP) -> Seen:
    """Fetch ``tp`` in a loop (as the consumer's drain does, with its check of records taken
    before a seek) while the app's loop seeks it about (as the barrier and the sequencer do);
    what came, where, and on which threads."""
    consumer = cast(OkrConsumer, app.consumer)
    thread = consumer._thread
    targets = {0: 0}
    """The offset of each seek, by its number (0: the start, the partition's beginning)."""
    thread_seek = thread.seek

    def seek_noting(partition: TP, offset: int) -> None:  # on the consumer thread, as seeks run
        thread_seek(partition, offset)
        targets[thread.seeks[tp]] = offset

    thread.seek = seek_noting  # type: ignore[method-assign]
    await thread.start()
    try:
        aiokafka_consumer = thread._ensure_consumer()
        await thread.call_thread(aiokafka_consumer.assign, [TopicPartition(tp.topic, 0)])
        done = asyncio.Event()
        seen = Seen()

        async def note_thread() -> None:
            seen.threads.add(threading.current_thread())

        async def fetch() -> None:
            last_seek, next_offset = 0, 0
            while not done.is_set():
                records = await thread.getmany({tp}, 0.05)
                seen.fetched += sum(len(batch) for batch in records.values())
                await thread.call_thread(note_thread)
                batch = records.get(TopicPartition(tp.topic, tp.partition))
                sought = thread.seeks.get(tp, 0)  # the seeks made so far, read first
                if not batch or thread.sought_since(records, tp):  # the drain's check
                    continue
                seen.handed += 1
                if sought != last_seek:  # the first hand-over since a seek: from its offset
                    last_seek, next_offset = sought, targets[sought]
                if batch[0].offset != next_offset:
                    seen.misplaced.append((batch[0].offset, next_offset))
                next_offset = batch[-1].offset + 1

        async def seek() -> None:
            chance = random.Random(19)
            try:
                for _ in range(SEEKS):
                    await consumer.seek(tp, chance.randrange(RECORDS))
                    await asyncio.sleep(chance.random() * 0.004)
                # Records fetched after the last seek: fetching went on through them all (on a
                # loaded machine a fetch may not complete between two seeks).
                before = seen.fetched
                while seen.fetched == before:
                    await asyncio.sleep(0.01)
            finally:
                done.set()

        await asyncio.wait_for(asyncio.gather(fetch(), seek()), timeout=120)
        return seen
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
