"""The projector agent when its store fails (on a real chDB store): it goes down instead of
ending the worker, drops what it is handed, opens the store again, asks the group for a
rebalance, and takes its partitions on the assignment that follows (read from their beginning:
no state file). Hand-overs of the generation before are dropped. The store's rows then equal a
projection of the same records in one go. A store that stalls puts it down after the stall
limit, whatever waits on it; a failure that is not the store's still ends the worker."""

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from events.kafka_records import RejectionLanes
from processors.kafka_projector import LedgerProjection, Outage, PartitionStates, ProjectorAgent
from processors.metrics import PrometheusMetrics
from processors.tables import OWNER_STREAM
from projections.store import ProjectionStore
from schemas.errors import ProjectionError, ProjectionUnavailableError
from tests.kafka.agent_support import TABLES, Record, no_progress, records


class FailingStore(ProjectionStore):
    """A store whose inserts of events' rows and reads of the checkpoints do not answer while
    ``down`` (the server gone: what a server store raises then), and wait for ``released``
    while ``stalled`` (the server paused: the insert, or the read). While ``claims_stall``, a
    claim waits for ``released`` and then lands; while ``cut``, a commit's ledger checkpoints
    do not answer (its rows are in: a commit cut short)."""

    down = False
    stalled = False
    claims_stall = False
    cut = False
    released = threading.Event()
    claiming = threading.Event()
    """Set once a claim waits (``claims_stall``)."""
    closed = False

    def close(self) -> None:
        if not self.closed:  # closed by the test, and by the fixture after a failure
            self.closed = True
            super().close()

    def _insert_if_claimed(self, claimed: Any, others: Any = ()) -> None:
        if self.cut:
            raise ProjectionUnavailableError("insert into checkpoints failed: refused")
        super()._insert_if_claimed(claimed, others)

    def checkpoints(self) -> Any:
        if self.stalled:
            self.released.wait(30)
        if self.down:
            raise ProjectionUnavailableError("the store at http://127.0.0.1:9 did not answer")
        return super().checkpoints()

    def insert(self, rows: Any, owners: Any = None) -> None:
        claims = [row for row in rows.get("checkpoints", ()) if row[0] == OWNER_STREAM]
        if claims and self.claims_stall:
            self.claiming.set()
            self.released.wait(30)
        if rows.get("audit_events"):
            if self.stalled:
                self.released.wait(30)
                raise ProjectionUnavailableError("insert into audit_events failed: timed out")
            if self.down:
                raise ProjectionUnavailableError("insert into audit_events failed: refused")
        super().insert(rows, owners)


class Recording(LedgerProjection):
    """Notes the offsets of the records it applies."""

    def __init__(self, store: ProjectionStore) -> None:
        super().__init__(store, 1, RejectionLanes(1))
        self.offsets: list[int] = []

    def apply(self, ledger: Any, rejections: Any) -> set[int]:
        self.offsets += [offset for _, offset, *_ in ledger]
        return super().apply(ledger, rejections)


class Group:
    """What the worker gives the agent: the store opened again, and a rebalance asked for."""

    def __init__(self, store: FailingStore) -> None:
        self.store = store
        self.made: list[Recording] = []
        self.rejoins = 0
        self.reopen_fails = False
        self.rejoin_fails = False

    def reopen(self) -> LedgerProjection:
        if self.reopen_fails:
            raise ProjectionUnavailableError("the store at http://127.0.0.1:9 did not answer")
        self.made.append(Recording(self.store))
        return self.made[-1]

    async def rejoin(self) -> None:
        self.rejoins += 1
        if self.rejoin_fails:
            self.rejoin_fails = False
            raise RuntimeError("Consumer thread not yet started")


STALL_S = 2.0
"""The agents' stall limit: a take or an insert that does not stall ends well within it, also
on a loaded machine (0.5 s was passed at a load of 10)."""
OPENED: list[FailingStore] = []


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    """Every store a test opened is closed after it, failed or not: one chDB path per process,
    so a store left open would fail every test after it."""
    yield
    while OPENED:
        OPENED.pop().close()


def failing(path: Path) -> FailingStore:
    store = FailingStore.open(f"chdb://{path}")
    assert isinstance(store, FailingStore)
    OPENED.append(store)
    return store


def contents(store: ProjectionStore) -> dict[str, list[Any]]:
    return {
        table: sorted(map(repr, store.rows(f"SELECT * FROM {{db}}.{table} ORDER BY ALL")))
        for table in TABLES
    }


