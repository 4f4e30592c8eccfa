"""The Kafka path's library floor: a pass-through worker made only of the libraries the real
worker uses, beside the real worker, in the same run.

Starts Tansu (or uses ``--address``). For each worker count of ``--workers``, on fresh topics
(:func:`events.kafka_admin.okr_topics`, ``--partitions``), ``--check-ins`` check-ins of the
benchmarks' workload over 12 orgs are produced at full speed (kafka-python, as
``benchmarks/kafka_throughput.py`` produces them), first to a **pass-through worker**, then to
the **real worker** (``kafka_throughput.run_workers``, the freshness phase skipped). The
pass-through worker keeps the real worker's process layout and libraries, with no logic of
ours:

- **main process**: one aiokafka consumer in a consumer group (``read_committed``, the Tansu
  group timings, the worker's fetch sizes) reading intake and ledger, as the worker's Faust
  consumer does; intake records go, at most ``sequencer_batch_size`` of a partition at a time,
  to a child process over a multiprocessing pipe (as ``ProcessRunner`` sends them: a sender
  thread, a results thread, calls in flight while the next fetch runs);
- **child process**: per call, one confluent-kafka transaction (the real writer's producer
  settings: ``acks=all``, idempotent, ``linger.ms=2``, 1 MiB batches, one transactional
  producer per owned partition): one ledger record per intake record (same key, the intake
  bytes padded to the size of a real ledger event, the origin header), acknowledged
  (delivery callbacks) before one outcome record each (a real outcome's bytes), then commit;
- **main process again**: the ledger records (from the same consumer), gathered as the
  projector gathers them (up to ``projector_batch_size``, ``projector_linger_s``), each batch
  inserted into an embedded chDB store made by the real migrations, through clickhouse-connect
  as Arrow streams (as :mod:`projections.store` inserts): a ``ledger-begun`` mark, the rows,
  the checkpoints. The rows are the real :class:`processors.projector.Projector`'s for a sample
  of the workload, built once, and replicated per event with the right org and sequence (the
  ledger offset + 1) by pyarrow: the libraries' cost, not our Python's.

Both are timed from the first produce until everything produced is inserted (pass-through) or
visible in the projections (real worker). Over that time the CPU of every process is read
(``kafka_throughput.CpuMeter``), and the machine's busy time. Printed side by side: events/s,
CPU µs per event by process, their total, what 2 cores allow at that cost (``2e6 / total``),
and the real worker's figures as a share of the floor's (the real workers' events/s, with
issue 8's targets, go to benchmarks/.work/figures/kafka_floor.json for
``benchmarks/summary.py``). The pass-through checks that every produced record was inserted
exactly once (rows counted in chDB). An anchor of the same run:
the CPU of one ledger batch's inserts into chDB at 100, 1,000 and 10,000 events (a fresh
store, in a process of its own): a fixed cost per batch and a cost per event.

Two pass-through workers each insert into an embedded store of their own (the library floor);
two real workers share an ``okr-ledger serve-store`` (see kafka_throughput.py).
Usage: python benchmarks/kafka_floor.py [--check-ins 100000] [--workers 1,2] [--partitions 6]
       [--linger 0.05] [--address host:port]
"""

import argparse
import asyncio
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection as PipeEnd
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import THROUGHPUT_TARGETS, Figures, at_least, children, cpu_seconds
from benchmarks.kafka_throughput import (
    KEY_RESULTS,
    ROLES,
    CpuMeter,
    Load,
    Run,
    _label,
    produce,
    run_workers,
)
from processors.kafka_config import GroupTimings, WorkerConfig

ORGS = 12
SAMPLE = 2000
"""Check-ins of the sample the real projector turns into the template rows."""
TANSU_TIMINGS = GroupTimings(
    session_timeout_s=3.0, heartbeat_interval_s=0.5, rebalance_timeout_s=3.0
)
"""The group timings the benchmarks give the real workers on Tansu."""
WORKER = WorkerConfig(servers=("unused",))
"""The real worker's defaults: batch sizes, linger, fetch bytes."""


