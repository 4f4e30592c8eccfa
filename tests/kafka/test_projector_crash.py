"""SIGKILL the worker while it projects; after restarts the projections equal a rebuild."""

import random
import time
from pathlib import Path

import pytest

from events.kafka_client import Connection
from events.ledger import Ledger
from events.sqlite_log import SqliteEventLog
from okr_ledger.demo import demo_submissions
from tests.builders import check_ins, org_setup
from tests.kafka.projector_support import cli, projecting_worker, wait_projected
from tests.kafka.test_sequencer_worker import Submitter

pytestmark = pytest.mark.kafka


def expected_heads(raws: list[bytes], path: Path) -> dict[str, int]:
    """Each org's last sequence once all of ``raws`` are sequenced (the embedded ledger's)."""
    ledger = Ledger(SqliteEventLog(path))
    list(ledger.submit_many((raw, None) for raw in raws))
    heads = {org: head.sequence for org, head in ledger.log.heads().items()}
    ledger.log.close()
    return heads


def test_sigkilled_projector_matches_a_rebuild(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    raws = demo_submissions() + org_setup("acme") + list(check_ins(1500, "acme"))
    worker = projecting_worker(kafka, topics, tmp_path)
    submitter = Submitter(kafka, topics["intake"])
    rng = random.Random(7)
    try:
        worker.start()
        worker.wait_ready(1)
        chunks = [raws[i : i + 300] for i in range(0, len(raws), 300)]
        for kill, chunk in enumerate(chunks, start=1):
            submitter.send(chunk)
            time.sleep(rng.uniform(0.3, 1.2))  # mid-projection, at a random point
            worker.kill()
            worker.start()
            worker.wait_ready(kill + 1)
        wait_projected(worker, expected_heads(raws, tmp_path / "embedded.db"))
    finally:
        submitter.close()
        worker.stop()
    assert len(chunks) >= 5
    env = {k: v for k, v in worker.env.items() if k.startswith("OKR_")}
    rebuilt = cli(env, "rebuild")  # the worker stopped: replays the ledger topic and compares
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "identical" in rebuilt.stdout
