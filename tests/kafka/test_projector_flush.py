"""The projector agent's flushes: batches go in in order and give the rows of one batch; an
insert that fails in the flush the linger timer starts ends the worker (on a real chDB store).
Before, that failure ended only the timer's task, silently: the worker went on without those
rows and without flushing on time again."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from events.kafka_records import RejectionLanes
from processors.kafka_projector import LedgerProjection, ProjectorAgent
from processors.metrics import PrometheusMetrics
from projections.store import ProjectionStore
from schemas.errors import ProjectionError
from tests.kafka.agent_support import TABLES, Record, no_progress, records


def agent_of(projection: LedgerProjection, **options: Any) -> ProjectorAgent:
    """An agent over ``projection`` with its own store thread and metrics."""
    return ProjectorAgent(
        projection, ThreadPoolExecutor(1), PrometheusMetrics(), no_progress, **options
    )


def contents(store: ProjectionStore) -> dict[str, list[Any]]:
    return {
        table: sorted(map(repr, store.rows(f"SELECT * FROM {{db}}.{table} ORDER BY ALL")))
        for table in TABLES
    }


class Failing(LedgerProjection):
    """Fails its ``fail_at``-th insert (0: the first), as a full disk would."""

    def __init__(self, store: ProjectionStore, fail_at: int | None = None) -> None:
        super().__init__(store, 1, RejectionLanes(1))
        self.fail_at, self.applied = fail_at, 0

    def apply(self, ledger: Any, rejections: Any) -> set[int]:
        if self.applied == self.fail_at:
            raise ProjectionError("insert into audit_events failed: the disk is full")
        self.applied += 1
        return super().apply(ledger, rejections)


class FullDisk(ProjectionStore):
    """A store whose first insert of events' rows fails, as a full disk would: the
    projection's state and offsets have moved past those rows already (a claim's
    checkpoint, which carries none, goes in)."""

    failed = False

    def insert(self, rows: Any, owners: Any = None) -> None:
        if rows.get("audit_events") and not self.failed:
            self.failed = True
            raise ProjectionError("insert into audit_events failed: the disk is full")
        super().insert(rows, owners)


def run_agent(
    projection: LedgerProjection,
    handed: list[list[Record]],
    wait_s: float = 0.0,
    between_s: float = 0.0,
) -> tuple[list[BaseException], BaseException | None]:
    """What the agent ended the worker with (its crash callback's calls), and what its
    caller saw raised. ``between_s``: a pause after each batch handed over (the linger
    timer's flush)."""
    crashes: list[BaseException] = []

    async def crash(error: BaseException) -> None:
        crashes.append(error)

    async def main() -> None:
        agent = agent_of(projection, batch_size=10, linger_s=0.01, crash=crash)
        await agent.assign({0}, set(), 1)
        try:
            for batch in handed:
                await agent.handle(0, batch, 1)
                await asyncio.sleep(between_s)
            await asyncio.sleep(wait_s)  # the linger timer's flush, if any
            await agent.settle()
        finally:
            agent.close()

    try:
        asyncio.run(main())
    except ProjectionError as error:
        return crashes, error
    return crashes, None


def test_batches_go_in_in_order_and_give_the_rows_of_one_batch(tmp_path: Path) -> None:
    given = records()
    flushed = ProjectionStore.open(f"chdb://{tmp_path / 'flushed'}")
    handed = [given[i : i + 7] for i in range(0, len(given), 7)]  # full batches and lingering
    projection = LedgerProjection(flushed, 1, RejectionLanes(1))
    assert run_agent(projection, handed, wait_s=0.2) == ([], None)
    assert flushed.positions() == {"acme": len(given)}
    flushed_rows = contents(flushed)
    flushed.close()
    whole = ProjectionStore.open(f"chdb://{tmp_path / 'whole'}")
    projection = LedgerProjection(whole, 1, RejectionLanes(1))
    projection.apply([(0, r.offset, r.key, r.value) for r in given], [])
    assert contents(whole) == flushed_rows
    whole.close()


def test_a_failed_insert_in_the_lingering_flush_ends_the_worker(tmp_path: Path) -> None:
    """Fewer records than a batch: the linger timer's task flushes them, and its insert
    fails: the worker is ended (once), nothing is checkpointed, and settling refuses (its
    offsets would be past the lost rows)."""
    given = records()[:5]
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    crashes, raised = run_agent(Failing(store, fail_at=0), [given], wait_s=0.5)
    assert len(crashes) == 1, "the failed insert did not end the worker"
    assert isinstance(crashes[0], ProjectionError)
    # Nobody waited for that flush, but settling after it refuses: the offsets it would
    # give are past rows that were never stored.
    assert isinstance(raised, ProjectionError), "settled after a failed insert"
    assert "an earlier insert failed" in str(raised)
    assert store.positions() == {}
    store.close()


def test_nothing_is_inserted_or_settled_after_an_insert_failed_past_its_projection(
    tmp_path: Path,
) -> None:
    """The lingering flush's insert fails after projecting: the projection's state and
    offsets are past those 5 events. The 10 records handed over next make a full batch,
    whose flush must refuse: inserting them would checkpoint 15 events over 10 rows."""
    given = records()[:15]
    store = FullDisk.open(f"chdb://{tmp_path / 'store'}")
    projection = LedgerProjection(store, 1, RejectionLanes(1))
    crashes, raised = run_agent(projection, [given[:5], given[5:]], between_s=0.5)
    assert len(crashes) == 1, "the failed insert did not end the worker"
    assert isinstance(raised, ProjectionError), "the next flush went on after the failure"
    assert "an earlier insert failed" in str(raised)
    assert store.positions() == {}
    assert store.rows("SELECT count() FROM {db}.audit_events") == [(0,)]
    store.close()


def test_a_batch_that_stopped_growing_is_inserted_before_the_linger_ends() -> None:
    """``idle_s``: what is pending is due that long after its latest record, or at the end of
    the linger if that comes first; without it, at the end of the linger only."""

    def due(idle_s: float, first_at: float, last_at: float) -> float:
        agent = agent_of(LedgerProjection.__new__(LedgerProjection), linger_s=1.0, idle_s=idle_s)
        agent._pending.ledger.append((0, 0, None, None))
        agent._pending.first_at, agent._pending.last_at = first_at, last_at
        return agent._due()

    assert due(0.0, first_at=10.0, last_at=10.5) == 11.0
    assert due(0.1, first_at=10.0, last_at=10.5) == 10.6
    assert due(0.1, first_at=10.0, last_at=10.95) == 11.0  # the linger bounds it


class Recording(LedgerProjection):
    """Notes the records of each insert."""

    def __init__(self, store: ProjectionStore) -> None:
        super().__init__(store, 1, RejectionLanes(1))
        self.batches: list[list[int]] = []

    def apply(self, ledger: Any, rejections: Any) -> set[int]:
        self.batches.append([offset for _, offset, *_ in ledger])
        return super().apply(ledger, rejections)


def test_a_batch_is_inserted_once_it_holds_the_batch_bytes_whatever_its_count(
    tmp_path: Path,
) -> None:
    """``batch_bytes`` bounds what a batch holds (its records, then their decoded events and
    rows) when records are large: with a count bound far off and a linger that never ends,
    each insert takes the records handed over until their keys and values reach the bytes,
    and no more; what is left goes in when the agent settles."""
    given = records()
    size = [len(r.key) + len(r.value) for r in given]
    bound = sum(size[:4])
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    projection = Recording(store)

    async def main() -> None:
        agent = agent_of(projection, batch_size=len(given) + 1, batch_bytes=bound, linger_s=60.0)
        await agent.assign({0}, set(), 1)
        try:
            for start in range(0, len(given), 2):
                await agent.handle(0, given[start : start + 2], 1)
            await agent.settle()
        finally:
            agent.close()

    asyncio.run(main())
    assert [o for batch in projection.batches for o in batch] == list(range(len(given)))
    *full, last = projection.batches
    assert len(full) >= len(given) // 8  # cut by the bytes: the count never reached
    for batch in full:
        held = sum(size[o] for o in batch)
        assert held >= bound  # inserted once the bytes were reached...
        assert held - sum(size[o] for o in batch[-2:]) < bound  # ...not a hand-over later
    assert sum(size[o] for o in last) < bound  # settled
    assert store.positions() == {"acme": len(given)}
    store.close()


class UnusableOnce(Recording):
    """Finds partition 0's saved state unusable in its first batch (as
    :meth:`LedgerProjection._retake` does, its state dropped): nothing of it projected."""

    def apply(self, ledger: Any, rejections: Any) -> set[int]:
        if not self.batches:
            self.batches.append([])
            return {0}
        return super().apply(ledger, rejections)


@pytest.mark.parametrize("first", [0, 5])
def test_a_partition_read_again_projects_from_its_beginning_and_drops_what_came_before(
    tmp_path: Path, first: int
) -> None:
    """The batch found unusable holds the partition's first records (offset ``first``: 5 when
    its first offsets are never delivered, an aborted transaction's). While the consumer is
    sought back, a batch fetched before the seek (past the failed one) is handed over, then
    the first batch read again from the beginning: the former is dropped, the latter
    projected (taken as stale, it would stall the partition), and so is the rest."""
    given = [Record(r.offset + first, r.key, r.value) for r in records()]
    rewound: list[int] = []
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    projection = UnusableOnce(store)
    agent = agent_of(projection, batch_size=10, linger_s=60.0)
    handed: list[asyncio.Task[None]] = []

    async def rewind(partition: int) -> None:
        rewound.append(partition)
        for batch in (given[10:20], given[:10]):  # fetched before, then after, the seek
            handed.append(asyncio.create_task(agent.handle(0, batch, 1)))
            await asyncio.sleep(0)

    agent._rewind = rewind

    async def main() -> None:
        await agent.assign({0}, set(), 1)
        try:
            await agent.handle(0, given[:10], 1)  # found unusable: read again
            await asyncio.gather(*handed)
            for start in range(10, len(given), 10):
                await agent.handle(0, given[start : start + 10], 1)
            await agent.settle()
        finally:
            agent.close()

    asyncio.run(main())
    assert rewound == [0]
    offsets = [r.offset for r in given]
    assert [o for batch in projection.batches for o in batch] == offsets
    assert store.positions() == {"acme": len(given)}
    store.close()