# --- the template rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Templates:
    """The real projector's rows for ``events`` check-ins of one org, as Arrow tables."""

    events: int
    per_event: dict[str, Any]
    """table -> (pa.Table of the rows of ``events`` events, row -> event index (numpy))."""
    per_org: dict[str, Any]
    """table -> pa.Table of the rows one batch makes for one org (current state)."""
    checkpoint: Any
    """pa.Table of one org's checkpoint row."""
    ledger_bytes: float
    """Mean size of a real ledger record's value (a check-in event)."""
    intake_bytes: float
    """Mean size of the intake record it came from."""
    outcome: bytes
    """A real outcome record's value (accepted)."""


def build_templates(work: Path) -> Templates:
    """Sequence the setup and :data:`SAMPLE` check-ins of one org on the embedded ledger and
    project them with the real projector (the check-ins in one batch, as the worker does)."""
    import numpy as np
    import pyarrow as pa  # type: ignore[import-untyped]

    from benchmarks.workload import check_in, setup
    from events.intake_wire import encode_outcome
    from events.ledger import Ledger
    from events.sqlite_log import SqliteEventLog
    from processors import tables as t
    from processors.projector import Projector
    from projections.arrow_rows import arrow_schema

    org = "bench0"
    log = SqliteEventLog(work / "sample.db")
    ledger = Ledger(log)
    first = setup(org, KEY_RESULTS)
    check_ins = [check_in(org, i * ORGS, KEY_RESULTS) for i in range(SAMPLE)]
    outcomes = list(ledger.submit_many((raw, None) for raw in [*first, *check_ins]))
    assert all(o.status == "accepted" for o in outcomes), {o.status for o in outcomes}
    stored = [s.body for s in log.read_stored(org)][len(first) :]
    records = list(log.read_records(org))
    projector = Projector()
    projector.project_records(records[: len(first)])
    rows = projector.project_records(records[len(first) :])
    log.close()
    head = len(first) + 1

    def table(name: str, values: list[tuple[Any, ...]]) -> Any:
        schema = arrow_schema(name)
        columns = zip(*values, strict=True)
        arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)]
        return pa.Table.from_arrays(arrays, schema=schema)

    per_event: dict[str, Any] = {}
    per_org: dict[str, Any] = {}
    checkpoint = None
    for name, values in rows.items():
        if not values:
            continue
        if name == t.CHECKPOINTS:
            checkpoint = table(name, values)
        elif len(values) >= SAMPLE:  # rows of each event
            index = t.COLUMNS[name].index("sequence")
            ordered = sorted(values, key=lambda row: row[index])
            events = np.array([row[index] - head for row in ordered], dtype=np.int64)
            per_event[name] = (table(name, ordered), events)
        else:  # the batch's current state of what it changed
            per_org[name] = table(name, values)
    assert checkpoint is not None
    return Templates(
        SAMPLE,
        per_event,
        per_org,
        checkpoint,
        sum(map(len, stored)) / len(stored),
        sum(map(len, check_ins)) / len(check_ins),
        encode_outcome(outcomes[-1], None, 0, 0),
    )


