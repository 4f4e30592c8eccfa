"""The Kafka sequencer child's CPU per event, by stage, driven in process on a real broker.

Starts Tansu, makes fresh topics, and runs the real :class:`SequencerCore` (state files,
transactional writers, fenced on assignment) on the benchmarks' workload (12 orgs, their
setup, then check-ins), the way the sequencer process gets it: per partition, batches of
``--batch`` intake records, each pickled and unpickled as it crosses the pipe, its result too.
The setup is a warm-up; the check-ins are timed.

Prints CPU µs per check-in: the whole process (librdkafka's threads included) and, in the
calling thread, each stage (the innermost of the wrapped methods on the stack takes the time).
``--profile`` adds cProfile's top functions (the stage figures are then inflated).

Usage: python benchmarks/profiling/sequencer_profile.py [--check-ins 30000] [--batch 100]
       [--profile]
"""

import argparse
import cProfile
import functools
import gc
import pickle
import pstats
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.kafka_throughput import Load  # noqa: E402
from events.collector import collector_paused  # noqa: E402
from events.kafka_admin import ensure_topics, okr_topics  # noqa: E402
from events.kafka_client import Connection, partition_for  # noqa: E402
from events.kafka_records import org_key  # noqa: E402
from processors import sequencer_core as core_module  # noqa: E402
from processors.kafka_config import Topics, WorkerConfig  # noqa: E402
from processors.kafka_sequencer import IntakeBatch, IntakeRecord, PartitionSequencer  # noqa: E402
from processors.sequencer_core import SequencerCore, Verdict  # noqa: E402
from processors.sequencer_state import FileState  # noqa: E402
from schemas.envelope import utc_now  # noqa: E402
from tests.kafka.broker import tansu_broker  # noqa: E402

PARTITIONS = 6
ORGS = 12


class Stages:
    """CPU of the calling thread by stage: a wrapped method's time, less its wrapped callees'."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []
        self._since = 0.0

    def _switch(self, to: str | None, push: bool) -> None:
        now = time.thread_time()
        if self._stack:
            self.seconds[self._stack[-1]] += now - self._since
        self._since = now
        if push:
            assert to is not None
            self._stack.append(to)
        else:
            self._stack.pop()

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self._switch(label, True)
            try:
                return original(*args, **kwargs)
            finally:
                self._switch(None, False)

        setattr(owner, name, wrapped)

    def wrap_context(self, owner: Any, name: str, label: str) -> None:
        """A context manager's entry and exit (not the block) go to ``label``."""
        original = getattr(owner, name)
        stages = self

        class Timed:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def __enter__(self) -> Any:
                stages._switch(label, True)
                try:
                    return self.inner.__enter__()
                finally:
                    stages._switch(None, False)

            def __exit__(self, *exc: Any) -> Any:
                stages._switch(label, True)
                try:
                    return self.inner.__exit__(*exc)
                finally:
                    stages._switch(None, False)

        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return Timed(original(*args, **kwargs))

        setattr(owner, name, wrapped)


def instrument(stages: Stages) -> None:
    import events.kafka_transactions as transactions
    import processors.kafka_sequencer as ks
    import processors.sequencer_core as core
    import processors.sequencer_state as state
    from events import kafka_log, kafka_records, state_store

    stages.wrap(ks, "parse_intake", "parse intake headers")
    stages.wrap(ks, "probe", "probe")
    stages.wrap_context(state.FileState, "deciding", "state: begin + view load / commit")
    stages.wrap(ks.PartitionSequencer, "_framing", "framing (key, owner)")
    if hasattr(ks, "Decider"):
        stages.wrap(ks.Decider, "__call__", "decide (rules, canonical, hash)")
    else:
        stages.wrap(ks, "decide", "decide (rules, canonical, hash)")
    stages.wrap(state_store._View, "apply_record", "state apply")
    stages.wrap(ks, "outcome_record", "outcome records")
    stages.wrap(ks.PartitionSequencer, "keep", "keep (state file record)")
    stages.wrap(kafka_log.LedgerWriter, "_event_records", "ledger records (check, encode)")
    stages.wrap(transactions.BatchProducer, "_produce", "produce calls")
    stages.wrap(transactions.BatchProducer, "_send", "send (+flush wait)")
    stages.wrap_context(transactions.BatchProducer, "transaction", "begin/commit transaction")
    stages.wrap(kafka_log.LedgerWriter, "append", "append: other")
    stages.wrap(core.SequencerCore, "_write", "write: other")
    stages.wrap(ks.PartitionSequencer, "_decide_all", "decide_all: other")
    stages.wrap_context(ks.PartitionSequencer, "deciding", "deciding enter/exit: other")
    stages.wrap_context(core, "collector_paused", "collector_paused")
    stages.wrap(kafka_records.ChainRule, "admit", "chain rule admit")
    stages.wrap(core.SequencerCore, "sequence", "sequence: other")


def records_by_partition(load: Load) -> tuple[dict[int, list[IntakeRecord]], int]:
    """The setup's and the check-ins' intake records per partition; the setup's count."""
    by: dict[int, list[IntakeRecord]] = defaultdict(list)
    for org, raw in load.setup + load.check_ins:
        key = org_key(org)
        partition = partition_for(key, PARTITIONS)
        by[partition].append(IntakeRecord(partition, len(by[partition]), raw, (), key))
    return by, len(load.setup)