@asynccontextmanager
async def assigned(
    store: FailingStore,
    group: Group,
    metrics: PrometheusMetrics,
    stall_s: float = STALL_S,
    thread: ThreadPoolExecutor | None = None,
) -> AsyncIterator[ProjectorAgent]:
    """An agent with an :class:`Outage` on ``store``, given ledger partition 0 (generation 1);
    ``thread``: the store's."""
    agent = ProjectorAgent(
        LedgerProjection(store, 1, RejectionLanes(1)),
        thread or ThreadPoolExecutor(1),
        metrics,
        no_progress,
        batch_size=10,
        linger_s=60.0,
        outage=Outage(group.reopen, group.rejoin, retry_max_s=0.2, stall_s=stall_s),
    )
    await agent.assign({0}, {0}, 1)
    try:
        yield agent
    finally:
        agent.close()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


async def project_all(agent: ProjectorAgent, given: list[Record], generation: int) -> None:
    """Hand ``given`` over in full batches of ``generation``; every offset is then settled."""
    for start in range(0, len(given), 10):
        await agent.handle(0, given[start : start + 10], generation)
    assert await agent.settle() == ({0: len(given)}, {0: 0})


def assert_equals_one_projection(store: ProjectionStore, given: list[Record], tmp: Path) -> None:
    """The store's rows (the store closed) equal those of ``given`` projected in one go."""
    recovered = contents(store)
    store.close()  # one chDB path per process
    with ProjectionStore.open(f"chdb://{tmp / 'whole'}") as whole:
        LedgerProjection(whole, 1, RejectionLanes(1)).apply(
            [(0, r.offset, r.key, r.value) for r in given], []
        )
        assert contents(whole) == recovered


def test_a_failed_insert_puts_the_projector_down_and_a_rebalance_brings_it_back(
    tmp_path: Path,
) -> None:
    given = records()
    store = failing(tmp_path / "store")
    metrics = PrometheusMetrics()
    group = Group(store)

    async def main() -> None:
        async with assigned(store, group, metrics) as agent:
            store.down = True
            await agent.handle(0, given[:5], 1)
            await agent.handle(0, given[5:10], 1)  # a full batch: its insert fails
            assert agent.down
            assert metrics.readiness.projector_down is not None
            assert "projector is down" in metrics.readiness.why_not_ready()
            await agent.handle(0, given[10:20], 1)  # dropped: nothing to insert it on
            assert await agent.settle() == ({}, {})  # no offset past the lost rows
            assert store.positions() == {}
            store.down = False
            await until(lambda: group.rejoins > 0, "a rebalance asked for")
            assert len(group.made) == 1, "the store is opened again once, before the rebalance"
            assert agent.projection is group.made[0]
            assert agent.down, "down until the assignment's take"
            await agent.handle(0, given[20:30], 1)  # still generation 1: dropped
            await agent.revoke()
            assert await agent.assign({0}, {0}, 2) == ({0: None}, {0: 0})  # no state file
            assert not agent.down
            assert metrics.readiness.projector_down is None
            assert len(group.made) == 1, "the take used the store opened by the recovery"
            await agent.handle(0, given[30:40], 1)  # fetched before the rebalance: dropped
            await project_all(agent, given, 2)
            assert group.made[0].offsets == [r.offset for r in given]  # each once, in order

    run(main)
    assert store.positions() == {"acme": len(given)}
    assert_equals_one_projection(store, given, tmp_path)


def test_a_store_still_down_at_the_rebalance_keeps_it_down_and_it_tries_again(
    tmp_path: Path,
) -> None:
    """The take of an assignment failing (the store down again) neither raises nor ends the
    recovery: it goes on until a take succeeds, however often the store fails meanwhile."""
    given = records()
    store = failing(tmp_path / "store")
    metrics = PrometheusMetrics()
    group = Group(store)

    async def main() -> None:
        async with assigned(store, group, metrics) as agent:
            store.down = True
            await agent.handle(0, given[:10], 1)
            assert agent.down
            await until(lambda: group.rejoins > 0, "a first rebalance asked for")
            group.reopen_fails = True  # the store down again
            await agent.revoke()
            assert await agent.assign({0}, {0}, 2) == ({}, {})  # its take failed: down
            assert agent.down
            await asyncio.sleep(1.0)  # several retry periods
            assert group.rejoins == 1, "a rebalance asked for while the store refuses"
            store.down = group.reopen_fails = False
            await until(lambda: group.rejoins > 1, "the recovery going on after a failed take")
            await agent.revoke()
            assert await agent.assign({0}, {0}, 3) == ({0: None}, {0: 0})
            assert not agent.down
            # Down again right after: a recovery of its own, as the first.
            store.down = True
            await agent.handle(0, given[:10], 3)
            assert agent.down
            store.down = False
            await until(lambda: group.rejoins > 2, "a rebalance asked for again")
            await agent.revoke()
            assert await agent.assign({0}, {0}, 4) == ({0: None}, {0: 0})
            assert not agent.down
            await project_all(agent, given, 4)

    run(main)
    assert store.positions() == {"acme": len(given)}
    assert_equals_one_projection(store, given, tmp_path)


