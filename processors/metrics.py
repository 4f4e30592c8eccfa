"""The operators' view of a worker: Prometheus metrics, liveness and readiness.

:class:`PrometheusMetrics` is what the agents report to (the ``WorkerMetrics`` calls: once per
batch, rebalance or restore, never per record). It keeps a registry of its own (not
prometheus-client's global one) and the worker's readiness; :func:`add_routes` serves both on
an aiohttp application (Faust's web server: ``web.web_app`` in ``App.on_webserver_init``)::

    metrics = PrometheusMetrics(ready_after=[intake_topic])
    install_faust_sensors(app, metrics)   # Faust's own families, in the same registry
    add_routes(web.web_app, metrics)      # GET /metrics, /healthz, /livez

    metrics.rebalanced()                  # a rebalance started: not ready
    metrics.restored(p, seconds=, events=)  # intake partition p taken over (restore time)
    metrics.assigned(topic, n)            # the topic's n partitions are owned and restored
    metrics.sequenced(p, events=, rejections={reason: n}, duplicates=, outcomes=, seconds=)
    metrics.projected(events=, rejections=, seconds=)
    metrics.projector_lag(p, events=, seconds=)  # records behind; age of the newest projected
    metrics.fresh(stage, oldest)          # a batch done: its oldest record's start (Unix time)
    metrics.projecting(partitions)        # the ledger partitions projected now (after a rebalance)
    metrics.fenced(p)                     # a write refused: another worker owns p now
    metrics.query_refused(reason)         # a reader's statement refused or not run
    metrics.connection_refused()          # a connection beyond OKR_QUERY_MAX_CONNECTIONS
    metrics.projector_down("why")         # the store refused a write or a restore: not ready
    metrics.projector_up()                # the projector restored its partitions: projecting
    metrics.failed("why")                 # the worker cannot go on: liveness fails

``GET /healthz`` is 200 once every topic of ``ready_after`` has been reported ``assigned``
since the last rebalance started (the agents report it once the partitions are restored), and
503 with the reason before that; a worker given no partition is ready (spare capacity).
``GET /livez`` is 200 while the event loop answers, unless :meth:`~PrometheusMetrics.failed`
was called. ``GET /metrics`` is prometheus-client's own aiohttp exposition (text or
OpenMetrics, as the scraper asks).

Projector lag in seconds is 0 for a partition that is caught up; otherwise it is the age of the
newest event projected, and it keeps growing between reports while the projector is stuck.

Freshness is observed once per batch, for its oldest record (the batch's worst case, at no
cost per record): ``sequenced``, from the intake record's Kafka timestamp (its producer's
clock, or the broker's with ``LogAppendTime``) to its outcome written; ``projected``, from the
event's ``recorded_at`` (the sequencer's clock, as it decided) to its rows committed. A source's
submission is visible to readers at most about the sum of the two after it was produced.
"""

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FRESHNESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
PREFIX = "okr"


@dataclass(slots=True)
class Readiness:
    """Which topics' assignments are reported (restored) since the last rebalance started."""

    ready_after: tuple[str, ...]
    reported: set[str] = field(default_factory=set)
    assigned: dict[str, int] = field(default_factory=dict)
    rebalances: int = 0
    failure: str | None = None
    projector_down: str | None = None
    """Why the projector is not projecting (its store unavailable), or ``None``."""

    def why_not_ready(self) -> str:
        """Empty when ready."""
        if self.failure is not None:
            return f"failed: {self.failure}"
        if self.projector_down is not None:
            return f"degraded: the projector is down ({self.projector_down})"
        if waiting := [t for t in self.ready_after if t not in self.reported]:
            what = "rebalancing" if self.rebalances else "waiting for the first assignment"
            return f"{what}: {', '.join(waiting)} not assigned and restored yet"
        return ""

    def to_json(self) -> dict[str, Any]:
        why = self.why_not_ready()
        return {
            "live": self.failure is None,
            "ready": not why,
            "status": why or "ready",
            "projector": "projecting" if self.projector_down is None else "down",
            "assigned_partitions": dict(self.assigned),
        }


