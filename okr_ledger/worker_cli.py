"""``okr-ledger worker``: the Kafka runtime's long-running process."""

import asyncio
import logging
import signal
from typing import Annotated

import typer

from okr_ledger.settings import Settings
from processors.kafka_worker import Hook, SequencerWorker, WorkerConfig


def worker_hooks(settings: Settings) -> list[Hook]:
    """The worker's other parts, run beside the sequencer: the projector agent goes here."""
    return []


async def run_worker(settings: Settings) -> None:
    """Until SIGINT or SIGTERM; a Kafka error ends it (restarting it is always safe)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    worker = SequencerWorker(WorkerConfig.from_settings(settings))
    await worker.run(stop, worker_hooks(settings))


def worker(
    faust: Annotated[
        bool, typer.Option("--faust/--no-faust", help="Host it in a Faust worker.")
    ] = True,
) -> None:
    """Run the Kafka worker: the sequencer (intake -> ledger, rejections, outcomes)."""
    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("processors").setLevel(settings.log_level.upper())
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if faust:
        from processors.faust_app import run_faust_worker

        run_faust_worker(settings, worker_hooks(settings))
    else:
        asyncio.run(run_worker(settings))


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
