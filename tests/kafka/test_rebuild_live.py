"""`okr-ledger rebuild` on Kafka while the worker runs: a fresh rebuild compared with live."""

from pathlib import Path

import pytest

from events.kafka_client import Connection
from okr_ledger.demo import demo_submissions
from projections.store import ProjectionStore
from tests.builders import check_ins, org_setup
from tests.kafka.projector_support import (
    cli,
    expected_heads,
    projecting_worker,
    settings,
    start_and_project,
    wait_projected,
)
from tests.kafka.worker_support import Submitter, Worker

pytestmark = pytest.mark.kafka


def tamper(worker: Worker) -> None:
    """Change one live row behind the worker's back (stopped: only one process opens chDB)."""
    url = f"chdb://{Path(worker.env['OKR_DATA_DIR']).absolute() / 'clickhouse'}"
    with ProjectionStore.open(url, migrate=False) as store:
        store.client.command(
            "ALTER TABLE okr_ledger.objective_versions UPDATE title = 'tampered' "
            "WHERE sequence = (SELECT min(sequence) FROM okr_ledger.objective_versions) "
            "SETTINGS mutations_sync = 1"
        )


def test_rebuild_beside_the_running_worker(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    demo = demo_submissions()
    streamed = org_setup("acme") + list(check_ins(300, "acme"))
    demo_heads = expected_heads(demo, tmp_path / "demo.db")
    heads = expected_heads(demo + streamed, tmp_path / "all.db")
    worker = projecting_worker(kafka, topics, tmp_path)
    env = settings(worker)
    submitter = Submitter(kafka, topics["intake"])
    try:
        start_and_project(worker, submitter, demo, demo_heads)
        submitter.send(streamed)  # in flight while the rebuild runs: compared up to checkpoints
        same = cli(env, "rebuild")
        assert same.returncode == 0, same.stdout + same.stderr
        assert "identical: the rebuild equals the live projections" in same.stdout
        wait_projected(worker, heads)

        worker.stop()
        tamper(worker)
        worker.start()
        worker.wait_ready(2)
        wait_projected(worker, heads)  # its query endpoint is up again
        differs = cli(env, "rebuild")
    finally:
        submitter.close()
        worker.stop()
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert f"rebuilt {sum(heads.values())} ledger events of 2 orgs" in differs.stdout
    assert "differs from the live projections" in differs.stdout
    assert "objective_versions: 1 rows only in the live projections, 1 only in the rebuild" in (
        differs.stdout
    )
