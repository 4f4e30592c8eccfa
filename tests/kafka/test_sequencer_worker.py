"""The sequencer worker as a subprocess on a real broker: end to end, and SIGKILLed repeatedly."""

import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.chain import verify_chain
from events.kafka_client import Connection
from events.ledger import Ledger
from events.sqlite_log import SqliteEventLog
from okr_ledger.demo import demo_submissions
from tests.builders import check_ins, org_setup
from tests.kafka.worker_support import (
    BATCH_WRITTEN,
    Submitter,
    Worker,
    assert_exactly_once,
    cut_batches,
    open_log,
    running_worker,
    wait_for_outcomes,
)

pytestmark = pytest.mark.kafka


def test_the_demo_through_intake_gives_the_embedded_ledger(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    demo = demo_submissions()
    raws = demo + org_setup("acme") + list(check_ins(3, "acme")) + demo[:5]
    submitter = Submitter(kafka, topics["intake"])
    with running_worker(kafka, topics, tmp_path) as worker:
        submitter.send(raws)
        outcomes = wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
    submitter.close()

    embedded = Ledger(SqliteEventLog(tmp_path / "embedded.db"))
    expected = list(embedded.submit_many((raw, None) for raw in raws))
    got = Counter(documents[0]["status"] for documents in outcomes.values())
    assert got == Counter(o.status for o in expected)
    assert got["duplicate"] >= 5
    assert got["rejected"] >= 1
    for submission_id, outcome in zip(submitter.sent, expected, strict=True):
        document = outcomes[submission_id][0]
        assert document["status"] == outcome.status
        if outcome.status == "accepted":
            assert document["sequence"] == outcome.to_json()["sequence"]
        if outcome.status == "rejected":
            assert document["reason_code"] == outcome.to_json()["reason_code"]

    log = open_log(kafka, topics)
    try:
        assert set(log.heads()) == {"northwind", "acme"}
        for org_id in ("northwind", "acme"):
            ours = [_stable(r) for r in log.read_records(org_id)]
            theirs = [_stable(r) for r in embedded.log.read_records(org_id)]
            assert ours == theirs
            assert verify_chain(org_id, log.read_records(org_id)).ok
        assert len(list(log.rejections())) == got["rejected"]
    finally:
        log.close()
        embedded.log.close()


def _stable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("recorded_at", "hash", "prev_hash")}


ORGS = [f"org{i}" for i in range(6)]


def crash_workload() -> list[bytes]:
    orgs = ORGS
    raws = [raw for org in orgs for raw in org_setup(org)]
    for _round in range(100):
        for org in orgs:
            raws.extend(check_ins(4, org))
    chance = random.Random(7)
    raws += chance.sample(raws, 100)  # duplicates
    raws += [b"{broken", next(check_ins(1, "org0", key_result_id="nope"))] * 5
    # About one submission in ten rejected, in every partition: most batches write rejections
    # before their events, so kills land between the two as well.
    raws += [next(check_ins(1, org, key_result_id="nope")) for org in orgs] * 40
    tail = raws[len(orgs) * 7 :]
    chance.shuffle(tail)
    return raws[: len(orgs) * 7] + tail