def offline(args: argparse.Namespace) -> None:
    """The deciding half alone, without Kafka: the calling thread's CPU per check-in, the
    least of ``--offline`` runs (each on a fresh state file), for A/B runs of that half."""
    orgs = [f"bench{i}" for i in range(ORGS)]
    load = Load.build(orgs, args.check_ins)
    by, _ = records_by_partition(load)
    setup_count = dict.fromkeys(by, 0)
    for org, _raw in load.setup:
        setup_count[partition_for(org_key(org), PARTITIONS)] += 1
    best = float("inf")
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    for _ in range(args.offline):
        with tempfile.TemporaryDirectory(prefix="seqprof-") as work:
            sequencers = {
                p: PartitionSequencer(p, PARTITIONS, state=FileState(Path(work) / f"{p}.db", p))
                for p in by
            }
            batches: list[tuple[int, list[IntakeRecord]]] = [
                (p, by[p][: setup_count[p]]) for p in by
            ]
            warm = len(batches)
            for p in by:
                for i in range(setup_count[p], len(by[p]), args.batch):
                    batches.append((p, by[p][i : i + args.batch]))
            batches = batches[:warm] + sorted(batches[warm:], key=lambda b: b[1][0].offset)
            now = utc_now()
            started = 0.0
            events = 0
            profiler = cProfile.Profile() if args.profile else None
            for i, (p, records) in enumerate(batches):
                if i == warm:
                    started = time.thread_time()
                    if profiler:
                        profiler.enable()
                with collector_paused():
                    output = sequencers[p].decide_batch(records, now)
                events += len(output.events) if i >= warm else 0
            seconds = time.thread_time() - started
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
            assert events == args.check_ins, events
            best = min(best, seconds)
            for sequencer in sequencers.values():
                sequencer.state.close()
    print(f"offline: {best / args.check_ins * 1e6:.2f} µs/check-in (least of {args.offline})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-ins", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-stages", action="store_true")
    parser.add_argument(
        "--gc-threshold", type=int, default=0, help="default: the sequencer process's own"
    )
    parser.add_argument(
        "--offline",
        type=int,
        default=0,
        metavar="REPEATS",
        help="no broker: decide and keep the batches (a state file, no writes), REPEATS times",
    )
    args = parser.parse_args()
    if args.offline:
        offline(args)
        return
    orgs = [f"bench{i}" for i in range(ORGS)]
    load = Load.build(orgs, args.check_ins)
    by, _ = records_by_partition(load)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seqprof-")))
        address = stack.enter_context(tansu_broker(work / "tansu.log"))
        suffix = uuid.uuid4().hex[:8]
        names = {r: f"prof.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
        ensure_topics(
            Connection((address,), "prof", 15.0), okr_topics(**names, partitions=PARTITIONS)
        )
        config = WorkerConfig(
            servers=(address,),
            app_id=f"prof-{suffix}",
            topics=Topics(**names),
            data_dir=work / "data",
            timeout_s=15.0,
        )
        core = SequencerCore(config)
        stack.callback(core.close)
        partitions = sorted(by)
        core.fence(partitions)
        core.restore_all(partitions)
        setup_count = dict.fromkeys(partitions, 0)
        for org, _raw in load.setup:
            setup_count[partition_for(org_key(org), PARTITIONS)] += 1

        def run(partition: int, records: list[IntakeRecord]) -> int:
            batch = pickle.loads(pickle.dumps((0, "sequence", (partition, IntakeBatch(records)))))
            result = core.sequence(*batch[2])
            assert result.verdict is Verdict.WRITTEN, result
            pickle.loads(pickle.dumps((0, True, result)))
            return int(result.events)

        for p in partitions:  # warm-up: the orgs' setup
            run(p, by[p][: setup_count[p]])
        batches: list[tuple[int, list[IntakeRecord]]] = []
        cursors = {p: setup_count[p] for p in partitions}
        while any(cursors[p] < len(by[p]) for p in partitions):
            for p in partitions:
                if cursors[p] < len(by[p]):
                    batches.append((p, by[p][cursors[p] : cursors[p] + args.batch]))
                    cursors[p] += args.batch
        stages = Stages()
        if not args.no_stages:
            instrument(stages)
        gc_time = [0.0, 0.0]  # spent, started
        collections = [0, 0, 0]

        def gc_watch(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_time[1] = time.thread_time()
            else:
                gc_time[0] += time.thread_time() - gc_time[1]
                collections[info["generation"]] += 1

        gc.callbacks.append(gc_watch)
        threshold = args.gc_threshold or getattr(core_module, "CHILD_GC_THRESHOLD", 0)
        if threshold:  # as the sequencer process sets it
            gc.set_threshold(threshold, *gc.get_threshold()[1:])
        profiler = cProfile.Profile(time.thread_time) if args.profile else None
        wall, cpu, mine = time.monotonic(), time.process_time(), time.thread_time()
        if profiler:
            profiler.enable()
        events = 0
        for p, records in batches:
            events += run(p, records)
        if profiler:
            profiler.disable()
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        mine = time.thread_time() - mine
        n = args.check_ins
        assert events == n, (events, n)
        print(f"{n} check-ins in {len(batches)} batches of <= {args.batch}, {wall:.2f}s wall")
        print(f"process CPU {cpu / n * 1e6:.1f} µs/event; calling thread {mine / n * 1e6:.1f};")
        print(f"other threads (librdkafka) {(cpu - mine) / n * 1e6:.1f}")
        print(
            f"cyclic GC: {gc_time[0] / n * 1e6:.1f} µs/event,"
            f" collections by generation {collections}"
        )
        if not args.no_stages:
            total = sum(stages.seconds.values())
            outside = mine - total
            rows = sorted(stages.seconds.items(), key=lambda kv: -kv[1])
            rows.append(("pickle, harness (outside sequence)", outside))
            for label, seconds in rows:
                print(f"  {label:40} {seconds / n * 1e6:7.1f} µs/event")
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(35)


if __name__ == "__main__":
    main()
