"""The projection store as the query commands see it on the Kafka runtime.

There the worker projects, so the query commands never catch up themselves. On a ClickHouse
server they read it directly; on the embedded chDB store (which only the worker may open)
they send their queries to the worker's endpoint, which speaks ClickHouse's HTTP interface
(:mod:`processors.query_server`), so every query runs unchanged.
"""

import logging

from okr_ledger.settings import Settings
from okr_ledger.wiring import open_projection_store, scheme_of
from projections.client import parse_url
from projections.store import ProjectionStore
from schemas.errors import ProjectionUnavailableError


def is_kafka_runtime(settings: Settings) -> bool:
    return scheme_of(settings.resolved_ledger_url) == "kafka"


def worker_url(settings: Settings) -> str:
    database = parse_url(settings.resolved_clickhouse_url).database
    return f"http://{settings.worker_web_host}:{settings.worker_web_port}/{database}"


def open_served_store(settings: Settings) -> ProjectionStore:
    """The live projections of the Kafka runtime (read-only through the worker on chDB)."""
    target = parse_url(settings.resolved_clickhouse_url)
    if not target.embedded:
        return open_projection_store(settings)
    for chatty in ("clickhouse_connect", "urllib3"):  # a refused connection is our one line
        logging.getLogger(chatty).setLevel(logging.ERROR)
    try:
        store = ProjectionStore.open(worker_url(settings), migrate=False)
    except ProjectionUnavailableError:
        raise ProjectionUnavailableError(
            f"no worker answers at {settings.worker_web_host}:{settings.worker_web_port}: "
            f"start `okr-ledger worker` (it holds the embedded store {target.path} and serves "
            "the queries)"
        ) from None
    store.client.database = store.database  # unqualified names in `okr-ledger sql`
    return store