def test_a_stalled_insert_puts_it_down_after_the_stall_limit_and_holds_the_recovery_back(
    tmp_path: Path,
) -> None:
    """A full batch, a revoke and an assignment each wait at most the stall limit for an insert
    that does not end (the consumer waits on them); the recovery waits for that insert."""
    given = records()
    store = failing(tmp_path / "store")
    store.released = threading.Event()
    metrics = PrometheusMetrics()
    group = Group(store)
    loop_times: list[float] = []

    async def timed(work: Awaitable[Any]) -> Any:
        started = asyncio.get_running_loop().time()
        result = await work
        loop_times.append(asyncio.get_running_loop().time() - started)
        return result

    async def main() -> None:
        async with assigned(store, group, metrics) as agent:
            store.stalled = True
            await timed(agent.handle(0, given[:10], 1))  # its own insert stalls
            assert agent.down
            assert "waited" not in str(metrics.readiness.projector_down)
            await timed(agent.revoke())  # waits for the stalled insert, at most the limit
            assert await timed(agent.assign({0}, {0}, 2)) == ({}, {})
            await asyncio.sleep(1.0)  # several retry periods
            assert group.rejoins == 0, "a rebalance asked for under a stalled insert"
            assert not group.made, "the store opened again under a stalled insert"
            store.stalled = False
            store.released.set()  # the insert fails in the end (the client's timeout)
            await until(lambda: group.rejoins > 0, "a rebalance once the insert ended")
            await agent.revoke()
            assert await agent.assign({0}, {0}, 3) == ({0: None}, {0: 0})
            assert not agent.down
            await project_all(agent, given, 3)

    run(main)
    assert all(seconds < STALL_S + 3.0 for seconds in loop_times), loop_times
    assert_equals_one_projection(store, given, tmp_path)


class Faulty(LedgerProjection):
    """A projection with a fault of its own, not the store's (``fault``)."""

    fault: Exception = TypeError("a ledger event with fields ['org_id']")

    def apply(self, ledger: Any, rejections: Any) -> set[int]:
        raise self.fault


@pytest.mark.parametrize(
    "fault",
    [
        TypeError("a ledger event with fields ['org_id']"),
        ProjectionError("event 7 follows 5: the projector needs every event in order"),
        ProjectionError("insert into audit_events failed: Code: 53. TYPE_MISMATCH"),
    ],
    ids=["code", "record", "statement"],
)
def test_a_failure_that_is_not_the_store_not_answering_still_ends_the_worker(
    tmp_path: Path, fault: Exception
) -> None:
    """The projector's own errors (a ``ProjectionError`` too) and a statement the store
    refused are not an outage: the worker ends (a restart is what they need), no recovery
    loops on them."""
    store = failing(tmp_path / "store")
    group = Group(store)

    async def main() -> None:
        projection = Faulty(store, 1, RejectionLanes(1))
        projection.fault = fault
        agent = ProjectorAgent(
            projection,
            ThreadPoolExecutor(1),
            PrometheusMetrics(),
            no_progress,
            batch_size=1,
            outage=Outage(group.reopen, group.rejoin, retry_max_s=0.2, stall_s=STALL_S),
        )
        await agent.assign({0}, {0}, 1)
        try:
            with pytest.raises(type(fault), match=str(fault)[:20]):
                await agent.handle(0, records()[:1], 1)
            assert not agent.down
            await asyncio.sleep(0.5)  # a recovery's first try would have come
        finally:
            agent.close()

    run(main)
    assert not group.made
    assert group.rejoins == 0
    store.close()


