"""The HTTP server on Kafka while its worker is down or being SIGKILLed: the real Tansu broker,
a real worker, a real ``serve``.

With no worker to answer, a request is told 503 with ``Retry-After`` within
``OKR_SUBMIT_TIMEOUT_SECONDS``, or after the server's committed read of the outcomes stalled
for its 30 s when the killed worker left a transaction open on them (it does not hang); its
submissions stay on the intake topic
and are decided once a worker runs, so a retry then is a duplicate of the event they made, and
a refusal made while the worker was down is recorded all the same.
"""

import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from events.kafka_client import Connection
from tests.http.support import check_in, ndjson, outcome_lines
from tests.http.worker_down_support import (
    QUICKLY_S,
    Cluster,
    assert_unavailable,
    outcome,
    running_cluster,
    stop_during_a_request,
)
from tests.kafka.worker_support import open_log

pytestmark = pytest.mark.kafka


@pytest.fixture
def cluster(kafka: Connection, topics: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
    """A worker sequencing in batches of 5, and a server on it, with the demo org submitted."""
    with running_cluster(kafka, topics, tmp_path) as up:
        yield up


def test_with_the_worker_killed_or_down_a_request_is_503_and_a_retry_is_one_event(
    cluster: Cluster,
) -> None:
    """The worker is stopped once it has answered part of a request of 120 lines, then
    SIGKILLed: the request is answered 503 within the server's wait, not a hang. Requests while
    it is down are 503 (together: one wait for the server's writer). After its restart, what
    was produced meanwhile is decided first: every retry is a duplicate of one event, and the
    refusals made meanwhile are recorded.

    The stop is where no transaction of the worker's is open on the outcomes: killed inside
    one, it holds each of the server's reads of them for 30 s, one request after the other,
    and the third request here would wait past the client's 60 s (the second test may stop
    there)."""
    (up,) = cluster.post_until_answered(orjson.dumps(check_in(source_event_id="up-1")))
    assert up.status_code in (200, 201), up.text
    mid = [orjson.dumps(check_in(value=n, source_event_id=f"mid-{n}")) for n in range(120)]
    cut = stop_during_a_request(cluster, mid, left_open=False)
    assert_unavailable(cut.answer)
    assert cut.seconds < QUICKLY_S

    single = orjson.dumps(check_in(value=50, source_event_id="down-1"))
    forbidden = orjson.dumps(check_in(source="crm", source_event_id="down-f"))
    batch = ndjson(
        [
            orjson.dumps(check_in(value=51, source_event_id="down-2")),
            forbidden,
            orjson.dumps(check_in(value=52, source_event_id="down-3")),
        ]
    )
    down = [(single, False), (batch, True), (forbidden, False)]
    with ThreadPoolExecutor(len(down)) as pool:
        for answer in pool.map(lambda post: cluster.post(*post), down):
            assert_unavailable(answer)

    cluster.worker.start()
    cluster.worker.wait_ready(2)
    mid_answers = cluster.post_until_answered(ndjson(mid), batch=True)
    mid_outcomes = outcome_lines(mid_answers[-1].content)
    assert [o["status"] for o in mid_outcomes] == ["duplicate"] * len(mid)
    retried = cluster.post_until_answered(single)
    assert outcome(retried[-1])["status"] == "duplicate", retried[-1].text
    batch_answers = cluster.post_until_answered(batch, batch=True)
    outcomes = outcome_lines(batch_answers[-1].content)
    assert [(o["status"], o.get("reason_code")) for o in outcomes] == [
        ("duplicate", None),
        ("rejected", "forbidden"),
        ("duplicate", None),
    ]
    forbidden_answers = cluster.post_until_answered(forbidden)
    assert forbidden_answers[-1].status_code == 403

    log = open_log(cluster.kafka, cluster.topics)
    try:
        assert all(report.ok for report in log.verify())
        stored = [
            (r["source_event_id"], r["event_id"])
            for r in log.read_records("northwind")
            if r["source"] == "jira"
        ]
        recorded = Counter(r.raw for r in log.rejections())
    finally:
        log.close()
    events = dict(stored)
    assert len(stored) == len(events)  # each source id once
    assert sorted(events) == sorted(
        ["up-1", "down-1", "down-2", "down-3"] + [f"mid-{n}" for n in range(len(mid))]
    )
    assert [events[f"mid-{n}"] for n in range(len(mid))] == [o["event_id"] for o in mid_outcomes]
    assert events["down-1"] == outcome(retried[-1])["event_id"]
    assert [events["down-2"], events["down-3"]] == [
        outcomes[0]["event_id"],
        outcomes[2]["event_id"],
    ]
    # The refusals made while the worker was down, recorded once it ran, and each one since.
    assert recorded[forbidden] == 2 + len(batch_answers) + len(forbidden_answers)


def test_with_the_worker_stopped_half_way_through_a_request_it_is_503_and_retries_duplicates(
    cluster: Cluster,
) -> None:
    """The worker is stopped once it has answered half of a request of 300 lines (60 batches
    of 5), then SIGKILLed: the request is answered 503, not a hang, and says how many lines
    have no answer. After its restart the whole request again is 300 duplicates, each of the
    event the ledger holds for its line, and every source id is in the ledger once.

    The stop may leave a transaction open on the outcomes (about one run in ten): the 503 then
    comes after the server's read has stalled for its 30 s."""
    lines = [orjson.dumps(check_in(value=n % 100, source_event_id=f"big-{n}")) for n in range(300)]
    cut = stop_during_a_request(cluster, lines, answered=len(lines) // 2)
    assert_unavailable(cut.answer)
    if not cut.left_open:  # else the server's read of the outcomes stalled for 30 s first
        assert cut.seconds < QUICKLY_S
    unanswered = re.search(
        r"(\d+) of (\d+) submissions have no outcome", cut.answer.json()["detail"]
    )
    assert unanswered is not None, cut.answer.text
    assert int(unanswered[2]) == len(lines)
    assert len(lines) - cut.written <= int(unanswered[1]) <= len(lines)

    cluster.worker.start()
    cluster.worker.wait_ready(2)
    retried = cluster.post_until_answered(ndjson(lines), batch=True)
    outcomes = outcome_lines(retried[-1].content)
    assert [o["status"] for o in outcomes] == ["duplicate"] * len(lines)

    log = open_log(cluster.kafka, cluster.topics)
    try:
        assert all(report.ok for report in log.verify())
        stored = [
            (r["source_event_id"], r["event_id"])
            for r in log.read_records("northwind")
            if r["source"] == "jira"
        ]
    finally:
        log.close()
    events = dict(stored)
    assert len(stored) == len(events) == len(lines)  # each source id once
    assert [events[f"big-{n}"] for n in range(len(lines))] == [o["event_id"] for o in outcomes]
