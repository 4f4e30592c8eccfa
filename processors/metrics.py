"""The operators' view of a worker: Prometheus metrics, liveness and readiness.

One :class:`WorkerMetrics` per worker process holds a registry of its own (not the global
one) and the worker's readiness. The agents report into it; :func:`add_routes` serves it on
an aiohttp application (Faust's web server: ``web.web_app`` in ``App.on_webserver_init``).

What the agents call (each call is cheap; call it once per batch, not per record)::

    metrics = WorkerMetrics()
    install_faust_sensors(app, metrics)        # Faust's own families, same registry
    metrics.rebalance_started()                # App.on_rebalance_start: not ready
    metrics.assigned("sequencer", [0, 1])      # all the role's partitions, after each rebalance
    metrics.restored("sequencer", 0, seconds)  # each assigned partition, once restored
    with metrics.timed("sequencer"):           # one batch (or metrics.batch(role, seconds))
        ...
    metrics.sequenced(partition, events)       # accepted events written to the ledger
    metrics.rejected(reason_code, count)       # rejections written, by reason code
    metrics.outcomes(status, count)            # accepted, duplicate or rejected
    metrics.fenced(partition)                  # a write refused because another owner fenced it
    metrics.projector_lag(partition, events, last_projected_at)
    metrics.failed("why")                      # the worker cannot go on: liveness fails

Readiness (``GET /healthz``: 200 ready, 503 not): every role named in ``roles`` has reported
its assignment since the last rebalance started, and every partition assigned has been reported
restored. A worker with no partition is ready (spare capacity). Liveness (``GET /livez``):
200 while the event loop answers, unless :meth:`WorkerMetrics.failed` was called.
``GET /metrics`` is prometheus-client's own aiohttp exposition (text or OpenMetrics).

Projector lag in seconds is computed when scraped: 0 when the partition is caught up, else the
time since ``last_projected_at`` (the broker timestamp, in epoch seconds, of the last record
projected), so it grows while a projector is stuck.
"""

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler

ROLES = ("sequencer", "projector")
"""The worker's agents, each with partitions of its own (intake, ledger)."""

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
PREFIX = "okr"


