"""A Kafka worker projecting into a real ``okr-ledger serve-store`` that the tests kill and start
again: steady submissions meanwhile, and what the worker says of its projector."""

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from projections.store import ProjectionStore
from tests.builders import check_ins
from tests.kafka.worker_support import Submitter, Worker
from tests.projections.serve_store_support import ServedStore, start_store

WAIT_S = 60.0
STEADY_CHECK_INS = 20
STEADY_EVERY_S = 0.05
DOWN = "the projector cannot write the store"
RETRIED = "the projection store is still unavailable"
REBALANCE = "the projection store answers: asking the group for a rebalance"
BACK = "the projection store is back"
"""What the worker logs when its projector goes down, tries the store in vain, finds it
answering, and projects again."""


def kill(store: ServedStore) -> None:
    store.process.kill()
    store.process.wait(timeout=30)


def restart(store: ServedStore, data_dir: Path) -> ServedStore:
    """The store started again on the same data dir and port (the URL the worker was given)."""
    again = start_store(data_dir, "--port", str(store.port))
    assert again.writer_url == store.writer_url
    return again


def cut_short(data_dir: Path) -> list[str]:
    """The orgs with history rows beyond their checkpoints (a commit the kill cut short), seen
    by a store started on ``data_dir`` on a port of its own: the worker cannot reach it, so
    it cannot discard them first."""
    private = start_store(data_dir)
    try:
        with ProjectionStore.open(private.writer_url, migrate=False) as store:
            return sorted(store._beyond(store.positions()))
    finally:
        private.stop()


@contextmanager
def streaming(submitter: Submitter, orgs: list[str] | None = None) -> Iterator[None]:
    """Check-ins of ``orgs`` (``acme``) sent steadily in a thread (the only sender meanwhile):
    the worker is committing small batches most of the time."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            while not stop.wait(STEADY_EVERY_S):
                for org in orgs or ["acme"]:
                    submitter.send(list(check_ins(STEADY_CHECK_INS, org)))
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if failure:
        raise failure[0]


def wait_moving(url: str, worker: Worker, commits: int = 3) -> None:
    """Until the worker has committed ``commits`` times (an org's checkpoint moved)."""
    deadline = time.monotonic() + WAIT_S
    with ProjectionStore.open(url, migrate=False) as store:
        before = store.positions()
        for _ in range(commits):
            while (now := store.positions()) == before:
                assert worker.alive(), worker.log_tail()
                assert time.monotonic() < deadline, f"nothing projected:\n{worker.log_tail()}"
                time.sleep(0.01)
            before = now


def wait_logged(worker: Worker, line: str, times: int) -> None:
    """Until the worker (alive all along) has logged ``line`` at least ``times`` times."""
    deadline = time.monotonic() + WAIT_S
    while worker.log_path.read_text(errors="replace").count(line) < times:
        assert worker.alive(), f"the worker exited:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, f"never logged {line!r}:\n{worker.log_tail()}"
        time.sleep(0.05)


def page(worker: Worker, path: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the worker's ``/healthz`` or ``/livez``."""
    url = f"http://127.0.0.1:{worker.env['OKR_WORKER_WEB_PORT']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def figure(worker: Worker, name: str) -> float:
    """The sum of the samples of ``name`` on the worker's ``/metrics``."""
    url = f"http://127.0.0.1:{worker.env['OKR_WORKER_WEB_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )
