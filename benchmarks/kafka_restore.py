"""Restore of a Kafka ledger partition on assignment: the sequencer's and the projector's, from
their state files and from scratch.

Starts Tansu (or uses ``--address``), fills one ledger partition with the first N events of
the takeover's ledger (``benchmarks/takeover_cost.py``: 12 orgs of 100 key results, their
chains interleaved in blocks as they were written; the suite's input with ``--inputs``, built
and cached in benchmarks/.work otherwise): each event's stored bytes produced as the ledger
record a worker writes (:func:`events.kafka_records.encode_event`, keyed by its org, with the
``okr-intake`` header of intake offset n, batches of ``--batch``). Deciding them is not what is
measured (it took three quarters of the fill through the sequencer), so the events are decided
once, by the suite's input. The sequencer's state file is kept batch by batch by the worker's
own code (:meth:`PartitionSequencer.keep` on a :class:`FileState`, which folds each batch's
events and notes where intake resumes), in a process beside the fill (batch n's offsets are
known, and checked); the last batch is written to the ledger but never kept, as a SIGKILL
mid-batch leaves it.
The records are produced with librdkafka (confluent-kafka), configured as the project's
producer (idempotent, ``acks=all``, 512 KiB batches): the same records at the same offsets, in
a third of the time kafka-python takes. The same pass projects each batch written with the
worker's :class:`LedgerProjection` and its partition state file, saved every
``OKR_PROJECTOR_SAVE_EVERY`` (100,000) records as a running worker saves it; the projector is
revoked (it saves) ``--tail`` records before the end, gets the partition back, projects the
tail and "dies" unsaved. Its store is built afterwards holding what a takeover reads of it:
the dead worker's checkpoints (every org at the end of the partition) and its claim. The rows
it inserted are not built (no takeover reads them).

Then, each in a fresh process (its peak RSS its own):

- sequencer ``file``: a worker's :class:`SequencerCore` restores the partition from its state
  file (fence, read what the ledger holds after it, find where to resume);
- sequencer ``fold``: without state files (folds the whole partition in memory);
- ``projector-file``: the projector takes the partition over (claim, checkpoints, its state
  file checked against the ledger and read) and replays the records after the file's offset,
  until it is ready to project the next record;
- ``projector-replay``: the same without state files: it replays the whole partition;

beside raw anchors of the same run, reading the same records: kafka-python (the project's
committed reader) and confluent-kafka consuming the whole partition, kafka-python reading the
tails the file restores read, and plain sqlite3 reading every row of the projector's state
file. The projector's restored state must equal the replayed one (every org's document and
check-ins, the chain heads): the run fails otherwise. Run at N and N/10 (``--ratio``): the
file restores must not grow with the ledger. Figures go to
benchmarks/.work/figures/restore.json (``benchmarks/summary.py``).

Usage: python benchmarks/kafka_restore.py [--events 1000000] [--batch 2000] [--tail 50000]
       [--ratio] [--address host:port] [--inputs DIR]
"""

import argparse
import hashlib
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figures, at_most, process_memory
from benchmarks.inputs import given, takeover_ledger_name
from events.intake_wire import Origin
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection, OutRecord, Reader
from events.kafka_records import RejectionLanes, encode_event, org_key
from events.outcomes import Accepted
from events.sequencer import DEFAULT_POLICY, record_digest
from events.sqlite_log import SqliteEventLog
from events.stored import parse_event
from processors import tables as t
from processors.kafka_config import Topics, WorkerConfig
from processors.kafka_projector import (
    LedgerProjection,
    LedgerRecord,
    PartitionStates,
    ledger_record_at,
)
from processors.kafka_sequencer import BatchOutput, PartitionSequencer
from processors.objectives import fresh_all
from processors.runner import DEFAULT_SAVE_EVERY
from processors.sequencer_core import SequencerCore
from processors.sequencer_state import FileState, state_file
from processors.snapshot_codec import chunks_of, encode_chunk, encode_org
from processors.snapshots import partition_state_file
from projections.store import ProjectionStore
from schemas.envelope import utc_now
from tests.kafka.broker import tansu_broker

