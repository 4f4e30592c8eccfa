"""Kafka workers end to end: throughput with one and two workers, freshness, memory, beside
the raw anchors of the same run.

Starts Tansu (or uses ``--address``). First the anchors, on the same submissions: kafka-python
producing them (``acks=all``, idempotent, as the submitters do), confluent-kafka producing them
(idempotent), aiokafka consuming them back (``getmany``, the records only), and clickhouse-connect
inserting as many rows into chDB. Then, for each worker count of ``--workers``, on fresh topics:

1. **throughput**: the orgs' setup, then ``--check-ins`` check-ins spread over the orgs (so over
   the partitions), produced at full speed (kafka-python); timed from the first produce until
   every org's checkpoint in the projections reaches its last sequence;
2. **freshness**: check-ins of fresh orgs (one per partition) produced at a steady
   ``--rate``; each one's lag runs from the moment it is due until the first poll of the
   projections that shows its sequence;
3. **memory**: the peak RSS of each worker, its sequencer process included, beside the peak RSS
   of a process that only imports what a worker imports and opens an empty embedded store.

Each poll of the projections is a query the worker's main process serves (chDB has a fixed
cost per query): the CPU of one poll is measured first on the idle worker, polled at the
throughput phase's pace, and the polls' share of each phase is printed beside its figures.

Over the throughput phase it also reads the CPU time (``/proc/<pid>/stat``: user + system) of
every process taking part: this benchmark itself (the producer thread and the polls), Tansu,
each worker's main process, its sequencer process, and the ``serve-store``; and the machine's
busy time (``/proc/stat``), which shows what other processes took meanwhile. It prints CPU
microseconds per check-in by process, their total, and what two cores allow at that cost
(``2e6 / total`` events/s): the ceiling of the design on this machine, whatever the wall-clock
figure.

One worker projects into its own embedded chDB store (polled through its query endpoint); two
or more share an ``okr-ledger serve-store`` (the only way several processes share an embedded
store; it takes CPU of its own). Workers run with the Tansu group timings.

``--floor`` runs ``benchmarks/kafka_floor.py``'s library floor in the same run: before each
worker count's real run, its pass-through workers on as many check-ins, on the same broker;
its side-by-side table and its figures (``kafka_floor.json``) then pair each with this run's
real workers, whose throughput phase is the one ``kafka_floor.py`` runs alone (``make bench``
runs this instead of both, to start and run the real workers once). Each phase's time is
printed at the end.
Usage: python benchmarks/kafka_throughput.py [--check-ins 200000] [--orgs 12] [--workers 1,2]
       [--rate 5000] [--lag-samples 20000] [--partitions 6] [--floor]
"""

import argparse
import asyncio
import itertools
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import (
    CLOCK_TICKS,
    RSS_LIMIT_MIB,
    THROUGHPUT_TARGETS,
    Figures,
    at_least,
    at_most,
    children,
    cpu_seconds,
    tasks,
)
from benchmarks.phases import Phases
from benchmarks.workload import check_in, setup
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection, partition_for
from events.kafka_records import org_key
from projections.query_credentials import TOKEN_FILE, read_token
from projections.store import ProjectionStore
from tests.kafka.broker import broker_address
from tests.kafka.group_support import Group
from tests.kafka.worker_support import Worker
from tests.projections.serve_store_support import served_store

KEY_RESULTS = 50
ROLES = ("intake", "ledger", "rejections", "outcomes")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass(frozen=True, slots=True)
class Load:
    setup: list[tuple[str, bytes]]
    check_ins: list[tuple[str, bytes]]
    heads: dict[str, int]

    @classmethod
    def build(cls, orgs: list[str], check_ins: int) -> "Load":
        first = [(org, raw) for org in orgs for raw in setup(org, KEY_RESULTS)]
        rest = spread(orgs, check_ins)
        heads = dict.fromkeys(orgs, KEY_RESULTS + 5)
        for org, _ in rest:
            heads[org] += 1
        return cls(first, rest, heads)


def spread(orgs: list[str], count: int) -> list[tuple[str, bytes]]:
    """``count`` check-ins, to one org after the other."""
    return [
        (orgs[i % len(orgs)], check_in(orgs[i % len(orgs)], i, KEY_RESULTS)) for i in range(count)
    ]


# --- anchors --------------------------------------------------------------------------------