def rows_of(templates: Templates, orgs: list[str], sequences: list[int]) -> list[tuple[str, Any]]:
    """The tables to insert for ledger records of ``orgs`` with ``sequences``: the template's
    rows, event ``j`` taking template event ``j % events``, their org and sequence replaced;
    then one org's current-state rows per org of the batch."""
    import numpy as np
    import pyarrow as pa

    count, size = len(orgs), templates.events
    full, rest = divmod(count, size)
    org_array = pa.array(orgs, type=pa.string())
    sequence_array = pa.array(np.array(sequences, dtype=np.uint64))
    tables: list[tuple[str, Any]] = []
    for name, (template, events) in templates.per_event.items():
        cut = int(np.searchsorted(events, rest))
        parts = [template] * full + [template.slice(0, cut)]
        which = np.concatenate(
            [events + block * size for block in range(full)] + [events[:cut] + full * size]
        )
        rows = pa.concat_tables(parts)
        schema = rows.schema
        for column, values in (("org_id", org_array), ("sequence", sequence_array)):
            index = schema.get_field_index(column)
            if index >= 0:
                taken = values.take(which).cast(schema.field(index).type)
                rows = rows.set_column(index, schema.field(index), taken)
        tables.append((name, rows))
    distinct = sorted(set(orgs))
    by_org = pa.array(distinct, type=pa.string())
    for name, template in templates.per_org.items():
        rows = pa.concat_tables([template] * len(distinct))
        which = np.repeat(np.arange(len(distinct)), template.num_rows)
        index = rows.schema.get_field_index("org_id")
        rows = rows.set_column(index, rows.schema.field(index), by_org.take(which))
        tables.append((name, rows))
    return tables


# --- the pass-through worker ----------------------------------------------------------------


@dataclass(frozen=True)
class PassConfig:
    address: str
    group: str
    topics: dict[str, str]
    store: str
    name: str
    templates: Templates
    app_id: str
    linger_s: float = WORKER.projector_linger_s
    """How long ledger records wait for more before they are inserted."""