LEDGER = (12, 100, 1_000_000)
"""The takeover's ledger (orgs, key results, check-ins) the partition is filled from: the
suite's input ``benchmarks/inputs.py`` builds for ``takeover_cost.py``; it holds a few more
events than check-ins (the orgs' set-up, corrections, retractions)."""
PROJECT_BATCH = 20_000
"""Records per projector batch: the agent's ``batch_size`` (``OKR_PROJECTOR_BATCH_SIZE``)."""


def ledger_path(inputs: Path | None, events: int) -> Path:
    """The ledger to fill from: the suite's input, or one built here (cached in
    benchmarks/.work, where ``takeover_cost.py`` caches the same one) of at least ``events``."""
    from benchmarks.projection_throughput import WORK
    from benchmarks.takeover_cost import build_ledger

    names = (*LEDGER[:2], max(LEDGER[2], events))
    if inputs is not None and names == LEDGER:
        return given(inputs, takeover_ledger_name(*names))
    path = WORK / takeover_ledger_name(*names)
    if not path.exists():
        started = time.monotonic()
        WORK.mkdir(exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build_ledger(partial, *names)
        partial.rename(path)
        print(f"built {path.name} in {time.monotonic() - started:.0f} s", flush=True)
    return path


def ledger_rows(path: Path, count: int) -> Iterator[list[tuple[Any, ...]]]:
    """The ledger's first ``count`` events in the order they were written (each org's next
    :data:`~benchmarks.takeover_cost.BLOCK` in turn), in chunks of stored rows (each its
    stored bytes, then :data:`~events.stored.STORED_COLUMNS`: ``org_id`` first)."""
    from benchmarks import takeover_cost  # not imported by the measures' processes

    log = SqliteEventLog(path, create=False, read_only=True)
    try:
        lengths = log.chain_lengths() or {}
        if sum(lengths.values()) < count:
            raise SystemExit(f"{path} holds {sum(lengths.values()):,} events, not {count:,}")
        after = dict.fromkeys(sorted(lengths), 0)
        made = 0
        while made < count:
            for org, done in list(after.items()):
                last = min(done + takeover_cost.BLOCK, lengths[org])
                for rows in log.stored_rows(org, done + 1, last):
                    yield rows[: count - made]
                    made += min(len(rows), count - made)
                after[org] = last
                if last == lengths[org]:
                    del after[org]
                if made == count:
                    return
    finally:
        log.close()


def batches(path: Path, count: int, batch: int) -> Iterator[list[tuple[Any, ...]]]:
    """:func:`ledger_rows` in batches of ``batch`` rows (the intake batches they stand for)."""
    pending: list[tuple[Any, ...]] = []
    for rows in ledger_rows(path, count):
        pending += rows
        while len(pending) >= batch:
            yield pending[:batch]
            pending = pending[batch:]
    if pending:
        yield pending


def keep_state_file(data_dir: Path, ledger: Path, events: int, batch: int) -> dict[str, float]:
    """The sequencer's state file, kept batch by batch by the worker's own code
    (:meth:`PartitionSequencer.keep` on a :class:`FileState`), the last batch never kept (see
    the module docstring). Batch n's events are at ledger offsets from n * ``batch`` on (the
    fill checks the offsets it is given), so this runs in its own process beside the fill:
    the file ends as it would after the same batches kept one by one after their writes."""
    state = FileState(state_file(data_dir, 0), 0)
    core, _, _ = PartitionSequencer.from_state(0, 1, DEFAULT_POLICY, state)
    clock = Clock()
    index = 0
    try:
        for rows in batches(ledger, events, batch):
            if index + len(rows) >= events:  # written, never kept: the file is one batch behind
                break
            with clock("events read (decided by the input)"):
                accepted = [
                    Accepted(record, record_digest(record), row[0])
                    for row in rows
                    for record in (parse_event(row[0]),)
                ]
                first = accepted[0]
                if encode_event(Accepted(first.record, first.digest)) != first.body:
                    raise SystemExit(f"offset {index}: not the bytes a worker writes")
            with clock("kept, committed"), core.deciding([], utc_now()):
                core.resume_offset = index + len(rows)  # as deciding the batch leaves it
                origins = [Origin(0, index + n, index) for n in range(len(rows))]
                output = BatchOutput(events=list(zip(accepted, origins, strict=True)))
                core.keep(output, index + len(rows), 0)
            index += len(rows)
    finally:
        (data_dir / "kept").write_text(str(state.ledger_next or 0))  # where the tail starts
        state.close()
    return clock.seconds


class FastProducer:
    """librdkafka's producer, configured as :class:`events.kafka_client.Producer`: only to
    fill the ledger faster (the same records at the same offsets)."""

    def __init__(self, address: str) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                "bootstrap.servers": address,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.size": 512 * 1024,
                "message.max.bytes": 4 * 1024 * 1024,
                "queue.buffering.max.messages": 1_000_000,
            }
        )

    def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        """Produce ``records`` (of one topic partition) in order; their offsets."""
        offsets: list[int] = []
        errors: list[str] = []

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                offsets.append(message.offset())

        for r in records:
            self._producer.produce(r.topic, r.value, r.key, r.partition, on_delivery=delivered,
                                   headers=list(r.headers) or None)  # fmt: skip
        if self._producer.flush(60) or errors or len(offsets) != len(records):
            raise SystemExit(f"the fill's produce failed: {errors[:3]}")
        return offsets

    def close(self) -> None:
        self._producer.flush(60)


