"""The projection store down does not stop the sequencer. A Kafka worker projects into a real
``okr-ledger serve-store``; submissions stream; the store is SIGKILLed (or SIGSTOPped: it
answers nothing, and the projector's next full batch gives up waiting for the insert under
way after ``OKR_PROJECTOR_STALL_SECONDS``). While it is down the
same worker process (never restarted) keeps deciding: every submission gets its outcome, and
the worker says its projector is down (``/healthz`` 503 with the reason, ``/livez`` 200,
``/metrics`` counting the store's failures). Started again on the same data dir (or
SIGCONTed), the store gets the projections caught up, equal to a rebuild; every submission is
recorded exactly once and the outcomes agree with the ledger."""

import signal
from pathlib import Path

import pytest

from events.kafka_client import Connection
from okr_ledger.demo import demo_submissions
from projections.queries import Moment
from tests.builders import check_ins, org_setup
from tests.kafka.answers_support import assert_equals_a_rebuild
from tests.kafka.group_support import LATER, assert_outcomes_agree_with_the_ledger, wait_projected
from tests.kafka.projector_support import projecting_worker
from tests.kafka.store_support import (
    BACK,
    DOWN,
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
    worker.env["OKR_PROJECTOR_STALL_SECONDS"] = "1"
    worker.env["OKR_PROJECTOR_BATCH_SIZE"] = "50"  # a full batch soon waits on a stalled insert
    started = f"sequencing {topics['intake']} partitions"
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