def anchor_kafka_python(address: str, topic: str, records: list[tuple[str, bytes]]) -> float:
    producer = KafkaProducer(
        bootstrap_servers=[address], acks="all", enable_idempotence=True, linger_ms=5,
        batch_size=512 * 1024,
    )  # fmt: skip
    started = time.perf_counter()
    for org, raw in records:
        producer.send(topic, key=org_key(org), value=raw)
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    return len(records) / seconds


def anchor_confluent(address: str, topic: str, records: list[tuple[str, bytes]]) -> float:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": address, "enable.idempotence": True, "acks": "all",
         "linger.ms": 5, "batch.size": 1024 * 1024, "queue.buffering.max.messages": 2_000_000}
    )  # fmt: skip
    started = time.perf_counter()
    for org, raw in records:
        while True:
            try:
                producer.produce(topic, raw, org_key(org))
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return len(records) / (time.perf_counter() - started)


def anchor_aiokafka(address: str, topic: str, count: int) -> float:
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

    async def consume() -> float:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=address, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=50,
        )  # fmt: skip
        await consumer.start()
        try:
            read, started = 0, time.perf_counter()
            while read < count:
                batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
                read += sum(len(records) for records in batches.values())
            return count / (time.perf_counter() - started)
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def anchor_chdb(work: Path, rows: int) -> float:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{work / 'anchor-chdb'}")
    client.command(
        "CREATE TABLE t (org String, sequence UInt64, value Float64) "
        "ENGINE = MergeTree ORDER BY (org, sequence)"
    )
    data: list[list[Any]] = [
        [f"org{i % 12}" for i in range(rows)],
        list(range(rows)),
        [float(i) for i in range(rows)],
    ]
    started = time.perf_counter()
    for start in range(0, rows, 20_000):
        block = [column[start : start + 20_000] for column in data]
        client.insert("t", block, column_names=["org", "sequence", "value"], column_oriented=True)
    seconds = time.perf_counter() - started
    client.close()
    return rows / seconds


_BASELINE = """
import sys
import okr_ledger.worker_runtime, processors.kafka_worker, processors.sequencer_core
from projections.store import ProjectionStore
from benchmarks.figures import process_memory
if sys.argv[1:]:
    ProjectionStore.open(sys.argv[1]).close()
print(process_memory()["VmHWM"])
"""


def anchor_worker_baseline(store: Path | None) -> float:
    """Peak RSS (MiB) of a process that imports what a worker imports and, given ``store``,
    opens (and migrates) an empty embedded store there: what a worker holds before its first
    event."""
    arguments = [sys.executable, "-c", _BASELINE]
    if store is not None:
        arguments.append(f"chdb://{store}")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(arguments, capture_output=True, text=True, check=True, cwd=root)
    return float(done.stdout.split()[-1])


# --- the workers ----------------------------------------------------------------------------


def peak_mib(worker: Worker) -> float:
    """Peak RSS (VmHWM) of the worker and its sequencer process."""
    return sum(peak_parts(worker).values())


def peak_parts(worker: Worker) -> dict[str, float]:
    """Peak RSS (VmHWM, MiB) of the worker's main process and of each of its children."""
    if worker.process is None:
        return {}
    pids = [worker.process.pid]
    try:
        listed = Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children")
        pids += [int(p) for p in listed.read_text().split()]
    except OSError:
        pass
    found: dict[str, float] = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if match := re.search(r"VmHWM:\s+(\d+) kB", status):
            label = _label(pid, None if pid == worker.process.pid else "worker main")
            found[label] = found.get(label, 0.0) + int(match[1]) / 1024
    return found


def _label(pid: int, parent_label: str | None) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "other"
    if pid == os.getpid():
        return "benchmark (producer, polls)"
    if "tansu" in command or " broker " in command:
        return "Tansu broker"
    if "worker_cli" in command:
        return "worker main"
    if "serve-store" in command:
        return "serve-store"
    if parent_label == "worker main":
        return "resource tracker" if "resource_tracker" in command else "sequencer process"
    return "other"


def _machine_busy() -> float:
    """CPU seconds the machine spent busy (every core, every process), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def _threads(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of ``pid``, with its name (digits dropped: a pool's threads
    count together)."""
    found: dict[int, tuple[str, float]] = {}
    for task in tasks(pid):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = re.sub(r"[\d_-]+$", "", stat[stat.index("(") + 1 : stat.rindex(")")]) or "?"
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return found