def test_a_stalled_take_leaves_the_assignment_after_the_stall_limit(tmp_path: Path) -> None:
    """An assignment whose read of the checkpoints does not end gives up after the stall
    limit (Faust gives the whole assignment 90 s, the sequencer's restore beside it): no
    offsets, down. The take that ends late changes nothing; the recovery takes again."""
    given = records()
    store = failing(tmp_path / "store")
    store.released = threading.Event()
    metrics = PrometheusMetrics()
    group = Group(store)

    async def main() -> None:
        async with assigned(store, group, metrics) as agent:
            await agent.revoke()
            store.stalled = True
            started = asyncio.get_running_loop().time()
            assert await agent.assign({0}, {0}, 2) == ({}, {})
            assert asyncio.get_running_loop().time() - started < STALL_S + 3.0
            assert agent.down
            await agent.handle(0, given[:10], 2)  # not this generation's: dropped
            store.stalled = False
            store.released.set()  # the take ends, late
            await until(lambda: group.rejoins > 0, "a rebalance once the take ended")
            assert agent.down, "the late take brought it up"
            await agent.revoke()
            assert await agent.assign({0}, {0}, 3) == ({0: None}, {0: 0})
            assert not agent.down
            await project_all(agent, given, 3)

    run(main)
    assert_equals_one_projection(store, given, tmp_path)


def test_the_recovery_asks_for_one_rebalance_and_again_if_asking_failed(tmp_path: Path) -> None:
    """Once it has asked for a rebalance, the recovery waits for the assignment instead of
    asking again at each try (each request after the group's sync is one more rebalance of
    every worker). A request that raises is made again at the next try."""
    store = failing(tmp_path / "store")
    group = Group(store)

    async def main() -> None:
        async with assigned(store, group, PrometheusMetrics()) as agent:
            store.down = True
            await agent.handle(0, records()[:10], 1)
            assert agent.down
            store.down = False
            group.rejoin_fails = True
            await until(lambda: group.rejoins > 1, "asked again after a request that failed")
            await asyncio.sleep(1.5)  # tries every 0.2 s meanwhile
            assert group.rejoins == 2, "asked for a rebalance while the one asked is under way"
            await agent.revoke()
            assert await agent.assign({0}, {0}, 2) == ({0: None}, {0: 0})
            assert not agent.down

    run(main)
    store.close()


def test_down_and_given_nothing_it_is_up_once_the_store_opens(tmp_path: Path) -> None:
    """Revoked while down, then given no partition (Faust makes no assignment of nothing):
    once the store opens again, nothing is left to take, so it is up without a rebalance."""
    store = failing(tmp_path / "store")
    metrics = PrometheusMetrics()
    group = Group(store)

    async def main() -> None:
        async with assigned(store, group, metrics) as agent:
            store.down = group.reopen_fails = True
            await agent.handle(0, records()[:10], 1)
            assert agent.down
            await agent.revoke()
            await asyncio.sleep(0.5)
            assert agent.down
            store.down = group.reopen_fails = False
            await until(lambda: not agent.down, "up again")
            assert group.rejoins == 0
            assert metrics.readiness.projector_down is None

    run(main)
    store.close()


def commit_cut_short_by_the_next_owner(store: FailingStore, given: list[Record]) -> None:
    """Another worker takes partition 0 (its claim as high as a stalled one, which read the
    claims before it) and projects ``given[:15]``, then commits ``given[15:20]`` cut short:
    rows in, checkpoints not."""
    other = LedgerProjection(store, 1, RejectionLanes(1))
    assert other.take({0}) == {0: None}
    other.apply([(0, r.offset, r.key, r.value) for r in given[:15]], [])
    store.cut = True
    with pytest.raises(ProjectionUnavailableError):
        other.apply([(0, r.offset, r.key, r.value) for r in given[15:20]], [])
    store.cut = False
    assert store.positions() == {"acme": 15}


def assert_the_cut_commit_kept(store: FailingStore) -> None:
    assert store.rows(
        "SELECT count() FROM {db}.audit_events WHERE org_id = 'acme' AND sequence > 15"
    ) == [(5,)]


