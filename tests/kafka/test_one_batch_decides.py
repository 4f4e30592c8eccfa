"""The sequencer process decides one batch at a time (:class:`SequencerCore`, on the broker).

Batches of several partitions fetched together are decided one after the other, and the next
one is decided while the one before is written: deciding holds a lock that is let go of once
the batch is decided, before its transaction.
"""

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from events.kafka_client import Connection
from processors.kafka_sequencer import BatchOutput, IntakeRecord
from processors.sequencer_core import Sequenced, SequencerCore, Verdict
from tests.kafka.core_support import Place, intake_batches, new_topics, write_all

pytestmark = pytest.mark.kafka

WAIT_S = 30.0
"""What a step that must happen is given (the broker shared with other tests)."""
QUIET_S = 1.0
"""How long a step that must not happen is watched for."""


def _watch_deciding(core: SequencerCore, partition: int, entered: threading.Event) -> None:
    """Set ``entered`` when ``partition``'s sequencer starts deciding a batch."""
    sequencer = core._owned[partition].sequencer
    deciding = sequencer.deciding

    @contextmanager
    def watched(records: Sequence[IntakeRecord], now: datetime) -> Iterator[BatchOutput]:
        entered.set()
        with deciding(records, now) as output:
            yield output

    sequencer.deciding = watched  # type: ignore[method-assign]


def _in_thread(call: Callable[[], Sequenced]) -> tuple[threading.Thread, list[Sequenced]]:
    results: list[Sequenced] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    return thread, results


def test_one_batch_decides_at_a_time_and_the_next_decides_while_it_is_written(
    kafka_address: str, kafka: Connection, tmp_path: Path
) -> None:
    place = Place(kafka_address, new_topics(kafka), f"test-{uuid.uuid4().hex[:8]}")
    core = place.core(tmp_path)
    try:
        intake = {partition: intake_batches(partition, 2) for partition in (0, 1)}
        for partition, batches in intake.items():
            core.restore(partition)
            write_all(core, partition, batches[:1])  # the org's setup
        entered = {partition: threading.Event() for partition in (0, 1)}
        _watch_deciding(core, 1, entered[1])

        # Partition 0's batch held after it is decided, before it is written: 1's waits.
        decided, release = threading.Event(), threading.Event()
        sequencer = core._owned[0].sequencer
        deciding = sequencer.deciding

        @contextmanager
        def held(records: Sequence[IntakeRecord], now: datetime) -> Iterator[BatchOutput]:
            with deciding(records, now) as output:
                decided.set()
                release.wait(2 * WAIT_S)  # the test's own waits end first
                yield output

        sequencer.deciding = held  # type: ignore[method-assign]
        first, first_result = _in_thread(lambda: core.sequence(0, intake[0][1]))
        assert decided.wait(WAIT_S)
        second, second_result = _in_thread(lambda: core.sequence(1, intake[1][1]))
        assert not entered[1].wait(QUIET_S), "a second batch was decided at the same time"
        release.set()
        assert entered[1].wait(WAIT_S)
        for thread in (first, second):
            thread.join(WAIT_S)
        assert [r.verdict for r in (*first_result, *second_result)] == [Verdict.WRITTEN] * 2
        sequencer.deciding = deciding  # type: ignore[method-assign]

        # Partition 0's next batch held inside its write: 1's next batch is decided meanwhile.
        entered[1].clear()
        writing, release_write = threading.Event(), threading.Event()
        writer = core._owned[0].writer
        append = writer.append

        def held_append(*args: Any) -> Any:
            writing.set()
            release_write.wait(2 * WAIT_S)  # the test's own waits end first
            return append(*args)

        writer.append = held_append  # type: ignore[method-assign,assignment]
        first, first_result = _in_thread(lambda: core.sequence(0, intake[0][2]))
        assert writing.wait(WAIT_S)
        second, second_result = _in_thread(lambda: core.sequence(1, intake[1][2]))
        assert entered[1].wait(WAIT_S), "the next batch waited for the one being written"
        assert first.is_alive()  # still inside its write
        release_write.set()
        for thread in (first, second):
            thread.join(WAIT_S)
        assert [r.verdict for r in (*first_result, *second_result)] == [Verdict.WRITTEN] * 2
    finally:
        core.close()