@dataclass
class CpuMeter:
    """CPU seconds of this process and its descendants, by role, over a phase; and of the
    threads of the (first) worker's main process, by thread name."""

    start: dict[int, tuple[str, float]] = field(default_factory=dict)
    busy: float = 0.0
    threads: dict[int, tuple[str, float]] = field(default_factory=dict)

    def _read(self) -> dict[int, tuple[str, float]]:
        seen: dict[int, tuple[str, float]] = {}
        todo: list[tuple[int, str | None]] = [(os.getpid(), None)]
        while todo:
            pid, parent = todo.pop()
            label = _label(pid, parent)
            seconds = cpu_seconds(pid)
            if seconds is not None:
                seen[pid] = (label, seconds)
            todo += [(child, label) for child in children(pid)]
        return seen

    def _worker(self, seen: dict[int, tuple[str, float]]) -> int | None:
        workers = [pid for pid, (label, _) in seen.items() if label == "worker main"]
        return min(workers, default=None)

    def begin(self) -> None:
        self.start, self.busy = self._read(), _machine_busy()
        worker = self._worker(self.start)
        self.threads = _threads(worker) if worker is not None else {}

    def end(self) -> tuple[dict[str, float], float]:
        """CPU seconds by role since :meth:`begin`, and the machine's busy seconds."""
        by_role: dict[str, float] = {}
        seen = self._read()
        for pid, (label, seconds) in seen.items():
            before = self.start.get(pid, (label, 0.0))[1]
            by_role[label] = by_role.get(label, 0.0) + seconds - before
        return by_role, _machine_busy() - self.busy

    def worker_threads(self) -> dict[str, float]:
        """CPU seconds of the first worker's main process by thread name since :meth:`begin`."""
        worker = self._worker(self.start)
        by_name: dict[str, float] = {}
        if worker is None:
            return by_name
        for tid, (name, seconds) in _threads(worker).items():
            before = self.threads.get(tid, (name, 0.0))[1]
            by_name[name] = by_name.get(name, 0.0) + seconds - before
        return by_name


@dataclass
class Run:
    workers: int
    events: int = 0
    seconds: float = 0.0
    lags: list[float] = field(default_factory=list)
    achieved: float = 0.0
    peak: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds by process role over the throughput phase."""
    machine_busy: float = 0.0
    steady_cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds by process role over the freshness phase (the polls included)."""
    steady_seconds: float = 0.0
    worker_threads: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the first worker's main process by thread name (throughput phase)."""
    peak_parts: list[dict[str, float]] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    """Seconds of each stage of the freshness samples (``--stages``)."""
    flushes: list[tuple[int, float, float]] = field(default_factory=list)
    """The projector's inserts during the freshness phase (``--stages``): records, ms it
    took, ms from its first record to its start."""
    polls: int = 0
    """Polls of the projections over the throughput phase."""
    steady_polls: int = 0
    """Polls of the projections over the freshness phase."""
    poll_cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds of one poll by process role, measured with nothing else to do
    (:func:`poll_cost`)."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def produce(producer: Any, topic: str, records: list[tuple[str, bytes]]) -> None:
    for org, raw in records:
        producer.send(topic, key=org_key(org), value=raw)
    producer.flush()


def wait_visible(
    store: ProjectionStore,
    heads: dict[str, int],
    workers: list[Worker],
    timeout_s: float,
    poll_s: float = 0.02,
    *,
    polled: list[int] | None = None,
) -> float:
    """When every org of ``heads`` is visible; ``polled`` (if given) gets how many polls."""
    deadline = time.perf_counter() + timeout_s
    while True:
        positions = store.positions()
        seen = time.perf_counter()
        if polled is not None:
            polled.append(1)
        if all(positions.get(org, 0) >= head for org, head in heads.items()):
            return seen
        for worker in workers:
            assert worker.alive(), worker.log_tail()
        if seen > deadline:
            raise SystemExit(f"projections at {positions}, not {heads}")
        time.sleep(poll_s)


POLL_PROBE_S = 3.0
"""How long :func:`poll_cost` polls an idle worker."""


def poll_cost(store: ProjectionStore, poll_s: float) -> dict[str, float]:
    """CPU seconds of one poll of the projections, by process role, measured on an idle
    worker polled at the throughput phase's pace for :data:`POLL_PROBE_S`: each poll is a
    query the worker's main process serves (chDB has a fixed cost per query), so the
    throughput phase's CPU per event includes its polls' share."""
    meter = CpuMeter()
    meter.begin()
    polls, end = 0, time.perf_counter() + POLL_PROBE_S
    while time.perf_counter() < end:
        store.positions()
        polls += 1
        time.sleep(poll_s)
    cpu, _ = meter.end()
    return {role: seconds / polls for role, seconds in cpu.items()}