@pytest.mark.parametrize("gives_up", ["stall limit", "revoke", "barrier cancelled"])
def test_a_take_that_ends_after_its_assignment_gave_up_discards_nothing(
    tmp_path: Path, gives_up: str
) -> None:
    """The store stalls a take inside its claim, and its assignment gives up on it: past the
    stall limit, or a revoke comes, or Faust cancels the barrier (the next rebalance's
    assignment came). Another worker takes the partition, its claim as high (it read the
    claims before this one landed), and commits, a commit cut short. The take, its claim
    landed late, must not go on to discard that commit's rows (they pass a claim check that
    ties), nor bring its generation back (review32b, review33)."""
    given = records()
    store = failing(tmp_path / "store")
    store.released, store.claiming = threading.Event(), threading.Event()
    group = Group(store)
    stall_s = STALL_S if gives_up == "stall limit" else 30.0

    async def main() -> None:
        async with assigned(store, group, PrometheusMetrics(), stall_s) as agent:
            await agent.handle(0, given[:10], 1)  # a full batch: stored
            await agent.revoke()
            assert store.positions() == {"acme": 10}
            store.claims_stall = True
            assigning = asyncio.create_task(agent.assign({0}, {0}, 2))
            while not store.claiming.is_set():
                await asyncio.sleep(0.01)
            revoking = None
            if gives_up == "stall limit":
                assert await assigning == ({}, {})
                assert agent.down
            elif gives_up == "revoke":
                revoking = asyncio.create_task(agent.revoke())
                await asyncio.sleep(0.1)
            else:
                assigning.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await assigning
            store.claims_stall = False
            commit_cut_short_by_the_next_owner(store, given)
            before = contents(store)
            store.released.set()  # the stalled claim lands (as high as the other's)
            if revoking is not None:
                await revoking
                assert await assigning == ({}, {})
            await until(lambda: not agent._lock.locked(), "the take ended")
            await agent.handle(0, given[20:30], 2)  # not its generation any more: dropped
            assert contents(store) == before, "the late take discarded the other's rows"
            if gives_up == "stall limit":
                await until(lambda: group.rejoins > 0, "the recovery once the take ended")
            else:
                assert not agent.down
                await agent.settle()
                assert contents(store) == before

    run(main)
    assert_the_cut_commit_kept(store)
    store.close()


def test_a_revoke_while_the_assignment_waits_for_the_lock_abandons_its_take(
    tmp_path: Path,
) -> None:
    """An assignment waits for the lock (an insert under way, or the recovery's reopen); a
    revoke comes meanwhile (the group moved on). The lock is the assignment's first, but its
    take must not claim the partitions it no longer has, nor give offsets (review33b)."""
    store = failing(tmp_path / "store")
    group = Group(store)

    async def main() -> None:
        async with assigned(store, group, PrometheusMetrics(), stall_s=30.0) as agent:
            await agent.revoke()
            claims = store.positions(OWNER_STREAM)
            assert claims == {"partition-0": 1}
            await agent._lock.acquire()  # what an insert under way holds
            assigning = asyncio.create_task(agent.assign({0}, {0}, 2))
            await asyncio.sleep(0.1)  # waiting for the lock
            revoking = asyncio.create_task(agent.revoke())
            await asyncio.sleep(0.1)
            agent._lock.release()
            assert await assigning == ({}, {})
            await revoking
            assert store.positions(OWNER_STREAM) == claims, "it claimed what it no longer has"
            assert not agent.down
            assert await agent.assign({0}, {0}, 3) == ({0: None}, {0: 0})  # as any assignment

    run(main)


def with_state_files(
    store: FailingStore, thread: ThreadPoolExecutor, states: Path, outage: Outage | None = None
) -> ProjectorAgent:
    """An agent on ``store`` that saves its partitions' state files in ``states``, its store
    calls run on ``thread``."""
    files = PartitionStates(states, lambda: nullcontext(lambda p, o: None))
    projection = LedgerProjection(store, 1, RejectionLanes(1), states=files)
    return ProjectorAgent(projection, thread, PrometheusMetrics(), no_progress, outage=outage)


