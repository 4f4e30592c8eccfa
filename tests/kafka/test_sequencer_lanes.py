"""The sequencer agent's lanes on the broker: what waits for a partition goes into one batch."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from events.intake_wire import intake_message
from events.kafka_client import Connection, OutRecord, Reader, partition_for
from events.kafka_records import decode_event, org_key
from events.kafka_transactions import BatchProducer
from processors.kafka_config import Topics, WorkerConfig
from processors.kafka_worker import SequencerAgent
from processors.metrics import PrometheusMetrics
from processors.sequencer_core import CoreRunner, ThreadRunner
from schemas.errors import LedgerUnavailableError
from tests.builders import check_ins, org_setup
from tests.kafka.conftest import TEST_PARTITIONS

SCENARIO_S = 120
"""At most this long for a scenario: a lane whose task died leaves its queue waiting forever."""
T = TypeVar("T")
Settings = Callable[..., WorkerConfig]


@dataclass(frozen=True)
class Fetched:
    """An intake record as the group consumer hands it over (aiokafka's fields)."""

    offset: int
    value: bytes
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int = 0


@dataclass
class Hooks:
    """The agent's seek and crash callbacks, noting what they are given."""

    seeks: list[tuple[int, int]] = field(default_factory=list)
    crashes: list[BaseException] = field(default_factory=list)

    async def seek(self, partition: int, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def crash(self, error: BaseException) -> None:
        self.crashes.append(error)


class GatedRunner:
    """The real core in threads; the first batch waits at a gate, and every call is noted."""

    def __init__(self, runner: ThreadRunner) -> None:
        self.runner = runner
        self.gate = asyncio.Event()
        self.batches: list[list[int]] = []

    async def call(self, method: str, *args: Any) -> Any:
        if method == "sequence":
            self.batches.append([r.offset for r in args[1]])
            if len(self.batches) == 1:
                await self.gate.wait()
        return await self.runner.call(method, *args)

    def close(self) -> None:
        self.runner.close()


@pytest.fixture
def settings(kafka_address: str, topics: dict[str, str], tmp_path: Path) -> Settings:
    """A worker's settings on the test's broker, topics and directory (a 15 s timeout unless
    given), with the settings given."""

    def make(**given: Any) -> WorkerConfig:
        return WorkerConfig(
            servers=(kafka_address,),
            topics=Topics(**topics),
            data_dir=tmp_path,
            **{"timeout_s": 15.0, **given},
        )

    return make


def run(scenario: Coroutine[Any, Any, T]) -> T:
    """Run the scenario, failing it past :data:`SCENARIO_S`."""
    return asyncio.run(asyncio.wait_for(scenario, SCENARIO_S))


@asynccontextmanager
async def sequencer(
    config: WorkerConfig, runner: CoreRunner, hooks: Hooks
) -> AsyncIterator[SequencerAgent]:
    """The sequencer agent on ``runner``, with the test's ``hooks``; closed after."""
    agent = SequencerAgent(config, runner, hooks.seek, PrometheusMetrics(), hooks.crash)
    try:
        yield agent
    finally:
        agent.close()


async def first_batch_at_gate(
    agent: SequencerAgent, runner: GatedRunner, partition: int, fetched: list[Fetched]
) -> None:
    """Assign ``partition`` (read from its start), hand over the first five records; return
    once their batch waits at the gate."""
    assert await agent.assign({partition}, 1) == {partition: 0}
    await agent.handle(partition, fetched[0:5], 1)
    while not runner.batches:
        await asyncio.sleep(0.01)


def _intake(partition: int) -> tuple[str, list[bytes], list[Fetched]]:
    """An org whose key falls on ``partition``, its set-up and 24 check-ins as submissions,
    and the intake records a fetch hands over for them (offset = position)."""
    org = next(
        o
        for o in (f"org{i}" for i in range(1000))
        if partition_for(org_key(o), TEST_PARTITIONS) == partition
    )
    raws = [*org_setup(org), *check_ins(24, org)]
    fetched = []
    for offset, raw in enumerate(raws):
        message = intake_message(raw, f"s{offset}", None)
        fetched.append(Fetched(offset, message.value, message.key, tuple(message.headers)))
    return org, raws, fetched


def _ledger(kafka_address: str, topic: str, partition: int) -> list[dict[str, Any]]:
    """The events of ``partition`` of the ledger topic, in offset order."""
    reader = Reader(Connection((kafka_address,), "okr-tests", 15.0))
    try:
        return [decode_event(r.value) for r in reader.read(topic, {partition: 0})]
    finally:
        reader.close()


def test_a_lane_takes_what_waits_into_one_batch_and_never_across_a_gap(
    settings: Settings, kafka_address: str, topics: dict[str, str]
) -> None:
    """While a partition's batch is written, the next three fetches wait: the two consecutive
    ones become one batch (one transaction), the one after a gap is not decided but sought
    back to, once; then the partition reads on, and the ledger holds every event in order."""
    partition = 1
    org, raws, fetched = _intake(partition)
    config = settings()
    hooks = Hooks()

    async def scenario() -> GatedRunner:
        runner = GatedRunner(ThreadRunner(config))
        async with sequencer(config, runner, hooks) as agent:
            await first_batch_at_gate(agent, runner, partition, fetched)
            await agent.handle(partition, fetched[5:10], 1)
            await agent.handle(partition, fetched[10:15], 1)
            await agent.handle(partition, fetched[20:25], 1)  # 15-19 missing: a gap
            runner.gate.set()
            await agent.settle()
            for _ in range(500):  # the seek back is a task of its own
                if hooks.seeks:
                    break
                await asyncio.sleep(0.01)
            assert hooks.seeks == [(partition, 15)]
            await agent.handle(partition, fetched[15:], 1)  # read again from 15
            await agent.settle()
        return runner

    runner = run(scenario())
    assert not hooks.crashes
    assert runner.batches == [
        list(range(0, 5)),
        list(range(5, 15)),  # two fetches, one batch
        list(range(15, len(raws))),
    ]
    events = _ledger(kafka_address, topics["ledger"], partition)
    assert [e["sequence"] for e in events] == list(range(1, len(raws) + 1))
    assert [e["org_id"] for e in events] == [org] * len(raws)


def test_a_lane_merges_waiting_batches_up_to_the_batch_size_and_never_more(
    settings: Settings, kafka_address: str, topics: dict[str, str]
) -> None:
    """While a partition's first batch is written, five consecutive fetches of 5 wait; with
    ``sequencer_batch_size`` 10 the lane merges them two by two (exactly 10 records: the cap
    is reached, never passed), and the ledger holds every event in order."""
    size = 10
    partition = 2
    _org, raws, fetched = _intake(partition)
    assert len(raws) > 25
    config = settings(sequencer_batch_size=size)
    hooks = Hooks()

    async def scenario() -> GatedRunner:
        runner = GatedRunner(ThreadRunner(config))
        async with sequencer(config, runner, hooks) as agent:
            await first_batch_at_gate(agent, runner, partition, fetched)
            for start in range(5, 25, 5):
                await agent.handle(partition, fetched[start : start + 5], 1)
            await agent.handle(partition, fetched[25:], 1)
            runner.gate.set()
            await agent.settle()
        return runner

    runner = run(scenario())
    assert not hooks.crashes
    assert not hooks.seeks  # no gap here
    assert runner.batches == [
        list(range(0, 5)),
        list(range(5, 15)),  # 5 + 5: the batch size, reached
        list(range(15, 25)),  # not 5 + 5 + 5: never past it
        list(range(25, len(raws))),
    ]
    assert max(len(batch) for batch in runner.batches) <= size
    events = _ledger(kafka_address, topics["ledger"], partition)
    assert [e["sequence"] for e in events] == list(range(1, len(raws) + 1))


class CountingRunner:
    """The real core in threads; every call's method is noted."""

    def __init__(self, runner: ThreadRunner) -> None:
        self.runner = runner
        self.calls: list[str] = []

    async def call(self, method: str, *args: Any) -> Any:
        self.calls.append(method)
        return await self.runner.call(method, *args)

    def close(self) -> None:
        self.runner.close()


class ForeignTransaction:
    """Another transactional id's transaction, held open in a thread with one record on a
    ledger partition (no org key: an orphan no reader takes) until :attr:`release` is set."""

    def __init__(self, kafka_address: str, topic: str, partition: int) -> None:
        self.producer = BatchProducer((kafka_address,), transactional_id=f"foreign-{topic}")
        self.opened, self.release = threading.Event(), threading.Event()
        self._record = OutRecord(topic, partition, None, b"{}", ())
        self._thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        with self.producer.transaction():
            self.producer.send([self._record])
            self.opened.set()
            self.release.wait(timeout=60)

    def start(self) -> None:
        """Open it; return once its record is written."""
        self._thread.start()
        assert self.opened.wait(timeout=30)

    def close(self) -> None:
        self.release.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=30)
        self.producer.close()


class ReleasingRunner(CountingRunner):
    """Ends the foreign transaction (``release``) once a restore has failed on it."""

    def __init__(self, runner: ThreadRunner, release: threading.Event) -> None:
        super().__init__(runner)
        self.release = release

    async def call(self, method: str, *args: Any) -> Any:
        try:
            return await super().call(method, *args)
        except LedgerUnavailableError:
            if method.startswith("restore"):
                self.release.set()
            raise


def test_a_restore_that_stalls_is_fenced_and_tried_again_not_the_end_of_the_worker(
    settings: Settings, kafka_address: str, topics: dict[str, str]
) -> None:
    """A transaction the fence does not end (another transactional id's, here) holds up the
    committed read of a ledger partition past the read's timeout: the assignment's restore
    fails, the agent fences the partition again and tries again, and once the transaction
    ends the partition is restored; nothing crashes."""
    partition = 0
    config = settings(timeout_s=2.0)
    foreign = ForeignTransaction(kafka_address, topics["ledger"], partition)
    foreign.start()
    hooks = Hooks()

    async def scenario() -> tuple[dict[int, int], list[str]]:
        runner = ReleasingRunner(ThreadRunner(config), foreign.release)
        async with sequencer(config, runner, hooks) as agent:
            return await agent.assign({partition}, 1), runner.calls

    try:
        resumed, calls = run(scenario())
    finally:
        foreign.close()
    assert resumed == {partition: 0}
    assert calls.count("restore_all") >= 2  # the first one stalled
    assert calls[:3] == ["fence", "restore_all", "fence"]
    assert not hooks.crashes


def test_a_failed_write_whose_restore_stalls_is_tried_again_not_the_end_of_the_worker(
    settings: Settings, kafka_address: str, topics: dict[str, str]
) -> None:
    """Another writer appends to a partition this worker owns, inside a transaction it keeps
    open: the next batch's write sees the foreign record (restore), and that restore's
    committed read waits on the open transaction past the read's timeout. The lane fences the
    partition again and tries again; once the transaction ends it reads on from where the
    ledger stands, and every check-in is in the ledger once, in order. Nothing crashes."""
    partition = 0
    _org, raws, fetched = _intake(partition)
    config = settings(timeout_s=2.0)
    foreign = ForeignTransaction(kafka_address, topics["ledger"], partition)
    hooks = Hooks()

    async def scenario() -> list[str]:
        runner = ReleasingRunner(ThreadRunner(config), foreign.release)
        async with sequencer(config, runner, hooks) as agent:
            assert await agent.assign({partition}, 1) == {partition: 0}
            await agent.handle(partition, fetched[:5], 1)
            await agent.settle()
            await asyncio.to_thread(foreign.start)
            await agent.handle(partition, fetched[5:10], 1)  # written after the foreign one
            await agent.settle()
            assert hooks.seeks == [(partition, 5)]  # restored: its events were not kept
            await agent.handle(partition, fetched[5:], 1)
            await agent.settle()
            return runner.calls

    try:
        calls = run(scenario())
    finally:
        foreign.close()
    assert not hooks.crashes
    assert calls.count("restore_all") == 3  # the assignment's, then the stalled one, again
    events = [e for e in _ledger(kafka_address, topics["ledger"], partition) if "org_id" in e]
    assert [e["sequence"] for e in events] == list(range(1, len(raws) + 1))


def test_a_revocation_returns_once_the_batch_being_written_has_ended(
    settings: Settings, kafka_address: str, topics: dict[str, str]
) -> None:
    """The worker rejoins the group (and the next owner fences the partition) only after its
    revoke returns: that is after the batch being written has ended, written whole, so the
    next owner's fence never meets this worker's commit. A batch still waiting is dropped."""
    partition = 0
    _org, _raws, fetched = _intake(partition)
    config = settings()
    hooks = Hooks()

    async def scenario() -> tuple[GatedRunner, bool]:
        runner = GatedRunner(ThreadRunner(config))
        async with sequencer(config, runner, hooks) as agent:
            await first_batch_at_gate(agent, runner, partition, fetched)
            await agent.handle(partition, fetched[10:15], 1)  # waits behind it
            revoking = asyncio.create_task(agent.revoke({partition}))
            await asyncio.sleep(0.3)
            returned_early = revoking.done()
            runner.gate.set()
            await revoking
        return runner, returned_early

    runner, returned_early = run(scenario())
    assert not returned_early, "the revoke returned while a batch was being written"
    assert not hooks.crashes
    assert runner.batches == [list(range(0, 5))]  # the waiting batch was not decided
    events = _ledger(kafka_address, topics["ledger"], partition)
    assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5]


