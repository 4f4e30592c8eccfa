"""The HTTP server on Kafka beside a worker that a test stops mid-request or keeps down: the
cluster (real Tansu broker, real worker, real ``serve``), posting until answered, stopping the
worker once it has answered part of a request, and the 503 a request is then answered."""

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from events.kafka_client import Connection, Reader
from okr_ledger.demo import demo_submissions
from okr_ledger.settings import Settings
from tests.http.support import (
    Server,
    cli,
    kafka_server_env,
    kafka_settings,
    make_key,
    ndjson,
    outcome_lines,
    running,
)
from tests.kafka.worker_support import Worker, open_log

log = logging.getLogger(__name__)

NDJSON = {"Content-Type": "application/x-ndjson"}
TIMEOUT_S = 2
"""``OKR_SUBMIT_TIMEOUT_SECONDS``: how long the server waits for a worker's answer."""
ANSWERED_WITHIN_S = 60.0
"""A request cut by the worker's death is answered within this after the kill, or it hung."""
QUICKLY_S = 15.0
"""... and is answered within this: ``TIMEOUT_S`` without an answer, also when the killed
worker left a Kafka transaction open on the outcomes (the server's stalled read gives up then
too), well before the Kafka client's 30 s."""


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

    def ledger(self) -> tuple[list[tuple[str, str]], Counter[bytes]]:
        """The ledger's chains verified; its ``jira`` events of ``northwind`` as (source id,
        event id), and how often each rejected raw submission is recorded."""
        log = open_log(self.kafka, self.topics)
        try:
            assert all(report.ok for report in log.verify())
            stored = [
                (r["source_event_id"], r["event_id"])
                for r in log.read_records("northwind")
                if r["source"] == "jira"
            ]
            return stored, Counter(r.raw for r in log.rejections())
        finally:
            log.close()

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


@contextmanager
def running_cluster(kafka: Connection, topics: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
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


class OutcomesWritten:
    """Counts the outcome records the worker has written since this was made, committed or
    not (``read_uncommitted``: a stopped worker's open transaction counts, so the count is at
    least what any committed read, the server's, can see)."""

    def __init__(self, kafka: Connection, topic: str) -> None:
        reader = Reader(kafka)
        try:
            starts = reader.ends(topic, reader.partitions(topic))
        finally:
            reader.close()
        self._kafka, self._topic, self._starts = kafka, topic, starts
        self._consumer = self._open()
        self.count = 0

    def _open(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            **self._kafka.options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            isolation_level="read_uncommitted",
        )
        tps = {p: TopicPartition(self._topic, p) for p in self._starts}
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            consumer.seek(tp, self._starts[p])
        return consumer

    def poll(self) -> int:
        """The count, with what one fetch brings."""
        self.count += sum(map(len, self._consumer.poll(timeout_ms=5).values()))
        return self.count

    def final(self, timeout_s: float = 30.0) -> int:
        """The count of every record written, read again from the start to the ends a fetch
        made now answers (call it once the worker can write no more)."""
        self._consumer.close()
        consumer = self._consumer = self._open()
        tps = [TopicPartition(self._topic, p) for p in self._starts]
        count = 0
        deadline = time.monotonic() + timeout_s
        while True:
            count += sum(map(len, consumer.poll(timeout_ms=20).values()))
            ends = [consumer.highwater(tp) for tp in tps]
            if all(
                e is not None and consumer.position(tp) >= e
                for e, tp in zip(ends, tps, strict=True)
            ):
                self.count = count
                return count
            assert time.monotonic() < deadline, f"outcomes read to {ends}: {count} so far"

    def settled(self, quiet_s: float = 0.2) -> int:
        """:meth:`final` once two reads ``quiet_s`` apart agree: a write the worker had handed
        to its socket before it was stopped may still reach the broker after it."""
        count = self.final()
        while True:
            time.sleep(quiet_s)
            again = self.final()
            if again == count:
                return count
            count = again

    def left_open(self, window_s: float = 1.0) -> bool:
        """Whether a transaction is open on the outcomes (call it once the worker is
        stopped): a committed read does not reach the ends within ``window_s``. (Reaching
        them settles it; not reaching them may also be a slow broker, taken as open.)"""
        consumer = KafkaConsumer(
            **self._kafka.options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            isolation_level="read_committed",
        )
        try:
            tps = [TopicPartition(self._topic, p) for p in self._starts]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self._starts[tp.partition])
            deadline = time.monotonic() + window_s
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=20)
                ends = [consumer.highwater(tp) for tp in tps]
                if all(
                    e is not None and consumer.position(tp) >= e
                    for e, tp in zip(ends, tps, strict=True)
                ):
                    return False
            return True
        finally:
            consumer.close()

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Cut:
    """A request whose worker was stopped, then killed, part of the way through it."""

    answer: httpx.Response
    written: int
    """Outcome records the worker had written (committed or not) when it was stopped."""
    left_open: bool
    """Whether the worker was stopped inside a transaction that had written outcomes."""
    seconds: float
    """From the kill to the request's answer."""


