"""The Kafka worker's wiring: the settings in, the Faust app of :mod:`processors.faust_app` out.

Imported only when ``okr-ledger worker`` runs, so that a core install (no ``kafka`` extra)
still starts the CLI. ``processors/`` never reads the settings: everything it needs is built
here (:func:`okr_ledger.worker_config.worker_config`, then :func:`worker_services` beside it).
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from events.kafka_client import Connection
from okr_ledger.alerts import AlertPublisher, post_webhooks
from okr_ledger.served_store import endpoint_credential
from okr_ledger.settings import Settings
from okr_ledger.wiring import open_projection_store
from processors.faust_app import OkrApp, Route, WebSite, WorkerServices, create_app
from processors.kafka_config import WorkerConfig
from processors.metrics import PrometheusMetrics
from processors.sequencer_core import ProcessRunner
from projections.client import parse_url
from projections.http_bounds import BoundedSite, ConnectionBound, handler_args
from projections.query_credentials import is_loopback
from projections.query_server import QueryServer, ReadOnlyEngine
from projections.store import ProjectionStore

log = logging.getLogger(__name__)


def worker_services(settings: Settings, config: WorkerConfig) -> WorkerServices:
    """The store the projector writes, the metrics the agents report to, the alerts timer (on
    ``config``'s brokers) and, on an embedded store, the read-only query endpoint (ClickHouse
    HTTP) on the worker's web server."""
    credential = endpoint_credential(settings)  # before anything starts: it may refuse
    target = parse_url(settings.resolved_clickhouse_url)

    def open_store() -> ProjectionStore:
        store = open_projection_store(settings)
        store.set_setting("over_focus_limit", str(settings.over_focus_limit))
        return store

    def reach_store() -> None:
        if not target.embedded:  # an embedded store answers, or fails at once
            open_projection_store(settings, migrate=False).close()

    metrics = worker_metrics(settings)
    routes: list[Route] = []
    if credential is not None and target.path is not None:
        path, limits = target.path, settings.query_limits
        loopback = is_loopback(settings.worker_web_host)

        def queries(app: web.Application) -> None:
            server = QueryServer(
                ReadOnlyEngine(path, limits),
                [credential],
                loopback=loopback,
                max_waiting=settings.query_max_waiting,
                refused=metrics.query_refused,
                receive_timeout_s=settings.query_receive_timeout_seconds,
            )
            server.mount(app)

            async def close(_app: web.Application) -> None:
                server.close()

            app.on_cleanup.append(close)

        routes.append(queries)
    alerts = alert_timer(settings, config.servers)
    return WorkerServices(
        open_store=open_store,
        reach_store=reach_store,
        metrics=metrics,
        routes=routes,
        web_site=web_site(settings.query_max_connections, metrics.connection_refused),
        web_handler_args=handler_args(settings.query_receive_timeout_seconds),
        timers=[] if alerts is None else [(alerts.interval, alerts.tick)],
    )


def web_site(max_connections: int, refused: Callable[[], None] | None = None) -> WebSite:
    """The worker's web server's site: at most ``max_connections`` open connections
    (:class:`projections.http_bounds.ConnectionBound`); ``refused``: called for each one
    refused (the worker's metrics)."""
    bound = ConnectionBound(max_connections, report=refused)

    def site(runner: web.BaseRunner, host: str, port: int) -> web.BaseSite:
        return BoundedSite(runner, host, port, bound)

    return site


def worker_metrics(settings: Settings) -> PrometheusMetrics:
    """Ready once the intake and ledger partitions are assigned and restored."""
    return PrometheusMetrics(ready_after=[settings.kafka_topic_intake, settings.kafka_topic_ledger])


def build_worker(
    settings: Settings, config: WorkerConfig, sequencer: ProcessRunner | None = None
) -> OkrApp:
    """The worker's Faust app, ready to run, from ``config``
    (:func:`okr_ledger.worker_config.worker_config` of ``settings``); ``sequencer``: its
    sequencer process, made ahead (:attr:`processors.faust_app.WorkerServices.sequencer`)."""
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    return create_app(config, replace(worker_services(settings, config), sequencer=sequencer))


class AlertTimer:
    """What the worker's alerts timer runs (a Faust timer): the publisher, on the projector's
    store, in the store's thread."""

    def __init__(self, settings: Settings, servers: Sequence[str]) -> None:
        self.publisher = AlertPublisher(
            Connection(tuple(servers), "okr-alerts"),
            settings.kafka_topic_alerts,
            settings.over_focus_limit,
        )
        self.interval = settings.alerts_interval_seconds
        self.webhooks = [str(url) for url in settings.alert_webhook_urls]

    async def tick(self, store: Any, thread: ThreadPoolExecutor, first: bool = False) -> int:
        """Publish what changed; how many alerts. The topic is read (again) on a worker's
        first tick, since another worker may have published before. Kafka is used outside the
        store's thread (the projector's). An error is logged: the next tick retries (what was
        published is on the topic)."""
        publisher = self.publisher
        try:
            if first or publisher.open_items is None:
                await asyncio.to_thread(publisher.restore)
            now = datetime.now(UTC)
            changes = await asyncio.get_running_loop().run_in_executor(
                thread, publisher.changes, store, now
            )
            alerts = await asyncio.to_thread(publisher.publish, changes)
        except Exception:
            log.exception("the alerts timer failed; retrying at the next tick")
            publisher.open_items = None  # read the topic again
            return 0
        await post_webhooks(self.webhooks, alerts)
        return len(alerts)


def alert_timer(settings: Settings, servers: Sequence[str]) -> AlertTimer | None:
    return AlertTimer(settings, servers) if settings.alerts_interval_seconds > 0 else None