def writer_main(pipe: PipeEnd, config: PassConfig) -> None:
    """The child: each call's records written in one transaction of the partition's producer
    (ledger records acknowledged first, then the outcomes, then the commit)."""
    from confluent_kafka import Producer

    from events.intake_wire import INTAKE_HEADER
    from events.kafka_transactions import producer_config

    templates = config.templates
    pad = b" " * max(0, round(templates.ledger_bytes - templates.intake_bytes))
    outcome = templates.outcome
    ledger, outcomes = config.topics["ledger"], config.topics["outcomes"]
    producers: dict[int, Any] = {}

    def producer_of(partition: int) -> Any:
        if partition not in producers:
            producer = Producer(
                producer_config(
                    config.address, "okr-floor", 30.0, f"{config.app_id}-seq-{partition}"
                )
            )
            producer.init_transactions(30)
            producers[partition] = producer
        return producers[partition]

    offsets: list[int] = []
    failures: list[Any] = []

    def report(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(error)
        else:
            offsets.append(message.offset())

    while True:
        call = pipe.recv()
        if call is None:
            break
        number, partition, records = call
        producer = producer_of(partition)
        if not records:  # fenced on assignment, as the worker's restore does first
            pipe.send((number, 0))
            continue
        offsets.clear()
        start = records[0][0]
        producer.begin_transaction()
        send = producer.produce
        for offset, key, value in records:
            header = [(INTAKE_HEADER, f"{partition}/{offset}/{start}".encode())]
            send(ledger, value + pad, key, partition, report, headers=header)
        left = producer.flush(30)
        assert not failures, failures
        assert not left, left
        for _offset, key, _value in records:
            send(outcomes, outcome, key, partition)
        producer.commit_transaction(30)
        pipe.send((number, len(offsets)))
    for producer in producers.values():
        producer.flush(10)


class PipeWriter:
    """The child process and its pipe, as ``ProcessRunner``: calls sent by a sender thread,
    results read by a results thread, at most ``depth`` calls in flight."""

    def __init__(self, config: PassConfig, depth: int = 16) -> None:
        context = get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self.process = context.Process(
            target=writer_main, args=(child_end, config), name="okr-floor-writer", daemon=True
        )
        self.process.start()
        child_end.close()
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="okr-floor-pipe")
        self._room = threading.Semaphore(depth)
        self._numbers = iter(range(1 << 62))
        self.written = 0
        self.calls = 0
        """Calls that wrote records (transactions)."""
        self._receiver = threading.Thread(target=self._receive, daemon=True)
        self._receiver.start()

    def _receive(self) -> None:
        while True:
            try:
                _number, count = self._pipe.recv()
            except (EOFError, OSError):
                return
            self.written += count
            self.calls += count > 0
            self._room.release()

    async def call(self, partition: int, records: list[tuple[int, bytes, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._sender, self._room.acquire)
        call = (next(self._numbers), partition, records)
        await loop.run_in_executor(self._sender, self._pipe.send, call)

    def close(self) -> None:
        self._pipe.send(None)
        self.process.join(30)
        self._sender.shutdown()


class Inserter:
    """Ledger records -> rows -> chDB, one batch at a time in a thread of its own."""

    def __init__(self, config: PassConfig, reports: Any) -> None:
        from processors import tables as t
        from projections.store import ProjectionStore

        self.store = ProjectionStore.open(config.store)  # the real migrations
        self.client, self.database = self.store.client, self.store.database
        self.columns = t.COLUMNS
        self.checkpoints = t.CHECKPOINTS
        self.templates = config.templates
        self.name, self.reports = config.name, reports
        self.inserted = 0
        self.batches = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="okr-floor-insert")
        self._last: Future[None] | None = None

    def _stream(self, rows: Any) -> bytes:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_table(rows)
        data: bytes = sink.getvalue().to_pybytes()
        return data

    def _raw(self, table: str, rows: Any) -> None:
        self.client.raw_insert(
            f"{self.database}.{table}", self.columns[table], self._stream(rows), fmt="ArrowStream"
        )

    def _marks(self, stream: str, orgs: list[str], positions: list[int]) -> Any:
        import pyarrow as pa

        template = self.templates.checkpoint
        count = len(orgs)
        return pa.Table.from_arrays(
            [
                pa.array([stream] * count, type=pa.string()),
                pa.array(orgs, type=pa.string()),
                pa.array(positions, type=pa.uint64()),
                template.column(3).take([0] * count),
            ],
            schema=template.schema,
        )

    def _insert(self, orgs: list[str], sequences: list[int]) -> None:
        heads: dict[str, int] = {}
        for org, sequence in zip(orgs, sequences, strict=True):
            heads[org] = max(heads.get(org, 0), sequence)
        names, positions = list(heads), list(heads.values())
        self._raw(self.checkpoints, self._marks("ledger-begun", names, positions))
        for table, rows in rows_of(self.templates, orgs, sequences):
            self._raw(table, rows)
        self._raw(self.checkpoints, self._marks("ledger", names, positions))
        self.inserted += len(orgs)
        self.batches += 1
        self.reports.put(("inserted", self.name, len(orgs), time.perf_counter()))

    async def insert(self, orgs: list[str], sequences: list[int]) -> None:
        """Start inserting these (after the previous batch)."""
        await self.wait()
        self._last = self._thread.submit(self._insert, orgs, sequences)

    async def wait(self) -> None:
        if self._last is not None:
            await asyncio.wrap_future(self._last)
            self._last = None

    def count(self) -> tuple[int, int]:
        """Rows of ``event_times`` (one per event) and distinct (org, sequence) among them."""
        row = self.client.query(
            f"SELECT count(), uniqExact(org_id, sequence) FROM {self.database}.event_times"
        ).result_rows[0]
        return int(row[0]), int(row[1])


def pass_through_main(config: PassConfig, reports: Any, stop: EventType) -> None:
    asyncio.run(_pass_through(config, reports, stop))


async def _pass_through(config: PassConfig, reports: Any, stop: EventType) -> None:
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
    from aiokafka.abc import ConsumerRebalanceListener  # type: ignore[import-untyped]

    from events.kafka_records import org_of_key

    timings = TANSU_TIMINGS
    intake, ledger = config.topics["intake"], config.topics["ledger"]

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            owned = sorted((tp.topic, tp.partition) for tp in assigned)
            reports.put(("assigned", config.name, owned, time.perf_counter()))

    writer = PipeWriter(config)
    inserter = Inserter(config, reports)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.address,
        group_id=config.group,
        client_id=f"okr-floor-{config.name}",
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(timings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(timings.heartbeat_interval_s * 1000),
        rebalance_timeout_ms=int(timings.rebalance_timeout_s * 1000),
        max_poll_interval_ms=int(timings.max_poll_interval_s * 1000),
        fetch_max_wait_ms=timings.fetch_max_wait_ms,
        fetch_max_bytes=WORKER.fetch_bytes,
        max_partition_fetch_bytes=WORKER.fetch_bytes,
    )
    consumer.subscribe([intake, ledger], listener=Listener())
    await consumer.start()
    size, linger = WORKER.sequencer_batch_size, config.linger_s
    orgs: list[str] = []
    sequences: list[int] = []
    since = 0.0
    fenced: set[int] = set()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=int(linger * 1000))
            for tp in consumer.assignment():
                if tp.topic == intake and tp.partition not in fenced:
                    await writer.call(tp.partition, [])
                    fenced.add(tp.partition)
            for tp, records in batches.items():
                if tp.topic == intake:
                    for at in range(0, len(records), size):
                        chunk = [(r.offset, r.key, r.value) for r in records[at : at + size]]
                        await writer.call(tp.partition, chunk)
                else:
                    if not orgs:
                        since = time.perf_counter()
                    orgs += [org_of_key(r.key) or "" for r in records]
                    sequences += [r.offset + 1 for r in records]
            due = time.perf_counter() - since >= linger
            if orgs and (len(orgs) >= WORKER.projector_batch_size or due):
                await inserter.insert(orgs, sequences)
                orgs, sequences = [], []
        await inserter.wait()
        counted = (*inserter.count(), inserter.batches, writer.calls)
        reports.put(("counted", config.name, counted, inserter.inserted))
    finally:
        await consumer.stop()
        writer.close()
        inserter.store.close()


