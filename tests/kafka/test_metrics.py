"""The worker's metrics and health pages, served by aiohttp and read as Prometheus reads them."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from processors.metrics import WorkerMetrics, add_routes, install_faust_sensors

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def served(
    metrics: WorkerMetrics, check: Callable[[TestClient[Any, Any]], Awaitable[None]]
) -> None:
    """Run ``check`` against ``metrics`` served on a real aiohttp server."""

    async def main() -> None:
        app = web.Application()
        add_routes(app, metrics)
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(main())


def scrape(metrics: WorkerMetrics) -> Samples:
    found: Samples = {}

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        found.update(samples(await response.text()))

    served(metrics, check)
    return found


def health(metrics: WorkerMetrics, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    answer: list[tuple[int, dict[str, Any]]] = []

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get(path)
        answer.append((response.status, await response.json()))

    served(metrics, check)
    return answer[0]


def test_counters_by_partition_reason_and_status() -> None:
    metrics = WorkerMetrics()
    metrics.sequenced(0, 40)
    metrics.sequenced(2, 5)
    metrics.sequenced(2, 0)
    metrics.rejected("invalid_payload", 3)
    metrics.rejected("conflict")
    metrics.outcomes("accepted", 45)
    metrics.outcomes("rejected", 4)
    metrics.fenced(1)
    found = scrape(metrics)
    assert found[("okr_events_sequenced_total", (("partition", "0"),))] == 40
    assert found[("okr_events_sequenced_total", (("partition", "2"),))] == 5
    assert found[("okr_rejections_total", (("reason", "invalid_payload"),))] == 3
    assert found[("okr_rejections_total", (("reason", "conflict"),))] == 1
    assert found[("okr_outcomes_total", (("status", "accepted"),))] == 45
    assert found[("okr_outcomes_total", (("status", "rejected"),))] == 4
    assert ("okr_outcomes_total", (("status", "duplicate"),)) not in found
    assert found[("okr_fenced_writes_total", (("partition", "1"),))] == 1


def test_batch_and_restore_durations_are_histograms() -> None:
    metrics = WorkerMetrics()
    metrics.batch("sequencer", 0.003)
    metrics.batch("sequencer", 0.2)
    with metrics.timed("projector"):
        time.sleep(0.002)
    metrics.restored("sequencer", 0, 1.5)
    found = scrape(metrics)
    sequencer = (("role", "sequencer"),)
    assert found[("okr_batch_duration_seconds_count", sequencer)] == 2
    assert abs(found[("okr_batch_duration_seconds_sum", sequencer)] - 0.203) < 1e-9
    assert found[("okr_batch_duration_seconds_bucket", (("le", "0.005"), *sequencer))] == 1
    assert found[("okr_batch_duration_seconds_bucket", (("le", "0.25"), *sequencer))] == 2
    projector = (("role", "projector"),)
    assert found[("okr_batch_duration_seconds_count", projector)] == 1
    assert found[("okr_batch_duration_seconds_sum", projector)] >= 0.002
    assert found[("okr_restore_duration_seconds_count", sequencer)] == 1
    assert found[("okr_restore_duration_seconds_bucket", (("le", "1.0"), *sequencer))] == 0
    assert found[("okr_restore_duration_seconds_bucket", (("le", "2.5"), *sequencer))] == 1


def test_a_failing_batch_is_timed_too() -> None:
    metrics = WorkerMetrics()
    try:
        with metrics.timed("sequencer"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert scrape(metrics)[("okr_batch_duration_seconds_count", (("role", "sequencer"),))] == 1


def test_projector_lag_in_events_and_seconds_grows_while_stuck() -> None:
    metrics = WorkerMetrics()
    metrics.projector_lag(0, 0, time.time() - 100)
    metrics.projector_lag(1, 250, time.time() - 3)
    first = scrape(metrics)
    assert first[("okr_projector_lag_events", (("partition", "0"),))] == 0
    assert first[("okr_projector_lag_seconds", (("partition", "0"),))] == 0  # caught up
    assert first[("okr_projector_lag_events", (("partition", "1"),))] == 250
    lag = first[("okr_projector_lag_seconds", (("partition", "1"),))]
    assert 3 <= lag < 30
    time.sleep(0.3)
    assert scrape(metrics)[("okr_projector_lag_seconds", (("partition", "1"),))] >= lag + 0.3


def test_assigned_partitions_per_role_and_revocation_drops_their_series() -> None:
    metrics = WorkerMetrics()
    metrics.assigned("sequencer", [0, 1, 2])
    metrics.assigned("projector", [0, 1, 2])
    metrics.projector_lag(2, 7, None)
    metrics.rebalance_started()
    metrics.assigned("sequencer", [0, 1])
    metrics.assigned("projector", [0, 1])
    found = scrape(metrics)
    assigned = {
        labels: value
        for (name, labels), value in found.items()
        if name == "okr_assigned_partitions"
    }
    assert assigned == {
        (("partition", str(p)), ("role", role)): 1.0
        for p in (0, 1)
        for role in ("sequencer", "projector")
    }
    assert ("okr_projector_lag_events", (("partition", "2"),)) not in found
    assert found[("okr_rebalances_total", ())] == 1


def test_ready_once_every_role_is_assigned_and_restored() -> None:
    metrics = WorkerMetrics()
    status, body = health(metrics)
    assert (status, body["status"]) == (
        503,
        "waiting for the first assignment (sequencer, projector)",
    )
    assert health(metrics, "/livez")[0] == 200
    metrics.assigned("sequencer", [0, 1])
    assert health(metrics)[0] == 503
    metrics.assigned("projector", [1])
    status, body = health(metrics)
    assert status == 503
    assert body["status"] == "restoring sequencer [0, 1]; restoring projector [1]"
    metrics.restored("sequencer", 0, 0.1)
    metrics.restored("sequencer", 1, 0.1)
    assert health(metrics)[0] == 503
    metrics.restored("projector", 1, 0.1)
    status, body = health(metrics)
    assert (status, body["ready"]) == (200, True)
    assert body["partitions"] == {"sequencer": [0, 1], "projector": [1]}
    assert scrape(metrics)[("okr_ready", ())] == 1


def test_not_ready_from_a_rebalance_until_the_new_assignment_is_restored() -> None:
    metrics = WorkerMetrics()
    metrics.assigned("sequencer", [0])
    metrics.assigned("projector", [0])
    metrics.restored("sequencer", 0, 0.0)
    metrics.restored("projector", 0, 0.0)
    assert health(metrics)[0] == 200
    metrics.rebalance_started()
    status, body = health(metrics)
    assert (status, body["status"]) == (503, "rebalancing (sequencer, projector)")
    assert scrape(metrics)[("okr_ready", ())] == 0
    metrics.assigned("sequencer", [])  # lost everything: spare capacity, ready
    metrics.assigned("projector", [])
    assert health(metrics)[0] == 200


def test_a_failed_worker_is_neither_live_nor_ready() -> None:
    metrics = WorkerMetrics()
    metrics.assigned("sequencer", [])
    metrics.assigned("projector", [])
    metrics.failed("the sequencer stopped")
    status, body = health(metrics, "/livez")
    assert (status, body["failure"]) == (503, "the sequencer stopped")
    assert health(metrics)[0] == 503


def test_faust_sensors_report_into_the_same_registry() -> None:
    metrics = WorkerMetrics()
    app = faust.App("okr-metrics-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    install_faust_sensors(app, metrics)
    app.monitor.on_rebalance_start(app)
    names = {name for name, _labels in scrape(metrics)}
    assert "okr_faust_total_rebalances" in names
    assert "okr_events_sequenced_total" not in names  # no series until a first event
    assert {"okr_rebalances_total", "okr_ready"} <= names