def test_a_revoke_waits_for_the_store_thread_at_most_the_stall_limit(tmp_path: Path) -> None:
    """The store's thread is busy with a read that does not end (a timer's query of a store
    that answers nothing): a revoke's save waits behind it at most the stall limit, and the
    projector is down (the group's rebalance waits for this worker's revoke) (review33)."""
    store = failing(tmp_path / "store")
    store.released = threading.Event()
    group = Group(store)
    thread = ThreadPoolExecutor(1)
    outage = Outage(group.reopen, group.rejoin, retry_max_s=0.2, stall_s=STALL_S)

    async def main() -> None:
        agent = with_state_files(store, thread, tmp_path / "states", outage)
        try:
            assert await agent.assign({0}, {0}, 1) == ({0: None}, {0: 0})
            loop = asyncio.get_running_loop()
            busy = loop.run_in_executor(thread, store.released.wait, 30)
            started = loop.time()
            await agent.revoke()  # its save of the state files waits for the store's thread
            waited = loop.time() - started
            assert agent.down
            assert waited < STALL_S + 3.0, f"the revoke waited {waited:.1f}s"
            store.released.set()
            await busy
        finally:
            agent.close()

    run(main)
    store.close()


def test_a_stop_waits_for_the_store_thread_at_most_its_timeout(tmp_path: Path) -> None:
    """The worker stops while the store's thread is held by a read that does not end (a store
    that answers nothing): the stop's save of the state files waits at most its timeout, so
    the worker's stop is not held by the store (no revoke comes at a stop)."""
    store = failing(tmp_path / "store")
    store.released = threading.Event()
    thread = ThreadPoolExecutor(1)

    async def main() -> None:
        agent = with_state_files(store, thread, tmp_path / "states")
        assert await agent.assign({0}, {0}, 1) == ({0: None}, {0: 0})
        loop = asyncio.get_running_loop()
        busy = loop.run_in_executor(thread, store.released.wait, 30)
        started = loop.time()
        await agent.stop(timeout_s=1.0)  # its save waits for the store's thread
        waited = loop.time() - started
        assert 1.0 <= waited < 1.0 + 3.0, f"the stop waited {waited:.1f}s"
        assert not busy.done(), "the store's thread was free: the stop was not held by it"
        store.released.set()
        await busy

    run(main)
    thread.shutdown()
    store.close()


def test_down_revoked_and_given_nothing_by_its_own_rebalance_it_is_up_at_once(
    tmp_path: Path,
) -> None:
    """The recovery opened the store while the worker owned its partition and asked for a
    rebalance; that rebalance revokes the partition and gives nothing (Faust runs no
    barrier): told so (``given_nothing``), it is up at once, not down asking for rebalances
    every ``REBALANCE_WAIT_S`` (review32b)."""
    store = failing(tmp_path / "store")
    metrics = PrometheusMetrics()
    group = Group(store)

    async def main() -> None:
        async with assigned(store, group, metrics) as agent:
            store.down = True
            await agent.handle(0, records()[:10], 1)
            assert agent.down
            store.down = False
            await until(lambda: group.rejoins > 0, "a rebalance asked for")
            assert agent.down
            await agent.revoke()
            agent.given_nothing()
            await until(lambda: not agent.down, "up once given nothing", timeout_s=5.0)
            assert metrics.readiness.projector_down is None
            assert group.rejoins == 1
            assert await agent.assign({0}, {0}, 3) == ({0: None}, {0: 0})  # as any assignment

    run(main)
    store.close()


def test_an_assignment_waits_for_the_lock_and_its_take_within_one_stall_limit(
    tmp_path: Path,
) -> None:
    """An insert under way holds the lock for most of the stall limit and then ends; the take
    that follows stalls. The assignment gives up one stall limit after it began, not after
    the wait for the lock plus a stall limit more (Faust gives the barrier 90 s, the limit is
    at most 60) (review32b)."""
    store = failing(tmp_path / "store")
    store.released = threading.Event()
    group = Group(store)
    stall_s = 4.0  # released at 3 s: 7 s with a limit each, 4 s with one between them

    async def main() -> None:
        agent = ProjectorAgent(
            LedgerProjection(store, 1, RejectionLanes(1)),
            ThreadPoolExecutor(1),
            PrometheusMetrics(),
            no_progress,
            outage=Outage(group.reopen, group.rejoin, retry_max_s=0.2, stall_s=stall_s),
        )
        try:
            loop = asyncio.get_running_loop()
            await agent._lock.acquire()  # what an insert under way holds
            loop.call_later(0.75 * stall_s, agent._lock.release)
            store.stalled = True  # the take's read of the checkpoints
            started = loop.time()
            assert await agent.assign({0}, {0}, 1) == ({}, {})
            waited = loop.time() - started
            assert agent.down
            assert waited < 1.5 * stall_s, f"waited {waited:.2f}s for the lock and the take"
        finally:
            store.stalled = False
            store.released.set()
            agent.close()

    run(main)
    store.close()
