"""The projector agent when its store fails an insert (on a real chDB store): it goes down
instead of ending the worker, drops what it is handed, and recovers as a restart would: a new
projection, the partition taken again (read from its beginning: no state file), the consumer
sought there, and hand-overs fetched before that seek (an earlier epoch) dropped. The
store's rows then equal a projection of the same records in one go."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from events.kafka_records import RejectionLanes
from processors.kafka_projector import LedgerProjection, Outage, ProjectorAgent
from processors.metrics import PrometheusMetrics
from projections.store import ProjectionStore
from schemas.errors import ProjectionError
from tests.kafka.agent_support import TABLES, no_progress, records


class DownOnce(ProjectionStore):
    """A store whose first insert of events' rows fails (the server gone), then answers."""

    failed = False

    def insert(self, rows: Any, owners: Any = None) -> None:
        if rows.get("audit_events") and not self.failed:
            self.failed = True
            raise ProjectionError("insert into audit_events failed: connection refused")
        super().insert(rows, owners)


class Recording(LedgerProjection):
    """Notes the offsets of the records it applies."""

    def __init__(self, store: ProjectionStore) -> None:
        super().__init__(store, 1, RejectionLanes(1))
        self.offsets: list[int] = []

    def apply(self, ledger: Any, rejections: Any) -> set[int]:
        self.offsets += [offset for _, offset, *_ in ledger]
        return super().apply(ledger, rejections)


def contents(store: ProjectionStore) -> dict[str, list[Any]]:
    return {
        table: sorted(map(repr, store.rows(f"SELECT * FROM {{db}}.{table} ORDER BY ALL")))
        for table in TABLES
    }


def test_a_failed_insert_puts_the_projector_down_and_it_recovers_as_a_restart(
    tmp_path: Path,
) -> None:
    given = records()
    store = DownOnce.open(f"chdb://{tmp_path / 'store'}")
    metrics = PrometheusMetrics()
    made: list[Recording] = []
    resumed: list[tuple[dict[int, int | None], dict[int, int]]] = []

    def reopen() -> LedgerProjection:
        made.append(Recording(store))
        return made[-1]

    async def resume(starts: dict[int, int | None], lanes: dict[int, int]) -> None:
        resumed.append((starts, lanes))

    async def main() -> None:
        agent = ProjectorAgent(
            LedgerProjection(store, 1, RejectionLanes(1)),
            ThreadPoolExecutor(1),
            metrics,
            no_progress,
            batch_size=10,
            linger_s=60.0,
            outage=Outage(reopen, resume, retry_max_s=0.5),
        )
        await agent.assign({0}, {0}, 1)
        try:
            await agent.handle(0, given[:5], 1)
            await agent.handle(0, given[5:10], 1)  # a full batch: its insert fails
            assert agent.down
            assert metrics.readiness.projector_down is not None
            assert "projector is down" in metrics.readiness.why_not_ready()
            await agent.handle(0, given[10:20], 1)  # dropped: nothing to insert it on
            assert await agent.settle() == ({}, {})  # no offset past the lost rows
            assert store.positions() == {}
            for _ in range(600):  # the recovery's first try comes after 0.5 s
                if not agent.down:
                    break
                await asyncio.sleep(0.05)
            assert not agent.down, "the projector never recovered"
            assert len(made) == 1
            assert agent.projection is made[0]
            assert resumed == [({0: None}, {0: 0})]  # from the beginning: no state file
            assert agent.epoch == 1
            assert metrics.readiness.projector_down is None
            await agent.handle(0, given[20:30], 1, epoch=0)  # fetched before the seek
            for start in range(0, len(given), 10):
                await agent.handle(0, given[start : start + 10], 1, epoch=1)
            assert await agent.settle() == ({0: len(given)}, {0: 0})
            assert made[0].offsets == [r.offset for r in given]  # each once, in order
        finally:
            agent.close()

    asyncio.run(main())
    assert store.positions() == {"acme": len(given)}
    recovered = contents(store)
    store.close()
    whole = ProjectionStore.open(f"chdb://{tmp_path / 'whole'}")
    LedgerProjection(whole, 1, RejectionLanes(1)).apply(
        [(0, r.offset, r.key, r.value) for r in given], []
    )
    assert contents(whole) == recovered
    whole.close()
