"""``okr-ledger worker``: the Kafka runtime's long-running process."""

import gc
import logging
from contextlib import ExitStack

import typer

from okr_ledger.served_store import endpoint_credential
from okr_ledger.settings import Settings
from projections.client import parse_url, require_not_held
from schemas.errors import MissingExtraError


def worker() -> None:
    """Run a Kafka worker: it joins the group OKR_WORKER_APP_ID and sequences (intake ->
    ledger, rejections, outcomes) and projects (ledger -> projections) the partitions the
    group gives it. Start several with the same settings to spread the partitions; on an
    embedded store it also serves the read-only query endpoint."""
    settings = Settings()
    endpoint_credential(settings)  # a refused endpoint is one line now, not after Kafka
    require_not_held(parse_url(settings.resolved_clickhouse_url))  # so is a store held
    try:
        from okr_ledger.worker_config import worker_config
        from processors.sequencer_core import ProcessRunner
    except ModuleNotFoundError as error:
        raise MissingExtraError(error.name or "kafka-python", "kafka") from error
    config = worker_config(settings)
    # The sequencer's process first: forked now, while this process has imported what it
    # needs and nothing more, and runs no thread, it starts without an interpreter and
    # imports of its own (a spawned one spent ~0.3 s of CPU on them, every start).
    sequencer = ProcessRunner(config, ahead=True) if config.sequencer_process else None
    with ExitStack() as on_failure:  # until the app has it: then the worker's stop closes it
        if sequencer is not None:
            on_failure.callback(sequencer.close)
        try:
            from okr_ledger import worker_runtime
            from processors.faust_app import run_worker
        except ModuleNotFoundError as error:
            raise MissingExtraError(error.name or "kafka-python", "kafka") from error
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        logging.getLogger("processors").setLevel(settings.log_level.upper())
        for noisy in ("kafka", "aiokafka", "librdkafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        app = worker_runtime.build_worker(settings, config, sequencer)
        on_failure.pop_all()
    # What the worker imported and built, alive for all its life, left out of the cyclic
    # collector's full collections, which scanned it every time, and, at the exit, the
    # interpreter's last collections did (~0.3 s of CPU at every stop).
    gc.freeze()
    run_worker(app, settings.log_level)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