class CheckpointSink:
    """The dying worker's store, as far as a takeover reads it: the checkpoints (every
    stream's, the last of each org's). The rows themselves are dropped: nothing reads them."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[Any, ...]] = {}

    def insert(self, rows: t.RowBatch, owners: Mapping[str, tuple[str, int]] | None = None) -> None:
        self.stage(rows)

    def stage(self, rows: t.RowBatch) -> None:
        for row in rows.get(t.CHECKPOINTS, ()):
            self.rows[row[0], row[1]] = row

    def commit(self) -> None:
        pass

    @property
    def staged_bytes(self) -> int:
        return 0

    def positions(self, stream: str = t.LEDGER_STREAM) -> dict[str, int]:
        return self.checkpoints().get(stream, {})

    def checkpoints(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for (stream, org), row in self.rows.items():
            found.setdefault(stream, {})[org] = int(row[2])
        return found

    def discard_unfinished(self, *_: Any, **__: Any) -> list[str]:
        return []

    def build(self, path: Path) -> None:
        """A new chDB store at ``path`` holding these checkpoints."""
        store = ProjectionStore.open(f"chdb://{path}")
        try:
            store.insert({t.CHECKPOINTS: list(self.rows.values())})
        finally:
            store.close()


class Clock:
    """Wall time per phase (``with clock("phase"):``), summed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, phase: str) -> "_Phase":
        return _Phase(self, phase)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds


class _Phase:
    def __init__(self, clock: Clock, phase: str) -> None:
        self.clock, self.phase = clock, phase

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *_: object) -> None:
        self.clock.add(self.phase, time.monotonic() - self.started)


