"""The projection store down does not stop the sequencer. A Kafka worker projects into a real
``okr-ledger serve-store``; submissions stream; the store is SIGKILLed (or SIGSTOPped: it
answers nothing, and the projector's next full batch gives up waiting for the insert under
way after ``OKR_PROJECTOR_STALL_SECONDS``). While it is down the
same worker process (never restarted) keeps deciding: every submission gets its outcome, and
the worker says its projector is down (``/healthz`` 503 with the reason, ``/livez`` 200,
``/metrics`` counting the store's failures). Started again on the same data dir (or
SIGCONTed), the store answers; the projector asks the group for a rebalance, takes its
partitions on the assignment that follows (from its state files) and gets the projections
caught up, equal to a rebuild; every submission is
recorded exactly once and the outcomes agree with the ledger."""

import signal
from pathlib import Path

import pytest

from events.kafka_client import Connection
from okr_ledger.demo import demo_submissions
from projections.queries import Moment
from tests.builders import check_ins, org_setup
from tests.kafka.answers_support import assert_equals_a_rebuild
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.group_support import (
    LATER,
    Group,
    assert_outcomes_agree_with_the_ledger,
    wait_projected,
)
from tests.kafka.projector_support import projecting_worker
from tests.kafka.store_support import (
    BACK,
    DOWN,
    REBALANCE,
    RETRIED,
    figure,
    kill,
    page,
    restart,
    streaming,
    wait_logged,
    wait_moving,
)
from tests.kafka.worker_support import Submitter, assert_exactly_once, wait_for_outcomes
from tests.projections.serve_store_support import start_store

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("outage", ["kill", "stop"])
def test_the_sequencer_decides_while_the_store_is_down_and_the_projector_catches_up(
    kafka: Connection, topics: dict[str, str], tmp_path: Path, outage: str
) -> None:
    data_dir = tmp_path / "store"
    store = start_store(data_dir)
    worker = projecting_worker(kafka, topics, tmp_path)
    worker.env["OKR_CLICKHOUSE_URL"] = store.writer_url
    worker.env["OKR_PROJECTOR_RETRY_MAX_SECONDS"] = "1"
    worker.env["OKR_PROJECTOR_SAVE_EVERY"] = "50"  # the recovery's take restores from files
    worker.env["OKR_PROJECTOR_STALL_SECONDS"] = "4"  # a take under load can pass 1 s
    worker.env["OKR_PROJECTOR_BATCH_SIZE"] = "50"  # a full batch soon waits on a stalled insert
    started = "[^Worker]: Starting..."  # Faust's, once a process
    submitter = Submitter(kafka, topics["intake"])
    try:
        worker.start()
        worker.wait_ready(1)
        submitter.send(demo_submissions() + org_setup("acme"))
        wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
        assert page(worker, "/healthz")[0] == 200
        assert page(worker, "/healthz")[1]["projector"] == "projecting"
        assert figure(worker, "okr_projector_up") == 1
        with streaming(submitter):
            wait_moving(store.writer_url, worker)
            if outage == "kill":
                kill(store)
            else:
                store.process.send_signal(signal.SIGSTOP)
            wait_logged(worker, DOWN, 1)
        # Down: what was sent before and after the kill is decided all the same.
        submitter.send(list(check_ins(100, "acme")) + org_setup("globex"))
        if outage == "kill":  # a stalled insert holds the recovery back until it ends
            with streaming(submitter):
                wait_logged(worker, RETRIED, 2)  # the store tried again, in vain
        outcomes = wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
        status, health = page(worker, "/healthz")
        assert status == 503, health
        assert health["projector"] == "down", health
        assert health["live"] is True, health
        assert health["status"].startswith("degraded: the projector is down"), health
        assert page(worker, "/livez") == (200, {"live": True, "failure": None})
        assert figure(worker, "okr_projector_up") == 0
        failures = figure(worker, "okr_projector_store_failures_total")
        assert failures >= (3 if outage == "kill" else 1)  # an insert (and 2 tries)
        assert BACK not in worker.log_path.read_text(errors="replace")
        assert worker.alive(), worker.log_tail()

        if outage == "kill":
            store = restart(store, data_dir)
        else:
            store.process.send_signal(signal.SIGCONT)
        wait_logged(worker, BACK, 1)
        log = worker.log_path.read_text(errors="replace")
        recovery = log[log.index(DOWN) : log.index(BACK)]
        assert REBALANCE in recovery, "the recovery asked the group for no rebalance"
        assert "restored from" in recovery, "the recovery's take used no state file"
        submitter.send(list(check_ins(100, "globex")))
        outcomes = wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
        statuses = assert_exactly_once(kafka, topics, submitter)
        assert_outcomes_agree_with_the_ledger(kafka, topics, outcomes, statuses)
        wait_projected(worker, store.writer_url, kafka, topics)
        assert page(worker, "/healthz")[0] == 200
        assert page(worker, "/healthz")[1]["projector"] == "projecting"
        assert figure(worker, "okr_projector_up") == 1
        assert worker.log_path.read_text(errors="replace").count(started) == 1  # one start
        worker.stop()
        assert_equals_a_rebuild(kafka, topics, store.writer_url, Moment(now=LATER))
    finally:
        store.process.send_signal(signal.SIGCONT)
        submitter.close()
        worker.stop()
        store.stop()


