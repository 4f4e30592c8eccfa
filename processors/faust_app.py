"""The Kafka worker: one Faust app per process, its partitions from a consumer group.

Every worker started with the same settings joins the consumer group ``OKR_WORKER_APP_ID``,
subscribed to the intake, ledger and rejections topics. Faust's assignor spreads the partitions
over the workers and co-partitions the topics: intake *p*, ledger *p* and rejections *p* (which
have the same partition count) always land on the same worker. (A rejections topic made with
fewer partitions, by an earlier version, is spread on its own: each of its lanes is projected
by the worker that has it.) Start another worker and it takes a share; kill one and the
survivors take its partitions over once the group's session times out. Partitions are the
ceiling on parallelism: a worker owning none is healthy and idle.

Two Faust agents do the work, each fed by the group consumer through an in-memory channel, one
batch of one partition at a time (:mod:`processors.faust_batches`):

- ``sequencer``: intake -> ledger, rejections, outcomes (:mod:`processors.kafka_worker`);
- ``projector``: ledger and rejections -> the projection store (:mod:`processors.kafka_projector`).

The store failing does not end the worker: the projector is down (``/healthz`` 503, ``/livez``
200), the sequencer goes on, and the projector opens the store again (:meth:`Worker.reopen`),
then asks the group for a rebalance (:meth:`processors.faust_batches.OkrConsumer.rejoin`) and
takes its partitions on the assignment that follows
(:class:`processors.kafka_projector.Outage`).

Faust's web server (``OKR_WORKER_WEB_HOST:OKR_WORKER_WEB_PORT``) serves what the process mounts
on it (:attr:`WorkerServices.routes`: health, metrics, the query endpoint). No Faust table,
no changelog and no ``exactly_once``: Tansu reports a partition's end too low for Faust's table
recovery, and aiokafka's transactional producer cannot get a producer id from it; the agents'
outputs are their record of progress, and fencing uses the agents' own producers.
"""

import asyncio
import atexit
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from aiohttp import web
from faust.tables import TableManager
from faust.types import TP
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from events.kafka_client import Connection, Reader
from events.kafka_records import RejectionLanes
from processors.faust_batches import Delivery, OkrConsumer
from processors.kafka_config import WorkerConfig
from processors.kafka_projector import (
    LedgerProjection,
    Outage,
    ProjectorAgent,
    partition_states,
)
from processors.kafka_worker import SequencerAgent
from processors.metrics import PrometheusMetrics, add_routes, install_faust_sensors
from processors.runner import RowSink
from processors.sequencer_core import CoreRunner, ProcessRunner, ThreadRunner
from schemas.errors import ConfigurationError, ProjectionUnavailableError

log = logging.getLogger(__name__)

HANDOVER_DEPTH = 2
"""Batches handed over and not yet taken by their agent, per agent (each at most one fetch:
``fetch_bytes``). The agents' own bounds (``sequencer_queue_bytes``,
``projector_batch_bytes``) hold the rest of a backlog's records; more here only holds more."""
TIMERS_LANE = 0
"""The timers run on the worker that has this partition of the rejections topic."""
STORE_CLOSE_S = 10.0
"""How long a stopping worker waits for its store to close (after the projector's own 10 s)."""


class Store(RowSink, Protocol):
    """The projection store as the worker uses it (opened in the store's thread)."""

    def close(self) -> None: ...


Route = Callable[[web.Application], None]
"""Mounts handlers on the worker's web server (before it starts)."""
WebSite = Callable[[web.BaseRunner, str, int], web.BaseSite]
"""``(runner, host, port)`` -> the site the worker's web server listens with."""
TimerBody = Callable[[Any, ThreadPoolExecutor, bool], Awaitable[object]]
"""A timer's tick: the open projection store, the thread that owns it, and whether this is the
first tick since this worker took the timers (read again what another worker may have done)."""
Timer = tuple[float, TimerBody]
"""``(interval in seconds, tick)``, run by a Faust timer on one worker of the group: the one
assigned rejections partition :data:`TIMERS_LANE` (exactly one worker has it)."""