def insert_cost(store: str, templates: Templates, sizes: Sequence[int], out: Any) -> None:
    """CPU milliseconds (this process, every thread: chDB's included) of one ledger batch's
    inserts (:meth:`Inserter._insert`) of each of ``sizes`` events, the median of 5 after one
    to warm up, on a fresh embedded store; put on ``out``."""
    import resource
    import statistics

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    inserter = Inserter(PassConfig("", "", {}, store, "probe", templates, ""), queue.Queue())
    orgs = [f"bench{i}" for i in range(ORGS)]
    sequence, found = 1, {}
    for size in sizes:
        samples = []
        for attempt in range(6):
            batch = [orgs[i % ORGS] for i in range(size)]
            before = cpu()
            inserter._insert(batch, list(range(sequence, sequence + size)))
            if attempt:
                samples.append((cpu() - before) * 1000)
            sequence += size
        found[size] = statistics.median(samples)
    inserter.store.close()
    out.put(found)


# --- the run --------------------------------------------------------------------------------


class FloorMeter(CpuMeter):
    """:class:`CpuMeter` with the pass-through's processes named."""

    def __init__(self, mains: Sequence[int]) -> None:
        super().__init__()
        self.mains = set(mains)

    def _read(self) -> dict[int, tuple[str, float]]:
        seen: dict[int, tuple[str, float]] = {}
        todo: list[tuple[int, str | None]] = [(os.getpid(), None)]
        while todo:
            pid, parent = todo.pop()
            label = self._name(pid, parent)
            seconds = cpu_seconds(pid)
            if seconds is not None:
                seen[pid] = (label, seconds)
            todo += [(child, label) for child in children(pid)]
        return seen

    def _name(self, pid: int, parent: str | None) -> str:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            command = b""
        if b"resource_tracker" in command:
            return "resource tracker"
        if pid in self.mains:
            return "worker main"
        if parent == "worker main":
            return "sequencer process"
        if pid == os.getpid():
            return "benchmark (producer, polls)"
        return _label(pid, parent)


