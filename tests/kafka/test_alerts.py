"""The attention alerts on the real broker (Tansu): each new or resolved item published once
to the alerts topic, also across a restart of the publisher; and the webhooks."""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from events.kafka_client import Connection, Reader
from okr_ledger.alerts import AlertPublisher, alert_key, post_webhooks
from okr_ledger.settings import Settings
from processors.faust_app import Store, WorkerServices, create_app
from processors.kafka_config import WorkerConfig
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections import monitoring
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


def test_an_org_the_store_cannot_answer_keeps_its_open_items(
    kafka: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that lacks an org (behind, rebuilt) or fails on one resolves none of its items."""
    topic = f"test.{uuid.uuid4().hex[:12]}.alerts"
    builder = LedgerBuilder(tmp_path / "ledger.db")
    store = ProjectionStore.open(f"chdb://{tmp_path / 'clickhouse'}", database="alerts")
    try:
        _ledger(builder)
        EmbeddedRunner(builder.log, store, Projector()).catch_up()
        publisher = AlertPublisher(kafka, topic)
        assert [a["item_id"] for a in publisher.tick(store, NOW)] == ["stale:b"]
        elsewhere = {"org_id": "globex", "item_id": "stale:z", "kind": "stale",
                     "subject_kind": "key_result", "subject_id": "z"}  # fmt: skip
        assert publisher.open_items is not None
        publisher.open_items[alert_key("globex", "stale:z")] = elsewhere  # not in this store
        assert publisher.changes(store, NOW) == []

        def failing(*args: object) -> None:
            raise RuntimeError("the store failed")

        monkeypatch.setattr(monitoring, "attention", failing)
        assert publisher.changes(store, NOW) == []  # acme's stale:b stays open
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
    """The timer is one of the app's tasks. It ticks every interval on the worker that has
    rejections partition 0 (``TIMERS_LANE``) only, with the projection store and its thread
    once the store is open; the first tick after the worker took the partition says so (read
    the topic again)."""
    seen: list[tuple[object, bool]] = []

    async def tick(store: object, thread: ThreadPoolExecutor, first: bool) -> None:
        assert isinstance(thread, ThreadPoolExecutor)
        seen.append((store, first))

    def no_store() -> Store:
        raise AssertionError("not opened here")

    services = WorkerServices(no_store, timers=[(0.05, tick)])
    app = create_app(WorkerConfig(servers=("127.0.0.1:9",)), services)
    assert len(app._app_tasks) == 1
    store = object()

    async def run_for_a_while() -> None:
        task = asyncio.ensure_future(app._app_tasks[0]())
        app.okr.runs_timers = True
        await asyncio.sleep(0.3)
        assert seen == []  # no store yet
        app.okr._store = store  # type: ignore[assignment]  # as Worker.start does
        app.okr.runs_timers = False  # another worker has rejections partition 0
        await asyncio.sleep(0.3)
        assert seen == []
        app.okr.runs_timers = True
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(run_for_a_while())
    assert len(seen) >= 3
    assert all(s is store for s, _ in seen)
    assert [first for _, first in seen] == [True] + [False] * (len(seen) - 1)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://hooks.example/x", "not a url", "gopher://x"]
)
def test_a_webhook_url_other_than_http_is_refused_at_start(url: str) -> None:
    with pytest.raises(ValidationError, match="alert_webhook_urls"):
        Settings(alert_webhook_urls=[url])


def test_webhook_urls_are_http_urls() -> None:
    settings = Settings(alert_webhook_urls=["https://hooks.example/okr", "http://127.0.0.1:9/x"])
    assert [str(u) for u in settings.alert_webhook_urls] == [
        "https://hooks.example/okr",
        "http://127.0.0.1:9/x",
    ]