@contextmanager
def store_of(
    group: Group, workers: list[Worker], served_url: str | None
) -> Iterator[ProjectionStore]:
    if served_url is not None:
        url = served_url
    else:
        worker = workers[0]
        token = read_token(Path(worker.env["OKR_DATA_DIR"]) / TOKEN_FILE)
        url = f"http://reader:{token}@127.0.0.1:{worker.env['OKR_WORKER_WEB_PORT']}/okr_ledger"
    deadline = time.monotonic() + 60
    while True:
        try:
            store = ProjectionStore.open(url, migrate=False)
            break
        except Exception:
            assert time.monotonic() < deadline, workers[0].log_tail()
            time.sleep(0.2)
    try:
        yield store
    finally:
        store.close()


def run_workers(args: argparse.Namespace, address: str, count: int, work: Path) -> Run:
    kafka = Connection((address,), "okr-bench", timeout_s=30.0)
    suffix = uuid.uuid4().hex[:8]
    topics = {role: f"bench.{suffix}.{role}" for role in ROLES}
    ensure_topics(kafka, okr_topics(**topics, partitions=args.partitions))
    orgs = [f"bench{i}" for i in range(args.orgs)]
    load = Load.build(orgs, args.check_ins)
    lag_orgs = [f"fresh{i}" for i in range(4 * args.partitions)]
    lag_orgs = list({partition_for(org_key(o), args.partitions): o for o in lag_orgs}.values())
    result = Run(count)
    with ExitStack() as stack:
        served = None
        if count > 1:
            served = stack.enter_context(served_store(work / "store")).writer_url
        group = Group(kafka, topics, work, args.partitions, served, batch_size=2000)
        stack.callback(group.stop_all)
        names = [f"w{i}" for i in range(count)]
        for name in names:
            group.env["OKR_LOG_LEVEL"] = "DEBUG" if args.stages else "INFO"
            group.start(name)
        group.wait_spread(names, {})
        workers = [group.workers[n] for n in names]
        reader_url = None
        if served is not None:
            reader_url = served  # the writer may read too
        store = stack.enter_context(store_of(group, workers, reader_url))
        producer = KafkaProducer(
            bootstrap_servers=[address], acks="all", enable_idempotence=True, linger_ms=5,
            batch_size=512 * 1024,
        )  # fmt: skip
        stack.callback(producer.close)
        produce(producer, topics["intake"], load.setup)
        wait_visible(store, dict.fromkeys(orgs, KEY_RESULTS + 5), workers, 120)
        result.poll_cpu = poll_cost(store, args.visible_poll_ms / 1000)
        meter = CpuMeter()
        meter.begin()
        started = time.perf_counter()
        thread = threading.Thread(target=produce, args=(producer, topics["intake"], load.check_ins))
        thread.start()
        polled: list[int] = []
        seen = wait_visible(
            store, load.heads, workers, 1200, args.visible_poll_ms / 1000, polled=polled
        )
        result.polls = len(polled)
        thread.join()
        result.cpu, result.machine_busy = meter.end()
        result.worker_threads = meter.worker_threads()
        result.events, result.seconds = len(load.check_ins), seen - started
        print(f"{count} worker(s): {result.rate:,.0f} events/s end to end", flush=True)

        lag_setup = [(org, raw) for org in lag_orgs for raw in setup(org, KEY_RESULTS)]
        produce(producer, topics["intake"], lag_setup)
        wait_visible(store, dict.fromkeys(lag_orgs, KEY_RESULTS + 5), workers, 120)
        steady = spread(lag_orgs, args.lag_samples)
        waiting: dict[str, deque[tuple[int, int]]] = {org: deque() for org in lag_orgs}
        for i, (org, _) in enumerate(steady):  # org -> (sequence, index) in order
            waiting[org].append((KEY_RESULTS + 5 + len(waiting[org]) + 1, i))
        sent: list[float] = []
        start = time.perf_counter() + 0.05
        wall = time.time() - time.perf_counter()  # perf_counter -> epoch seconds

        def steady_produce() -> None:
            while (done := len(sent)) < len(steady):
                now = time.perf_counter()
                due = min(len(steady), int((now - start) * args.rate) + 1) if now >= start else 0
                for i in range(done, due):
                    org, raw = steady[i]
                    producer.send(topics["intake"], key=org_key(org), value=raw)
                    sent.append(time.perf_counter())
                time.sleep(0.002)
            producer.flush()

        thread = threading.Thread(target=steady_produce)
        meter.begin()
        thread.start()
        lags: dict[int, float] = {}
        deadline = start + len(steady) / args.rate + 120
        while len(lags) < len(steady):
            positions = store.positions()
            result.steady_polls += 1
            now = time.perf_counter()
            for org, queue in waiting.items():
                while queue and queue[0][0] <= positions.get(org, 0):
                    _, i = queue.popleft()
                    lags[i] = now - (start + i / args.rate)  # from the moment it was due
            assert now < deadline, f"{len(steady) - len(lags)} check-ins not visible"
            time.sleep(args.poll_ms / 1000)
        thread.join()
        result.steady_cpu, _ = meter.end()
        result.steady_seconds = time.perf_counter() - start
        result.lags = list(lags.values())
        if args.stages:
            samples = {
                (org, sequence): (
                    wall + start + i / args.rate,
                    wall + start + i / args.rate + lags[i],
                )
                for org, queue in _sample_keys(steady, lag_orgs).items()
                for sequence, i in queue
            }
            flushes: list[tuple[float, int, float, float]] = []
            result.stages = stage_split(
                address, topics["ledger"], samples, [w.log_path for w in workers], flushes
            )
            first_due = wall + start
            last_seen = max(seen for _, seen in samples.values()) if samples else first_due
            result.flushes = [f[1:] for f in flushes if first_due <= f[0] <= last_seen]
        result.achieved = (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 else 0.0
        result.peak = [peak_mib(w) for w in workers]
        result.peak_parts = [peak_parts(w) for w in workers]
    return result


def _sample_keys(
    steady: list[tuple[str, bytes]], orgs: list[str]
) -> dict[str, list[tuple[int, int]]]:
    """org -> (sequence, index in ``steady``) of the freshness samples."""
    keys: dict[str, list[tuple[int, int]]] = {org: [] for org in orgs}
    for i, (org, _) in enumerate(steady):
        keys[org].append((KEY_RESULTS + 5 + len(keys[org]) + 1, i))
    return keys


_LOG_TIME = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})")
_INTAKE_FETCHED = re.compile(r"intake partition (\d+): offsets (\d+)-(\d+) handed over")
_SEQUENCED = re.compile(r"partition (\d+): offsets (\d+)-(\d+), \d+ events")
_LEDGER_FETCHED = re.compile(r"ledger partition (\d+): offsets (\d+)-(\d+) handed over")
_PROJECTED = re.compile(
    r"projected (\d+) records in ([0-9.]+) ms, ([0-9.]+) ms after the first \(ledger ([0-9:\- ]*)\)"
)
STAGES = (
    "produced -> fetched by the sequencer",
    "fetched -> deciding (lane and pipe queues)",
    "deciding -> ledger records produced",
    "produced -> written and committed",
    "committed -> fetched by the projector",
    "fetched -> inserted (linger, flush)",
    "inserted -> seen by the poll",
)


