"""The Faust app of the Kafka runtime, configured from the ``OKR_`` settings only.

The sequencer runs in the Faust worker beside Faust's own services, with its own aiokafka
consumer (manual assignment), not as a Faust agent. Its crash safety rests on resuming where
the ledger and rejections topics say (:mod:`processors.kafka_sequencer`), while a Faust agent
resumes at its consumer group's committed offset, mixes partitions in one ``take()`` batch,
and starts only after the group's first rebalance: after a SIGKILL, that waits for the dead
member's session to time out. So the sequencer is started with the app, not as ``app.task``
(which, like the web server, starts only once Faust's consumer is assigned).
The projector agent and the query endpoint run beside it as ``hooks``; Faust's own web
server stays off (it too would wait for the first rebalance).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import faust

from okr_ledger.settings import Settings
from processors.kafka_worker import Hook, SequencerWorker, WorkerConfig
from processors.metrics import PrometheusMetrics

log = logging.getLogger(__name__)


class OkrApp(faust.App):
    """A Faust app that runs the sequencer from its start until its stop."""

    sequencer: SequencerWorker | None = None
    hooks: Sequence[Hook] = ()

    async def on_start(self) -> None:
        await super().on_start()
        # The worker's log level is OKR_LOG_LEVEL; Faust's own chatter stays at INFO at most.
        for name, level in (("faust", "INFO"), ("mode", "INFO"), ("aiokafka", "WARNING")):
            logging.getLogger(name).setLevel(level)
        logging.getLogger("kafka").setLevel("WARNING")
        if self.sequencer is not None:
            self.add_future(self._sequence(self.sequencer))

    async def _sequence(self, sequencer: SequencerWorker) -> None:
        """Cancelled when the app stops (``run`` closes its clients then). Any error ends the
        worker: restarting is always safe, a worker without its sequencer is not."""
        try:
            await sequencer.run(asyncio.Event(), self.hooks)
        except Exception as error:
            log.exception("the sequencer failed; stopping the worker")
            await self.crash(error)


Timer = tuple[float, Callable[[], Awaitable[object]]]
"""``(interval in seconds, async function)``: run by a Faust timer (e.g. the alerts)."""


def create_app(
    settings: Settings,
    hooks: Sequence[Hook] = (),
    metrics: PrometheusMetrics | None = None,
    timers: Sequence[Timer] = (),
) -> OkrApp:
    """The app: the sequencer, ``hooks`` (other long-running parts) beside it, and ``timers``
    (Faust timers: they start once the app's consumer is assigned)."""
    config = WorkerConfig.from_settings(settings)
    app = OkrApp(
        settings.worker_app_id,
        broker=[f"kafka://{server}" for server in config.servers],
        datadir=str(settings.data_dir / "faust"),
        autodiscover=False,
        store="memory://",
        topic_partitions=settings.kafka_partitions,
        web_enabled=False,  # the worker serves queries itself (projections/query_server.py)
        # Faust's own consumer group carries no sequencer partitions; keep its joins short.
        broker_session_timeout=6.0,
        broker_rebalance_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )
    app.sequencer, app.hooks = SequencerWorker(config, metrics), hooks
    for interval, function in timers:
        app.timer(interval, name=getattr(function, "__qualname__", None))(function)
    return app


def run_faust_worker(
    settings: Settings,
    hooks: Sequence[Hook] = (),
    metrics: PrometheusMetrics | None = None,
    timers: Sequence[Timer] = (),
) -> None:
    """Run the Faust worker until SIGINT or SIGTERM (blocking)."""
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = create_app(settings, hooks, metrics, timers)
    faust.Worker(app, loglevel=settings.log_level.lower()).execute_from_commandline()