@dataclass(frozen=True, slots=True)
class WorkerServices:
    """What the process gives the worker beyond its configuration (built by ``okr_ledger``)."""

    open_store: Callable[[], Store]
    """Opens the projection store, its migrations applied (blocking; called in the store's
    thread)."""
    reach_store: Callable[[], None] = lambda: None
    """Checks that the store answers, no more (blocking; in the store's thread): bounded at
    the start by the stall limit, before :attr:`open_store`, whose migrations may take long."""
    metrics: PrometheusMetrics = field(default_factory=PrometheusMetrics)
    """What the agents report; served on ``/metrics``, ``/healthz`` and ``/livez``."""
    routes: Sequence[Route] = ()
    """Other handlers (the query endpoint on an embedded store)."""
    web_site: WebSite | None = None
    """Makes the site the web server listens with (its connections bounded), in place of
    aiohttp's own TCP site."""
    web_handler_args: Mapping[str, Any] = field(default_factory=dict)
    """aiohttp's request handler's arguments on the web server (its keep-alive timeout, its
    bounds on a request's head)."""
    timers: Sequence[Timer] = ()
    """Faust timers: they start once the app runs, and tick once the store is open."""
    sequencer: ProcessRunner | None = None
    """The sequencer's process, made ahead of the app (``ahead``: forked while the worker had
    no thread, :func:`okr_ledger.worker_cli.worker`), told to go where the start would have
    made it; else the start makes the runner (:attr:`WorkerConfig.sequencer_process`).
    Closed by the worker's stop."""


class OkrTableManager(TableManager):
    """Faust's table manager without the second it sleeps as it starts, before it tells the
    conductor that the tables are registered (which then subscribes the group consumer): a
    second for tables made as the app starts to register. This app has no table, and none
    can be added once it started (:meth:`TableManager.add` refuses): every worker's start,
    and so every failover's new member, joined its group a second late."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class OkrWeb(AiohttpWeb):
    """Faust's aiohttp web server, listening with :attr:`WorkerServices.web_site` if any."""

    app: "OkrApp"

    def _new_transport_tcp(self) -> web.BaseSite:
        site = self.app.okr.services.web_site
        if site is None:
            return super()._new_transport_tcp()
        return site(self._runner, self.app.conf.web_bind, self.app.conf.web_port)


class OkrApp(faust.App):
    """One worker process: see the module docstring. Built by :func:`create_app`."""

    okr: "Worker"

    def _new_consumer(self) -> Any:
        consumer = OkrConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )
        consumer.delivery = self.okr
        consumer.fetch_max_wait_ms = self.okr.config.timings.fetch_max_wait_ms
        consumer.fetch_bytes = self.okr.config.fetch_bytes
        consumer.late_topics = frozenset({self.okr.config.topics.intake})
        return consumer

    def _new_web(self) -> Any:
        return OkrWeb(self)

    def on_webserver_init(self, web: Any) -> None:
        add_routes(web.web_app, self.okr.metrics)
        for route in self.okr.services.routes:
            route(web.web_app)

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        if self.okr.assigned_once:  # a worker joining the group is not a rebalance to count
            self.okr.metrics.rebalanced()

    async def on_start(self) -> None:
        await super().on_start()
        # The worker's log level is OKR_LOG_LEVEL; Faust's own chatter stays at INFO at most.
        for name, level in (("faust", "INFO"), ("mode", "INFO"), ("aiokafka", "WARNING")):
            logging.getLogger(name).setLevel(level)
        for name in ("kafka", "librdkafka"):
            logging.getLogger(name).setLevel("WARNING")
        try:
            await self.okr.start()
        except Exception as error:
            log.exception("the worker cannot start")
            await self.crash(error)

    async def crash(self, reason: BaseException) -> None:
        self.okr.metrics.failed(f"{type(reason).__name__}: {reason}")
        await super().crash(reason)

    async def on_stop(self) -> None:
        await self.okr.stop()
        await super().on_stop()


