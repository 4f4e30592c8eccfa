"""Arbitrary intake records through the real worker on the real broker (hypothesis).

Random values (bytes, valid and broken submissions, oversized ones), random keys (missing,
other orgs', not UTF-8), random partitions and random headers (the worker's own with huge or
malformed values, ``okr-intake``, unknown ones, names that are not UTF-8). One worker for the
whole run. Afterwards: the worker is alive, every record has exactly one answer and exactly
one recorded outcome (an event or a rejection with a reason code; none for a duplicate), the
chains verify, and a good submission still gets its outcome.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.chain import verify_chain
from events.kafka_client import Connection
from events.kafka_log import KafkaEventLog
from events.reasons import ReasonCode
from tests.builders import check_ins, org_setup
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.intake_support import (
    NotUtf8,
    Outcomes,
    Position,
    RawProducer,
    RawRecord,
    home,
    submit,
)
from tests.kafka.worker_support import recorded_positions, running_worker

pytestmark = pytest.mark.kafka

EXAMPLES = 40
"""Batches of 1 to 8 records: about 180 intake records a run."""
ORGS = ["acme", "globex", "initech"]
VALID = [raw for org in ORGS for raw in [*org_setup(org), *check_ins(3, org)]]
OWN_HEADERS = ["okr-submission-id", "okr-line", "okr-raw-length", "okr-raw-sha256"]
NAMES = st.sampled_from(
    [*OWN_HEADERS, "okr-intake", "traceparent", "", "x", "y", NotUtf8(b"\xff\xfe")]
) | st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
HEADER_VALUES = st.binary(max_size=40) | st.sampled_from(
    [
        b"99999999999999999999999",
        b"9" * 5000,
        b"12",
        b"-1",
        b"5000000",
        b"0/99999999999999999999999/0",
        hashlib.sha256(b"").hexdigest().encode(),
        "☃".encode(),
        b"\xff",
    ]
)


def org_of(value: bytes | None) -> str | None:
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    org_id = document.get("org_id") if isinstance(document, dict) else None
    return org_id if isinstance(org_id, str) else None


def _changed(raw: bytes, change: dict[str, Any]) -> bytes:
    return json.dumps(orjson.loads(raw) | change).encode()  # json: integers of any size


VALUES = (
    st.sampled_from(VALID)
    | st.binary(max_size=200)
    | st.builds(
        _changed,
        st.sampled_from(VALID),
        st.fixed_dictionaries(
            {}, optional={"org_id": st.text(max_size=20) | st.integers(), "line": st.integers()}
        ),
    )
    | st.sampled_from([b"x" * 70_000, b"", b"[]", b'{"org_id": "acme"}'])
)


@st.composite
def raw_records(draw: st.DrawFn) -> RawRecord:
    value = draw(VALUES)
    org_id = org_of(value)
    own_key = org_id.encode() if org_id is not None else None
    key = draw(
        st.sampled_from([own_key, own_key, None, b"acme", b"\xff\xfe"]) | st.binary(max_size=12)
    )
    headers = draw(st.lists(st.tuples(NAMES, HEADER_VALUES), max_size=4))
    partitions = [None, None, *range(TEST_PARTITIONS)]
    if org_id is not None:
        partitions.append((home(org_id) + 1) % TEST_PARTITIONS)  # a wrong one on purpose
    partition = draw(st.sampled_from(partitions))
    return RawRecord(value, key, tuple(headers), partition)


def test_arbitrary_intake_records_each_get_one_recorded_outcome(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    producer = RawProducer(kafka, topics["intake"], linger_ms=20)
    outcomes = Outcomes(kafka, topics["outcomes"])
    tried: list[Position] = []
    try:
        with running_worker(kafka, topics, tmp_path) as worker:
            worker.wait_ready(1)

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(st.lists(raw_records(), min_size=1, max_size=8))
            def batch(records: list[RawRecord]) -> None:
                sent = producer.send(records)
                tried.extend(sent)
                answers = outcomes.wait(sent, worker)
                for position in sent:
                    statuses = {d["status"] for d in answers[position]}
                    assert len(statuses) == 1, answers[position]
                    for document in answers[position]:
                        if document["status"] == "rejected":
                            assert ReasonCode(document["reason_code"])

            batch()
            good = submit(kafka, topics, org_setup("after-the-fuzz"))
            assert [o.sequence for o in good] == list(range(1, len(good) + 1))
            assert worker.alive(), worker.log_tail()
    finally:
        producer.close()
        outcomes.close()

    print(f"\nintake fuzz: {len(tried)} intake records tried, every one answered and recorded")
    assert len(tried) >= EXAMPLES
    counts = recorded_positions(kafka, topics)
    for position in tried:
        (status,) = {d["status"] for d in outcomes.found[position]}
        assert counts[position] == (0 if status == "duplicate" else 1), (position, status)
    log = KafkaEventLog(
        kafka.servers, ledger_topic=topics["ledger"], rejections_topic=topics["rejections"]
    )
    try:
        heads = log.heads()
        assert "after-the-fuzz" in heads
        for org_id, head in heads.items():
            report = verify_chain(org_id, log.read_records(org_id))
            assert report.ok, report
            assert report.events == head.sequence
    finally:
        log.close()
