"""The typed face on kafka-python (``events/kafka_client.py``), on a real Tansu broker."""

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.kafka_admin import TopicSpec, ensure_topics
from events.kafka_client import Connection, OutRecord, Producer, Reader
from tests.kafka.broker import tansu_process


@pytest.fixture
def slow_broker(tmp_path: Path) -> Iterator[tuple[Connection, "subprocess.Popen[bytes]"]]:
    """A broker of this test's own, which it may stop and continue."""
    with tansu_process(tmp_path / "broker.log") as (address, process):
        yield Connection((address,), "okr-tests", timeout_s=15.0), process


def _stopped_for(process: "subprocess.Popen[bytes]", seconds: float) -> threading.Thread:
    """SIGSTOP the broker now; SIGCONT it after ``seconds``, on a thread."""
    process.send_signal(signal.SIGSTOP)

    def resume() -> None:
        time.sleep(seconds)
        process.send_signal(signal.SIGCONT)

    thread = threading.Thread(target=resume)
    thread.start()
    return thread


def test_a_read_returns_what_was_acknowledged_before_it_when_the_broker_is_slow(
    slow_broker: tuple[Connection, "subprocess.Popen[bytes]"],
) -> None:
    """A read that finds nothing new may end with a fetch of its position in flight; the next
    read, from the same offset, must not end at that fetch's old high watermark when the
    broker does not answer its own fetch at once (a loaded machine: here the broker is stopped
    for 0.3 s). Whether a fetch is in flight at the end is timing: rounds go on until three
    had its answer waiting (kafka-python's fetcher buffer, read here as the fix reads it)."""
    kafka, broker = slow_broker
    topic = "slow-reads"
    ensure_topics(kafka, [TopicSpec(topic, 1)])
    reader, producer = Reader(kafka), Producer(kafka)
    waiting = 0
    try:
        assert list(reader.read(topic, {0: None})) == []
        for round_ in range(60):
            assert list(reader.read(topic, {0: reader.positions[0]})) == []
            time.sleep(0.05)  # the fetch in flight at the end, if any, is answered: no record
            waiting += bool(reader._consumer._fetcher._completed_fetches)
            value = b"after %d" % round_
            producer.send_all([OutRecord(topic, 0, b"k", value, ())])
            resumer = _stopped_for(broker, 0.3)
            try:
                read = [r.value for r in reader.read(topic, {0: reader.positions[0]})]
            finally:
                resumer.join()
            assert read == [value], (round_, waiting)
            if waiting == 3:
                break
    finally:
        reader.close()
        producer.close()
    assert waiting == 3, f"only {waiting} of 60 reads ended with a fetch in flight"