class Worker(Delivery):
    """The agents of one process, and what the group consumer hands them."""

    def __init__(self, app: OkrApp, config: WorkerConfig, services: WorkerServices) -> None:
        self.app, self.config, self.services = app, config, services
        self.metrics = services.metrics
        self.sequencer: SequencerAgent | None = None
        self.projector: ProjectorAgent | None = None
        self._store: Store | None = None
        self._partitions = self._lanes = 0
        """The ledger's and the rejections topic's partition counts."""
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="okr-store")
        self._intake_batches: Any = None
        self._ledger_batches: Any = None
        self._started = asyncio.Event()
        self.assigned_once = False
        self.store_stuck = False
        """The store's thread is held by a store that answers nothing (the start gave up on
        it, or the stop's close did): the process must not wait for it at exit
        (:func:`run_worker`)."""
        self.runs_timers = False
        """Whether this worker has rejections partition :data:`TIMERS_LANE`, so runs the
        timers."""
        self._ticked: set[int] = set()
        """The timers that ticked since this worker took them (by ``id``)."""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the topics, open the store, make the agents."""
        c = self.config
        loop = asyncio.get_running_loop()
        self._partitions, self._lanes = await asyncio.to_thread(self._check_topics)
        reaching = loop.run_in_executor(self._store_thread, self.services.reach_store)
        try:  # a store that answers nothing (paused) would hold the start for 300 s, silently
            await asyncio.wait_for(reaching, c.projector_stall_s)
        except TimeoutError:
            self.store_stuck = True  # the stop need not wait for the store's thread
            raise ProjectionUnavailableError(
                f"the projection store did not answer within {c.projector_stall_s:g}s "
                "(OKR_PROJECTOR_STALL_SECONDS) of the worker's start"
            ) from None
        projection = await loop.run_in_executor(self._store_thread, self._open_store)
        runner: CoreRunner
        if self.services.sequencer is not None:
            runner = self.services.sequencer
            self.services.sequencer.go()
        else:
            runner = ProcessRunner(c) if c.sequencer_process else ThreadRunner(c)
        self.sequencer = SequencerAgent(c, runner, self._seek_intake, self.metrics, self.app.crash)
        self.projector = ProjectorAgent(
            projection,
            self._store_thread,
            self.metrics,
            self._progress,
            batch_size=c.projector_batch_size,
            batch_bytes=c.projector_batch_bytes,
            trim_s=c.malloc_trim_s,
            linger_s=c.projector_linger_s,
            idle_s=c.projector_idle_s,
            crash=self.app.crash,
            rewind=self._rewind_ledger,
            outage=Outage(self.reopen, self._rejoin, c.projector_retry_max_s, c.projector_stall_s),
        )
        self._started.set()

    def _projection(self, store: Store) -> LedgerProjection:
        return LedgerProjection(
            store,
            self._partitions,
            RejectionLanes(self._lanes),
            None,
            partition_states(self.config),
        )

    def reopen(self) -> LedgerProjection:
        """The store closed and opened again, and a new projection on it, as a restart makes
        them (in the store's thread: the projector's :attr:`Outage.reopen`)."""
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception as error:  # a store that is gone may not close cleanly
                log.warning("closing the projection store failed (%s)", error)
        self._store = self.services.open_store()
        return self._projection(self._store)

    def _check_topics(self) -> tuple[int, int]:
        """The ledger's and the rejections' partition counts, once the topics are known to
        exist and the intake and the ledger to agree."""
        topics = self.config.topics
        reader = Reader(Connection(self.config.servers, "okr-worker", self.config.timeout_s))
        try:
            names = (topics.intake, topics.ledger, topics.rejections, topics.outcomes)
            missing = sorted(set(names) - reader.topics())
            if missing:
                raise ConfigurationError(
                    f"no topic {', '.join(missing)}: run `okr-ledger init` (with the same "
                    "OKR_KAFKA_* settings as the worker)"
                )
            intake, ledger = reader.partitions(topics.intake), reader.partitions(topics.ledger)
            lanes = len(reader.partitions(topics.rejections))
        finally:
            reader.close()
        if len(intake) != len(ledger):
            raise ConfigurationError(
                f"{topics.intake} has {len(intake)} partitions and {topics.ledger} "
                f"{len(ledger)}: they must have the same number (intake p feeds ledger p)"
            )
        shared = shared_lanes(topics.rejections, len(ledger), lanes)
        if shared:
            log.warning("%s", shared)
        return len(ledger), lanes

    async def stop(self) -> None:
        if self.sequencer is not None:
            self.sequencer.close()
        elif self.services.sequencer is not None:  # the start ended before it took it
            self.services.sequencer.close()
        if self.projector is not None:
            await self.projector.stop()  # saves its state files, in the store's thread
        loop = asyncio.get_running_loop()
        if self.store_stuck:  # its start gave up on the store: nothing opened to close
            self._store_thread.shutdown(wait=False)
            return
        # In the store's thread: after a reopen of the projector's recovery still under way.
        # Bounded: a read of a store that answers nothing holds that thread (review33b).
        closing = loop.run_in_executor(self._store_thread, self._close_store)
        try:
            await asyncio.wait_for(closing, STORE_CLOSE_S)
        except TimeoutError:
            log.warning("the projection store did not close within %.0fs", STORE_CLOSE_S)
            self.store_stuck = True
        self._store_thread.shutdown(wait=False)

    def _open_store(self) -> LedgerProjection:
        """In the store's thread: the store opened, and the projection on it."""
        self._store = self.services.open_store()
        return self._projection(self._store)

    def _close_store(self) -> None:
        store, self._store = self._store, None  # a late tick finds none
        if store is not None:
            store.close()

    def channels(self, intake: Any, ledger: Any) -> None:
        """The agents' channels (made with the app)."""
        self._intake_batches, self._ledger_batches = intake, ledger

    # -- the consumer's hand-overs (Delivery) ----------------------------------------------

    async def on_assignment(self, assigned: set[TP], generation: int) -> Mapping[TP, int]:
        await self._started.wait()
        sequencer, projector = self._agents()
        topics = self.config.topics
        intake = {tp.partition for tp in assigned if tp.topic == topics.intake}
        ledger = {tp.partition for tp in assigned if tp.topic == topics.ledger}
        lanes = {tp.partition for tp in assigned if tp.topic == topics.rejections}
        if TIMERS_LANE in lanes and not self.runs_timers:
            self._ticked.clear()
        self.runs_timers = TIMERS_LANE in lanes
        self.assigned_once = True
        intake_offsets, (starts, rejections_next) = await asyncio.gather(
            sequencer.assign(intake, generation),
            projector.assign(ledger, lanes, generation),
        )
        unread = [p for p, start in starts.items() if start is None]
        beginnings = await asyncio.to_thread(self._beginnings, unread)
        offsets = {TP(topics.intake, p): offset for p, offset in intake_offsets.items()}
        for partition, start in starts.items():
            offset = beginnings[partition] if start is None else start
            offsets[TP(topics.ledger, partition)] = offset
        offsets.update((TP(topics.rejections, q), o) for q, o in rejections_next.items())
        self.metrics.assigned(topics.ledger, len(ledger))  # restored: ready (with the intake)
        return offsets

    async def on_rebalance_complete(self) -> None:
        """Faust runs no barrier for an assignment of nothing (``Recovery._resume_streams``):
        a worker given no partition (spare capacity, or one more than the partitions) reports
        it here, so that it is ready; its projector, if down, owns nothing to take (its
        recovery ends once the store opens). A worker given partitions later restores them
        before it is ready again, as on any assignment but its first (review32b)."""
        if self.app.consumer.assignment():
            return
        self.assigned_once = True
        if self.projector is not None:
            self.projector.given_nothing()
        topics = self.config.topics
        for topic in (topics.intake, topics.ledger):
            self.metrics.assigned(topic, 0)
        log.info("assigned no partition")

    def _beginnings(self, partitions: list[int]) -> dict[int, int]:
        if not partitions:
            return {}
        reader = Reader(Connection(self.config.servers, "okr-projector", self.config.timeout_s))
        try:
            return reader.beginnings(self.config.topics.ledger, partitions)
        finally:
            reader.close()

    async def on_batch(self, tp: TP, records: list[Any], generation: int) -> None:
        topics = self.config.topics
        try:
            if tp.topic == topics.intake:
                await self._intake_batches.put((tp.partition, records, generation))
            else:
                await self._ledger_batches.put((tp.topic, tp.partition, records, generation))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the consumer stops
            # Faust clears the agents' queues when a rebalance revokes the partitions (it
            # cancels the waiting puts): the batch is dropped, the next assignment reads again.

    async def settle(self) -> Mapping[TP, int]:
        sequencer, projector = self._agents()
        topics = self.config.topics
        intake = await sequencer.settle()
        ledger, rejections = await projector.settle()
        offsets = {TP(topics.intake, p): o for p, o in intake.items()}
        offsets.update((TP(topics.ledger, p), o) for p, o in ledger.items())
        offsets.update((TP(topics.rejections, q), o) for q, o in rejections.items())
        return offsets

    async def revoked(self, revoked: set[TP]) -> None:
        sequencer, projector = self._agents()
        intake = self.config.topics.intake
        if TP(self.config.topics.rejections, TIMERS_LANE) in revoked:
            self.runs_timers = False
        await asyncio.gather(
            sequencer.revoke({tp.partition for tp in revoked if tp.topic == intake}),
            projector.revoke(),
        )

    # -- the agents' bodies ----------------------------------------------------------------

    async def sequence(self, batch: tuple[int, list[Any], int]) -> None:
        partition, records, generation = batch
        await self._agents()[0].handle(partition, records, generation)

    async def project(self, batch: tuple[str, int, list[Any], int]) -> None:
        topic, partition, records, generation = batch
        rejections = topic == self.config.topics.rejections
        await self._agents()[1].handle(partition, records, generation, rejections)

    async def tick(self, function: TimerBody) -> None:
        """One tick of a timer of :attr:`WorkerServices.timers`: on the worker that has
        rejections partition :data:`TIMERS_LANE` only, once the store is open."""
        if self._store is None or not self.runs_timers:
            return
        first = id(function) not in self._ticked
        self._ticked.add(id(function))
        await function(self._store, self._store_thread, first)

    # -- helpers ---------------------------------------------------------------------------

    def _agents(self) -> tuple[SequencerAgent, ProjectorAgent]:
        if self.sequencer is None or self.projector is None:
            raise RuntimeError("the worker has not started")
        return self.sequencer, self.projector

    async def _seek_intake(self, partition: int, offset: int) -> None:
        await self.app.consumer.seek(TP(self.config.topics.intake, partition), offset)

    async def _rejoin(self) -> None:
        """The projector's :attr:`Outage.rejoin`."""
        consumer = self.app.consumer
        assert isinstance(consumer, OkrConsumer)  # made by OkrApp._new_consumer
        await consumer.rejoin()

    async def _rewind_ledger(self, partition: int) -> None:
        """Read ledger ``partition`` again from its beginning (the projector's ``rewind``)."""
        offset = (await asyncio.to_thread(self._beginnings, [partition]))[partition]
        await self.app.consumer.seek(TP(self.config.topics.ledger, partition), offset)

    async def _progress(self, partition: int) -> tuple[int | None, int | None]:
        tp = TP(self.config.topics.ledger, partition)
        consumer = self.app.consumer
        return consumer.highwater(tp), await consumer.position(tp)


