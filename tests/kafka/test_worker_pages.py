"""A real worker's /metrics and /healthz, scraped and checked against what was submitted.

The worker projects into a real ``okr-ledger serve-store`` (the shared store), and the figures
are compared with the outcomes the embedded ledger gives the same submissions.
"""

import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from events.kafka_client import Connection
from events.ledger import Ledger
from events.outcomes import Rejection
from events.sqlite_log import SqliteEventLog
from okr_ledger.demo import demo_submissions
from projections.query_credentials import TOKEN_FILE
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.projector_support import projecting_worker
from tests.kafka.worker_support import Submitter, Worker
from tests.projections.serve_store_support import post, served_store

pytestmark = pytest.mark.kafka

Figures = dict[str, dict[tuple[tuple[str, str], ...], float]]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(port: str) -> Figures:
    """name -> labels -> value, from the worker's /metrics."""
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    figures: Figures = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            figures.setdefault(sample.name, {})[labels] = sample.value
    return figures


def by(figures: Figures, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in figures.get(name, {}).items()}


def total(figures: Figures, name: str) -> float:
    return sum(figures.get(name, {}).values())


def wait_for(worker: Worker, port: str, done: Any, timeout_s: float = 60.0) -> Figures:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            figures = scrape(port)
            if done(figures):
                return figures
        except OSError:
            pass  # not listening yet
        assert worker.alive(), f"the worker exited:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, f"metrics never got there:\n{worker.log_tail()}"
        time.sleep(0.2)


def expected_outcomes(raws: list[bytes], where: Path) -> tuple[Counter[str], Counter[str]]:
    """Statuses and rejection reasons the embedded ledger gives ``raws``."""
    where.mkdir()
    ledger = Ledger(SqliteEventLog(where / "ledger.db"))
    try:
        outcomes = list(ledger.submit_many((raw, None) for raw in raws))
    finally:
        ledger.log.close()
    statuses = Counter(str(outcome.status) for outcome in outcomes)
    reasons = Counter(o.reason.value for o in outcomes if isinstance(o, Rejection))
    return statuses, reasons