def fill(
    address: str, topics: Topics, data_dir: Path, ledger: Path, events: int, *, batch: int,
    tail: int, save_every: int,
) -> dict[str, float]:  # fmt: skip
    """Write the first ``events`` events of ``ledger`` to ledger partition 0 and project them
    keeping the projector's state file, while another process keeps the sequencer's (see the
    module docstring)."""
    data_dir.mkdir(parents=True)
    keeper = subprocess.Popen(
        [sys.executable, __file__, "--keep-file", str(ledger), "--data-dir", str(data_dir),
         "--events", str(events), "--batch", str(batch)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    kafka = Connection((address,), "okr-bench-restore", 60.0)
    producer = FastProducer(address)
    sink = CheckpointSink()
    states = PartitionStates(data_dir, ledger_record_at(kafka, topics.ledger), save_every)
    projection = LedgerProjection(sink, 1, RejectionLanes(1), states=states)
    projection.take({0})
    projector = Projecting(projection, events - tail)
    clock = Clock()
    started = time.monotonic()
    written = 0
    try:
        stored = batches(ledger, events, batch)
        for index in range(0, events, batch):
            with clock("events read (decided by the input)"):
                rows = next(stored)
            with clock("records made"):
                # A ledger record's value is the event's canonical bytes, as stored
                # (encode_event of an Accepted that holds them); its key, the org's.
                out = [
                    OutRecord(topics.ledger, 0, org_key(row[1]), row[0],
                              (Origin(0, index + n, index).header(),))
                    for n, row in enumerate(rows)
                ]  # fmt: skip
            with clock("produced (librdkafka)"):
                sent = producer.send_all(out)
            if sent != list(range(index, index + len(rows))):
                raise SystemExit(f"batch {index}: written at offsets {sent[:3]}..., not {index}")
            written += len(sent)
            with clock("projected, projector file saved"):
                projector.add([(0, o, r.key, r.value) for o, r in zip(sent, out, strict=True)])
        with clock("projected, projector file saved"):
            projector.flush()
            projection.release(save=False)  # killed: its file is as its last save left it
    finally:
        (data_dir / "projector-kept").write_text(str(projector.saved_at))
        producer.close()
        with clock("waiting for the sequencer's file"):
            kept, _ = keeper.communicate()
    if keeper.returncode != 0:
        raise SystemExit("keeping the sequencer's state file failed (see above)")
    seconds = time.monotonic() - started
    if projector.saved_at == 0:
        raise SystemExit("the projector's file was never saved: ask a longer --tail")
    with clock("projector's store built"):
        sink.build(data_dir / "store")
    phases = {f"phase: {name}": s for name, s in clock.seconds.items()}
    phases |= {f"phase: beside, the sequencer's file: {name}": s
               for name, s in json.loads(kept.strip().splitlines()[-1]).items()}  # fmt: skip
    return {"events": written, "rejections": 0, "fill_s": seconds,
            "projector_tail": written - projector.saved_at, **phases}  # fmt: skip


class Projecting:
    """The dying projector of :func:`fill`: batches of :data:`PROJECT_BATCH` records, its
    file saved every ``save_every`` by :class:`LedgerProjection` itself, and once more by a
    revoke (then the partition assigned back) at offset ``cut``."""

    def __init__(self, projection: LedgerProjection, cut: int) -> None:
        self.projection, self.cut = projection, cut
        self.pending: list[LedgerRecord] = []
        self.saved_at = 0
        self.applied = 0

    def add(self, records: list[LedgerRecord]) -> None:
        self.pending += records
        while self.applied < self.cut <= self.applied + len(self.pending):
            self._apply(self.cut - self.applied)
            self.projection.release()  # a revoke: it saves
            back = self.projection.take({0})
            if back != {0: self.cut}:
                raise SystemExit(f"the projector took the partition back at {back}")
            self.saved_at = self.cut
        if len(self.pending) >= PROJECT_BATCH:
            self._apply(len(self.pending))

    def flush(self) -> None:
        if self.pending:
            self._apply(len(self.pending))

    def _apply(self, count: int) -> None:
        batch, self.pending = self.pending[:count], self.pending[count:]
        if batch:
            self.projection.apply(batch, [])
            self.applied += len(batch)


def measure(mode: str, address: str, topics: Topics, data_dir: Path) -> dict[str, Any]:
    """One restore (or raw read) in this process; its time and this process's peak RSS
    (``anchors``: the small raw reads, :data:`ANCHORS`, one after the other)."""
    if mode == "anchors":
        return {a: measure(a, address, topics, data_dir) for a in ANCHORS}
    if mode.startswith("projector-"):
        return measure_projector(mode, address, topics, data_dir)
    started = time.monotonic()
    read = 0
    if mode in ("file", "fold"):
        config = WorkerConfig(
            servers=(address,),
            app_id="okr-bench-restore",
            topics=topics,
            data_dir=data_dir,
            state_files=mode == "file",
            timeout_s=60.0,
        )
        core = SequencerCore(config)
        core.fence([0])  # what every owner does first (a producer's transactional id)
        fenced = time.monotonic()
        restored = core.restore(0)
        read = restored.folded
        seconds = time.monotonic() - started
        core.close()
        return {
            "seconds": seconds,
            "fence_s": fenced - started,
            "read": read,
            "peak_rss_mb": peak_rss_mb(),
        }
    if mode in ("kafka-python", "kafka-python-tail", "kafka-python-projector-tail"):
        start = None
        if mode != "kafka-python":
            name = "kept" if mode == "kafka-python-tail" else "projector-kept"
            start = int((data_dir / name).read_text())
        reader = Reader(Connection((address,), "okr-bench-read", 60.0))
        read = sum(1 for _ in reader.read(topics.ledger, {0: start}))
        seconds = time.monotonic() - started
        reader.close()
    elif mode == "confluent-kafka":
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": address,
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        low, high = consumer.get_watermark_offsets(TopicPartition(topics.ledger, 0), timeout=30)
        consumer.assign([TopicPartition(topics.ledger, 0, low)])
        last = low - 1
        while last < high - 1:
            for message in consumer.consume(10_000, timeout=1.0):
                if message.error() is None:
                    read += 1
                    last = message.offset() or 0
        seconds = time.monotonic() - started
        consumer.close()
    elif mode == "sqlite3-projector-file":
        db = sqlite3.connect(partition_state_file(data_dir, 0))
        size = 0
        for table in ("orgs", "check_in_chunks", "heads", "mark"):
            for row in db.execute(f"SELECT * FROM {table}"):
                read += 1
                size += sum(len(v) for v in row if isinstance(v, bytes | str))
        db.close()
        seconds = time.monotonic() - started
        return {"seconds": seconds, "read": read, "mb": size / 2**20, "peak_rss_mb": peak_rss_mb()}
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return {"seconds": seconds, "read": read, "peak_rss_mb": peak_rss_mb()}


def measure_projector(mode: str, address: str, topics: Topics, data_dir: Path) -> dict[str, Any]:
    """A new owner's takeover of ledger partition 0 (its store opened first, as a worker opens
    it at start): with its state file, or (``projector-replay``) without state files; until
    every record up to the store's checkpoints is replayed, then a digest of its state."""
    opening = time.monotonic()
    store = ProjectionStore.open(f"chdb://{data_dir / 'store'}")
    kafka = Connection((address,), "okr-bench-restore", 60.0)
    states = None
    if mode == "projector-file":
        states = PartitionStates(data_dir, ledger_record_at(kafka, topics.ledger))
    projection = LedgerProjection(store, 1, RejectionLanes(1), states=states)
    started = time.monotonic()
    starts = projection.take({0})
    taken = time.monotonic()
    reader = Reader(kafka)
    batch: list[LedgerRecord] = []
    for record in reader.read(topics.ledger, starts):
        batch.append((record.partition, record.offset, record.key, record.value))
        if len(batch) == PROJECT_BATCH:
            projection.apply(batch, [])
            batch = []
    projection.apply(batch, [])
    seconds = time.monotonic() - started
    reader.close()
    if projection.projected:
        raise SystemExit(f"{mode}: {projection.projected} events beyond the store's checkpoints")
    if (projection.restored == 1) != (mode == "projector-file"):
        raise SystemExit(f"{mode}: {projection.restored} partitions restored from a file")
    result: dict[str, Any] = {
        "seconds": seconds,
        "take_s": taken - started,
        "store_open_s": started - opening,
        "read": projection.replayed,
        "start": starts[0] or 0,
        "peak_rss_mb": peak_rss_mb(),
    }
    result["state_sha256"] = state_digest(projection)
    projection.release(save=False)
    store.close()
    return result


def state_digest(projection: LedgerProjection) -> str:
    """SHA-256 of the projector's whole state: each org's document with all its check-ins
    (read back from the file where evicted), the chain heads, the next offsets."""
    digest = hashlib.sha256()
    for _org_id, org in sorted(projection.projector.state.orgs.items()):
        fresh_all(org)
        counts: dict[str, tuple[int, list[int]]] = {}
        for key_result_id, key_result in org.key_results.items():
            log = org.check_ins_of(key_result)
            counts[key_result_id] = (len(log), [])
            for chunk in range(chunks_of(len(log))):
                digest.update(encode_chunk(log, chunk))
        digest.update(encode_org(org, "", counts))
    heads = sorted((o, h.sequence, h.hash) for o, h in projection.chain.rule.heads.items())
    digest.update(json.dumps([heads, sorted(projection.next_offsets.items())]).encode())
    return digest.hexdigest()


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: of this program, not of the parent it was forked from,
    which ``ru_maxrss`` would report after an exec)."""
    peak = process_memory().get("VmHWM")
    if peak is not None:
        return float(peak)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_measure(mode: str, address: str, topics: Topics, data_dir: Path) -> dict[str, Any]:
    arguments = [sys.executable, __file__, "--measure", mode, "--address", address]
    arguments += ["--data-dir", str(data_dir), "--topics", json.dumps(_topic_dict(topics))]
    started = time.monotonic()
    done = subprocess.run(arguments, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.monotonic() - started
    return result


def _topic_dict(topics: Topics) -> dict[str, str]:
    return {
        "intake": topics.intake,
        "ledger": topics.ledger,
        "rejections": topics.rejections,
        "outcomes": topics.outcomes,
    }


ANCHORS = ("kafka-python-tail", "kafka-python-projector-tail", "sqlite3-projector-file")
"""The raw reads of what the file restores read, measured in one process."""
PROCESSES = (
    "file",
    "projector-file",
    "fold",
    "kafka-python",
    "confluent-kafka",
    "projector-replay",
    "anchors",
)
"""What :func:`one_size` measures, each in a fresh process: the restores from a file first,
before any anchor or replay has read their file or tail (the page cache then holds only what
the fill wrote)."""


def one_size(
    address: str, ledger: Path, events: int, root: Path, *, batch: int, tail: int,
    save_every: int, fold: bool = True,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    kafka = Connection((address,), "okr-bench-restore", 60.0)
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(
        **{r: f"bench.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
    )
    ensure_topics(kafka, okr_topics(**_topic_dict(topics), partitions=1))
    data_dir = root / suffix
    filled = fill(address, topics, data_dir, ledger, events, batch=batch,
                  tail=min(tail, events // 2), save_every=save_every)  # fmt: skip
    print(
        f"{filled['events']:,} ledger events of {ledger.name}: written, kept in the "
        f"sequencer's state file and projected in "
        f"{filled['fill_s']:.1f} s ({filled['events'] / filled['fill_s']:,.0f} events/s); "
        f"the projector's file {filled['projector_tail']:,} records behind",
        flush=True,
    )
    for name, seconds in filled.items():
        if name.startswith("phase: "):
            print(f"    {name[7:]:<34} {seconds:7.2f} s", flush=True)
    results: dict[str, dict[str, Any]] = {"fill": filled}
    processes = [p for p in PROCESSES if fold or p != "fold"]
    for process in processes:
        measured = run_measure(process, address, topics, data_dir)
        if process == "anchors":
            results.update(
                {a: {**measured[a], "process_s": measured["process_s"]} for a in ANCHORS}
            )
        else:
            results[process] = measured
    for mode in (*ANCHORS, *(p for p in processes if p != "anchors")):
        r = results[mode]
        extra = ""
        if "fence_s" in r:
            extra = f"  (fencing {r['fence_s']:.2f} s of it)"
        elif "take_s" in r:
            extra = f"  (take {r['take_s']:.2f} s of it; store opened before it"
            extra += f" in {r['store_open_s']:.2f} s)"
        print(
            f"  {mode:<28} {r['seconds']:7.2f} s  {r['read']:>9,.0f} records read  "
            f"peak RSS {r['peak_rss_mb']:6.0f} MB  [process {r['process_s']:.1f} s]" + extra,
            flush=True,
        )
    restored, replayed = results["projector-file"], results["projector-replay"]
    if restored["state_sha256"] != replayed["state_sha256"]:
        raise SystemExit(
            f"the projector's state restored from its file ({restored['state_sha256']}) is not "
            f"the replayed one ({replayed['state_sha256']})"
        )
    print(
        "  the projector's restored state equals the replayed one "
        f"(SHA-256 {restored['state_sha256'][:16]}...)"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--tail", type=int, default=DEFAULT_SAVE_EVERY // 2,
                        help="records projected after the projector's last save")  # fmt: skip
    parser.add_argument("--save-every", type=int, default=DEFAULT_SAVE_EVERY)
    parser.add_argument("--ratio", action="store_true", help="also at events / 10")
    parser.add_argument("--fold-largest", action=argparse.BooleanOptionalAction, default=True,
                        help="the sequencer's fold from scratch at the largest size too (the "
                        "step's longest measure; always at events / 10)")  # fmt: skip
    parser.add_argument("--address", default=None)
    parser.add_argument("--inputs", type=Path, help="The suite's inputs (its takeover ledger).")
    parser.add_argument("--measure", choices=(*ANCHORS, *PROCESSES), help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--topics", help=argparse.SUPPRESS)
    parser.add_argument("--keep-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keep_file:
        kept = keep_state_file(args.data_dir, args.keep_file, args.events, args.batch)
        print(json.dumps(kept))
        return
    if args.measure:
        topics = Topics(**json.loads(args.topics))
        print(json.dumps(measure(args.measure, args.address, topics, args.data_dir)))
        return
    started = time.monotonic()
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory())).resolve()
        address = args.address or stack.enter_context(tansu_broker(root / "broker.log"))
        sizes = [args.events // 10, args.events] if args.ratio else [args.events]
        ledger = ledger_path(args.inputs, args.events)
        runs = {
            size: one_size(
                address,
                ledger,
                size,
                root,
                batch=args.batch,
                tail=args.tail,
                save_every=args.save_every,
                fold=args.fold_largest or size != max(sizes),
            )
            for size in sizes
        }
    if args.ratio:
        small, large = runs[sizes[0]], runs[sizes[1]]
        for mode in ("file", "fold", "kafka-python", "projector-file", "projector-replay"):
            if mode not in large:
                continue
            ratio = large[mode]["seconds"] / small[mode]["seconds"]
            print(f"{mode}: {sizes[1]:,} / {sizes[0]:,} events: {ratio:.2f}x the time")
    write_figures(runs)
    print(f"the whole step: {time.monotonic() - started:.1f} s")


def write_figures(runs: dict[int, dict[str, dict[str, Any]]]) -> None:
    """Issue 8's target (a 1,000,000-event partition restored in <= 10 s) on the largest
    size, the sequencer's and the projector's, for ``benchmarks/summary.py``."""
    figures = Figures("restore", "restore of a Kafka ledger partition on assignment")
    largest = max(runs)
    for size, run in runs.items():
        events = f"{run['fill']['events']:,.0f} events"
        reads = (
            f"reading the same records: kafka-python {run['kafka-python']['seconds']:.2f} s,"
            f" confluent-kafka {run['confluent-kafka']['seconds']:.2f} s"
        )
        file, fold = run["file"], run.get("fold")
        figures.add(f"sequencer restore from the state file ({events})", file["seconds"], "s",
                    at_most(file["seconds"], 10) if size == largest else None,
                    anchor=f"{reads}; the tail it reads, kafka-python "
                    f"{run['kafka-python-tail']['seconds']:.2f} s",
                    note=f"peak RSS {file['peak_rss_mb']:.0f} MB, {file['read']:,.0f} records "
                    "read")  # fmt: skip
        if fold is not None:
            figures.add(f"sequencer restore folded from scratch, no state file ({events})",
                        fold["seconds"], "s",
                        note=f"peak RSS {fold['peak_rss_mb']:.0f} MB")  # fmt: skip
        pfile, replay = run["projector-file"], run["projector-replay"]
        sqlite = run["sqlite3-projector-file"]
        figures.add(f"projector restore from the state file ({events})", pfile["seconds"], "s",
                    at_most(pfile["seconds"], 10) if size == largest else None,
                    anchor=f"{reads}; the tail it reads, kafka-python "
                    f"{run['kafka-python-projector-tail']['seconds']:.2f} s; its state file "
                    f"read whole with sqlite3 {sqlite['seconds']:.2f} s ({sqlite['mb']:.0f} MB)",
                    note=f"peak RSS {pfile['peak_rss_mb']:.0f} MB; take {pfile['take_s']:.2f} s, "
                    f"then {pfile['read']:,.0f} records replayed; state equal to the "
                    "replayed one")  # fmt: skip
        figures.add(f"projector restore replayed, no state file ({events})", replay["seconds"],
                    "s", anchor=reads, note=f"peak RSS {replay['peak_rss_mb']:.0f} MB")  # fmt: skip
    if len(runs) > 1:
        small, large = runs[min(runs)], runs[largest]
        for mode, who in (("file", "sequencer"), ("projector-file", "projector")):
            figures.add(f"{who} restore from the state file: {largest:,} / {min(runs):,} "
                        "events", large[mode]["seconds"] / small[mode]["seconds"], "x",
                        note="must not grow with the ledger")  # fmt: skip
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
