"""``okr-ledger worker``: the Kafka runtime's long-running process."""

import asyncio
import logging
import signal

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


def worker() -> None:
    """Run the Kafka worker: the sequencer (intake -> ledger, rejections, outcomes)."""
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(run_worker(settings))


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