def test_a_full_lane_makes_the_consumer_wait_until_its_batches_are_taken(
    settings: Settings, kafka_address: str, topics: dict[str, str]
) -> None:
    """``sequencer_queue_bytes`` bounds what waits for a partition, whatever the count: while
    the first batch is being written, one hand-over that reaches the bytes is queued and the
    next one waits (the consumer with it) until the lane takes what is queued; then every
    event is in the ledger, in order."""
    partition = 1
    _org, raws, fetched = _intake(partition)
    bound = sum(len(r.key or b"") + len(r.value) for r in fetched[5:10])
    config = settings(sequencer_queue_bytes=bound)
    hooks = Hooks()

    async def scenario() -> GatedRunner:
        runner = GatedRunner(ThreadRunner(config))
        async with sequencer(config, runner, hooks) as agent:
            await first_batch_at_gate(agent, runner, partition, fetched)
            await agent.handle(partition, fetched[5:10], 1)  # queued: the lane is full now
            waiting = asyncio.create_task(agent.handle(partition, fetched[10:15], 1))
            await asyncio.sleep(0.3)
            assert not waiting.done(), "a hand-over was queued past the lane's bytes"
            assert agent._lanes[partition].queued == bound
            runner.gate.set()
            await asyncio.wait_for(waiting, 30)
            await agent.handle(partition, fetched[15:], 1)
            await agent.settle()
            assert agent._lanes[partition].queued == 0
        return runner

    runner = run(scenario())
    assert not hooks.crashes
    assert [o for batch in runner.batches for o in batch] == list(range(len(raws)))
    events = _ledger(kafka_address, topics["ledger"], partition)
    assert [e["sequence"] for e in events] == list(range(1, len(raws) + 1))
