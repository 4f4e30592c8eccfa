"""SIGKILL the worker while it projects; after restarts the projections equal a rebuild."""

from pathlib import Path

import pytest

from events.kafka_client import Connection
from okr_ledger.demo import demo_submissions
from tests.builders import check_ins, org_setup
from tests.kafka.projector_support import (
    assert_rebuild_identical,
    expected_heads,
    kill_while_projecting,
    projecting_worker,
    wait_projected,
)
from tests.kafka.worker_support import Submitter

pytestmark = pytest.mark.kafka


def test_sigkilled_projector_matches_a_rebuild(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    raws = demo_submissions() + org_setup("acme") + list(check_ins(1500, "acme"))
    worker = projecting_worker(kafka, topics, tmp_path)
    submitter = Submitter(kafka, topics["intake"])
    try:
        kills = kill_while_projecting(worker, submitter, raws, seed=7, pause_s=(0.3, 1.2))
        wait_projected(worker, expected_heads(raws, tmp_path / "embedded.db"))
    finally:
        submitter.close()
        worker.stop()
    assert kills >= 5
    assert_rebuild_identical(worker)  # the worker stopped: replays the ledger topic, compares
