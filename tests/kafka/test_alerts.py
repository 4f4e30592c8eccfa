"""The attention alerts on the real broker (Tansu): each new or resolved item published once
to the alerts topic, also across a restart of the publisher; and the webhooks."""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from events.kafka_client import Connection, Reader
from okr_ledger.alerts import AlertPublisher, post_webhooks
from processors.faust_app import Store, WorkerServices, create_app
from processors.kafka_config import WorkerConfig
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections.store import ProjectionStore
from tests.projections.ledgers import LedgerBuilder, day, utc

NOW = utc(2026, 11, 13, 12)


def _read(connection: Connection, topic: str) -> list[tuple[str, dict[str, Any]]]:
    reader = Reader(connection)
    try:
        return [(r.key.decode(), orjson.loads(r.value)) for r in reader.read(topic, {0: None})
                if r.key is not None]  # fmt: skip
    finally:
        reader.close()


def _ledger(builder: LedgerBuilder) -> None:
    builder.skeleton(themes=("growth",))
    builder.objective("o", theme_ids=["growth"], owner="ann")
    builder.key_result("a", "o")
    builder.key_result("b", "o", owner="bob")
    builder.check_in("a", 40, day(40))
    builder.check_in("b", 20, day(20))


def test_each_item_is_published_once_even_after_a_restart(
    kafka: Connection, tmp_path: Path
) -> None:
    topic = f"test.{uuid.uuid4().hex[:12]}.alerts"
    builder = LedgerBuilder(tmp_path / "ledger.db")
    store = ProjectionStore.open(f"chdb://{tmp_path / 'clickhouse'}", database="alerts")
    try:
        _ledger(builder)
        runner = EmbeddedRunner(builder.log, store, Projector())
        runner.catch_up()
        first = AlertPublisher(kafka, topic).tick(store, NOW)
        assert [(a["item_id"], a["state"]) for a in first] == [("stale:b", "open")]
        assert first[0]["item"]["owner"] == "bob"
        on_topic = _read(kafka, topic)
        assert [(key, alert["state"]) for key, alert in on_topic] == [("acme/stale:b", "open")]

        restarted = AlertPublisher(kafka, topic)  # knows nothing but the topic
        assert restarted.tick(store, NOW) == []
        assert len(_read(kafka, topic)) == 1

        builder.check_in("b", 30, day(43))  # b checked in again: resolved
        runner.catch_up()
        again = AlertPublisher(kafka, topic)
        resolved = again.tick(store, NOW)
        assert [(a["item_id"], a["state"]) for a in resolved] == [("stale:b", "resolved")]
        assert again.tick(store, NOW) == []
        states = [(key, alert["state"]) for key, alert in _read(kafka, topic)]
        assert states == [("acme/stale:b", "open"), ("acme/stale:b", "resolved")]
        assert AlertPublisher(kafka, topic).tick(store, NOW) == []
    finally:
        store.close()
        builder.close()


def test_alerts_are_posted_to_the_webhooks() -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    async def scenario() -> int:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            alerts = [{"org_id": "acme", "item_id": "stale:b", "state": "open"}]
            urls = [f"http://127.0.0.1:{port}/hook", f"http://127.0.0.1:{port}/missing"]
            return await post_webhooks(urls, alerts)
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == 1  # the missing one answered 404: logged, not raised
    assert received == [{"org_id": "acme", "item_id": "stale:b", "state": "open"}]


def test_the_faust_app_runs_the_alerts_timer() -> None:
    """The timer is one of the app's tasks: it ticks every interval, with the projection store
    and its thread once the store is open (before that, it does nothing)."""
    seen: list[object] = []

    async def tick(store: object, thread: ThreadPoolExecutor) -> None:
        assert isinstance(thread, ThreadPoolExecutor)
        seen.append(store)

    def no_store() -> Store:
        raise AssertionError("not opened here")

    services = WorkerServices(no_store, timers=[(0.05, tick)])
    app = create_app(WorkerConfig(servers=("127.0.0.1:9",)), services)
    assert len(app._app_tasks) == 1

    async def run_for_a_while() -> None:
        task = asyncio.ensure_future(app._app_tasks[0]())
        await asyncio.sleep(0.3)
        assert seen == []  # no store yet
        store = object()
        app.okr._store = store  # type: ignore[assignment]  # as Worker.start does
        await asyncio.sleep(0.5)
        task.cancel()
        assert len(seen) >= 3
        assert all(s is store for s in seen)

    asyncio.run(run_for_a_while())