@dataclass
class Floor:
    workers: int
    events: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0
    rows: int = 0
    threads: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    """Ledger batches inserted (each: a begun mark, one insert per table, the checkpoints)."""
    transactions: int = 0
    inserts_per_batch: int = 0
    """Calls of the child that wrote records (one transaction each)."""
    """CPU seconds of the first worker's main process by thread name."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def run_floor(
    address: str, args: argparse.Namespace, count: int, work: Path, templates: Templates
) -> Floor:
    from kafka import KafkaProducer  # type: ignore[import-untyped]

    from events.kafka_admin import ensure_topics, okr_topics
    from events.kafka_client import Connection

    kafka = Connection((address,), "okr-bench", timeout_s=30.0)
    suffix = uuid.uuid4().hex[:8]
    topics = {role: f"floor.{suffix}.{role}" for role in ROLES}
    ensure_topics(kafka, okr_topics(**topics, partitions=args.partitions))
    orgs = [f"bench{i}" for i in range(ORGS)]
    load = Load.build(orgs, args.check_ins)
    check_ins = load.check_ins
    context = get_context("spawn")
    reports: Any = context.Queue()
    stop = context.Event()
    result = Floor(count)
    processes = []
    with ExitStack() as stack:
        for i in range(count):
            config = PassConfig(
                address, f"floor-{suffix}", topics, f"chdb://{work / f'store-{i}'}", f"p{i}",
                templates, f"floor-{suffix}-{i}", args.linger,
            )  # fmt: skip
            process = context.Process(target=pass_through_main, args=(config, reports, stop))
            process.start()
            processes.append(process)

        def finish() -> None:
            stop.set()
            for process in processes:
                process.join(60)
                if process.is_alive():
                    process.kill()

        stack.callback(finish)
        owned: dict[str, list[tuple[str, int]]] = {}
        everything = 2 * args.partitions
        deadline = time.monotonic() + 120
        settled = 0.0
        while True:  # every partition owned, once, by someone, and stable for a while
            try:
                kind, name, value, _ = reports.get(timeout=0.5)
                if kind == "assigned":
                    owned[name] = value
                    settled = time.monotonic()
            except queue.Empty:
                pass
            spread = [tp for tps in owned.values() for tp in tps]
            ready = len(owned) == count and len(spread) == len(set(spread)) == everything
            if ready and all(owned.values()) and time.monotonic() - settled > 4.0:
                break
            assert time.monotonic() < deadline, f"group not settled: {owned}"
            assert all(p.is_alive() for p in processes), "a pass-through worker died"
        producer = KafkaProducer(
            bootstrap_servers=[address], acks="all", enable_idempotence=True, linger_ms=5,
            batch_size=512 * 1024,
        )  # fmt: skip
        stack.callback(producer.close)

        def wait_inserted(expected: int, timeout_s: float) -> float:
            """When ``expected`` more events are inserted (the moment the last insert ended)."""
            done, last = 0, 0.0
            deadline = time.monotonic() + timeout_s
            while done < expected:
                try:
                    kind, name, value, moment = reports.get(timeout=1.0)
                except queue.Empty:
                    assert all(p.is_alive() for p in processes), "a pass-through worker died"
                    assert time.monotonic() < deadline, f"{done} of {expected} inserted"
                    continue
                assert kind == "inserted", (kind, name, value)
                done += value
                last = moment
            return last

        produce(producer, topics["intake"], load.setup)  # the warm-up, as the real worker's
        wait_inserted(len(load.setup), 120)
        meter = FloorMeter([p.pid for p in processes if p.pid is not None])
        meter.begin()
        started = time.perf_counter()
        thread = threading.Thread(target=produce, args=(producer, topics["intake"], check_ins))
        thread.start()
        last = wait_inserted(len(check_ins), 1200)
        inserted = len(load.setup) + len(check_ins)
        thread.join()
        result.cpu, result.machine_busy = meter.end()
        result.threads = meter.worker_threads()
        result.events, result.seconds = len(check_ins), last - started
        stop.set()
        rows = events = counted = 0
        while counted < count:
            kind, name, value, inserted_here = reports.get(timeout=120)
            if kind == "inserted":  # beyond what was produced: a duplicate
                inserted += value
                continue
            assert kind == "counted", kind
            rows_here, distinct, batches, calls = value
            result.batches += batches
            result.transactions += calls
            assert rows_here == distinct == inserted_here, (name, rows_here, distinct)
            rows += rows_here
            events += inserted_here
            counted += 1
        produced = len(load.setup) + len(check_ins)
        assert inserted == produced, (inserted, produced)
        assert rows == events == produced, (rows, events, produced)
        result.rows = rows
        result.inserts_per_batch = 2 + len(templates.per_event) + len(templates.per_org)
    print(f"{count} pass-through worker(s): {result.rate:,.0f} events/s", flush=True)
    return result


ROLE_ORDER = (
    "benchmark (producer, polls)",
    "Tansu broker",
    "worker main",
    "sequencer process",
    "serve-store",
    "resource tracker",
    "other",
)


def print_side_by_side(floor: Floor, real: Run) -> None:
    roles = [r for r in ROLE_ORDER if r in floor.cpu or r in real.cpu]
    roles += sorted((set(floor.cpu) | set(real.cpu)) - set(roles))
    print(f"{floor.workers} worker(s), {floor.events:,} check-ins:")
    print(f"  {'':36} {'library floor':>14} {'real worker':>12} {'real / floor':>13}")

    def line(name: str, a: float, b: float, unit: str = "") -> None:
        ratio = f"{b / a:.2f}" if a else "-"
        print(f"  {name:36} {a:>14,.0f} {b:>12,.0f} {ratio:>13}{unit}")

    line("events/s end to end", floor.rate, real.rate)
    per_floor = {r: s * 1e6 / floor.events for r, s in floor.cpu.items()}
    per_real = {r: s * 1e6 / real.events for r, s in real.cpu.items()}
    print("  CPU µs per event by process:")
    for role in roles:
        a, b = per_floor.get(role, 0.0), per_real.get(role, 0.0)
        if a >= 0.5 or b >= 0.5:
            line(f"  {role}", a, b)
    total_floor, total_real = sum(per_floor.values()), sum(per_real.values())
    line("CPU µs per event, total", total_floor, total_real)
    line("2 cores allow (2e6 / total), events/s", 2e6 / total_floor, 2e6 / total_real)
    line(
        "machine busy, µs per event",
        floor.machine_busy * 1e6 / floor.events,
        real.machine_busy * 1e6 / real.events,
    )
    if real.poll_cpu:
        polls = sum(real.poll_cpu.values()) * real.polls * 1e6 / real.events
        print(
            f"  the real worker's figures include its {real.polls:,} polls of the projections, "
            f"~{polls:,.0f} µs per event: without them its total is {total_real - polls:,.0f} "
            f"µs (2 cores allow {2e6 / (total_real - polls):,.0f} events/s), "
            f"{(total_real - polls) / total_floor:.2f} times the floor's"
        )
    for name, run_threads, events in (
        ("floor", floor.threads, floor.events),
        ("real", real.worker_threads, real.events),
    ):
        threads = sorted(run_threads.items(), key=lambda i: -i[1])
        named = ", ".join(f"{n} {sec * 1e6 / events:,.0f}" for n, sec in threads if sec > 0)
        print(f"  worker main's threads ({name}), CPU µs per event: {named}")
    print(
        f"  pass-through: {floor.rows:,} events inserted, each exactly once (rows counted), "
        f"in {floor.batches:,} ledger batches (~{floor.rows / max(1, floor.batches):,.0f} "
        f"events each, {floor.inserts_per_batch} inserts each); {floor.transactions:,} "
        f"transactions (~{floor.rows / max(1, floor.transactions):,.0f} intake records each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check-ins", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--linger", type=float, default=WORKER.projector_linger_s,
        help="seconds the pass-through's ledger records wait for more before an insert (the "
        "real projector's default; the real worker keeps its own)",
    )  # fmt: skip
    parser.add_argument("--address", help="host:port of a broker (default: start Tansu)")
    args = parser.parse_args()
    from tests.kafka.broker import broker_address

    real_args = argparse.Namespace(
        check_ins=args.check_ins, orgs=ORGS, partitions=args.partitions, rate=5000.0,
        lag_samples=0, poll_ms=10.0, visible_poll_ms=20.0, stages=False,
    )  # fmt: skip
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="okr-bench-floor-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        address = broker_address(args.address, work, stack)
        templates, batch_ms = prepare(work)
        pairs = []
        for count in (int(c) for c in args.workers.split(",")):
            floor = beside(address, args, count, work, templates)
            directory = work / f"workers-{count}"
            directory.mkdir()
            pairs.append((floor, run_workers(real_args, address, count, directory)))
    print()
    print(
        "load average before the run (1, 5, 15 min): "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + f"; after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    report(args.linger, templates, batch_ms, pairs)


def prepare(work: Path) -> tuple[Templates, dict[int, float]]:
    """The template rows, and the anchor: the CPU of one ledger batch's inserts by size."""
    templates = build_templates(work)
    context = get_context("spawn")
    found: Any = context.Queue()
    sizes = (100, 1000, 10_000)
    probe = context.Process(
        target=insert_cost, args=(f"chdb://{work / 'probe'}", templates, sizes, found)
    )
    probe.start()
    batch_ms: dict[int, float] = found.get(timeout=300)
    probe.join()
    return templates, batch_ms


