"""``okr-ledger serve-store`` SIGKILLed while a Kafka worker projects into it, restarted on the
same port and data dir: the worker's projector (down, not the worker, when its insert failed)
takes its partitions again as a restart would, and nothing is lost or duplicated. The kill
must land inside a commit (history rows beyond a checkpoint are found before the projector
comes back), else it is tried again. Afterwards the projections equal a rebuild of the ledger,
and the answers as of three moments of its history equal rebuilds of the prefixes recorded by
then (on the store the worker projected, not only on chDB)."""

import random
import time
from pathlib import Path

import pytest

from events.kafka_client import Connection
from okr_ledger.demo import demo_submissions
from projections.queries import Moment
from projections.store import ProjectionStore
from schemas.envelope import LedgerEvent
from tests.builders import check_ins, org_setup
from tests.kafka.answers_support import assert_equals_a_rebuild, org_answers
from tests.kafka.group_support import LATER, wait_projected
from tests.kafka.projector_support import projecting_worker
from tests.kafka.store_support import (
    BACK,
    DOWN,
    cut_short,
    kill,
    restart,
    streaming,
    wait_logged,
    wait_moving,
)
from tests.kafka.worker_support import (
    Submitter,
    assert_exactly_once,
    open_log,
    wait_for_outcomes,
)
from tests.projections.ledgers import project_prefix
from tests.projections.serve_store_support import start_store

pytestmark = pytest.mark.kafka

KILL_WAVES = 5


def test_a_sigkilled_store_loses_and_duplicates_nothing(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    rng = random.Random(11)
    data_dir = tmp_path / "store"
    store = start_store(data_dir)
    worker = projecting_worker(kafka, topics, tmp_path)
    worker.env["OKR_CLICKHOUSE_URL"] = store.writer_url
    worker.env["OKR_LOG_LEVEL"] = "DEBUG"
    worker.env["OKR_PROJECTOR_RETRY_MAX_SECONDS"] = "1"
    submitter = Submitter(kafka, topics["intake"])
    try:
        worker.start()
        worker.wait_ready(1)
        demo = demo_submissions()
        for chunk in (demo[i : i + 25] for i in range(0, len(demo), 25)):
            submitter.send(chunk)  # each its own batches: moments to ask "as of" between
            wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
        submitter.send(org_setup("acme"))
        cut: list[str] = []
        for wave in range(1, KILL_WAVES + 1):
            with streaming(submitter):
                wait_moving(store.writer_url, worker)
                time.sleep(rng.uniform(0, 0.5))
                kill(store)
                wait_logged(worker, DOWN, wave)
            cut = cut_short(data_dir)  # before the projector can reach the store again
            store = restart(store, data_dir)
            wait_logged(worker, BACK, wave)
            if cut:
                break
        assert cut, f"no kill of {KILL_WAVES} landed inside a commit: the crash was not tested"
        submitter.send(list(check_ins(200, "acme")))
        wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker, timeout_s=120)
        assert_exactly_once(kafka, topics, submitter)
        wait_projected(worker, store.writer_url, kafka, topics, timeout_s=120)
        worker.stop()
        assert_equals_a_rebuild(kafka, topics, store.writer_url, Moment(now=LATER))
        assert_as_of_equals_a_rebuild_of_the_prefix(kafka, topics, store.writer_url, tmp_path)
    finally:
        submitter.close()
        worker.stop()
        store.stop()


def cut_points(events: list[LedgerEvent], count: int) -> list[int]:
    """``count`` prefix lengths spread over ``events``, each ending where the recording time
    moves on (a batch's events share one: ``as_of`` takes all of them or none)."""
    ends = [k for k in range(1, len(events)) if events[k].recorded > events[k - 1].recorded]
    assert len(ends) >= count, f"only {len(ends)} distinct recording times"
    return [ends[(len(ends) - 1) * (i + 1) // (count + 1)] for i in range(count)]


def assert_as_of_equals_a_rebuild_of_the_prefix(
    kafka: Connection, topics: dict[str, str], url: str, tmp_path: Path
) -> None:
    """Each org's answers as of three recording times in its history, from the live store,
    equal those of a chDB store projected from the ledger recorded by then."""
    log = open_log(kafka, topics)
    try:
        ledgers = {org: list(log.read(org)) for org in sorted(log.heads())}
    finally:
        log.close()
    with (
        ProjectionStore.open(url, migrate=False) as live,
        ProjectionStore.open(f"chdb://{tmp_path / 'prefixes'}") as prefix,
    ):
        for org, events in ledgers.items():
            seen = []
            for k in cut_points(events, 3):
                cutoff = events[k - 1].recorded
                project_prefix(events[:k], prefix, tmp_path)
                expected = org_answers(prefix, org, Moment(now=cutoff))
                assert org_answers(live, org, Moment(as_of=cutoff)) == expected, (org, k)
                seen.append(repr(expected))
            assert len(set(seen)) > 1, f"{org}: the answers at every moment asked about alike"
