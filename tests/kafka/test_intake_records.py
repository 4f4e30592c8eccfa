"""Hostile and careless intake records through the real worker on the real broker: each is a
recorded rejection, the worker keeps running, and the next good submission gets its answer.
"""

import hashlib
import threading
import time
from pathlib import Path

import orjson
import pytest

from events.kafka_client import Connection, Reader
from events.kafka_log import KafkaEventLog
from okr_ledger.client import LedgerClient
from okr_ledger.submit_outcome import SubmitOutcome
from tests.builders import org_setup
from tests.kafka.cli_support import kafka_env, lines, okr
from tests.kafka.intake_support import (
    NotUtf8,
    Outcomes,
    RawProducer,
    RawRecord,
    home,
    kafka_settings,
    submit,
)
from tests.kafka.worker_support import recorded_positions, running_worker

pytestmark = pytest.mark.kafka

SETUP = org_setup("acme")
RAW_LIMIT = 64 * 1024


def open_log(kafka: Connection, topics: dict[str, str]) -> KafkaEventLog:
    return KafkaEventLog(
        kafka.servers, ledger_topic=topics["ledger"], rejections_topic=topics["rejections"]
    )


def test_the_reported_okr_line_headers_are_recorded_rejections_and_the_worker_goes_on(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """Issue 7: ``okr-line: 99999999999999999999999`` (or 5,000 digits) raised inside the
    sequencer; nothing was recorded, and every restart died on the same record."""
    producer = RawProducer(kafka, topics["intake"])
    outcomes = Outcomes(kafka, topics["outcomes"])
    try:
        with running_worker(kafka, topics, tmp_path) as worker:
            worker.wait_ready(1)
            sent = producer.send(
                [
                    RawRecord(SETUP[0], b"acme", (("okr-line", b"99999999999999999999999"),)),
                    RawRecord(SETUP[0], b"acme", (("okr-line", b"9" * 5000),)),
                ]
            )
            answers = outcomes.wait(sent, worker)
            for position in sent:
                (document,) = answers[position]
                assert (document["status"], document["reason_code"]) == (
                    "rejected",
                    "invalid_record",
                )
                assert document["details"][0]["loc"] == "headers.okr-line"
                assert document["org_id"] == "acme"
            (good,) = submit(kafka, topics, [SETUP[0]])
            assert (good.status, good.sequence) == ("accepted", 1)
            worker.stop()  # a restart reads the same records back: nothing to decide again
            worker.start()
            worker.wait_ready(2)
            (again,) = submit(kafka, topics, [SETUP[1]])
            assert (again.status, again.sequence) == ("accepted", 2)
            assert worker.alive()
    finally:
        producer.close()
        outcomes.close()
    counts = recorded_positions(kafka, topics)
    assert all(counts[p] == 1 for p in sent)


def test_a_record_whose_key_is_not_its_org_is_rejected(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    acme = home("acme")
    wrong_keys = [None, b"globex", b"\xff\xfe", b"ACME", b"acme "]
    producer = RawProducer(kafka, topics["intake"])
    outcomes = Outcomes(kafka, topics["outcomes"])
    try:
        with running_worker(kafka, topics, tmp_path) as worker:
            sent = producer.send(
                [RawRecord(SETUP[0], key, partition=acme) for key in wrong_keys]
                + [RawRecord(SETUP[0], b"acme", partition=acme)]
            )
            answers = outcomes.wait(sent, worker)
    finally:
        producer.close()
        outcomes.close()
    *wrong, right = (answers[p][0] for p in sent)
    for document in wrong:
        assert (document["status"], document["reason_code"]) == ("rejected", "invalid_record")
        assert document["details"][0]["loc"] == "key"
        assert "key must be the org_id 'acme'" in document["message"]
    assert (right["status"], right["sequence"]) == ("accepted", 1)
    log = open_log(kafka, topics)
    try:
        assert [r.reason.value for r in log.rejections()] == ["invalid_record"] * len(wrong_keys)
        assert log.heads()["acme"].sequence == 1
    finally:
        log.close()


def test_a_header_name_that_is_not_utf8_does_not_stop_the_worker(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """aiokafka decodes header names strictly and a whole batch at a time: one such record
    made every fetch of its partition fail, before and after every restart."""
    acme = home("acme")
    bad = RawRecord(SETUP[1], b"acme", ((NotUtf8(b"\xff\xfe"), b"1"),), acme)
    batched = RawProducer(kafka, topics["intake"], linger_ms=300)  # one request: one batch
    outcomes = Outcomes(kafka, topics["outcomes"])
    try:
        with running_worker(kafka, topics, tmp_path) as worker:
            worker.wait_ready(1)
            sent = batched.send(
                [RawRecord(SETUP[0], b"acme", partition=acme), bad]
                + [RawRecord(raw, b"acme", partition=acme) for raw in SETUP[1:3]]
            )
            answers = outcomes.wait(sent, worker)
            first, unreadable, *same_batch = (answers[p][0] for p in sent)
            assert (first["status"], first["sequence"]) == ("accepted", 1)
            assert (unreadable["status"], unreadable["reason_code"]) == (
                "rejected",
                "invalid_record",
            )
            assert "could not be read" in unreadable["message"]
            for document in same_batch:  # unreadable too: they share the record batch
                assert document["reason_code"] == "invalid_record"
            good = submit(kafka, topics, SETUP[1:])
            assert [o.sequence for o in good] == list(range(2, len(SETUP) + 1))
            assert worker.alive()
    finally:
        batched.close()
        outcomes.close()
    counts = recorded_positions(kafka, topics)
    assert all(counts[p] == 1 for p in sent)


def test_a_line_too_long_for_intake_is_a_recorded_too_large_rejection(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """Longer than the producer's request limit (4 MiB), a line failed the whole ``submit``."""
    five_mb = b'{"org_id": "acme", "comment": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    source = tmp_path / "in.ndjson"
    source.write_bytes(b"\n".join([SETUP[0], five_mb, SETUP[1]]) + b"\n")
    env = kafka_env(kafka, topics, tmp_path)
    with running_worker(kafka, topics, tmp_path) as worker:
        worker.wait_ready(1)
        done = okr(env, "submit", str(source), "--json")
        assert done.returncode == 3, done.stderr.decode()
        assert orjson.loads(done.stdout) == {
            "submitted": 3,
            "accepted": 2,
            "duplicate": 0,
            "rejected": 1,
            "rejected_by_reason": {"too_large": 1},
        }
        with LedgerClient(settings=kafka_settings(kafka, topics)) as client:
            from_client = client.submit(five_mb + b" ")
        assert (from_client.status, from_client.reason_code) == ("rejected", "too_large")
        assert str(len(five_mb) + 1) in (from_client.message or "")
    listed = lines(okr(env, "rejections", "--json", "--reason", "too_large").stdout)
    assert [(r["reason_code"], r["line"]) for r in listed] == [
        ("too_large", 2),
        ("too_large", None),
    ]
    assert listed[0]["raw"].encode() == five_mb[:RAW_LIMIT]
    assert f"{len(five_mb)} bytes, over the limit" in listed[0]["message"]
    log = open_log(kafka, topics)
    try:
        stored = list(log.rejections())
    finally:
        log.close()
    assert [(r.raw_length, r.raw_sha256) for r in stored] == [
        (len(five_mb), hashlib.sha256(five_mb).hexdigest()),
        (len(five_mb) + 1, hashlib.sha256(five_mb + b" ").hexdigest()),
    ]


def test_a_malformed_outcome_does_not_stop_a_waiting_submitter(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    result: list[SubmitOutcome | BaseException] = []

    def client() -> None:
        try:
            (outcome,) = submit(kafka, topics, [SETUP[0]])
            result.append(outcome)
        except BaseException as error:  # reported below
            result.append(error)

    waiting = threading.Thread(target=client)
    waiting.start()  # no worker yet: the submission waits on intake
    reader = Reader(kafka)
    producer = RawProducer(kafka, topics["intake"])
    try:
        submission_id = None
        deadline = time.monotonic() + 30
        while submission_id is None:
            assert time.monotonic() < deadline, "the client produced nothing"
            for record in reader.read(topics["intake"], {home("acme"): None}):
                submission_id = dict(record.headers)["okr-submission-id"]
            time.sleep(0.05)
        for forged in [b"not json", b'{"status": "accepted"}', b'{"status": "rejected"}']:
            producer.send_to(topics["outcomes"], forged, key=submission_id)
        with running_worker(kafka, topics, tmp_path) as worker:
            waiting.join(timeout=60)
            assert worker.alive()
    finally:
        reader.close()
        producer.close()
    (outcome,) = result
    assert isinstance(outcome, SubmitOutcome), outcome
    assert (outcome.status, outcome.sequence) == ("accepted", 1)


def test_a_forged_rejections_record_stops_neither_the_restore_nor_the_projector(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    acme = home("acme")
    producer = RawProducer(kafka, topics["intake"])
    try:
        for value, origin in [
            (b"not a rejection", f"{acme}/0/0".encode()),
            (b'{"reason_code": "conflict"}', f"{acme}/99999999999999999999999/0".encode()),
        ]:
            producer.send_to(topics["rejections"], value, (("okr-intake", origin),))
    finally:
        producer.close()
    with running_worker(kafka, topics, tmp_path) as worker:
        worker.wait_ready(1)
        outcomes = submit(kafka, topics, SETUP)
        assert [o.sequence for o in outcomes] == list(range(1, len(SETUP) + 1))
        deadline = time.monotonic() + 30
        while "projected" not in worker.log_path.read_text():  # the rejections too
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.1)
        time.sleep(0.5)
        assert worker.alive(), worker.log_tail()
    env = kafka_env(kafka, topics, tmp_path)
    listed = lines(okr(env, "rejections", "--json").stdout)
    assert [r["reason_code"] for r in listed] == ["invalid_record", "invalid_record"]
    assert listed[0]["raw"] == "not a rejection"
