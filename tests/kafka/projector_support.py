"""Helpers of the projector tests: the worker with its query endpoint, the CLI, the store."""

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from events.kafka_client import Connection
from events.ledger import Ledger
from events.sqlite_log import SqliteEventLog
from projections.query_credentials import TOKEN_FILE, read_token
from projections.store import ProjectionStore
from tests.kafka.worker_support import Submitter, Worker, free_port

TIME_DEPENDENT = {"expected_progress", "status", "stale", "updated_at", "recorded_at"}
"""Fields that move with the clock or the recording time (which differ between runtimes)."""


def projecting_worker(kafka: Connection, topics: dict[str, str], tmp: Path) -> Worker:
    worker = Worker(kafka, topics, tmp / "worker.log")
    worker.env["OKR_WORKER_WEB_PORT"] = str(free_port())
    worker.env["OKR_LOG_LEVEL"] = "INFO"
    return worker


def expected_heads(raws: list[bytes], path: Path) -> dict[str, int]:
    """Each org's last sequence once all of ``raws`` are sequenced (the embedded ledger's)."""
    ledger = Ledger(SqliteEventLog(path))
    list(ledger.submit_many((raw, None) for raw in raws))
    heads = {org: head.sequence for org, head in ledger.log.heads().items()}
    ledger.log.close()
    return heads


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from okr_ledger.cli import main; main()", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def json_lines(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    done = cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return [
        {k: v for k, v in orjson.loads(line).items() if k not in TIME_DEPENDENT}
        for line in done.stdout.splitlines()
    ]


def served_store(worker: Worker) -> ProjectionStore:
    """The worker's store through its endpoint, with the token the worker created."""
    port = worker.env["OKR_WORKER_WEB_PORT"]
    token = Path(worker.env["OKR_DATA_DIR"]) / TOKEN_FILE
    deadline = time.monotonic() + 30
    while True:
        try:
            url = f"http://reader:{read_token(token)}@127.0.0.1:{port}/okr_ledger"
            return ProjectionStore.open(url, migrate=False)
        except Exception:
            assert worker.alive(), f"the worker exited:\n{worker.log_tail()}"
            assert time.monotonic() < deadline, f"no query endpoint:\n{worker.log_tail()}"
            time.sleep(0.2)


def wait_projected(worker: Worker, heads: dict[str, int], timeout_s: float = 60.0) -> None:
    """Until the worker's store has checkpoints at ``heads`` (org -> last sequence)."""
    deadline = time.monotonic() + timeout_s
    with served_store(worker) as store:
        while (found := store.positions()) != heads:
            assert worker.alive(), f"the worker exited:\n{worker.log_tail()}"
            assert time.monotonic() < deadline, (
                f"projections at {found}, not {heads}:\n{worker.log_tail()}"
            )
            time.sleep(0.2)


def settings(worker: Worker) -> dict[str, str]:
    """The worker's ``OKR_`` settings: a CLI command's, on the same topics and store."""
    return {k: v for k, v in worker.env.items() if k.startswith("OKR_")}


def assert_rebuild_identical(worker: Worker) -> None:
    """``okr-ledger rebuild`` with the worker's settings (the worker stopped: no process holds
    its embedded store, so in place) finds the projections identical."""
    rebuilt = cli(settings(worker), "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "no worker holds the embedded store: rebuilt it in place" in rebuilt.stdout
    assert "identical" in rebuilt.stdout


def start_and_project(
    worker: Worker, submitter: Submitter, raws: list[bytes], heads: dict[str, int]
) -> None:
    """Start the worker (its first run), submit ``raws`` and wait until they are projected."""
    worker.start()
    worker.wait_ready(1)
    submitter.send(raws)
    wait_projected(worker, heads)


def kill_while_projecting(
    worker: Worker, submitter: Submitter, raws: list[bytes], seed: int, pause_s: tuple[float, float]
) -> int:
    """Start the worker; submit ``raws`` 300 at a time, each time SIGKILLing the worker at a
    random point of its projection (``pause_s``: the range of the wait after the submission)
    and starting it again; return the number of kills."""
    rng = random.Random(seed)
    worker.start()
    worker.wait_ready(1)
    chunks = [raws[i : i + 300] for i in range(0, len(raws), 300)]
    for kill, chunk in enumerate(chunks, start=1):
        submitter.send(chunk)
        time.sleep(rng.uniform(*pause_s))
        worker.kill()
        worker.start()
        worker.wait_ready(kill + 1)
    return len(chunks)
