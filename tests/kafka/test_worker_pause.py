"""The test worker's :meth:`Worker.pause`: it stops the worker and its sequencer process (which
writes the batches), and a paused worker is stopped at once, with none of its processes left
behind stopped."""

import time
from pathlib import Path

import pytest

from events.kafka_client import Connection
from tests.kafka.worker_support import Worker, process_state

pytestmark = pytest.mark.kafka


def test_a_paused_worker_and_its_processes_are_stopped_and_killed_at_once(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    worker = Worker(kafka, topics, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready(1)
        worker.pause()
        assert len(worker.paused) >= 2, worker.paused  # the worker and its sequencer process
        assert {process_state(pid) for pid in worker.paused} == {"T"}
        paused = list(worker.paused)
        started = time.monotonic()
        worker.stop()
        assert time.monotonic() - started < 5  # not SIGTERM's 10 s wait first
        assert not worker.alive()
        assert worker.paused == []
        deadline = time.monotonic() + 5
        while not {process_state(pid) for pid in paused} <= {"Z", "-"}:
            assert time.monotonic() < deadline, {pid: process_state(pid) for pid in paused}
            time.sleep(0.05)
    finally:
        worker.stop()