class PrometheusMetrics:
    """The worker's Prometheus registry and readiness (see the module docstring)."""

    def __init__(self, ready_after: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.readiness = Readiness(tuple(ready_after))
        r, p = self.registry, PREFIX
        self._sequenced = Counter(
            f"{p}_events_sequenced", "Events written to the ledger.", ["partition"], registry=r
        )
        self._rejected = Counter(
            f"{p}_rejections", "Rejections written, by reason code.", ["reason"], registry=r
        )
        self._outcomes = Counter(
            f"{p}_outcomes",
            "Outcomes written, by status (resent: of submissions decided before a restart).",
            ["status"],
            registry=r,
        )
        self._projected = Counter(
            f"{p}_projected", "Records projected, by kind (event, rejection).", ["kind"], registry=r
        )
        self._fenced = Counter(
            f"{p}_fenced_writes",
            "Writes refused because another worker took the partition over.",
            ["partition"],
            registry=r,
        )
        self._lag_events = Gauge(
            f"{p}_projector_lag_events",
            "Ledger records not projected yet.",
            ["partition"],
            registry=r,
        )
        self._lag_seconds = Gauge(
            f"{p}_projector_lag_seconds",
            "0 when caught up, else the age of the newest event projected.",
            ["partition"],
            registry=r,
        )
        self._batch = Histogram(
            f"{p}_batch_duration_seconds",
            "Time to handle one batch, by agent (sequencer, projector).",
            ["agent"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._freshness = Histogram(
            f"{p}_freshness_seconds",
            "Per batch, the age of its oldest record when a stage was done with it: sequenced "
            "(since the intake record's timestamp), projected (since the event was recorded).",
            ["stage"],
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        )
        self._restore = Histogram(
            f"{p}_restore_duration_seconds",
            "Time to take over one intake partition (fence and restore its state).",
            buckets=RESTORE_BUCKETS,
            registry=r,
        )
        self._restored_events = Counter(
            f"{p}_restored_events", "Ledger records read to restore partitions.", registry=r
        )
        self._rebalances = Counter(f"{p}_rebalances", "Rebalances started.", registry=r)
        self._queries_refused = Counter(
            f"{p}_query_statements_refused",
            "Readers' statements of the query endpoint not run, by reason: saturated (over "
            "OKR_QUERY_MAX_WAITING waiting, answered 503), client_gone (closed while waiting).",
            ["reason"],
            registry=r,
        )
        self._connections_refused = Counter(
            f"{p}_query_connections_refused",
            "Connections to the worker's web port refused (answered 503 and closed): "
            "OKR_QUERY_MAX_CONNECTIONS were open already.",
            registry=r,
        )
        self._store_failures = Counter(
            f"{p}_projector_store_failures",
            "Store failures and stalls that put the projector down or kept it down.",
            registry=r,
        )
        self._projector_up = Gauge(
            f"{p}_projector_up", "0 while the projector is down (its store failing).", registry=r
        )
        self._projector_up.set_function(lambda: float(self.readiness.projector_down is None))
        self._assigned = Gauge(
            f"{p}_assigned_partitions",
            "Partitions this worker owns, by topic.",
            ["topic"],
            registry=r,
        )
        self._ready = Gauge(f"{p}_ready", "1 when ready (as /healthz).", registry=r)
        self._ready.set_function(lambda: float(not self.readiness.why_not_ready()))

    # --- what the agents report -------------------------------------------------------------

    def sequenced(
        self,
        partition: int,
        *,
        events: int,
        rejections: Mapping[str, int],
        duplicates: int,
        outcomes: int,
        seconds: float,
    ) -> None:
        """A batch of intake ``partition`` written (its rejections by reason code)."""
        self._batch.labels("sequencer").observe(seconds)
        rejected = sum(rejections.values())
        if events:
            self._sequenced.labels(str(partition)).inc(events)
        for reason, count in rejections.items():
            self._rejected.labels(reason).inc(count)
        resent = outcomes - events - rejected - duplicates
        for status, count in (
            ("accepted", events),
            ("duplicate", duplicates),
            ("rejected", rejected),
            ("resent", resent),
        ):
            if count > 0:
                self._outcomes.labels(status).inc(count)

    def projected(self, *, events: int, rejections: int, seconds: float) -> None:
        self._batch.labels("projector").observe(seconds)
        if events:
            self._projected.labels("event").inc(events)
        if rejections:
            self._projected.labels("rejection").inc(rejections)

    def projector_lag(self, partition: int, *, events: int, seconds: float) -> None:
        """``events`` not projected yet in ledger ``partition``; ``seconds``: the age of the
        newest event projected there."""
        label = str(partition)
        self._lag_events.labels(label).set(events)
        if events <= 0:
            # a child once given a function keeps it (prometheus-client): make a new one
            with contextlib.suppress(KeyError):
                self._lag_seconds.remove(label)
            self._lag_seconds.labels(label).set(0)
            return
        newest = time.time() - seconds
        self._lag_seconds.labels(label).set_function(lambda: max(0.0, time.time() - newest))

    def fresh(self, stage: str, oldest: float) -> None:
        """A batch is done with ``stage`` (``sequenced``, ``projected``); ``oldest``: the Unix
        time its oldest record started that stage from (a clock ahead of ours counts as 0)."""
        self._freshness.labels(stage).observe(max(0.0, time.time() - oldest))

    def assigned(self, topic: str, partitions: int) -> None:
        """This worker owns ``partitions`` partitions of ``topic`` now, restored."""
        self._assigned.labels(topic).set(partitions)
        self.readiness.assigned[topic] = partitions
        self.readiness.reported.add(topic)

    def rebalanced(self) -> None:
        self._rebalances.inc()
        self.readiness.rebalances += 1
        self.readiness.reported.clear()

    def restored(self, partition: int, *, seconds: float, events: int) -> None:
        self._restore.observe(seconds)
        self._restored_events.inc(events)

    def query_refused(self, reason: str) -> None:
        """A reader's statement of the query endpoint refused or dropped (``reason``:
        ``saturated``, ``client_gone``); from any thread."""
        self._queries_refused.labels(reason).inc()

    def connection_refused(self) -> None:
        """A connection to the worker's web port refused (``OKR_QUERY_MAX_CONNECTIONS`` open
        already); on the event loop's thread."""
        self._connections_refused.inc()

    def fenced(self, partition: int) -> None:
        self._fenced.labels(str(partition)).inc()

    def projecting(self, partitions: Iterable[int]) -> None:
        """The ledger partitions this worker projects now: the lag series of the others go."""
        kept = {str(p) for p in partitions}
        for gauge in (self._lag_events, self._lag_seconds):
            for family in gauge.collect():
                for sample in family.samples:
                    if sample.labels["partition"] not in kept:
                        gauge.remove(sample.labels["partition"])

    def projector_down(self, why: str) -> None:
        """The store failed or stalled an insert, a take, a revoke's save, or a try while the
        projector is down: counted, and the worker is not ready until :meth:`projector_up`."""
        self._store_failures.inc()
        self.readiness.projector_down = why

    def projector_up(self) -> None:
        """The projector has restored its partitions from the store again."""
        self.readiness.projector_down = None

    def failed(self, why: str) -> None:
        """The worker cannot go on (liveness fails): the orchestrator should restart it."""
        self.readiness.failure = why

    # --- serving ----------------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        body = self.readiness.to_json()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def livez(self, _request: web.Request) -> web.Response:
        failure = self.readiness.failure
        body = {"live": failure is None, "failure": failure}
        return web.json_response(body, status=200 if failure is None else 503)


def add_routes(app: web.Application, metrics: PrometheusMetrics) -> None:
    """``GET /metrics``, ``/healthz`` and ``/livez`` on ``app`` (before it starts)."""
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    app.router.add_get("/healthz", metrics.healthz)
    app.router.add_get("/livez", metrics.livez)


def install_faust_sensors(
    app: Any, metrics: PrometheusMetrics, prefix: str = f"{PREFIX}_faust"
) -> None:
    """Faust's own Prometheus monitor (rebalances, commits, sends, web requests), in
    ``metrics``' registry; served by our ``/metrics`` (not by a second page of Faust's)."""
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(metrics.registry, prefix))
