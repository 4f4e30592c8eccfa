"""The projector agent prepares the next batch's rows while the previous batch is inserted, and
stores batches in order, one at a time; a failed insert ends the worker (on a real chDB store)."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from events.kafka_records import encode_event, org_key
from processors.kafka_projector import LedgerProjection, Prepared, ProjectorAgent
from processors.metrics import PrometheusMetrics
from projections.store import ProjectionStore
from schemas.errors import ProjectionError
from tests.builders import chained_events

TABLES = ("audit_events", "check_in_versions", "key_result_versions")


@dataclass(frozen=True, slots=True)
class Record:
    """What the consumer hands over: an aiokafka record's offset, key and value."""

    offset: int
    key: bytes
    value: bytes


def records() -> list[Record]:
    events = chained_events("acme", check_in_count=40)
    return [Record(i, org_key(e.org_id), encode_event(e)) for i, e in enumerate(events)]


async def no_progress(partition: int) -> tuple[int | None, int | None]:
    return None, None


def contents(store: ProjectionStore) -> dict[str, list[Any]]:
    return {
        table: sorted(map(repr, store.rows(f"SELECT * FROM {{db}}.{table} ORDER BY ALL")))
        for table in TABLES
    }


class Gated(LedgerProjection):
    """Holds its first insert until a later batch has been prepared; records the order."""

    def __init__(self, store: ProjectionStore) -> None:
        super().__init__(store, 1)
        self.calls: list[str] = []
        self.second_prepared = threading.Event()
        self.fail_at: int | None = None

    def prepare(self, ledger: Any, rejections: Any) -> Prepared | None:
        prepared = super().prepare(ledger, rejections)
        self.calls.append(f"prepare {ledger[-1][1]}")
        if sum(c.startswith("prepare") for c in self.calls) == 2:
            self.second_prepared.set()
        return prepared

    def store(self, prepared: Prepared | None) -> None:
        stores = sum(c.startswith("store") for c in self.calls)
        if stores == 0:  # the first insert waits for the next batch to be prepared meanwhile
            assert self.second_prepared.wait(10), "the next batch was not prepared meanwhile"
        if self.fail_at == stores:
            raise ProjectionError("insert into audit_events failed: the disk is full")
        super().store(prepared)
        self.calls.append(f"store {stores}")


def run_agent(
    projection: LedgerProjection, handed: list[list[Record]]
) -> tuple[list[BaseException], BaseException | None]:
    """What the agent ended the worker with (its crash callback's calls), and what its
    caller saw raised."""
    crashes: list[BaseException] = []

    async def crash(error: BaseException) -> None:
        crashes.append(error)

    async def main() -> None:
        agent = ProjectorAgent(
            projection,
            ThreadPoolExecutor(1),
            PrometheusMetrics(),
            no_progress,
            batch_size=10,
            linger_s=0.01,
            crash=crash,
        )
        await agent.assign({0}, False, 1)
        try:
            for batch in handed:
                await agent.handle(0, batch, 1)
            await agent.settle()
        finally:
            agent.close()

    try:
        asyncio.run(main())
    except ProjectionError as error:
        return crashes, error
    return crashes, None


def test_the_next_batch_is_prepared_while_one_is_inserted_and_batches_go_in_in_order(
    tmp_path: Path,
) -> None:
    given = records()
    piped = ProjectionStore.open(f"chdb://{tmp_path / 'piped'}")
    projection = Gated(piped)
    handed = [given[i : i + 10] for i in range(0, len(given), 10)]
    assert run_agent(projection, handed) == ([], None)
    first_store = projection.calls.index("store 0")
    assert projection.calls[:first_store] == ["prepare 9", "prepare 19"]
    stores = [c for c in projection.calls if c.startswith("store")]
    assert stores == [f"store {i}" for i in range(len(stores))]
    assert piped.positions() == {"acme": len(given)}
    piped_rows = contents(piped)
    piped.close()
    whole = ProjectionStore.open(f"chdb://{tmp_path / 'whole'}")
    LedgerProjection(whole, 1).apply([(0, r.offset, r.key, r.value) for r in given], [])
    assert contents(whole) == piped_rows  # incremental, pipelined = one batch
    whole.close()


@pytest.mark.parametrize("fail_at", [0, 1])
def test_a_failed_insert_ends_the_worker_and_no_later_checkpoint_goes_in(
    tmp_path: Path, fail_at: int
) -> None:
    """Whether a later batch awaits the failed insert (0) or none comes after it (1, the
    last one): the worker is ended, and nothing after the failed batch is stored."""
    given = records()[:20]
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    projection = Gated(store)
    projection.fail_at = fail_at
    crashes, raised = run_agent(projection, [given[:10], given[10:]])
    assert len(crashes) == 1, "the failed insert did not end the worker (once)"
    assert isinstance(crashes[0], ProjectionError)
    assert raised is crashes[0]  # and whoever waits for it is told
    assert store.positions().get("acme", 0) == (0 if fail_at == 0 else 10)
    store.close()
