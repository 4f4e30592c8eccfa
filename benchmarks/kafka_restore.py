"""Restore of a Kafka ledger partition on assignment: with the state file, and folded from scratch.

Starts Tansu (or uses ``--address``), fills one ledger partition with N events decided by the
worker's own sequencer (check-ins of 12 orgs) with its state file kept batch by batch, as a
running worker keeps it; the last batch is written to the ledger but the process "dies"
before the file keeps it (its SQLite transaction rolls back), as a SIGKILL mid-batch leaves it.

Then, each in a fresh process (its peak RSS its own), a worker's :class:`SequencerCore`
restores the partition as on assignment (fence, read, fold, find where to resume):

- ``file``: from the state file (reads only what the ledger holds after it);
- ``fold``: without state files (folds the whole partition in memory);

beside raw anchors of the same run, reading the same records: kafka-python (the project's
committed reader) and confluent-kafka consuming the whole partition, and kafka-python reading
the tail the file restore reads. Run at N and N/10 (``--ratio``): the file restore must not
grow with the ledger. Figures go to benchmarks/.work/figures/restore.json
(``benchmarks/summary.py``).

Usage: python benchmarks/kafka_restore.py [--events 1000000] [--batch 2000] [--ratio]
       [--address host:port]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figures, at_most, process_memory
from benchmarks.workload import check_in, setup
from events.intake_wire import intake_message
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection, OutRecord, Producer, Reader
from events.kafka_records import encode_event, encode_rejection, org_key
from events.sequencer import DEFAULT_POLICY
from processors.kafka_config import Topics, WorkerConfig
from processors.kafka_sequencer import IntakeRecord, PartitionSequencer
from processors.sequencer_core import SequencerCore
from processors.sequencer_state import FileState, state_file
from schemas.envelope import utc_now
from tests.kafka.broker import tansu_broker

ORGS = [f"org{i}" for i in range(12)]
KEY_RESULTS = 20


class _DiedError(Exception):
    """The generator's simulated death in the middle of its last batch."""


def intake(count: int) -> Iterator[bytes]:
    """The orgs' setup, then check-ins spread over the orgs: ``count`` submissions, made as
    they are needed (the generator holds no more than a batch)."""
    made = 0
    for org in ORGS:
        for raw in setup(org, KEY_RESULTS):
            if made == count:
                return
            made += 1
            yield raw
    for i in range(count - made):
        yield check_in(ORGS[i % len(ORGS)], i, KEY_RESULTS)


def fill(address: str, topics: Topics, data_dir: Path, events: int, batch: int) -> dict[str, float]:
    """Decide ``events`` submissions into ledger partition 0, keeping the state file."""
    kafka = Connection((address,), "okr-bench-restore", 60.0)
    producer = Producer(kafka)
    state = FileState(state_file(data_dir, 0), 0)
    core, _, _ = PartitionSequencer.from_state(0, 1, DEFAULT_POLICY, state)
    raws = intake(events)
    started = time.monotonic()
    written = 0
    rejections = 0
    try:
        for index in range(0, events, batch):
            records = []
            for offset, raw in zip(range(index, min(index + batch, events)), raws, strict=False):
                message = intake_message(raw, f"s{offset}", None)
                records.append(IntakeRecord(0, offset, message.value, message.headers, message.key))
            last = index + batch >= events
            try:
                with core.deciding(records, utc_now()) as output:
                    out = [
                        OutRecord(topics.rejections, 0, None, encode_rejection(r), (o.header(),))
                        for r, o in output.rejections
                    ]
                    rejections += len(out)
                    producer.send_all(out)
                    sent = producer.send_all(
                        [
                            OutRecord(
                                topics.ledger,
                                0,
                                org_key(e.record["org_id"]),
                                encode_event(e),
                                (o.header(),),
                            )
                            for e, o in output.events
                        ]
                    )
                    written += len(sent)
                    if last:  # written, never kept: the file is one batch behind
                        raise _DiedError
                    core.keep(output, sent[-1] + 1 if sent else None, rejections)
            except _DiedError:
                pass
    finally:
        (data_dir / "kept").write_text(str(state.ledger_next or 0))  # where the tail starts
        state.close()
        producer.close()
    seconds = time.monotonic() - started
    return {"events": written, "rejections": rejections, "fill_s": seconds}