def beside(
    address: str, args: argparse.Namespace, count: int, work: Path, templates: Templates
) -> Floor:
    """The pass-through run of ``count`` workers (``args``: check_ins, partitions, linger)."""
    directory = work / f"floor-{count}"
    directory.mkdir()
    return run_floor(address, args, count, directory, templates)


def report(
    linger: float, templates: Templates, batch_ms: dict[int, float], pairs: list[tuple[Floor, Run]]
) -> None:
    """The floor beside the real workers, printed; their figures written."""
    print(
        f"pass-through records: ledger values padded from {templates.intake_bytes:,.0f} to "
        f"{templates.ledger_bytes:,.0f} bytes (a real ledger event's mean), outcomes "
        f"{len(templates.outcome)} bytes; inserts after {linger * 1000:.0f} ms of linger; "
        "rows per event "
        + ", ".join(
            f"{name} {rows.num_rows / templates.events:g}"
            for name, (rows, _) in templates.per_event.items()
        )
        + "; per org per batch "
        + ", ".join(f"{name} {rows.num_rows}" for name, rows in templates.per_org.items())
    )
    print(
        "anchor, same run: CPU of one ledger batch's inserts into chDB (a begun mark, one "
        "insert per table, the checkpoints), by events in the batch: "
        + ", ".join(
            f"{size:,} events {ms:,.0f} ms ({ms * 1000 / size:,.1f} µs per event)"
            for size, ms in batch_ms.items()
        )
    )
    for floor, real in pairs:
        print_side_by_side(floor, real)
    write_figures(pairs)


def write_figures(pairs: list[tuple[Floor, Run]]) -> None:
    """The real workers' events/s against issue 8's targets, the library floor of the same run
    as their anchor, for ``benchmarks/summary.py``."""
    figures = Figures("kafka_floor", "Kafka workers beside the library floor (pass-through)")
    for floor, real in pairs:
        limit = THROUGHPUT_TARGETS.get(floor.workers)
        total_floor = sum(floor.cpu.values()) * 1e6 / floor.events
        total_real = sum(real.cpu.values()) * 1e6 / real.events
        figures.add(f"Kafka, {floor.workers} real worker(s), end to end ({real.events:,} "
                    "check-ins)", real.rate, "events/s",
                    at_least(real.rate, limit) if limit is not None else None,
                    anchor=f"{floor.workers} pass-through worker(s) of the same libraries: "
                    f"{floor.rate:,.0f} events/s, {total_floor:,.0f} µs CPU/event",
                    note=f"{total_real:,.0f} µs CPU/event in all processes")  # fmt: skip
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
