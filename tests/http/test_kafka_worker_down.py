"""The HTTP server on Kafka while its worker is down or being SIGKILLed: the real Tansu broker,
a real worker, a real ``serve``.

With no worker to answer, a request is told 503 with ``Retry-After`` within
``OKR_SUBMIT_TIMEOUT_SECONDS`` (it does not hang), also when the killed worker left a
transaction open on the outcomes (the server's committed read of them stalls: it gives up
within that wait too); its submissions stay on the intake topic
and are decided once a worker runs, so a retry then is a duplicate of the event they made, and
a refusal made while the worker was down is recorded all the same.
"""

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from events.kafka_client import Connection
from tests.http.support import check_in, ndjson, outcome_lines
from tests.http.worker_down_support import (
    ANSWERED_WITHIN_S,
    QUICKLY_S,
    Cluster,
    assert_unavailable,
    outcome,
    running_cluster,
    stop_during_a_request,
    transaction_left_open,
)

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
    refusals made meanwhile are recorded. (The stop is where no transaction of the worker's is
    open on the outcomes; the third test leaves one open.)"""
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

    stored, recorded = cluster.ledger()
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

    The stop may leave a transaction open on the outcomes (about one run in ten): the 503
    comes as quickly then (the server's stalled read gives up within its wait)."""
    lines = [orjson.dumps(check_in(value=n % 100, source_event_id=f"big-{n}")) for n in range(300)]
    cut = stop_during_a_request(cluster, lines, answered=len(lines) // 2)
    assert_unavailable(cut.answer)
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

    stored, _ = cluster.ledger()
    events = dict(stored)
    assert len(stored) == len(events) == len(lines)  # each source id once
    assert [events[f"big-{n}"] for n in range(len(lines))] == [o["event_id"] for o in outcomes]


def test_a_transaction_left_open_on_the_outcomes_holds_no_request_past_the_wait(
    cluster: Cluster,
) -> None:
    """The worker is down, and while a request waits for its outcome a transaction is opened
    on the outcomes and left open (as a worker killed inside one leaves it, until a broker
    aborts it; Tansu never does): the request's committed read of them stalls. It is still
    answered 503 within the server's wait (``OKR_SUBMIT_TIMEOUT_SECONDS``), not after the Kafka
    client's 30 s; so is each request after it (tests33: three took over the client's 60 s)."""
    cluster.worker.kill()
    answers: list[httpx.Response] = []
    post = threading.Thread(
        target=lambda: answers.append(cluster.post(orjson.dumps(check_in(source_event_id="o-0"))))
    )
    started = time.monotonic()
    post.start()
    time.sleep(0.5)  # the request has read where the outcomes end, and waits
    with transaction_left_open(cluster.kafka, cluster.topics["outcomes"]):
        post.join(timeout=ANSWERED_WITHIN_S)
        took = time.monotonic() - started
        (answer,) = answers
        assert_unavailable(answer)
        assert "stalled" in answer.json()["detail"], answer.text  # its read did stall
        assert took < QUICKLY_S, f"answered after {took:.1f}s"
        for n in range(1, 3):
            started = time.monotonic()
            answer = cluster.post(orjson.dumps(check_in(source_event_id=f"o-{n}")))
            took = time.monotonic() - started
            assert_unavailable(answer)
            assert took < QUICKLY_S, f"request {n} answered after {took:.1f}s"