@dataclass(slots=True)
class Readiness:
    """Which partitions each role owns, which of them are restored, and why not ready."""

    roles: tuple[str, ...]
    assigned: dict[str, frozenset[int]] = field(default_factory=dict)
    restoring: dict[str, set[int]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    """Roles that reported their assignment since the last rebalance started."""
    failure: str | None = None

    @property
    def ready(self) -> bool:
        return not self.why_not_ready()

    def why_not_ready(self) -> str:
        """Empty when ready."""
        if self.failure is not None:
            return f"failed: {self.failure}"
        if waiting := [r for r in self.roles if r not in self.reported]:
            what = "rebalancing" if self.assigned else "waiting for the first assignment"
            return f"{what} ({', '.join(waiting)})"
        restoring = {r: sorted(ps) for r, ps in self.restoring.items() if ps}
        return "; ".join(f"restoring {r} {ps}" for r, ps in restoring.items())

    def to_json(self) -> dict[str, Any]:
        why = self.why_not_ready()
        return {
            "live": self.failure is None,
            "ready": not why,
            "status": why or "ready",
            "partitions": {r: sorted(self.assigned.get(r, ())) for r in self.roles},
            "restoring": {r: sorted(self.restoring.get(r, ())) for r in self.roles},
        }


class WorkerMetrics:
    """The worker's Prometheus registry and readiness (see the module docstring)."""

    def __init__(self, roles: Iterable[str] = ROLES) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.readiness = Readiness(tuple(roles))
        r, p = self.registry, PREFIX
        self._sequenced = Counter(
            f"{p}_events_sequenced", "Events written to the ledger.", ["partition"], registry=r
        )
        self._rejected = Counter(
            f"{p}_rejections", "Rejections written, by reason code.", ["reason"], registry=r
        )
        self._outcomes = Counter(
            f"{p}_outcomes", "Outcomes written, by status.", ["status"], registry=r
        )
        self._fenced = Counter(
            f"{p}_fenced_writes",
            "Writes refused because another worker took the partition over.",
            ["partition"],
            registry=r,
        )
        self._lag_events = Gauge(
            f"{p}_projector_lag_events",
            "Ledger records not projected yet (high watermark minus position).",
            ["partition"],
            registry=r,
        )
        self._lag_seconds = Gauge(
            f"{p}_projector_lag_seconds",
            "0 when caught up, else seconds since the last projected record was written.",
            ["partition"],
            registry=r,
        )
        self._batch = Histogram(
            f"{p}_batch_duration_seconds",
            "Time to handle one batch, by agent.",
            ["role"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._restore = Histogram(
            f"{p}_restore_duration_seconds",
            "Time to restore one partition after it was assigned, by agent.",
            ["role"],
            buckets=RESTORE_BUCKETS,
            registry=r,
        )
        self._rebalances = Counter(f"{p}_rebalances", "Rebalances started.", registry=r)
        self._assigned = Gauge(
            f"{p}_assigned_partitions",
            "1 for each partition this worker owns, by agent.",
            ["role", "partition"],
            registry=r,
        )
        self._ready = Gauge(f"{p}_ready", "1 when ready (as /healthz).", registry=r)
        self._ready.set_function(lambda: float(self.readiness.ready))

    # --- group membership and restore -----------------------------------------------------

    def rebalance_started(self) -> None:
        self._rebalances.inc()
        self.readiness.reported.clear()

    def assigned(self, role: str, partitions: Iterable[int]) -> None:
        """``role`` now owns exactly ``partitions``; each is restoring until :meth:`restored`."""
        readiness = self.readiness
        owned = frozenset(partitions)
        for gone in readiness.assigned.get(role, frozenset()) - owned:
            self._assigned.remove(role, str(gone))
            if role == "projector":
                for gauge in (self._lag_events, self._lag_seconds):
                    with suppress(KeyError):  # no lag reported for it yet
                        gauge.remove(str(gone))
        for partition in owned:
            self._assigned.labels(role, str(partition)).set(1)
        readiness.assigned[role] = owned
        readiness.restoring[role] = set(owned)
        readiness.reported.add(role)

    def restored(self, role: str, partition: int, seconds: float) -> None:
        self._restore.labels(role).observe(seconds)
        self.readiness.restoring.get(role, set()).discard(partition)

    def failed(self, why: str) -> None:
        """The worker cannot go on (liveness fails): the orchestrator should restart it."""
        self.readiness.failure = why

    # --- batches ----------------------------------------------------------------------------

    def batch(self, role: str, seconds: float) -> None:
        self._batch.labels(role).observe(seconds)

    @contextmanager
    def timed(self, role: str) -> Iterator[None]:
        """Observe the duration of the block as one batch of ``role`` (also if it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.batch(role, time.perf_counter() - start)

    def sequenced(self, partition: int, events: int) -> None:
        if events:
            self._sequenced.labels(str(partition)).inc(events)

    def rejected(self, reason: str, count: int = 1) -> None:
        if count:
            self._rejected.labels(reason).inc(count)

    def outcomes(self, status: str, count: int = 1) -> None:
        if count:
            self._outcomes.labels(status).inc(count)

    def fenced(self, partition: int) -> None:
        self._fenced.labels(str(partition)).inc()

    def projector_lag(self, partition: int, events: int, last_projected_at: float | None) -> None:
        """``events`` not projected yet in ``partition``; ``last_projected_at``: the broker
        timestamp (epoch seconds) of the last record projected (``None``: none yet, counted
        from now)."""
        label = str(partition)
        self._lag_events.labels(label).set(events)
        since = time.time() if last_projected_at is None else last_projected_at
        if events <= 0:
            self._lag_seconds.labels(label).set(0)
        else:
            self._lag_seconds.labels(label).set_function(lambda: max(0.0, time.time() - since))

    # --- serving ----------------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        body = self.readiness.to_json()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def livez(self, _request: web.Request) -> web.Response:
        live = self.readiness.failure is None
        body = {"live": live, "failure": self.readiness.failure}
        return web.json_response(body, status=200 if live else 503)


def add_routes(app: web.Application, metrics: WorkerMetrics) -> None:
    """``GET /metrics``, ``/healthz`` and ``/livez`` on ``app`` (before it starts)."""
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    app.router.add_get("/healthz", metrics.healthz)
    app.router.add_get("/livez", metrics.livez)


def install_faust_sensors(app: Any, metrics: WorkerMetrics, prefix: str = "okr_faust") -> None:
    """Faust's own Prometheus monitor (rebalances, commits, sends, web requests), in
    ``metrics``' registry; served by our ``/metrics`` (not a second page of Faust's)."""
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(metrics.registry, prefix))
