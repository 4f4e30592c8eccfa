"""The Kafka worker's parts, wired: sequencer, projector agent, query endpoint, and the
operators' pages (``/metrics``, ``/healthz``, ``/livez``) on the same port.

Imported only when ``okr-ledger worker`` runs, so that a core install (no ``kafka`` extra)
still starts the CLI.
"""

import asyncio
import functools
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from events.kafka_client import Connection
from okr_ledger.alerts import AlertPublisher, post_webhooks
from okr_ledger.served_store import endpoint_credential
from okr_ledger.settings import Settings
from okr_ledger.wiring import open_projection_store
from processors.kafka_projector import ProjectorAgent, ProjectorConfig
from processors.kafka_worker import Hook, SequencerWorker, WorkerConfig
from processors.metrics import PrometheusMetrics, add_routes
from projections.client import parse_url
from projections.query_credentials import is_loopback
from projections.query_server import QueryServer, ReadOnlyEngine
from projections.store import ProjectionStore

log = logging.getLogger(__name__)


def worker_metrics(settings: Settings) -> PrometheusMetrics:
    """Ready once the intake and ledger partitions are assigned and restored."""
    return PrometheusMetrics(ready_after=[settings.kafka_topic_intake, settings.kafka_topic_ledger])


class AlertTimer:
    """What the worker's alerts timer runs: the publisher, on the projector's store (attached
    once it is open; until then a tick does nothing)."""

    def __init__(self, settings: Settings) -> None:
        config = WorkerConfig.from_settings(settings)
        self.publisher = AlertPublisher(
            Connection(tuple(config.servers), "okr-alerts"),
            settings.kafka_topic_alerts,
            settings.over_focus_limit,
        )
        self.interval = settings.alerts_interval_seconds
        self.webhooks = list(settings.alert_webhook_urls)
        self._store: tuple[ProjectionStore, ThreadPoolExecutor] | None = None

    def attach(self, store: ProjectionStore, thread: ThreadPoolExecutor) -> None:
        self._store = (store, thread)

    def detach(self) -> None:
        self._store = None

    async def tick(self) -> int:
        """Publish what changed; how many alerts. An error is logged: the next tick retries
        (what was published is on the topic)."""
        if self._store is None:
            return 0
        store, thread = self._store
        try:
            alerts = await asyncio.get_running_loop().run_in_executor(
                thread, self.publisher.tick, store
            )
        except Exception:
            log.exception("the alerts timer failed; retrying at the next tick")
            self.publisher.open_items = None  # read the topic again
            return 0
        await post_webhooks(self.webhooks, alerts)
        return len(alerts)

    async def run(self, stop: asyncio.Event) -> None:
        """The timer without Faust (``worker --no-faust``): a tick every interval."""
        while not stop.is_set():
            await self.tick()
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                continue


def alert_timer(settings: Settings) -> AlertTimer | None:
    return AlertTimer(settings) if settings.alerts_interval_seconds > 0 else None


def worker_hooks(
    settings: Settings, metrics: PrometheusMetrics, alerts: AlertTimer | None = None
) -> list[Hook]:
    """The worker's other parts, run beside the sequencer: the projector agent, and the web
    pages (the operators' pages; on an embedded store, the query endpoint too)."""
    return [functools.partial(run_projections, settings, metrics, alerts=alerts)]


async def run_projections(
    settings: Settings,
    metrics: PrometheusMetrics,
    stop: asyncio.Event,
    *,
    alerts: AlertTimer | None = None,
) -> None:
    """Project the ledger into the store; serve the operators' pages, and read-only queries
    when the store is chDB."""
    config = WorkerConfig.from_settings(settings)
    credential = endpoint_credential(settings)  # before anything starts: it may refuse
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="okr-store")
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(thread, open_projection_store, settings)
    try:
        limit = str(settings.over_focus_limit)
        await loop.run_in_executor(thread, store.set_setting, "over_focus_limit", limit)
        if alerts is not None:
            alerts.attach(store, thread)
        agent = ProjectorAgent(
            ProjectorConfig(
                config.servers, config.ledger, config.rejections, partitions=config.partitions
            ),
            store,
            thread,
            metrics,
        )
        target = parse_url(settings.resolved_clickhouse_url)
        async with asyncio.TaskGroup() as tasks:  # one failing cancels the other
            tasks.create_task(agent.run(stop))
            host, port = settings.worker_web_host, settings.worker_web_port
            if credential is not None and target.path is not None:
                server = QueryServer(
                    ReadOnlyEngine(target.path, settings.query_limits),
                    [credential],
                    loopback=is_loopback(host),
                )
                add_routes(server.app, metrics)
                tasks.create_task(server.serve(host, port, stop))
            else:
                tasks.create_task(serve_pages(metrics, host, port, stop))
    finally:
        if alerts is not None:
            alerts.detach()
        await loop.run_in_executor(thread, store.close)
        thread.shutdown()


async def run_worker(settings: Settings) -> None:
    """Until SIGINT or SIGTERM; a Kafka error ends it (restarting it is always safe)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    metrics = worker_metrics(settings)
    worker = SequencerWorker(WorkerConfig.from_settings(settings), metrics)
    alerts = alert_timer(settings)
    hooks = worker_hooks(settings, metrics, alerts)
    if alerts is not None:
        hooks.append(alerts.run)
    await worker.run(stop, hooks)


async def serve_pages(
    metrics: PrometheusMetrics, host: str, port: int, stop: asyncio.Event
) -> None:
    """The operators' pages alone (the store is a server: no query endpoint), until ``stop``."""
    app = web.Application()
    add_routes(app, metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await stop.wait()
    finally:
        await runner.cleanup()