def stop_during_a_request(
    cluster: Cluster, lines: list[bytes], answered: int = 1, left_open: bool | None = None
) -> Cut:
    """Post ``lines`` as a batch; once the worker has written outcomes for ``answered`` of
    them (5 to a batch of its own), SIGSTOP it, so it cannot finish the rest, then SIGKILL it.

    With ``left_open`` given, the worker is stopped where a transaction of its is open on the
    outcomes (``True``) or none is (``False``): stopped where it is not, it is resumed and
    stopped again at its next outcomes. (Killed inside such a transaction, it stalls the
    server's committed reads of the outcomes until a broker aborts it: each request gives up
    on its read within its wait. A stop lands inside one rarely, measured: one stop in 9 to
    42, so ``True`` may need more stops than a request has batches.)

    Whether the stop came before the last of the request's outcomes is checked, not hoped
    for: it fails here, not as a 200 where a 503 was wanted."""
    assert 0 < answered < len(lines)
    written = OutcomesWritten(cluster.kafka, cluster.topics["outcomes"])
    answers: list[httpx.Response] = []
    stops = 0
    try:
        post = threading.Thread(target=lambda: answers.append(cluster.post(ndjson(lines), True)))
        post.start()
        deadline = time.monotonic() + 60
        while True:
            while written.poll() < answered:
                assert time.monotonic() < deadline, cluster.worker.log_tail()
                assert post.is_alive(), answers
            cluster.worker.pause()
            stops += 1
            at_stop = written.settled()
            assert at_stop < len(lines), (
                f"the worker had written {at_stop} outcomes for the {len(lines)} lines when "
                f"it was stopped (stop {stops}): the stop came too late to cut the request"
            )
            is_open = written.left_open()
            if left_open is None or is_open == left_open:
                break
            cluster.worker.resume()
            answered = at_stop + 1
    finally:
        written.close()
    cluster.worker.kill()
    killed = time.monotonic()
    post.join(timeout=ANSWERED_WITHIN_S)
    assert not post.is_alive(), f"the request hung: no answer {ANSWERED_WITHIN_S:g}s after the kill"
    (answer,) = answers
    cut = Cut(answer, at_stop, is_open, time.monotonic() - killed)
    log.info(
        "stopped at %s outcomes of %s lines (stop %s), a transaction %s; answered %s %.1fs "
        "after the kill",
        cut.written,
        len(lines),
        stops,
        "left open" if is_open else "not open",
        answer.status_code,
        cut.seconds,
    )
    return cut


@contextmanager
def transaction_left_open(kafka: Connection, topic: str) -> Iterator[None]:
    """A transaction open on every partition of ``topic``, with a record in each, as a worker
    killed inside its transaction leaves it (aborted on the way out)."""
    from confluent_kafka import Producer

    reader = Reader(kafka)
    try:
        partitions = reader.partitions(topic)
    finally:
        reader.close()
    producer = Producer(
        {"bootstrap.servers": ",".join(kafka.servers), "transactional.id": "okr-test-left-open"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for partition in partitions:
        producer.produce(topic, key=b"left-open", value=b"{}", partition=partition)
    assert producer.flush(30) == 0
    try:
        yield
    finally:
        producer.abort_transaction(30)
