"""The HTTP server on Kafka while its worker is down or being SIGKILLed: the real Tansu broker,
a real worker, a real ``serve``.

With no worker to answer, a request is told 503 with ``Retry-After`` within
``OKR_SUBMIT_TIMEOUT_SECONDS`` (it does not hang); its submissions stay on the intake topic
and are decided once a worker runs, so a retry then is a duplicate of the event they made, and
a refusal made while the worker was down is recorded all the same.
"""

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from events.kafka_client import Connection, Reader
from okr_ledger.demo import demo_submissions
from okr_ledger.settings import Settings
from tests.http.support import (
    Server,
    check_in,
    cli,
    kafka_server_env,
    kafka_settings,
    make_key,
    ndjson,
    outcome_lines,
    running,
)
from tests.kafka.worker_support import Worker, open_log

pytestmark = pytest.mark.kafka

NDJSON = {"Content-Type": "application/x-ndjson"}
TIMEOUT_S = 2
"""``OKR_SUBMIT_TIMEOUT_SECONDS``: how long the server waits for a worker's answer."""


@dataclass
class Cluster:
    worker: Worker
    server: Server
    settings: Settings
    key: str
    """Source ``jira``, org ``northwind``."""
    kafka: Connection
    topics: dict[str, str]

    def post(self, body: bytes, batch: bool = False) -> httpx.Response:
        with self.server.client(self.key) as client:
            return client.post("/v1/submissions", content=body, headers=NDJSON if batch else {})

    def post_until_answered(self, body: bytes, batch: bool = False) -> list[httpx.Response]:
        """Posted again on each 503, as its ``Retry-After`` asks; every answer, the last not
        a 503."""
        answers = [self.post(body, batch)]
        deadline = time.monotonic() + 120
        while answers[-1].status_code == 503:
            assert time.monotonic() < deadline, self.worker.log_tail()
            time.sleep(int(answers[-1].headers["retry-after"]))
            answers.append(self.post(body, batch))
        return answers


@pytest.fixture
def cluster(kafka: Connection, topics: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
    """A worker sequencing in batches of 5, and a server on it, with the demo org submitted."""
    worker = Worker(kafka, topics, tmp_path / "worker.log", batch_size=5)
    env = kafka_server_env(worker.env, topics, OKR_SUBMIT_TIMEOUT_SECONDS=str(TIMEOUT_S))
    done = cli(env, "init")
    assert done.returncode == 0, done.stderr
    settings = kafka_settings(env, topics)
    demo_key, _ = make_key(settings, source="demo")
    key, _ = make_key(settings)
    worker.start()
    try:
        worker.wait_ready(1)
        with running(env, tmp_path / "server.log") as server:
            up = Cluster(worker, server, settings, demo_key, kafka, topics)
            demo = [raw for raw in demo_submissions() if b'"source":"demo"' in raw]
            setup = up.post_until_answered(ndjson(demo), batch=True)[-1]
            assert sum(o["status"] == "accepted" for o in outcome_lines(setup.content)) > 40
            up.key = key
            yield up
    finally:
        worker.stop()


def outcome(answer: httpx.Response) -> dict[str, Any]:
    document: dict[str, Any] = answer.json()
    found: dict[str, Any] = document.get("outcome", document)
    return found


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    problem = answer.json()
    assert problem["reason_code"] == "unavailable"
    assert "is a worker running?" in problem["detail"]


def kill_during_a_request(cluster: Cluster, lines: list[bytes]) -> httpx.Response:
    """Post ``lines`` as a batch and SIGKILL the worker once it has answered some of them
    (5 to a batch of its own: 24 batches for 120 lines); the request's answer."""
    reader = Reader(cluster.kafka)
    outcomes_topic = cluster.topics["outcomes"]
    partitions = reader.partitions(outcomes_topic)
    answers: list[httpx.Response] = []
    try:
        before = sum(reader.ends(outcomes_topic, partitions).values())
        post = threading.Thread(target=lambda: answers.append(cluster.post(ndjson(lines), True)))
        post.start()
        deadline = time.monotonic() + 60
        while sum(reader.ends(outcomes_topic, partitions).values()) == before:
            assert time.monotonic() < deadline, cluster.worker.log_tail()
            assert post.is_alive(), answers
            time.sleep(0.005)
    finally:
        reader.close()
    cluster.worker.kill()
    post.join(timeout=120)
    assert not post.is_alive(), "the request hung"
    (answer,) = answers
    return answer


def test_with_the_worker_killed_or_down_a_request_is_503_and_a_retry_is_one_event(
    cluster: Cluster,
) -> None:
    """The worker is SIGKILLed during a request of 120 lines: it is answered 503 (or 200 if
    the worker was quicker). Requests while it is down are 503 (together: one wait for the
    server's writer), not a hang. After its restart, what was produced meanwhile is decided
    first: every retry is a duplicate of one event, and the refusals made meanwhile are
    recorded."""
    (up,) = cluster.post_until_answered(orjson.dumps(check_in(source_event_id="up-1")))
    assert up.status_code in (200, 201), up.text
    mid = [orjson.dumps(check_in(value=n, source_event_id=f"mid-{n}")) for n in range(120)]
    cut = kill_during_a_request(cluster, mid)
    if cut.status_code != 200:
        assert_unavailable(cut)

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