def _log_seconds(line: str) -> float | None:
    match = _LOG_TIME.match(line)
    if match is None:
        return None
    moment = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S"))
    return moment + int(match[2]) / 1000


class _Ranges:
    """The first logged time of each (partition, offset) of interest, from range lines."""

    def __init__(self, wanted: dict[int, list[int]]) -> None:
        self.wanted = {p: sorted(set(offsets)) for p, offsets in wanted.items()}
        self.found: dict[tuple[int, int], float] = {}

    def add(self, partition: int, first: int, last: int, moment: float) -> None:
        import bisect

        offsets = self.wanted.get(partition, [])
        for offset in offsets[
            bisect.bisect_left(offsets, first) : bisect.bisect_right(offsets, last)
        ]:
            self.found.setdefault((partition, offset), moment)


def stage_split(
    address: str,
    ledger_topic: str,
    samples: dict[tuple[str, int], tuple[float, float]],
    logs: list[Path],
    flushes: list[tuple[float, int, float, float]],
) -> dict[str, list[float]]:
    """Seconds of each of :data:`STAGES` per freshness sample: ``samples`` maps (org,
    sequence) to (due, seen) in epoch seconds; the ledger is read back (each event's
    ``recorded_at``, its origin and its record's timestamp) and the workers' debug lines
    (:mod:`processors.kafka_worker`, :mod:`processors.kafka_projector`,
    :mod:`processors.sequencer_core`) give the other moments. ``flushes`` gets each of the
    projector's inserts: (when it ended, records, ms it took, ms since its first record)."""
    import orjson
    from kafka import KafkaConsumer, TopicPartition

    from events.intake_wire import Origin

    consumer = KafkaConsumer(
        bootstrap_servers=[address], enable_auto_commit=False, isolation_level="read_committed"
    )
    tps = [TopicPartition(ledger_topic, p) for p in consumer.partitions_for_topic(ledger_topic)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    events: dict[tuple[str, int], tuple[int, int, int, int, float, float]] = {}
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for record in records:
                value = orjson.loads(record.value)
                key = (value.get("org_id"), value.get("sequence"))
                origin = Origin.from_headers(record.headers or ())
                if key in samples and origin is not None:
                    recorded = datetime_seconds(value["recorded_at"])
                    events[key] = (
                        origin.partition, origin.offset, tp.partition, record.offset,
                        recorded, record.timestamp / 1000,
                    )  # fmt: skip
    consumer.close()
    intake_wanted: dict[int, list[int]] = {}
    ledger_wanted: dict[int, list[int]] = {}
    for ip, io, lp, lo, *_ in events.values():
        intake_wanted.setdefault(ip, []).append(io)
        ledger_wanted.setdefault(lp, []).append(lo)
    fetched, sequenced = _Ranges(intake_wanted), _Ranges(intake_wanted)
    handed, projected = _Ranges(ledger_wanted), _Ranges(ledger_wanted)
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            moment = _log_seconds(line)
            if moment is None:
                continue
            if match := _INTAKE_FETCHED.search(line):
                fetched.add(int(match[1]), int(match[2]), int(match[3]), moment)
            elif match := _LEDGER_FETCHED.search(line):
                handed.add(int(match[1]), int(match[2]), int(match[3]), moment)
            elif match := _SEQUENCED.search(line):
                sequenced.add(int(match[1]), int(match[2]), int(match[3]), moment)
            elif match := _PROJECTED.search(line):
                flushes.append((moment, int(match[1]), float(match[2]), float(match[3])))
                for part in match[4].split():
                    partition, _, span = part.partition(":")
                    first, _, last = span.partition("-")
                    projected.add(int(partition), int(first), int(last), moment)
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for key, (due, seen) in samples.items():
        if key not in events:
            continue
        ip, io, lp, lo, recorded, produced = events[key]
        moments = (
            due,
            fetched.found.get((ip, io)),
            recorded,
            produced,
            sequenced.found.get((ip, io)),
            handed.found.get((lp, lo)),
            projected.found.get((lp, lo)),
            seen,
        )
        if any(m is None for m in moments):
            continue
        for name, (before, after) in zip(STAGES, itertools.pairwise(moments), strict=True):
            stages[name].append(after - before)  # type: ignore[operator]
    return stages


def datetime_seconds(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check-ins", type=int, default=200_000)
    parser.add_argument("--orgs", type=int, default=12)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--rate", type=float, default=5000.0, help="steady check-ins per second")
    parser.add_argument("--lag-samples", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--poll-ms", type=float, default=10.0,
        help="pause between two polls of the projections while measuring freshness (each "
        "poll is a query the worker serves: it takes the worker's CPU and its store)",
    )  # fmt: skip
    parser.add_argument(
        "--visible-poll-ms", type=float, default=20.0,
        help="pause between two polls of the projections while timing the throughput phase "
        "(the figure's resolution; each poll takes the worker's CPU)",
    )  # fmt: skip
    parser.add_argument(
        "--stages", action="store_true",
        help="split each freshness sample into stages (the worker logs at DEBUG, which costs "
        "it some CPU; the ledger is read back afterwards): produce -> fetched by the "
        "sequencer -> decided -> written and committed -> fetched by the projector -> "
        "inserted -> seen by the poll",
    )  # fmt: skip
    parser.add_argument("--address", help="host:port of a broker (default: start Tansu)")
    parser.add_argument(
        "--floor", action="store_true",
        help="before each worker count's real run, the library floor's pass-through workers on "
        "as many check-ins (benchmarks/kafka_floor.py's run, beside these real runs)",
    )  # fmt: skip
    args = parser.parse_args()
    load_before = os.getloadavg()
    phases = Phases()
    with tempfile.TemporaryDirectory(prefix="okr-bench-throughput-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        address = broker_address(args.address, work, stack)
        kafka = Connection((address,), "okr-bench", timeout_s=30.0)
        anchor_topic = f"anchor.{uuid.uuid4().hex[:8]}"
        names = {role: f"{anchor_topic}.{role}" for role in ROLES}
        names["intake"] = anchor_topic
        ensure_topics(kafka, okr_topics(**names, partitions=args.partitions))
        records = Load.build([f"bench{i}" for i in range(args.orgs)], args.check_ins).check_ins
        anchors = {
            "kafka-python produce (acks=all, idempotent)": anchor_kafka_python(
                address, anchor_topic, records
            ),
            "confluent-kafka produce (acks=all, idempotent)": anchor_confluent(
                address, anchor_topic, records
            ),
            "aiokafka consume (getmany)": anchor_aiokafka(address, anchor_topic, 2 * len(records)),
            "clickhouse-connect inserts into chDB (rows)": anchor_chdb(work, len(records)),
        }
        baseline = anchor_worker_baseline(None), anchor_worker_baseline(work / "baseline-store")
        phases.done("broker, anchors")
        if args.floor:
            from benchmarks import kafka_floor

            templates, batch_ms = kafka_floor.prepare(work)
            phases.done("the floor's template rows and insert probe")
            linger = kafka_floor.WORKER.projector_linger_s
            floor_args = argparse.Namespace(
                check_ins=args.check_ins, partitions=args.partitions, linger=linger
            )
        runs, floors = [], []
        for count in (int(c) for c in args.workers.split(",")):
            if args.floor:
                floors.append(kafka_floor.beside(address, floor_args, count, work, templates))
                phases.done(f"{count} pass-through worker(s)")
            directory = work / f"workers-{count}"
            directory.mkdir()
            runs.append(run_workers(args, address, count, directory))
            phases.done(f"{count} worker(s)")
    phases.done("stop")
    print()
    print(
        f"{args.check_ins:,} check-ins over {args.orgs} orgs, {args.partitions} partitions; "
        f"freshness: {args.lag_samples:,} check-ins at {args.rate:,.0f}/s offered"
    )
    print(
        "load average before the run (1, 5, 15 min): "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + f"; after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print("raw anchors, same run, same records:")
    for name, figure in anchors.items():
        print(f"  {name:50} {figure:>12,.0f} /s")
    print(
        f"  peak RSS of a process with the worker's imports alone: {baseline[0]:,.0f} MiB; with "
        f"an empty embedded store opened too: {baseline[1]:,.0f} MiB"
    )
    for run in runs:
        print(f"{run.workers} worker(s):")
        print(f"  throughput, produced -> visible in ClickHouse: {run.rate:,.0f} events/s")
        p50, p99 = (percentile(run.lags, q) * 1000 for q in (0.5, 0.99))
        print(
            f"  freshness at {run.achieved:,.0f}/s achieved: p50 {p50:,.0f} ms, "
            f"p99 {p99:,.0f} ms, max {max(run.lags) * 1000:,.0f} ms"
        )
        print_stages(run)
        print_cpu(run)
        peaks = ", ".join(
            f"{mib:,.0f} MiB ("
            + ", ".join(f"{role} {part:,.0f}" for role, part in parts.items() if part >= 1)
            + ")"
            for mib, parts in zip(run.peak, run.peak_parts, strict=True)
        )
        print(f"  peak RSS per worker (its sequencer process included): {peaks}")
    print(phases.line())
    write_figures(args, runs, anchors, baseline)
    if args.floor:
        print()
        pairs = list(zip(floors, runs, strict=True))
        kafka_floor.report(floor_args.linger, templates, batch_ms, pairs)


FRESHNESS_RATE, FRESHNESS_P99_MS = 5000.0, 500.0
"""Issue 8: freshness p99 <= 500 ms at 5,000 events/s offered."""
RSS_LEDGER = 1_000_000
"""Issue 8's worker RSS target holds for a ledger of this many events."""


def write_figures(
    args: argparse.Namespace,
    runs: list[Run],
    anchors: dict[str, float],
    baseline: tuple[float, float],
) -> None:
    """Each run's throughput, freshness and worker peak RSS, with issue 8's targets where the
    run's sizes are the issue's, for ``benchmarks/summary.py``."""
    figures = Figures("kafka_throughput", f"Kafka workers end to end: {args.check_ins:,} check-ins")
    produce = anchors["kafka-python produce (acks=all, idempotent)"]
    consume = anchors["aiokafka consume (getmany)"]
    io = f"kafka-python produce {produce:,.0f}/s, aiokafka consume {consume:,.0f}/s"
    for run in runs:
        limit = THROUGHPUT_TARGETS.get(run.workers)
        figures.add(f"Kafka, {run.workers} worker(s), produced -> visible in ClickHouse",
                    run.rate, "events/s", at_least(run.rate, limit) if limit else None,
                    anchor=io)  # fmt: skip
        p50, p99 = (percentile(run.lags, q) * 1000 for q in (0.5, 0.99))
        judged = args.rate == FRESHNESS_RATE
        figures.add(f"Kafka, {run.workers} worker(s), freshness p99 at {args.rate:,.0f}/s offered",
                    p99, "ms", at_most(p99, FRESHNESS_P99_MS) if judged else None,
                    note=f"p50 {p50:,.0f} ms, {run.achieved:,.0f}/s achieved",
                    anchor=io)  # fmt: skip
        peak = max(run.peak)
        figures.add(f"Kafka, {run.workers} worker(s), peak RSS of a worker (sequencer process "
                    f"included; {args.check_ins:,}-event ledger)", peak, "MiB",
                    at_most(peak, RSS_LIMIT_MIB) if args.check_ins >= RSS_LEDGER else None,
                    anchor=f"the worker's imports alone {baseline[0]:,.0f} MiB; with an empty "
                    f"embedded store {baseline[1]:,.0f} MiB")  # fmt: skip
    print(f"figures: {figures.write()}")


def print_stages(run: Run) -> None:
    """p50 / p99 of each stage of the freshness samples (``--stages``)."""
    if not run.stages:
        return
    counted = len(next(iter(run.stages.values())))
    print(f"  freshness by stage ({counted:,} of {len(run.lags):,} samples matched), ms:")
    for name, values in run.stages.items():
        if values:
            p50, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.99))
            print(
                f"    {name:46} p50 {p50:>7,.0f}  p99 {p99:>7,.0f}  max {max(values) * 1000:>7,.0f}"
            )
    if run.flushes:
        parts = []
        for i, label in enumerate(("records", "ms inserting", "ms from the first record")):
            values = [float(f[i]) for f in run.flushes]
            parts.append(
                f"{label} p50 {percentile(values, 0.5):,.0f} p99 {percentile(values, 0.99):,.0f}"
            )
        print(f"  the projector's {len(run.flushes):,} inserts meanwhile: " + "; ".join(parts))


def print_cpu(run: Run) -> None:
    """The CPU budget of the throughput phase: microseconds per check-in by process."""
    if not run.events:
        return
    per = {role: seconds * 1e6 / run.events for role, seconds in run.cpu.items()}
    total = sum(per.values())
    parts = ", ".join(f"{role} {us:,.0f}" for role, us in sorted(per.items(), key=lambda i: -i[1]))
    print(f"  CPU µs per event by process (throughput phase): {parts}")
    if run.poll_cpu:
        polls = ", ".join(
            f"{role} {seconds * run.polls * 1e6 / run.events:,.0f}"
            for role, seconds in sorted(run.poll_cpu.items(), key=lambda i: -i[1])
            if seconds * run.polls * 1e6 / run.events >= 1
        )
        print(
            f"  of which the {run.polls:,} polls of the projections (each measured on the idle "
            f"worker, {run.poll_cpu.get('worker main', 0) * 1e3:.1f} ms of its CPU), µs per "
            f"event: {polls}"
        )
    threads = sorted(run.worker_threads.items(), key=lambda i: -i[1])
    named = ", ".join(f"{n} {sec * 1e6 / run.events:,.0f}" for n, sec in threads if sec > 0)
    print(f"  worker main's threads, CPU µs per event (throughput phase): {named}")
    if run.steady_seconds:
        cores = ", ".join(
            f"{role} {seconds / run.steady_seconds:.2f}"
            for role, seconds in sorted(run.steady_cpu.items(), key=lambda i: -i[1])
            if seconds > 0
        )
        print(f"  cores used during the freshness phase (the polls included): {cores}")
        if run.poll_cpu:
            share = run.poll_cpu.get("worker main", 0) * run.steady_polls / run.steady_seconds
            print(
                f"  of which the {run.steady_polls:,} polls (at the idle worker's cost): worker "
                f"main {share:.2f}"
            )
    machine = run.machine_busy * 1e6 / run.events
    allow = 2e6 / total if total else 0.0
    print(
        f"  CPU µs per event, total: {total:,.0f} (2 cores allow {allow:,.0f} events/s at that "
        f"cost); machine busy meanwhile: {machine:,.0f} µs per event, "
        f"{run.machine_busy / run.seconds:.2f} cores of 2"
    )


if __name__ == "__main__":
    main()
