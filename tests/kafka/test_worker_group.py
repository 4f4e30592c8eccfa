"""Workers in one consumer group, as real processes with real signals, while submissions stream.

Workers join, leave (SIGTERM), crash (SIGKILL) and pause (SIGSTOP until their partitions move
to another worker, then SIGCONT: a zombie that wakes up and tries to write, and must have a
write refused). They all project into one store (``okr-ledger serve-store``). Afterwards every
submission is in the ledger or the rejections exactly once, the chains verify with no gap, every
outcome any client could have read agrees with the ledger, and the projections equal a rebuild
of the ledger: beside the live ones (``rebuild``), then whole, current-state tables and every
org's answers included.
"""

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from events.kafka_client import Connection
from projections.queries import Moment
from tests.builders import check_ins, org_setup
from tests.kafka.answers_support import assert_equals_a_rebuild
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.group_support import (
    LATER,
    Group,
    assert_outcomes_agree_with_the_ledger,
    assignments,
    fenced,
    wait_projected,
)
from tests.kafka.projector_support import cli
from tests.kafka.worker_support import (
    Submitter,
    Worker,
    assert_exactly_once,
    wait_for_outcomes,
)
from tests.projections.serve_store_support import start_store

pytestmark = pytest.mark.kafka

ORGS = [f"org{i}" for i in range(9)]
"""Enough orgs that every partition has some."""


def workload(rounds: int) -> list[bytes]:
    """Every org's setup, then its check-ins in rounds, resends (duplicates) and rejections
    (an unknown key result, broken JSON)."""
    raws = [raw for org in ORGS for raw in org_setup(org)]
    chance = random.Random(5)
    for _ in range(rounds):
        batch = [raw for org in ORGS for raw in check_ins(3, org)]
        batch += chance.sample(batch, 3)
        batch += [next(check_ins(1, chance.choice(ORGS), key_result_id="nope")), b"{broken"]
        chance.shuffle(batch)
        raws.extend(batch)
    return raws


@dataclass
class Stream:
    """Produces submissions in chunks at about ``per_second``, in a thread; :meth:`burst`
    produces many at once (so that the workers have a backlog in hand)."""

    submitter: Submitter
    raws: list[bytes]
    per_second: float
    done: threading.Event = field(default_factory=threading.Event)
    _burst: threading.Event = field(default_factory=threading.Event)
    _burst_sent: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        position = 0
        try:
            while position < len(self.raws):
                size = 1500 if self._burst.is_set() else 50
                self.submitter.send(self.raws[position : position + size])
                position += size
                if self._burst.is_set():
                    self._burst.clear()
                    self._burst_sent.set()
                else:
                    time.sleep(size / self.per_second)
        finally:
            self._burst_sent.set()
            self.done.set()

    def burst(self) -> None:
        """Many submissions at once: from the stream while it runs, else new check-ins."""
        if not self.done.is_set():
            self._burst_sent.clear()
            self._burst.set()
            assert self._burst_sent.wait(timeout=60)
        if self.done.is_set():  # the stream's thread has ended: this one sends
            self.submitter.send([raw for org in ORGS for raw in check_ins(150, org)])


@contextmanager
def streaming(submitter: Submitter, raws: list[bytes], per_second: float) -> Iterator[Stream]:
    stream = Stream(submitter, raws, per_second)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            stream.run()
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield stream
    finally:
        thread.join()
    if failure:
        raise failure[0]


def test_workers_join_leave_crash_and_pause_while_submissions_stream(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    raws = workload(rounds=150)
    store = start_store(tmp_path / "store")
    group = Group(kafka, topics, tmp_path, TEST_PARTITIONS, store.writer_url)
    submitter = Submitter(kafka, topics["intake"])
    try:
        group.start("a")
        group.start("b")
        group.wait_spread(["a", "b"], {})
        with streaming(submitter, raws, per_second=100) as stream:  # through every step
            since = group.counts()
            group.start("c")  # joins: takes a share
            group.wait_spread(["a", "b", "c"], since)
            assert all(assignments(group.workers[n])[-1] for n in "abc")

            since = group.counts()
            group.workers["a"].stop()  # leaves
            group.wait_spread(["b", "c"], since)

            since = group.counts()
            group.workers["b"].kill()  # crashes: c takes everything once b's session ends
            group.wait_spread(["c"], since)

            since = group.counts()
            group.start("d")
            group.wait_spread(["c", "d"], since)

            zombie_waves(group, stream, "c", "d")
            assert stream.done.wait(timeout=120)
        outcomes = wait_for_outcomes(
            kafka, topics["outcomes"], set(submitter.sent), group.workers["d"], timeout_s=120
        )
        statuses = assert_exactly_once(kafka, topics, submitter)
        assert_outcomes_agree_with_the_ledger(kafka, topics, outcomes, statuses)
        assert {"accepted", "duplicate", "rejected"} <= set(statuses.values())
        wait_projected(group.workers["d"], store.writer_url, kafka, topics)
        env = {k: v for k, v in group.workers["d"].env.items() if k.startswith("OKR_")}
        rebuilt = cli(env, "rebuild")  # beside the live projections, on the same store
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert "identical" in rebuilt.stdout, rebuilt.stdout
        group.stop_all()
        assert_equals_a_rebuild(kafka, topics, store.writer_url, Moment(now=LATER))
    finally:
        submitter.close()
        group.stop_all()
        store.stop()


ZOMBIE_WAVES = 3
REFUSED = "another worker owns it now"
"""What a worker logs when Kafka refuses its write: its partition was fenced by another."""


def refused(worker: Worker) -> int:
    """How many of the worker's writes Kafka refused (another worker had fenced them)."""
    text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
    return text.count(REFUSED)


def zombie_waves(group: Group, stream: Stream, zombie: str, heir: str) -> None:
    """Pause ``zombie`` with a backlog in hand until ``heir`` fences all its partitions, then
    wake it: its write is refused, and it rejoins. A pause that caught it holding no batch
    (nothing refused) is tried again, up to :data:`ZOMBIE_WAVES` times."""
    before = refused(group.workers[zombie])
    for _ in range(ZOMBIE_WAVES):
        since = group.counts()
        fences = len(fenced(group.workers[heir]))
        stream.burst()  # the zombie has a backlog in hand when it stops, goes on when it wakes
        group.pause(zombie)  # its partitions move to the heir, which fences them
        group.wait_fenced(heir, set(range(TEST_PARTITIONS)), after=fences)
        # Woken once fenced, not once the heir has restored: on Tansu (no transaction
        # timeout) a transaction the paused zombie holds open can hold the heir's committed
        # reads until the zombie's client ends it (docs/ARCHITECTURE.md, "What ends a dead
        # worker's open transaction"); on Kafka its timeout ends it.
        group.resume(zombie)  # wakes up, writes what it held: refused; rejoins
        group.wait_spread([zombie, heir], since)
        # It rejoins only once its batch being written has ended (``revoke``): logged by then.
        if refused(group.workers[zombie]) > before:
            return
    raise AssertionError(
        f"the zombie held no batch: {ZOMBIE_WAVES} pauses and no write of {zombie} refused"
    )
