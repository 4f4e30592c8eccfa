"""The sequencer worker as a subprocess on a real broker, a submitter to its intake topic, and
the checks that every submission was recorded exactly once (used by the Kafka tests and the
benchmarks)."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer  # type: ignore[import-untyped]

from events.chain import verify_chain
from events.intake_wire import SUBMISSION_HEADER, Origin, peek_org
from events.kafka_client import Connection, Reader, partition_for
from events.kafka_log import KafkaEventLog
from events.kafka_records import ChainRule, decode_event, org_key
from events.outcomes import Outcome
from events.sequencer import Sequencer
from schemas.envelope import utc_now
from tests.kafka.conftest import TEST_PARTITIONS

Position = tuple[int, int]
"""An intake record's (partition, offset)."""

TANSU_TIMINGS = {
    "OKR_KAFKA_SESSION_TIMEOUT_SECONDS": "3",
    "OKR_KAFKA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "OKR_KAFKA_REBALANCE_TIMEOUT_SECONDS": "3",
    "OKR_KAFKA_FETCH_MAX_WAIT_MS": "50",
}
"""The group timings for Tansu (its minimum session is below Kafka's 6 s): a dead worker's
partitions move within about 5 s."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Worker:
    """``okr-ledger worker`` as a subprocess on the test's topics."""

    def __init__(
        self, kafka: Connection, topics: dict[str, str], log_path: Path, batch_size: int = 200
    ) -> None:
        self.env = {
            **os.environ,
            "OKR_LEDGER_URL": f"kafka://{kafka.servers[0]}",
            "OKR_KAFKA_TOPIC_INTAKE": topics["intake"],
            "OKR_KAFKA_TOPIC_LEDGER": topics["ledger"],
            "OKR_KAFKA_TOPIC_REJECTIONS": topics["rejections"],
            "OKR_KAFKA_TOPIC_OUTCOMES": topics["outcomes"],
            "OKR_SEQUENCER_BATCH_SIZE": str(batch_size),
            "OKR_LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
            "OKR_DATA_DIR": str(log_path.parent / "data"),
            "OKR_WORKER_APP_ID": f"okr-test-{topics['intake']}",
            "OKR_WORKER_WEB_PORT": str(free_port()),
            **TANSU_TIMINGS,
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.paused: list[int] = []
        """The processes :meth:`pause` SIGSTOPped, the worker's first (until it is resumed or
        killed)."""

    def start(self) -> None:
        self.paused = []
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from okr_ledger.worker_cli import worker; worker()"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def pause(self) -> None:
        """SIGSTOP the worker and its processes (its sequencer process writes the batches: a
        worker stopped alone would leave it to finish the batches it was given), and wait until
        they are stopped. They do nothing more until resumed or killed: a transaction open
        stays open, their connections stay up (for more than the group's session, 3 s, the
        worker's partitions would move)."""
        assert self.process is not None
        assert self.process.poll() is None, f"the worker died:\n{self.log_tail()}"
        self.process.send_signal(signal.SIGSTOP)  # first: it starts no other process now
        self.paused = [self.process.pid]
        for pid in descendants(self.process.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                self.paused.append(pid)
        deadline = time.monotonic() + 5  # a signal is sent at once, seen a moment later
        while not {process_state(pid) for pid in self.paused} <= {"T", "Z", "-"}:
            assert time.monotonic() < deadline, {p: process_state(p) for p in self.paused}
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT what :meth:`pause` stopped."""
        for pid in reversed(self.paused):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused = []

    def kill(self) -> None:
        """SIGKILL; a paused worker's processes too (a stopped process is killed all the
        same; its sequencer process dies with it anyway, but not every process it started
        does, and one left stopped would stay for good)."""
        assert self.process is not None
        assert self.process.poll() is None, f"the worker died:\n{self.log_tail()}"
        for pid in self.paused[1:]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.paused = []

    def stop(self) -> None:
        """SIGTERM, and SIGKILL after 10 s; a paused worker is killed at once (stopped, it
        would not see the SIGTERM before that wait ran out)."""
        if self.paused and self.alive():
            self.kill()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def wait_ready(self, starts: int, timeout_s: float = 60.0) -> None:
        """Until the worker's ``starts``-th start has restored its state and is sequencing.
        (A start takes a few seconds on a quiet machine; at a load of 15 on two cores one was
        still joining its group after 20 s.)"""
        deadline = time.monotonic() + timeout_s
        marker = f"sequencing {self.env['OKR_KAFKA_TOPIC_INTAKE']} partitions"
        while self.log_path.read_text(errors="replace").count(marker) < starts:
            assert self.alive(), f"the worker exited:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"the worker did not start:\n{self.log_tail()}"
            time.sleep(0.01)

    def wait_working(self, timeout_s: float = 2.0) -> None:
        """Until the worker wrote a batch since its last start (or ``timeout_s`` passed: it
        may have nothing left to do)."""
        deadline = time.monotonic() + timeout_s
        marker = f"sequencing {self.env['OKR_KAFKA_TOPIC_INTAKE']} partitions"
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if re.search(r"partition \d+: offsets", text[text.rfind(marker) :]):
                return
            assert self.alive(), f"the worker exited:\n{self.log_tail()}"
            time.sleep(0.005)

    def cut_batches(self) -> int:
        """Batches finished after a restart that a kill had cut: records of theirs were in
        the ledger or the rejections before it (``replayed``), their outcomes were not.

        Whether the rest of such a batch is decided after the restart depends on where the
        batch boundaries fall then: a full batch (a backlog) is read again whole, so all of it
        is replayed; counting only mixed batches missed every cut made during a backlog."""
        return cut_batches(self.log_path.read_text())

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        """The log's failures (each error with its traceback) and its last lines: a crash's
        cause is logged far above the shutdown it ends in."""
        return log_failures(self.log_path.read_text(errors="replace"))


def process_state(pid: int) -> str:
    """A process's state letter (Linux: ``T`` stopped, ``Z`` ended and not yet reaped...),
    ``-`` when it is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return "-"


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs, parents first (Linux: read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # it ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    parents = [pid]
    while parents:
        found_now = [child for parent in parents for child in children.get(parent, [])]
        found += found_now
        parents = found_now
    return found


FAILURE = re.compile(r"\[(ERROR|CRITICAL)\]|^Traceback")
"""A line of a worker's log that starts a failure."""
RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d ")
"""A line that starts a log record (a traceback's lines do not)."""


def log_failures(log: str, failures: int = 4, tail: int = 20) -> str:
    """The last ``failures`` failures of a worker's ``log`` (each error line and the lines
    that continue it, up to 30), then its last ``tail`` lines."""
    lines = log.splitlines()
    end = max(0, len(lines) - tail)
    blocks: list[list[str]] = []
    index = 0
    while index < end:
        if not FAILURE.search(lines[index]):
            index += 1
            continue
        block = [lines[index]]
        index += 1
        while index < end and len(block) < 30 and not RECORD.match(lines[index]):
            block.append(lines[index])
            index += 1
        blocks.append(block)
    shown = [line for block in blocks[-failures:] for line in [*block, "[...]"]]
    return "\n".join([*shown, *lines[-tail:]])


BATCH_WRITTEN = re.compile(r"\d+ events, \d+ rejections, (\d+) replayed")
"""The sequencer's line for each batch it wrote (at DEBUG), with its replayed records."""


def cut_batches(log: str) -> int:
    """:meth:`Worker.cut_batches` of a worker's ``log``: its batches with a replayed record."""
    return sum(1 for match in BATCH_WRITTEN.finditer(log) if int(match[1]))


@contextmanager
def running_worker(
    kafka: Connection, topics: dict[str, str], tmp: Path, batch_size: int = 200
) -> Iterator[Worker]:
    worker = Worker(kafka, topics, tmp / "worker.log", batch_size)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@dataclass
class Submitter:
    """Produces to intake like a source system: keyed by org, acks=all, idempotent."""

    kafka: Connection
    topic: str
    sent: dict[str, bytes] = field(default_factory=dict)
    """submission id -> bytes, in the order produced."""
    positions: dict[Position, str] = field(default_factory=dict)
    partitions: int = TEST_PARTITIONS
    """Of the intake topic: each record must land in its org's partition."""

    def __post_init__(self) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=list(self.kafka.servers), acks="all", enable_idempotence=True
        )

    def send(self, raws: list[bytes]) -> None:
        futures = []
        for raw in raws:
            submission_id = f"s{len(self.sent)}"
            self.sent[submission_id] = raw
            key = peek_org(raw, len(raw))
            future = self._producer.send(
                self.topic,
                value=raw,
                key=None if key is None else org_key(key),
                headers=[(SUBMISSION_HEADER, submission_id.encode())],
            )
            futures.append((submission_id, key, future))
        self._producer.flush()
        for submission_id, key, future in futures:
            metadata = future.get(timeout=10)
            if key is not None:  # the producers' partitioner is the ledger's
                assert metadata.partition == partition_for(org_key(key), self.partitions)
            self.positions[(int(metadata.partition), int(metadata.offset))] = submission_id

    def close(self) -> None:
        self._producer.close()


def wait_for_outcomes(
    kafka: Connection, topic: str, wanted: set[str], worker: Worker, timeout_s: float = 60.0
) -> dict[str, list[dict[str, Any]]]:
    """submission id -> its outcome records, once every wanted id has one."""
    found: dict[str, list[dict[str, Any]]] = {}
    reader = Reader(kafka)
    try:
        positions: dict[int, int | None] = dict.fromkeys(reader.partitions(topic))
        deadline = time.monotonic() + timeout_s
        while not wanted <= found.keys():
            assert worker.alive(), f"the worker exited:\n{worker.log_tail()}"
            assert time.monotonic() < deadline, (
                f"{len(wanted - found.keys())} submissions without an outcome after "
                f"{timeout_s:.0f}s; worker log:\n{worker.log_tail()}"
            )
            for record in reader.read(topic, positions):
                document = orjson.loads(record.value)
                found.setdefault(document["submission_id"], []).append(document)
            positions.update(reader.positions)
            time.sleep(0.1)
    finally:
        reader.close()
    return found


def reference(raws: list[bytes]) -> list[Outcome]:
    """The embedded ledger's outcomes for the same submissions, in the same order."""
    sequencer = Sequencer()
    now = utc_now()
    return [sequencer.submit(raw, now=now) for raw in raws]


def recorded_positions(kafka: Connection, topics: dict[str, str]) -> Counter[Position]:
    """How often each intake record is in the ledger (chain rule applied) or the rejections."""
    counts: Counter[Position] = Counter()
    reader = Reader(kafka)
    try:
        rule = ChainRule()
        ledger_partitions = dict.fromkeys(reader.partitions(topics["ledger"]))
        for record in reader.read(topics["ledger"], ledger_partitions):
            origin = Origin.from_headers(record.headers)
            if rule.admit(decode_event(record.value)) and origin is not None:
                counts[(origin.partition, origin.offset)] += 1
        lanes = dict.fromkeys(reader.partitions(topics["rejections"]))
        for record in reader.read(topics["rejections"], lanes):
            origin = Origin.from_headers(record.headers)
            assert origin is not None
            counts[(origin.partition, origin.offset)] += 1
    finally:
        reader.close()
    return counts


def open_log(kafka: Connection, topics: dict[str, str]) -> KafkaEventLog:
    return KafkaEventLog(
        kafka.servers, ledger_topic=topics["ledger"], rejections_topic=topics["rejections"]
    )


def assert_exactly_once(
    kafka: Connection, topics: dict[str, str], submitter: Submitter
) -> dict[str, str]:
    """Every submission recorded once (duplicates: never), chains whole; id -> status."""
    expected = reference(list(submitter.sent.values()))
    statuses: dict[str, str] = {s: o.status for s, o in zip(submitter.sent, expected, strict=True)}
    counts = recorded_positions(kafka, topics)
    assert set(counts) <= set(submitter.positions)
    for position, submission_id in submitter.positions.items():
        wanted = 0 if statuses[submission_id] == "duplicate" else 1
        assert counts[position] == wanted, (submission_id, statuses[submission_id])
    log = open_log(kafka, topics)
    try:
        for org_id, head in log.heads().items():
            report = verify_chain(org_id, log.read_records(org_id))
            assert report.ok, report
            assert report.events == head.sequence
    finally:
        log.close()
    return statuses


def open_kafka_log(kafka: Connection, topics: dict[str, str]) -> KafkaEventLog:
    return KafkaEventLog(
        kafka.servers,
        ledger_topic=topics["ledger"],
        rejections_topic=topics["rejections"],
        timeout_s=kafka.timeout_s,
    )
