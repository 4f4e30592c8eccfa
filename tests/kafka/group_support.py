"""Several ``okr-ledger worker`` processes in one consumer group, on the test's topics."""

import ast
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events.kafka_client import Connection
from processors import tables as t
from processors.kafka_config import WorkerConfig
from processors.kafka_worker import RESTORE_ATTEMPTS
from projections.store import ProjectionStore
from tests.kafka.worker_support import Worker, open_log

_READ_TIMEOUT_S = WorkerConfig(servers=("127.0.0.1:9",), data_dir=Path()).timeout_s
SPREAD_TIMEOUT_S = 60 + RESTORE_ATTEMPTS * _READ_TIMEOUT_S
"""How long the partitions may take to settle after a change: a rebalance, plus every attempt
of a restore whose committed reads each wait out the worker's read timeout (on Tansu a
transaction cut short can hold them until it is fenced and no other open transaction shares
its partitions: docs/ARCHITECTURE.md, "What ends a dead worker's open transaction")."""
_ASSIGNED = re.compile(r"sequencing \S+ partitions (\[[0-9, ]*\])")
_FENCED = re.compile(r"fenced \S+ partitions (\[[0-9, ]*\])")


def assignments(worker: Worker) -> list[set[int]]:
    """The intake partitions of each assignment the worker logged, oldest first."""
    return _logged(worker, _ASSIGNED)


def fenced(worker: Worker) -> list[set[int]]:
    """The intake partitions of each assignment the worker fenced, oldest first (it fences
    them before it restores them)."""
    return _logged(worker, _FENCED)


def _logged(worker: Worker, pattern: re.Pattern[str]) -> list[set[int]]:
    text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
    return [set(ast.literal_eval(match[1])) for match in pattern.finditer(text)]


@dataclass
class Group:
    """Workers sharing an app id (a consumer group), each with its own port and data dir."""

    kafka: Connection
    topics: dict[str, str]
    tmp: Path
    partitions: int
    store_url: str | None = None
    """``OKR_CLICKHOUSE_URL`` of every worker (a served store all of them write)."""
    batch_size: int = 100
    env: dict[str, str] = field(default_factory=dict)
    """More settings of every worker."""
    workers: dict[str, Worker] = field(default_factory=dict)

    def start(self, name: str) -> Worker:
        worker = Worker(self.kafka, self.topics, self.tmp / f"{name}.log", self.batch_size)
        worker.env["OKR_DATA_DIR"] = str(self.tmp / name)
        worker.env["OKR_LOG_LEVEL"] = "INFO"
        if self.store_url is not None:
            worker.env["OKR_CLICKHOUSE_URL"] = self.store_url
        worker.env.update(self.env)
        worker.start()
        self.workers[name] = worker
        return worker

    def running(self) -> dict[str, Worker]:
        return {name: w for name, w in self.workers.items() if w.alive()}

    def wait_spread(
        self, among: list[str], since: dict[str, int], timeout_s: float = SPREAD_TIMEOUT_S
    ) -> None:
        """Until the workers ``among`` (all of those running) have each logged an assignment
        after the ``since`` counts, and their latest assignments split the partitions."""
        deadline = time.monotonic() + timeout_s
        while True:
            for name, worker in self.workers.items():
                assert name not in among or worker.alive(), f"{name} exited:\n{worker.log_tail()}"
            latest = {}
            for name in among:
                found = assignments(self.workers[name])
                if len(found) > since.get(name, 0):
                    latest[name] = found[-1]
            if len(latest) == len(among):
                owned = [p for parts in latest.values() for p in parts]
                if sorted(owned) == list(range(self.partitions)):
                    return
            assert time.monotonic() < deadline, (
                f"the partitions did not spread over {among}: {latest}\n"
                + "\n".join(f"{n}:\n{w.log_tail()}" for n, w in self.workers.items())
            )
            time.sleep(0.1)

    def counts(self) -> dict[str, int]:
        """How many assignments each worker logged so far."""
        return {name: len(assignments(w)) for name, w in self.workers.items()}

    def wait_fenced(
        self, name: str, partitions: set[int], after: int, timeout_s: float = 60
    ) -> None:
        """Until worker ``name`` has fenced (taken over) all of ``partitions`` in one of the
        assignments it logged after its first ``after`` fences."""
        worker = self.workers[name]
        deadline = time.monotonic() + timeout_s
        while not any(partitions <= found for found in fenced(worker)[after:]):
            assert worker.alive(), f"{name} exited:\n{worker.log_tail()}"
            assert time.monotonic() < deadline, (
                f"{name} did not take over {sorted(partitions)}:\n{worker.log_tail()}"
            )
            time.sleep(0.2)

    def pause(self, name: str) -> None:
        process = self.workers[name].process
        assert process is not None
        process.send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        process = self.workers[name].process
        assert process is not None
        process.send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        """Every running worker asked to stop at once (a paused one woken first), then each
        waited for: a worker takes a few seconds to shut down, so one after the other adds
        them up."""
        for name, worker in self.workers.items():
            if worker.alive() and worker.process is not None:
                self.resume(name)
                worker.process.terminate()
        for worker in self.workers.values():
            worker.stop()


LATER = datetime(2027, 1, 1, tzinfo=UTC)
"""A fixed "now" after every event, for answers compared between stores."""


def assert_outcomes_agree_with_the_ledger(
    kafka: Connection,
    topics: dict[str, str],
    outcomes: dict[str, list[dict[str, Any]]],
    statuses: dict[str, str],
) -> None:
    """Every outcome record of a submission has its one status, and an accepted one names the
    event the ledger holds (same org, id, sequence and hash)."""
    log = open_log(kafka, topics)
    try:
        ledger = {
            (r["org_id"], r["event_id"]): (r["sequence"], r["hash"]) for r in log.read_records()
        }
    finally:
        log.close()
    for submission_id, documents in outcomes.items():
        for document in documents:
            assert document["status"] == statuses[submission_id], (submission_id, documents)
            if document["status"] == "accepted":
                key = (document["org_id"], document["event_id"])
                assert ledger[key] == (document["sequence"], document["hash"]), document
            if document["status"] == "duplicate":
                assert (document["org_id"], document["event_id"]) in ledger, document


def ledger_ends(kafka: Connection, topics: dict[str, str]) -> tuple[dict[str, int], dict[str, int]]:
    """What a projection at the ledger's end has as checkpoints: each org's head sequence and
    each rejections lane's last rejection position (lanes without one left out)."""
    log = open_log(kafka, topics)
    try:
        heads = {org: head.sequence for org, head in log.heads().items()}
        last = {}
        for lane in log.rejection_lanes():
            rejections = log.rejections_after(0, 1_000_000, lane=lane)
            if rejections:
                last[lane] = rejections[-1][0]
    finally:
        log.close()
    return heads, last


def wait_projected(
    worker: Worker, url: str, kafka: Connection, topics: dict[str, str], timeout_s: float = 60
) -> None:
    """Until the shared store's checkpoints reach every org's head and each rejections lane's
    last rejection."""
    heads, last = ledger_ends(kafka, topics)
    deadline = time.monotonic() + timeout_s
    with ProjectionStore.open(url, migrate=False) as store:
        while (store.positions(), store.positions(t.REJECTION_STREAM)) != (heads, last):
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, f"not projected: {store.positions()} {heads}"
            time.sleep(0.2)
