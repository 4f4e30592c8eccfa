"""``okr-ledger worker``: the Kafka runtime's long-running process."""

import asyncio
import logging
from typing import Annotated

import typer

from okr_ledger.served_store import endpoint_credential
from okr_ledger.settings import Settings
from projections.client import parse_url, require_not_held
from schemas.errors import MissingExtraError


def worker(
    faust: Annotated[
        bool, typer.Option("--faust/--no-faust", help="Host it in a Faust worker.")
    ] = True,
) -> None:
    """Run the Kafka worker: the sequencer (intake -> ledger, rejections, outcomes), the
    projector (ledger -> projections) and, on an embedded store, its query endpoint."""
    settings = Settings()
    endpoint_credential(settings)  # a refused endpoint is one line now, not after Kafka
    require_not_held(parse_url(settings.resolved_clickhouse_url))  # so is a store held
    try:
        from okr_ledger import worker_runtime
    except ModuleNotFoundError as error:
        raise MissingExtraError(error.name or "kafka-python", "kafka") from error
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("processors").setLevel(settings.log_level.upper())
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if faust:
        from processors.faust_app import run_faust_worker

        metrics = worker_runtime.worker_metrics(settings)
        alerts = worker_runtime.alert_timer(settings)
        hooks = worker_runtime.worker_hooks(settings, metrics, alerts)
        timers = [] if alerts is None else [(alerts.interval, alerts.tick)]
        run_faust_worker(settings, hooks, metrics, timers)
    else:
        asyncio.run(worker_runtime.run_worker(settings))


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
