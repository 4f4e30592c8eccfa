"""Prometheus metrics of the server (``GET /metrics``), with prometheus-client.

Requests by route template and status, their latency, submissions by outcome and reason code,
and the size of each group the writer commits. Each app has its own registry.

With ``serve --workers N`` (N > 1) each worker process writes its values into files of
``PROMETHEUS_MULTIPROC_DIR`` (a private temporary directory the parent makes for the server's
life: :func:`okr_ledger.http.app.serve`), and ``/metrics``, whichever worker answers, reports
what all of them wrote: prometheus-client's multiprocess mode (counters and histograms summed
over the processes; ``okr_http_process_submissions`` labelled by each process's ``pid``).
"""

import collections
import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from okr_ledger.submit_outcome import SubmitOutcome

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GROUP_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """``multiprocess``: this process is one of several workers (see the module docstring);
    its metrics are registered nowhere, and each scrape collects every worker's files."""

    def __init__(self, *, multiprocess: bool = False) -> None:
        if multiprocess and not os.environ.get(MULTIPROC_DIR):
            raise RuntimeError(f"multiprocess metrics need {MULTIPROC_DIR}")
        self.multiprocess = multiprocess
        self.registry: CollectorRegistry | None = None if multiprocess else CollectorRegistry()
        self.requests = Counter(
            "okr_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "okr_http_request_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.submissions = Counter(
            "okr_http_submissions",
            "Submissions answered, by outcome status and reason code.",
            ["status", "reason_code"],
            registry=self.registry,
        )
        self.groups = Histogram(
            "okr_http_group_commit_size",
            "Submissions and refusals in each group the writer commits.",
            buckets=GROUP_BUCKETS,
            registry=self.registry,
        )
        self.pid = str(os.getpid())
        self.process_submissions = Counter(
            "okr_http_process_submissions",
            "Submissions this server process's writer answered, labelled pid (with several "
            "workers, how the load spreads over them).",
            ["pid"],
            registry=self.registry,
        )

    def count(self, outcomes: list[SubmitOutcome]) -> None:
        # Counted first, then one increment per label set: a label lookup and an increment
        # take a lock each, a microsecond per outcome of a batch otherwise.
        counts = collections.Counter((o.status, o.reason_code or "") for o in outcomes)
        for (status, reason_code), count in counts.items():
            self.submissions.labels(status, reason_code).inc(count)
        self.process_submissions.labels(self.pid).inc(len(outcomes))

    def exposition(self) -> bytes:
        registry = self.registry
        if registry is None:  # every worker's values, read from their files now
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated there
        return generate_latest(registry)

    def response(self, _request: Request) -> Response:
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Pure ASGI (no per-request task): times every HTTP request under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