ORGS = [f"org{i}" for i in range(9)]
"""Enough orgs that every partition has some."""


def test_two_workers_ride_out_a_store_outage_and_a_crash_during_it(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """Two workers share a ``serve-store``; it is SIGKILLed while submissions stream, so both
    projectors go down. While it is down one worker is SIGKILLed: the survivor takes its
    partitions through the ordinary rebalance (its projector still down: the take fails and it
    stays down), and decides their submissions. The store started again, the survivor's
    projector takes every partition through a rebalance of its own, and the projections catch
    up: everything exactly once, the outcomes agree with the ledger, equal to a rebuild."""
    data_dir = tmp_path / "store"
    store = start_store(data_dir)
    group = Group(kafka, topics, tmp_path, TEST_PARTITIONS, store.writer_url)
    group.env.update(
        {
            "OKR_PROJECTOR_RETRY_MAX_SECONDS": "1",
            "OKR_PROJECTOR_SAVE_EVERY": "50",
            "OKR_PROJECTOR_STALL_SECONDS": "4",
        }
    )
    submitter = Submitter(kafka, topics["intake"])
    try:
        a, b = group.start("a"), group.start("b")
        group.wait_spread(["a", "b"], {})
        submitter.send([raw for org in ORGS for raw in org_setup(org)])
        wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), a)
        with streaming(submitter, ORGS):
            wait_moving(store.writer_url, a)
            kill(store)
            wait_logged(a, DOWN, 1)
            wait_logged(b, DOWN, 1)
            since = group.counts()
            b.kill()  # its partitions move to a, whose projector is down
            group.wait_spread(["a"], since)
        submitter.send([raw for org in ORGS for raw in check_ins(20, org)])
        wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), a, timeout_s=120)
        assert page(a, "/healthz")[0] == 503
        assert BACK not in a.log_path.read_text(errors="replace")

        store = restart(store, data_dir)
        wait_logged(a, BACK, 1)
        submitter.send([raw for org in ORGS for raw in check_ins(20, org)])
        outcomes = wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), a)
        statuses = assert_exactly_once(kafka, topics, submitter)
        assert_outcomes_agree_with_the_ledger(kafka, topics, outcomes, statuses)
        wait_projected(a, store.writer_url, kafka, topics)
        assert page(a, "/healthz")[0] == 200
        assert a.log_path.read_text(errors="replace").count("[^Worker]: Starting...") == 1
        group.stop_all()
        assert_equals_a_rebuild(kafka, topics, store.writer_url, Moment(now=LATER))
    finally:
        submitter.close()
        group.stop_all()
        store.stop()


def test_a_worker_started_while_the_store_answers_nothing_says_so_and_ends(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """The store is paused (SIGSTOP) when a worker starts: its start gives up after
    ``OKR_PROJECTOR_STALL_SECONDS`` with the reason and the worker ends (the orchestrator
    starts it again), not silently waiting for the client's 300 s (soak33)."""
    store = start_store(tmp_path / "store")
    worker = projecting_worker(kafka, topics, tmp_path)
    worker.env["OKR_CLICKHOUSE_URL"] = store.writer_url
    worker.env["OKR_PROJECTOR_STALL_SECONDS"] = "4"
    try:
        store.process.send_signal(signal.SIGSTOP)
        worker.start()
        assert worker.process is not None
        exited = worker.process.wait(timeout=60)  # 4 s, its stop's bounds, the interpreter
        assert exited != 0
        log = worker.log_path.read_text(errors="replace")
        assert "the projection store did not answer within 4s" in log, worker.log_tail()
    finally:
        store.process.send_signal(signal.SIGCONT)
        worker.stop()
        store.stop()