def shared_lanes(rejections: str, partitions: int, lanes: int) -> str | None:
    """What to tell an operator whose rejections topic (made by an earlier version) has fewer
    partitions than the ledger: several partitions' writers then share its partitions, which
    Tansu may leave waiting on each other's transactions (docs/ARCHITECTURE.md, "One writer
    per partition"). ``None`` when each partition has its own."""
    if lanes >= partitions:
        return None
    return (
        f"{rejections} has {lanes} partition(s) for {partitions} ledger partitions: the "
        "sequencers of several partitions share its partitions. Recreate it with as many "
        "partitions as the ledger (or set OKR_KAFKA_TOPIC_REJECTIONS to a new topic and run "
        "`okr-ledger init`) to give each partition its own."
    )


def create_app(config: WorkerConfig, services: WorkerServices) -> OkrApp:
    """The worker's Faust app (see the module docstring)."""
    t = config.timings
    app = OkrApp(
        config.app_id,
        broker=[f"kafka://{server}" for server in config.servers],
        datadir=str(config.data_dir / "faust"),
        autodiscover=False,
        store="memory://",
        web_enabled=True,
        # Faust's /router and /table pages answer anyone (the cluster's topology, any table's
        # keys); the app has no table, and every page of its web server is its own.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_port=config.web_port,
        web_bind=config.web_host,
        web_host=config.web_host,
        web_application_options={"handler_args": dict(services.web_handler_args)},
        broker_session_timeout=t.session_timeout_s,
        broker_heartbeat_interval=t.heartbeat_interval_s,
        broker_rebalance_timeout=t.rebalance_timeout_s,
        broker_max_poll_interval=t.max_poll_interval_s,
        broker_request_timeout=t.request_timeout_s,
        broker_max_poll_records=None,
        consumer_max_fetch_size=config.fetch_bytes,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_allow_declare=False,
        value_serializer="raw",
        key_serializer="raw",
        TableManager=OkrTableManager,
    )
    worker = app.okr = Worker(app, config, services)
    for interval, function in services.timers:
        name = getattr(function, "__qualname__", None)
        app.timer(interval, name=name)(_ticking(worker, function))
    install_faust_sensors(app, services.metrics)  # Faust's own families, on our /metrics

    def given_nothing(sender: Any, /, *_: Any, signal: Any, **__: Any) -> Awaitable[None]:
        return worker.on_rebalance_complete()

    app.on_rebalance_complete.connect(given_nothing)

    # Faust's web server answers GET / with its own index; the query endpoint needs "/".
    app.web.blueprints._enabled = [bp for bp in app.web.blueprints._enabled if bp[0] != ""]
    topics = config.topics
    for name in (topics.intake, topics.ledger, topics.rejections):
        # subscribed by the group; their records reach the agents through the consumer
        app.topics.add(app.topic(name, value_type=bytes, key_type=bytes, acks=False))
    intake, ledger = app.channel(maxsize=HANDOVER_DEPTH), app.channel(maxsize=HANDOVER_DEPTH)
    worker.channels(intake, ledger)

    @app.agent(intake, name="sequencer")
    async def sequencer(stream: Any) -> None:
        async for batch in stream:
            await _or_crash(app, worker.sequence(batch))

    @app.agent(ledger, name="projector")
    async def projector(stream: Any) -> None:
        async for batch in stream:
            await _or_crash(app, worker.project(batch))

    return app


def _ticking(worker: Worker, function: TimerBody) -> Callable[[], Awaitable[None]]:
    """A timer's body. It takes no argument: Faust passes the app to one that takes one."""

    async def tick() -> None:
        await worker.tick(function)

    return tick


async def _or_crash(app: OkrApp, work: Any) -> None:
    """An error in an agent ends the worker: restarting is always safe, a worker that goes on
    without a part of its work is not."""
    try:
        await work
    except Exception as error:
        log.exception("an agent failed; stopping the worker")
        await app.crash(error)


def run_worker(app: OkrApp, log_level: str) -> None:
    """Run the worker until SIGINT or SIGTERM (blocking). Stopped with its store's thread
    held by a store that answers nothing, the process ends at once: the interpreter's exit
    would join that thread, until the client's read timeout (300 s)."""
    try:
        faust.Worker(app, loglevel=log_level.lower()).execute_from_commandline()
    except BaseException as end:
        if not app.okr.store_stuck:
            raise
        code = end.code if isinstance(end, SystemExit) and isinstance(end.code, int) else 1
        log.warning("exiting (%s) without waiting for the projection store's thread", code)
        # What a normal exit runs first (logging's flush, multiprocessing's children: the
        # sequencer process), then the flushes; not the join of the threads.
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
