"""The worker's metrics and health pages, served by aiohttp and read as Prometheus reads them."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from processors.metrics import PrometheusMetrics, add_routes, install_faust_sensors

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
INTAKE, LEDGER = "okr.intake", "okr.ledger"


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def served(
    metrics: PrometheusMetrics, check: Callable[[TestClient[Any, Any]], Awaitable[None]]
) -> None:
    """Run ``check`` against ``metrics`` served on a real aiohttp server."""

    async def main() -> None:
        app = web.Application()
        add_routes(app, metrics)
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(main())


def scrape(metrics: PrometheusMetrics) -> Samples:
    found: Samples = {}

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        found.update(samples(await response.text()))

    served(metrics, check)
    return found


def health(metrics: PrometheusMetrics, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    answer: list[tuple[int, dict[str, Any]]] = []

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get(path)
        answer.append((response.status, await response.json()))

    served(metrics, check)
    return answer[0]


def test_sequenced_batches_count_events_rejections_and_outcomes_by_status() -> None:
    metrics = PrometheusMetrics()
    metrics.sequenced(
        0,
        events=40,
        rejections={"invalid_payload": 3, "conflict": 1},
        duplicates=2,
        outcomes=48,
        seconds=0.003,
    )
    metrics.sequenced(2, events=5, rejections={}, duplicates=0, outcomes=5, seconds=0.2)
    metrics.sequenced(2, events=0, rejections={}, duplicates=1, outcomes=1, seconds=0.001)
    metrics.fenced(1)
    found = scrape(metrics)
    assert found[("okr_events_sequenced_total", (("partition", "0"),))] == 40
    assert found[("okr_events_sequenced_total", (("partition", "2"),))] == 5
    assert found[("okr_rejections_total", (("reason", "invalid_payload"),))] == 3
    assert found[("okr_rejections_total", (("reason", "conflict"),))] == 1
    outcomes = {
        dict(labels)["status"]: value
        for (name, labels), value in found.items()
        if name == "okr_outcomes_total"
    }
    assert outcomes == {"accepted": 45, "duplicate": 3, "rejected": 4, "resent": 2}
    assert found[("okr_fenced_writes_total", (("partition", "1"),))] == 1
    sequencer = (("agent", "sequencer"),)
    assert found[("okr_batch_duration_seconds_count", sequencer)] == 3
    assert abs(found[("okr_batch_duration_seconds_sum", sequencer)] - 0.204) < 1e-9
    assert (
        found[("okr_batch_duration_seconds_bucket", (("agent", "sequencer"), ("le", "0.005")))] == 2
    )
    assert (
        found[("okr_batch_duration_seconds_bucket", (("agent", "sequencer"), ("le", "0.25")))] == 3
    )


def test_projected_batches_and_restores() -> None:
    metrics = PrometheusMetrics()
    metrics.projected(events=100, rejections=3, seconds=0.05)
    metrics.projected(events=0, rejections=1, seconds=0.01)
    metrics.restored(0, seconds=1.5, events=1_000)
    metrics.restored(1, seconds=0.2, events=10)
    found = scrape(metrics)
    assert found[("okr_projected_total", (("kind", "event"),))] == 100
    assert found[("okr_projected_total", (("kind", "rejection"),))] == 4
    assert found[("okr_batch_duration_seconds_count", (("agent", "projector"),))] == 2
    assert found[("okr_restore_duration_seconds_count", ())] == 2
    assert found[("okr_restore_duration_seconds_bucket", (("le", "1.0"),))] == 1
    assert found[("okr_restore_duration_seconds_bucket", (("le", "2.5"),))] == 2
    assert found[("okr_restored_events_total", ())] == 1_010


def test_freshness_is_the_age_of_each_batchs_oldest_record_by_stage() -> None:
    metrics = PrometheusMetrics()
    now = time.time()
    metrics.fresh("sequenced", now - 0.3)
    metrics.fresh("sequenced", now - 4.0)
    metrics.fresh("projected", now + 60)  # a clock ahead of the worker's: 0, not negative
    found = scrape(metrics)
    sequenced, projected = (("stage", "sequenced"),), (("stage", "projected"),)
    assert found[("okr_freshness_seconds_count", sequenced)] == 2
    assert 4.3 <= found[("okr_freshness_seconds_sum", sequenced)] < 30
    assert found[("okr_freshness_seconds_bucket", (("le", "0.25"), ("stage", "sequenced")))] == 0
    assert found[("okr_freshness_seconds_bucket", (("le", "2.5"), ("stage", "sequenced")))] == 1
    assert found[("okr_freshness_seconds_bucket", (("le", "5.0"), ("stage", "sequenced")))] == 2
    assert found[("okr_freshness_seconds_count", projected)] == 1
    assert found[("okr_freshness_seconds_sum", projected)] == 0


def test_projector_lag_in_events_and_seconds_grows_while_stuck() -> None:
    metrics = PrometheusMetrics()
    metrics.projector_lag(0, events=0, seconds=100.0)
    metrics.projector_lag(1, events=250, seconds=3.0)
    first = scrape(metrics)
    assert first[("okr_projector_lag_events", (("partition", "0"),))] == 0
    assert first[("okr_projector_lag_seconds", (("partition", "0"),))] == 0  # caught up
    assert first[("okr_projector_lag_events", (("partition", "1"),))] == 250
    lag = first[("okr_projector_lag_seconds", (("partition", "1"),))]
    assert 3 <= lag < 30
    time.sleep(0.3)
    assert scrape(metrics)[("okr_projector_lag_seconds", (("partition", "1"),))] >= lag + 0.3
    metrics.projector_lag(1, events=0, seconds=0.5)  # caught up: no more growing
    assert scrape(metrics)[("okr_projector_lag_seconds", (("partition", "1"),))] == 0
    metrics.projector_lag(1, events=250, seconds=3.0)
    metrics.projecting([0])  # partition 1 went to another worker
    found = scrape(metrics)
    assert ("okr_projector_lag_events", (("partition", "1"),)) not in found
    assert ("okr_projector_lag_seconds", (("partition", "1"),)) not in found
    assert found[("okr_projector_lag_events", (("partition", "0"),))] == 0


def test_assigned_partitions_by_topic_and_rebalances() -> None:
    metrics = PrometheusMetrics()
    metrics.assigned(INTAKE, 3)
    metrics.rebalanced()
    metrics.assigned(INTAKE, 2)
    metrics.assigned(LEDGER, 2)
    found = scrape(metrics)
    assert found[("okr_assigned_partitions", (("topic", INTAKE),))] == 2
    assert found[("okr_assigned_partitions", (("topic", LEDGER),))] == 2
    assert found[("okr_rebalances_total", ())] == 1


def test_ready_once_every_topic_is_assigned_and_restored() -> None:
    metrics = PrometheusMetrics(ready_after=[INTAKE, LEDGER])
    status, body = health(metrics)
    assert status == 503
    assert body["status"] == (
        "waiting for the first assignment: okr.intake, okr.ledger not assigned and restored yet"
    )
    assert health(metrics, "/livez")[0] == 200
    metrics.restored(0, seconds=0.1, events=5)
    metrics.assigned(INTAKE, 1)
    assert health(metrics)[0] == 503
    metrics.assigned(LEDGER, 1)
    status, body = health(metrics)
    assert (status, body["ready"]) == (200, True)
    assert body["assigned_partitions"] == {INTAKE: 1, LEDGER: 1}
    assert scrape(metrics)[("okr_ready", ())] == 1


def test_not_ready_from_a_rebalance_until_the_new_assignment_is_reported() -> None:
    metrics = PrometheusMetrics(ready_after=[INTAKE])
    metrics.assigned(INTAKE, 2)
    assert health(metrics)[0] == 200
    metrics.rebalanced()
    status, body = health(metrics)
    assert (status, body["status"]) == (
        503,
        "rebalancing: okr.intake not assigned and restored yet",
    )
    assert scrape(metrics)[("okr_ready", ())] == 0
    metrics.assigned(INTAKE, 0)  # lost everything: spare capacity, ready
    assert health(metrics)[0] == 200


def test_a_failed_worker_is_neither_live_nor_ready() -> None:
    metrics = PrometheusMetrics()
    assert health(metrics)[0] == 200  # nothing to wait for
    metrics.failed("the sequencer stopped")
    status, body = health(metrics, "/livez")
    assert (status, body["failure"]) == (503, "the sequencer stopped")
    assert health(metrics)[0] == 503


def test_openmetrics_is_served_when_asked_for() -> None:
    metrics = PrometheusMetrics()
    metrics.fenced(0)
    text: list[str] = []

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text.append(await response.text())

    served(metrics, check)
    assert text[0].rstrip().endswith("# EOF")
    assert 'okr_fenced_writes_total{partition="0"} 1.0' in text[0]


def test_faust_sensors_report_into_the_same_registry() -> None:
    metrics = PrometheusMetrics()
    app = faust.App("okr-metrics-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    install_faust_sensors(app, metrics)
    app.monitor.on_rebalance_start(app)
    names = {name for name, _labels in scrape(metrics)}
    assert "okr_faust_total_rebalances" in names
    assert "okr_events_sequenced_total" not in names  # no series before a first event
    assert {"okr_rebalances_total", "okr_ready"} <= names


def test_readers_statements_refused_by_the_query_endpoint_by_reason() -> None:
    metrics = PrometheusMetrics()
    for reason in ("saturated", "saturated", "client_gone"):
        metrics.query_refused(reason)
    found = scrape(metrics)
    assert found[("okr_query_statements_refused_total", (("reason", "saturated"),))] == 2
    assert found[("okr_query_statements_refused_total", (("reason", "client_gone"),))] == 1


def test_connections_refused_by_the_web_port() -> None:
    metrics = PrometheusMetrics()
    assert ("okr_query_connections_refused_total", ()) in scrape(metrics)  # 0 from the start
    metrics.connection_refused()
    metrics.connection_refused()
    assert scrape(metrics)[("okr_query_connections_refused_total", ())] == 2