def test_metrics_and_health_match_what_was_submitted(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    demo = demo_submissions()
    bad = [b"{not json", orjson.dumps({"type": "NoSuchEvent", "org_id": "northwind"})]
    raws = [*demo, *demo[:10], *bad]  # ten duplicates, two more rejections
    statuses, reasons = expected_outcomes(raws, tmp_path / "embedded")
    assert statuses["accepted"] > 50
    assert statuses["duplicate"] >= 10
    assert statuses["rejected"] >= 2

    with served_store(tmp_path / "store") as store:
        worker = projecting_worker(kafka, topics, tmp_path)
        worker.env["OKR_CLICKHOUSE_URL"] = store.writer_url
        port = worker.env["OKR_WORKER_WEB_PORT"]
        submitter = Submitter(kafka, topics["intake"])
        worker.start()
        try:
            worker.wait_ready(1)
            wait_for(worker, port, lambda f: get(f"http://127.0.0.1:{port}/healthz")[0] == 200)
            submitter.send(raws)
            figures = wait_for(
                worker,
                port,
                lambda f: (
                    total(f, "okr_outcomes_total") == len(raws)
                    and by(f, "okr_projected_total", "kind").get("event") == statuses["accepted"]
                    and total(f, "okr_projector_lag_events") == 0
                    # reported every second: wait for a report of every partition
                    and len(by(f, "okr_projector_lag_events", "partition")) == TEST_PARTITIONS
                ),
            )
            assert by(figures, "okr_outcomes_total", "status") == dict(statuses)
            assert total(figures, "okr_events_sequenced_total") == statuses["accepted"]
            assert by(figures, "okr_rejections_total", "reason") == dict(reasons)
            assert by(figures, "okr_assigned_partitions", "topic") == {
                topics["intake"]: TEST_PARTITIONS,
                topics["ledger"]: TEST_PARTITIONS,
            }
            assert set(by(figures, "okr_projector_lag_events", "partition")) == {
                str(p) for p in range(TEST_PARTITIONS)
            }
            assert total(figures, "okr_projector_lag_seconds") == 0
            assert figures["okr_restore_duration_seconds_count"][()] == TEST_PARTITIONS
            batches = by(figures, "okr_batch_duration_seconds_count", "agent")
            assert batches["sequencer"] >= 1
            assert batches["projector"] >= 1
            assert figures["okr_rebalances_total"][()] == 0
            # every batch observed (the projector's that inserted events: not rejections
            # alone), each within the test's own time
            fresh = by(figures, "okr_freshness_seconds_count", "stage")
            assert fresh["sequenced"] == batches["sequencer"]
            assert 1 <= fresh["projected"] <= batches["projector"]
            for stage, age in by(figures, "okr_freshness_seconds_sum", "stage").items():
                assert 0 < age < 120 * fresh[stage], (stage, age)
            assert figures["okr_ready"][()] == 1

            status, body = get(f"http://127.0.0.1:{port}/healthz")
            health = orjson.loads(body)
            assert (status, health["ready"], health["status"]) == (200, True, "ready")
            assert get(f"http://127.0.0.1:{port}/livez")[0] == 200
            # Faust's own pages, unauthenticated (the cluster's topology, tables' keys): off
            for page in ("/router/", "/router/topics", "/table/", "/table/x/y/"):
                assert get(f"http://127.0.0.1:{port}{page}")[0] == 404, page

            reader = clickhouse_connect.get_client(dsn=store.reader_url())
            stored = reader.query("SELECT count() FROM audit_history").result_rows
            assert stored == [(statuses["accepted"],)]  # projected into the shared store
        finally:
            submitter.close()
            worker.stop()


def reader_headers(worker: Worker) -> dict[str, str]:
    """The reader credential of the worker's query endpoint, as ClickHouse's headers."""
    token = (Path(worker.env["OKR_DATA_DIR"]) / TOKEN_FILE).read_text().strip()
    return {"X-ClickHouse-User": "reader", "X-ClickHouse-Key": token}


HEAVY = b"SELECT sum(number) FROM numbers(1000000000000)"
"""A reader's statement that runs until its time limit (``OKR_QUERY_MAX_SECONDS``)."""


def heavy_readers(
    url: str, reader: dict[str, str], answers: list[tuple[int, str]]
) -> list[threading.Thread]:
    """Two readers sending :data:`HEAVY` at once, started; each appends its answer."""
    both = [
        threading.Thread(target=lambda: answers.append(post(url, HEAVY, reader))) for _ in range(2)
    ]
    for thread in both:
        thread.start()
    return both


@contextmanager
def running_worker(
    kafka: Connection, topics: dict[str, str], tmp_path: Path, settings: dict[str, str]
) -> Iterator[tuple[Worker, str]]:
    """A projecting worker with ``settings`` (OKR_* values), ready, and its web port; stopped
    at the end."""
    worker = projecting_worker(kafka, topics, tmp_path)
    worker.env.update(settings)
    worker.start()
    try:
        worker.wait_ready(1)
        yield worker, worker.env["OKR_WORKER_WEB_PORT"]
    finally:
        worker.stop()


def test_the_workers_query_endpoint_refuses_readers_beyond_its_bound_and_counts_them(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """The worker's own endpoint (embedded store) has the bound too, and counts its refusals
    in /metrics: with OKR_QUERY_MAX_WAITING=0, of two readers' statements sent together one
    runs and the other is refused (503, code 202)."""
    settings = {"OKR_QUERY_MAX_WAITING": "0", "OKR_QUERY_MAX_SECONDS": "4"}
    with running_worker(kafka, topics, tmp_path, settings) as (worker, port):
        reader = reader_headers(worker)
        base = f"http://127.0.0.1:{port}/"
        answers: list[tuple[int, str]] = []
        for thread in heavy_readers(base, reader, answers):
            thread.join(60)
        assert sorted(status for status, _ in answers) == [500, 503], answers
        assert "TIMEOUT_EXCEEDED" in min(answers)[1]
        assert max(answers)[1].startswith("Code: 202.")
        assert by(scrape(port), "okr_query_statements_refused_total", "reason") == {"saturated": 1}
        assert post(base, b"SELECT 1", reader) == (200, "1\n")


def test_the_workers_web_port_closes_idle_connections_and_refuses_those_beyond_its_bound(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """The worker's web server (its query endpoint, /metrics, health) has serve-store's
    bounds: a malformed head is answered 400 and logged as a WARNING line (not aiohttp's
    ERROR); with OKR_QUERY_RECEIVE_TIMEOUT_SECONDS=1 a connection that sends nothing is closed;
    with OKR_QUERY_MAX_CONNECTIONS=2 held by two readers' statements (4 s each, one after the
    other), a third connection is answered 503 (code 202) at once; once they end, /metrics
    answers, and counts every connection refused."""
    settings = {
        "OKR_QUERY_MAX_CONNECTIONS": "2",
        "OKR_QUERY_RECEIVE_TIMEOUT_SECONDS": "1",
        "OKR_QUERY_MAX_SECONDS": "4",
    }
    with running_worker(kafka, topics, tmp_path, settings) as (worker, port):
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as malformed:
            malformed.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            assert malformed.recv(100).startswith(b"HTTP/1.0 400 Bad Request\r\n")
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as idle:
            assert idle.recv(100) == b""  # closed by the server, unanswered (else: timeout)
        reader = reader_headers(worker)
        answers: list[tuple[int, str]] = []
        both = heavy_readers(f"http://127.0.0.1:{port}/", reader, answers)
        refused: list[tuple[int, bytes]] = []
        while not refused and any(thread.is_alive() for thread in both):
            answer = get(f"http://127.0.0.1:{port}/metrics")
            if answer[0] == 503:
                refused.append(answer)
            time.sleep(0.05)
        for thread in both:
            thread.join(60)
        # a third connection was refused while two were open (a poll, or a statement whose
        # connection came after a poll's)
        texts = [body.decode() for _, body in refused] + [t for s, t in answers if s == 503]
        assert texts, answers
        assert all(t.startswith("Code: 202. DB::Exception: too many connections") for t in texts)
        assert all(s in (500, 503) for s, _ in answers), answers
        figures = scrape(port)  # answered (200) once they end
        assert total(figures, "okr_query_connections_refused_total") == len(texts)
        log = worker.log_path.read_text(errors="replace")
        assert "Error handling request" not in log  # aiohttp's ERROR and traceback
        assert log.count("[WARNING] malformed requests: 1 refused by aiohttp's parser") == 1
