"""The alerts timer in a group of real workers: it runs on exactly one, the worker that holds
rejections partition 0, and after a SIGKILL of that worker the survivor takes over publishing.

Two ``okr-ledger worker`` processes project into one served store (``serve-store``), so each
could answer the attention lists of every org. Each posts its alerts to a webhook of its own
(``/a``, ``/b``) on a receiver in the test: the path says which worker published. The alerts
topic says what was published, and how often.
"""

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.kafka_client import Connection, Reader
from tests.builders import org_setup
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.group_support import Group
from tests.kafka.worker_support import Submitter, Worker
from tests.projections.serve_store_support import start_store

pytestmark = pytest.mark.kafka

INTERVAL_S = 0.5
_REJECTIONS_HOLDER = re.compile(
    r"projecting ledger partitions \[[0-9, ]*\] and rejections lanes \[([0-9, ]*)\]"
)


class Receiver:
    """Webhooks on 127.0.0.1: every POST's path and JSON body, in order of arrival."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}"

    def paths(self, orgs: set[str]) -> set[str]:
        """The webhooks that got alerts of ``orgs``."""
        return {path for path, alert in list(self.posts) if alert["org_id"] in orgs}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def published(kafka: Connection, topic: str) -> list[tuple[str, str]]:
    """``(key, state)`` of every alert on the alerts topic, in order (none if it is not made)."""
    reader = Reader(kafka)
    try:
        if topic not in reader.topics():
            return []
        return [
            (r.key.decode(), orjson.loads(r.value)["state"])
            for r in reader.read(topic, {0: None})
            if r.key is not None
        ]
    finally:
        reader.close()


def wait_published(
    kafka: Connection, topic: str, orgs: set[str], group: Group, timeout_s: float = 90
) -> list[tuple[str, str]]:
    """Until every org of ``orgs`` has an alert on the topic."""
    deadline = time.monotonic() + timeout_s
    while True:
        alerts = published(kafka, topic)
        if orgs <= {key.partition("/")[0] for key, _ in alerts}:
            return alerts
        for name, worker in group.workers.items():
            assert worker.alive() or name == "killed", worker.log_tail()
        assert time.monotonic() < deadline, (
            f"no alerts of {orgs - {k.partition('/')[0] for k, _ in alerts}}: {alerts}\n"
            + "\n".join(f"{n}:\n{w.log_tail()}" for n, w in group.workers.items())
        )
        time.sleep(0.2)


def holds_rejections(worker: Worker) -> bool:
    """Whether the worker's latest assignment gave it rejections lane 0 (the timers')."""
    text = worker.log_path.read_text(errors="replace")
    found = _REJECTIONS_HOLDER.findall(text)
    return bool(found) and "0" in found[-1].replace(" ", "").split(",")


def test_the_alerts_timer_publishes_on_one_worker_and_the_survivor_takes_over_after_a_sigkill(
    kafka: Connection, topics: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    alerts_topic = f"test.{uuid.uuid4().hex[:12]}.alerts"
    store = start_store(tmp_path / "store")
    group = Group(kafka, topics, tmp_path, TEST_PARTITIONS, store.writer_url)
    group.env = {
        "OKR_ALERTS_INTERVAL_SECONDS": str(INTERVAL_S),
        "OKR_KAFKA_TOPIC_ALERTS": alerts_topic,
    }
    submitter = Submitter(kafka, topics["intake"])
    first, later = {f"early{i}" for i in range(6)}, {f"late{i}" for i in range(6)}
    try:
        for name in "ab":
            group.env["OKR_ALERT_WEBHOOK_URLS"] = json.dumps([receiver.url(name)])
            group.start(name)
        group.wait_spread(["a", "b"], {})
        submitter.send([raw for org in sorted(first) for raw in org_setup(org)])
        wait_published(kafka, alerts_topic, first, group)
        time.sleep(6 * INTERVAL_S)  # more ticks: a second publisher would have published too

        holders = [n for n in "ab" if holds_rejections(group.workers[n])]
        assert len(holders) == 1, holders
        (holder,) = holders
        survivor = "b" if holder == "a" else "a"
        assert receiver.paths(first) == {f"/{holder}"}  # only the holder's timer ticked
        before = published(kafka, alerts_topic)
        assert len(before) == len(set(before)), before  # each item published once
        assert {state for _, state in before} == {"open"}

        since = group.counts()
        group.workers[holder].kill()
        group.workers["killed"] = group.workers.pop(holder)
        group.wait_spread([survivor], since)
        # The projector logs its take (the lanes) after the sequencer logs the assignment:
        # a take that checks state files against the ledger can come seconds later.
        deadline = time.monotonic() + 60
        while not holds_rejections(group.workers[survivor]):
            assert time.monotonic() < deadline, group.workers[survivor].log_tail()
            time.sleep(0.1)

        submitter.send([raw for org in sorted(later) for raw in org_setup(org)])
        wait_published(kafka, alerts_topic, later, group)
        time.sleep(6 * INTERVAL_S)
        after = published(kafka, alerts_topic)
        assert after[: len(before)] == before
        assert len(after) == len(set(after)), after  # nothing published again on take-over
        assert {key.partition("/")[0] for key, _ in after[len(before) :]} <= later
        assert receiver.paths(later) == {f"/{survivor}"}
        assert receiver.paths(first) == {f"/{holder}"}  # the survivor re-posted nothing
    finally:
        submitter.close()
        group.stop_all()
        store.stop()
