"""The Kafka worker's parts, wired: sequencer, projector agent and query endpoint.

Imported only when ``okr-ledger worker`` runs, so that a core install (no ``kafka`` extra)
still starts the CLI.
"""

import asyncio
import functools
import signal
from concurrent.futures import ThreadPoolExecutor

from okr_ledger.served_store import endpoint_credential
from okr_ledger.settings import Settings
from okr_ledger.wiring import open_projection_store
from processors.kafka_projector import ProjectorAgent, ProjectorConfig
from processors.kafka_worker import Hook, SequencerWorker, WorkerConfig
from projections.client import parse_url
from projections.query_credentials import is_loopback
from projections.query_server import QueryServer, ReadOnlyEngine


def worker_hooks(settings: Settings) -> list[Hook]:
    """The worker's other parts, run beside the sequencer: the projector agent (and, on an
    embedded store, the query endpoint)."""
    return [functools.partial(run_projections, settings)]


async def run_projections(settings: Settings, stop: asyncio.Event) -> None:
    """Project the ledger into the store; serve read-only queries when the store is chDB."""
    config = WorkerConfig.from_settings(settings)
    credential = endpoint_credential(settings)  # before anything starts: it may refuse
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="okr-store")
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(thread, open_projection_store, settings)
    try:
        limit = str(settings.over_focus_limit)
        await loop.run_in_executor(thread, store.set_setting, "over_focus_limit", limit)
        agent = ProjectorAgent(
            ProjectorConfig(
                config.servers, config.ledger, config.rejections, partitions=config.partitions
            ),
            store,
            thread,
        )
        target = parse_url(settings.resolved_clickhouse_url)
        async with asyncio.TaskGroup() as tasks:  # one failing cancels the other
            tasks.create_task(agent.run(stop))
            if credential is not None and target.path is not None:
                server = QueryServer(
                    ReadOnlyEngine(target.path, settings.query_limits),
                    [credential],
                    loopback=is_loopback(settings.worker_web_host),
                )
                tasks.create_task(
                    server.serve(settings.worker_web_host, settings.worker_web_port, stop)
                )
    finally:
        await loop.run_in_executor(thread, store.close)
        thread.shutdown()


async def run_worker(settings: Settings) -> None:
    """Until SIGINT or SIGTERM; a Kafka error ends it (restarting it is always safe)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    worker = SequencerWorker(WorkerConfig.from_settings(settings))
    await worker.run(stop, worker_hooks(settings))