def measure(mode: str, address: str, topics: Topics, data_dir: Path) -> dict[str, float]:
    """One restore (or raw read) in this process; its time and this process's peak RSS."""
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
    if mode == "kafka-python":
        reader = Reader(Connection((address,), "okr-bench-read", 60.0))
        read = sum(1 for _ in reader.read(topics.ledger, {0: None}))
        seconds = time.monotonic() - started
        reader.close()
    elif mode == "kafka-python-tail":
        start = int((data_dir / "kept").read_text())
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
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return {"seconds": seconds, "read": read, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: of this program, not of the parent it was forked from,
    which ``ru_maxrss`` would report after an exec)."""
    peak = process_memory().get("VmHWM")
    if peak is not None:
        return float(peak)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_measure(mode: str, address: str, topics: Topics, data_dir: Path) -> dict[str, float]:
    arguments = [sys.executable, __file__, "--measure", mode, "--address", address]
    arguments += ["--data-dir", str(data_dir), "--topics", json.dumps(_topic_dict(topics))]
    done = subprocess.run(arguments, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _topic_dict(topics: Topics) -> dict[str, str]:
    return {
        "intake": topics.intake,
        "ledger": topics.ledger,
        "rejections": topics.rejections,
        "outcomes": topics.outcomes,
    }


MODES = ("kafka-python-tail", "file", "fold", "kafka-python", "confluent-kafka")


def one_size(address: str, events: int, batch: int, root: Path) -> dict[str, dict[str, float]]:
    kafka = Connection((address,), "okr-bench-restore", 60.0)
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(
        **{r: f"bench.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
    )
    ensure_topics(kafka, okr_topics(**_topic_dict(topics), partitions=1))
    data_dir = root / suffix
    filled = fill(address, topics, data_dir, events, batch)
    print(
        f"{events:,} submissions: {filled['events']:,} ledger events, "
        f"{filled['rejections']:,} rejections, decided and written in {filled['fill_s']:.1f} s "
        f"({filled['events'] / filled['fill_s']:,.0f} events/s)",
        flush=True,
    )
    results = {"fill": filled}
    for mode in MODES:
        results[mode] = run_measure(mode, address, topics, data_dir)
        r = results[mode]
        print(
            f"  {mode:<18} {r['seconds']:7.2f} s  {r['read']:>9,.0f} records read  "
            f"peak RSS {r['peak_rss_mb']:6.0f} MB"
            + (f"  (fencing {r['fence_s']:.2f} s of it)" if "fence_s" in r else ""),
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--ratio", action="store_true", help="also at events / 10")
    parser.add_argument("--address", default=None)
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--topics", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        topics = Topics(**json.loads(args.topics))
        print(json.dumps(measure(args.measure, args.address, topics, args.data_dir)))
        return
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        address = args.address or stack.enter_context(tansu_broker(root / "broker.log"))
        sizes = [args.events // 10, args.events] if args.ratio else [args.events]
        runs = {size: one_size(address, size, args.batch, root) for size in sizes}
    if args.ratio:
        small, large = runs[sizes[0]], runs[sizes[1]]
        for mode in ("file", "fold", "kafka-python"):
            ratio = large[mode]["seconds"] / small[mode]["seconds"]
            print(f"{mode}: {sizes[1]:,} / {sizes[0]:,} events: {ratio:.2f}x the time")
    write_figures(runs)


def write_figures(runs: dict[int, dict[str, dict[str, float]]]) -> None:
    """Issue 8's target (a 1,000,000-event partition restored in <= 10 s) on the largest
    size, for ``benchmarks/summary.py``."""
    figures = Figures("restore", "restore of a Kafka ledger partition on assignment")
    largest = max(runs)
    for size, run in runs.items():
        events = f"{run['fill']['events']:,.0f} events"
        anchor = (
            f"reading the same records: kafka-python {run['kafka-python']['seconds']:.2f} s,"
            f" confluent-kafka {run['confluent-kafka']['seconds']:.2f} s; the tail the "
            f"file restore reads, kafka-python {run['kafka-python-tail']['seconds']:.2f} s"
        )
        file, fold = run["file"], run["fold"]
        figures.add(f"restore from the state file ({events})", file["seconds"], "s",
                    at_most(file["seconds"], 10) if size == largest else None, anchor=anchor,
                    note=f"peak RSS {file['peak_rss_mb']:.0f} MB, {file['read']:,.0f} records "
                    "read")  # fmt: skip
        figures.add(f"restore folded from scratch, no state file ({events})", fold["seconds"],
                    "s", note=f"peak RSS {fold['peak_rss_mb']:.0f} MB")  # fmt: skip
    if len(runs) > 1:
        small, large = runs[min(runs)], runs[largest]
        figures.add(f"restore from the state file: {largest:,} / {min(runs):,} submissions",
                    large["file"]["seconds"] / small["file"]["seconds"], "x",
                    note="must not grow with the ledger")  # fmt: skip
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