def test_sigkilled_worker_loses_and_duplicates_nothing(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    raws = crash_workload()
    submitter = Submitter(kafka, topics["intake"])
    done = threading.Event()

    def stream() -> None:
        try:
            # paced to last through most of the kills (a restart takes about 4 s): a kill
            # lands inside a batch only while there is a backlog to work through
            for start in range(0, len(raws), 40):
                submitter.send(raws[start : start + 40])
                time.sleep(0.4)
        finally:
            done.set()

    chance = random.Random(11)
    kills = 0
    with running_worker(kafka, topics, tmp_path, batch_size=50) as worker:
        producer = threading.Thread(target=stream)
        producer.start()
        while kills < 8 or not done.is_set():
            worker.wait_ready(kills + 1)
            worker.wait_working()
            time.sleep(chance.uniform(0.0, 0.12))  # while it works through the backlog
            worker.kill()
            kills += 1
            worker.start()
        producer.join()
        waves = 0
        while waves < 6:
            wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
            if worker.cut_batches():  # the restarts finished what the kills cut
                break
            # No kill landed inside a batch (timing on a loaded machine): a backlog of fresh
            # check-ins, and kills while the worker works through it, until one does.
            waves += 1
            for _ in range(3):
                # the backlog is sent while the worker is down: the restarted worker has all
                # of it to work through when the next kill comes
                worker.wait_ready(kills + 1)
                worker.kill()
                kills += 1
                submitter.send([raw for org in ORGS for raw in check_ins(100, org)])
                worker.start()
                worker.wait_ready(kills + 1)
                worker.wait_working()
                time.sleep(chance.uniform(0.0, 0.05))
                worker.kill()
                kills += 1
                worker.start()
        outcomes = wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
        cut = worker.cut_batches()
    submitter.close()

    assert kills >= 8
    assert cut >= 1, "no kill landed inside a batch: the test did not test a crash mid-write"
    statuses = assert_exactly_once(kafka, topics, submitter)
    for submission_id, documents in outcomes.items():
        assert {d["status"] for d in documents} == {statuses[submission_id]}
    assert Counter(statuses.values())["accepted"] >= 6 * 7 + 2400


def test_the_sigkill_tests_precondition_finds_no_cut_batch_in_a_run_without_a_kill(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """The SIGKILL test passes only when a kill cut a batch (``cut_batches() >= 1``). On a
    run without a kill, with duplicates and rejections and many batches, the same check finds
    every batch written and none cut: the SIGKILL test cannot pass without its crash."""
    orgs = ORGS[:3]
    raws = [raw for org in orgs for raw in org_setup(org)]
    for _round in range(20):
        for org in orgs:
            raws.extend(check_ins(3, org))
    raws += raws[:30]  # duplicates
    raws += [b"{broken", next(check_ins(1, "org0", key_result_id="nope"))] * 3
    submitter = Submitter(kafka, topics["intake"])
    with running_worker(kafka, topics, tmp_path, batch_size=50) as worker:
        worker.wait_ready(1)
        for start in range(0, len(raws), 40):
            submitter.send(raws[start : start + 40])
        outcomes = wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
        log = worker.log_path.read_text()
        cut = worker.cut_batches()
    submitter.close()
    assert len(outcomes) == len(raws)
    written = [int(match[1]) for match in BATCH_WRITTEN.finditer(log)]
    assert len(written) >= 3  # the batches are seen (the line's format is what it parses)
    assert log.count(f"sequencing {topics['intake']} partitions") == 1  # one start, no restart
    assert cut == cut_batches(log) == 0
    # and it does see one: the same log with one batch that replayed records
    assert cut_batches(log + "partition 0: offsets 7-9, 1 events, 0 rejections, 2 replayed\n") == 1


def test_a_worker_without_its_topics_exits_with_the_reason(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """A Faust worker whose sequencer failed must not keep running without it."""
    worker = Worker(kafka, {**topics, "intake": f"{topics['intake']}.missing"}, tmp_path / "w.log")
    worker.start()
    assert worker.process is not None
    try:
        assert worker.process.wait(timeout=30) != 0
    finally:
        worker.stop()
    assert "run `okr-ledger init`" in worker.log_path.read_text()


def test_a_sources_retry_with_a_new_event_id_is_a_duplicate_after_the_worker_restarts(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    def check_in(event_id: str, value: int) -> bytes:
        document = orjson.loads(next(check_ins(1, "acme")))
        document |= {"event_id": event_id, "source_event_id": "jira-1"}
        document["data"]["value"] = value
        return orjson.dumps(document)

    first_id = "0b7e4c2d-9a10-4c1e-9c1a-6f1d4b0e8a57"
    submitter = Submitter(kafka, topics["intake"])
    try:
        with running_worker(kafka, topics, tmp_path) as worker:
            submitter.send([*org_setup("acme"), check_in(first_id, 12)])
            wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
        with running_worker(kafka, topics, tmp_path) as worker:  # restored from the topics
            worker.wait_ready(2)
            submitter.send(
                [
                    check_in("5d1f4b0e-8a57-4c1e-9c1a-0b7e4c2d9a10", 12),
                    check_in("6d1f4b0e-8a57-4c1e-9c1a-0b7e4c2d9a10", 13),
                ]
            )
            outcomes = wait_for_outcomes(kafka, topics["outcomes"], set(submitter.sent), worker)
    finally:
        submitter.close()
    retry, changed = (outcomes[s][0] for s in list(submitter.sent)[-2:])
    assert (retry["status"], retry["event_id"]) == ("duplicate", first_id)
    assert (changed["status"], changed["reason_code"]) == ("rejected", "conflict")
    log = open_log(kafka, topics)
    try:
        assert [r["source_event_id"] for r in log.read_records("acme")][-1] == "jira-1"
        assert log.heads()["acme"].sequence == len(org_setup("acme")) + 1
    finally:
        log.close()
