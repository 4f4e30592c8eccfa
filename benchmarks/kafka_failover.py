"""Failover of the Kafka worker: SIGKILL one of two workers, time until its partitions move on.

Starts Tansu, fresh topics and two ``okr-ledger worker`` processes in one consumer group, with
the group timings for Tansu (``--session``/``--heartbeat``/``--rebalance``). A steady producer
submits to every partition. Each round:

1. waits until both workers own partitions (the group is spread);
2. SIGKILLs one of them (alternately) and notes, per partition it owned, the last intake offset
   acknowledged to the producer at that moment;
3. measures, per such partition, the time until an outcome appears for an intake record
   produced after the kill: only the survivor can have decided it (the partition made
   progress again); the round's failover is the slowest of its partitions;
4. restarts the killed worker (it rejoins and takes a share again), but not after the last:
   in a process started ahead, while the previous restart settled the group (or, in the first
   round, during the steady second), which imported the worker's modules and waits, idle,
   until it is told to run ``okr-ledger worker`` (:class:`Standby`: the restart no longer
   waits for the interpreter and the imports; it is neither a member of the group nor busy
   while a failover is measured: it is ready before the kill).

Prints p50 and max over the rounds, with the survivor's take-over (its assignment logged) and
its restore time, beside the raw anchor of the same run: a plain kafka-python consumer group of
two members with the same timings, one SIGKILLed, timed until the other is assigned every
partition (what the group protocol alone takes); then the time of each phase of the run (a
restart until the group is spread again among them). Figures go to
benchmarks/.work/figures/failover.json (``benchmarks/summary.py``).
Usage: python benchmarks/kafka_failover.py
       [--kills 10] [--anchor-kills 3] [--partitions 6] [--session 3] [--heartbeat 0.5]
       [--rebalance 3] [--rate 300]
"""

import argparse
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
from kafka import KafkaConsumer  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figures, at_most
from benchmarks.phases import Phases
from benchmarks.workload import check_in, setup
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection, Reader
from tests.kafka.broker import tansu_broker
from tests.kafka.group_support import Group, assignments
from tests.kafka.worker_support import Submitter, Worker

_RESTORED = re.compile(r"partition (\d+): (?:restored|caught up) in ([0-9.]+)s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Outcomes:
    """The outcomes topic, read on and on in a thread: per intake partition, when each intake
    offset's outcome was first seen (monotonic clock)."""

    def __init__(self, kafka: Connection, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self.seen: dict[int, dict[int, float]] = defaultdict(dict)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = Reader(self.kafka)
        try:
            positions: dict[int, int | None] = dict.fromkeys(reader.partitions(self.topic))
            while not self._stop.is_set():
                for record in reader.read(self.topic, positions):
                    document = orjson.loads(record.value)
                    now = time.monotonic()
                    with self._lock:
                        found = self.seen[document["intake_partition"]]
                        found.setdefault(document["intake_offset"], now)
                positions.update(reader.positions)
                time.sleep(0.01)
        finally:
            reader.close()

    def first_after(self, partition: int, offset: int) -> float | None:
        """When the first outcome of an intake offset above ``offset`` was seen."""
        with self._lock:
            times = [t for o, t in self.seen[partition].items() if o > offset]
        return min(times) if times else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Steady:
    """Submits check-ins of many orgs at about ``rate`` per second, in a thread; remembers the
    last acknowledged intake offset of every partition."""

    def __init__(self, submitter: Submitter, orgs: list[str], rate: float) -> None:
        self.submitter, self.orgs, self.rate = submitter, orgs, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            chunk = [check_in(org, n + i, 20) for i, org in enumerate(self.orgs)]
            n += len(chunk)
            self.submitter.send(chunk)
            time.sleep(len(chunk) / self.rate)

    def ends(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for partition, offset in list(self.submitter.positions):
            ends[partition] = max(ends.get(partition, -1), offset)
        return ends

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


STANDBY = (
    "import sys\n"
    "import chdb, okr_ledger.worker_runtime, processors.faust_app\n"
    "print('standby: imported, waiting', flush=True)\n"
    "if sys.stdin.readline():\n"
    "    from okr_ledger.worker_cli import worker\n"
    "    worker()\n"
)
"""What a :class:`Standby` runs: the imports ``okr-ledger worker`` makes (the same code, in the
same interpreter), then, once told, the worker itself (``Worker.start``'s command)."""


class Standby:
    """A worker's next process, started ahead: imported, idle until :meth:`go`."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.ready = worker.log_path.read_text(errors="replace").count("standby: ") + 1
        with worker.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", STANDBY],
                env=worker.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE,
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.worker.log_path.read_text(errors="replace").count("standby: ") < self.ready:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the standby worker did not start:\n{self.worker.log_tail()}")
            time.sleep(0.02)

    def go(self) -> None:
        """Run the worker in it: the worker's restart."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.close()  # then end of file, as the worker's stdin is otherwise
        self.worker.process = self.process

    def close(self) -> None:
        if self.worker.process is not self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def restore_seconds(worker: Worker, since: int) -> float:
    """The longest restore the worker logged in its assignments after the ``since``-th."""
    text = worker.log_path.read_text(errors="replace")
    marker = "sequencing "
    start = 0
    for _ in range(since):
        start = text.find(marker, start) + 1
    times = [float(m[2]) for m in _RESTORED.finditer(text, start)]
    return max(times, default=0.0)


def _member(address: str, topic: str, group: str, args: argparse.Namespace) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=address,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=int(args.session * 1000),
        heartbeat_interval_ms=int(args.heartbeat * 1000),
        max_poll_interval_ms=int(max(args.rebalance, args.session) * 1000) + 1000,
    )


def _member_forever(address: str, topic: str, group: str, args: argparse.Namespace) -> None:
    consumer = _member(address, topic, group, args)
    while True:
        consumer.poll(timeout_ms=100)


def group_anchor(address: str, topic: str, args: argparse.Namespace) -> list[float]:
    """The raw anchor: seconds from a SIGKILL of one of two plain consumer-group members to
    the other one's assignment of every partition of ``topic``, ``args.anchor_kills`` times."""
    group = f"failover-anchor-{uuid.uuid4().hex[:8]}"
    survivor = _member(address, topic, group, args)
    context = multiprocessing.get_context("fork")
    took: list[float] = []
    try:
        for _ in range(args.anchor_kills):
            other = context.Process(target=_member_forever, args=(address, topic, group, args))
            other.start()
            deadline = time.monotonic() + 60
            while not 0 < len(survivor.assignment()) < args.partitions:  # spread over both
                survivor.poll(timeout_ms=100)
                if time.monotonic() > deadline:
                    raise SystemExit("the anchor's group did not spread over two members")
            assert other.pid is not None
            killed_at = time.monotonic()
            os.kill(other.pid, signal.SIGKILL)
            other.join()
            while len(survivor.assignment()) < args.partitions:
                survivor.poll(timeout_ms=50)
                if time.monotonic() > killed_at + 60:
                    raise SystemExit("the anchor's survivor never got every partition")
            took.append(time.monotonic() - killed_at)
    finally:
        survivor.close()
    return took


def run(args: argparse.Namespace, work: Path) -> int:
    phases = Phases()
    settles: list[float] = []
    with tansu_broker(work / "broker.log") as address:
        kafka = Connection((address,), "okr-failover", timeout_s=15.0)
        suffix = uuid.uuid4().hex[:8]
        topics = {
            r: f"failover.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")
        }
        ensure_topics(kafka, okr_topics(**topics, partitions=args.partitions))
        anchor = group_anchor(address, topics["outcomes"], args)
        timings = {
            "OKR_KAFKA_SESSION_TIMEOUT_SECONDS": str(args.session),
            "OKR_KAFKA_HEARTBEAT_INTERVAL_SECONDS": str(args.heartbeat),
            "OKR_KAFKA_REBALANCE_TIMEOUT_SECONDS": str(args.rebalance),
        }
        group = Group(kafka, topics, work, args.partitions, env=timings)
        orgs = [f"fo{i}" for i in range(4 * args.partitions)]
        submitter = Submitter(kafka, topics["intake"], partitions=args.partitions)
        submitter.send([raw for org in orgs for raw in setup(org, 20)])
        outcomes = Outcomes(kafka, topics["outcomes"])
        steady: Steady | None = None
        standbys: dict[str, Standby] = {}
        """Each victim's next process, started ahead (see :class:`Standby`)."""
        rounds: list[tuple[float, float, float]] = []
        phases.done("broker and anchor")
        try:
            for name in ("a", "b"):
                group.start(name)
            group.wait_spread(["a", "b"], {})
            phases.done("two workers spread")
            steady = Steady(submitter, orgs, args.rate)
            for kill in range(args.kills):
                victim, survivor = ("a", "b") if kill % 2 == 0 else ("b", "a")
                owned = assignments(group.workers[victim])[-1]
                survivor_counts = len(assignments(group.workers[survivor]))
                if kill + 1 < args.kills and victim not in standbys:  # its restart's process
                    standbys[victim] = Standby(group.workers[victim])
                time.sleep(1.0)  # steady state
                if victim in standbys:
                    standbys[victim].wait_ready()
                ends = steady.ends()
                killed_at = time.monotonic()
                group.workers[victim].kill()
                deadline = killed_at + 60
                progress: dict[int, float] = {}
                while len(progress) < len(owned):
                    for partition in owned - progress.keys():
                        seen = outcomes.first_after(partition, ends.get(partition, -1))
                        if seen is not None:
                            progress[partition] = seen - killed_at
                    if time.monotonic() > deadline:
                        raise SystemExit(f"round {kill}: no progress on {owned - progress.keys()}")
                    time.sleep(0.01)
                took_over = group.workers[survivor]
                restore = restore_seconds(took_over, survivor_counts)
                failover = max(progress.values())
                rounds.append((failover, restore, min(progress.values())))
                print(
                    f"kill {kill + 1}: {victim} owned {sorted(owned)}; progress on the survivor "
                    f"after {failover:.2f} s (first partition {min(progress.values()):.2f} s; "
                    f"restore {restore:.2f} s)",
                    flush=True,
                )
                if kill + 1 == args.kills:
                    break  # no next round to settle the group for
                since = group.counts()
                restarted = time.monotonic()
                standbys.pop(victim).go()
                if kill + 2 < args.kills:  # the next victim's, imported while the group settles
                    standbys[survivor] = Standby(group.workers[survivor])
                group.wait_spread(["a", "b"], since)
                settles.append(time.monotonic() - restarted)
            phases.done("rounds")
        finally:
            for standby in standbys.values():
                standby.close()
            if steady is not None:
                steady.close()
            outcomes.close()
            submitter.close()
            group.stop_all()
    phases.done("stop")
    failovers = [r[0] for r in rounds]
    restores = [r[1] for r in rounds]
    print()
    print(
        phases.line() + f"; a round's restart until the group is spread again: p50 "
        f"{percentile(settles, 0.5) if settles else 0:.1f} s, max {max(settles, default=0):.1f} s"
    )
    print(
        f"{len(rounds)} SIGKILLs of one of two workers; {args.partitions} partitions; session "
        f"{args.session:g} s, heartbeat {args.heartbeat:g} s, rebalance {args.rebalance:g} s"
    )
    print(
        f"failover (kill -> every partition of the killed worker progressing on the survivor): "
        f"p50 {percentile(failovers, 0.5):.2f} s, max {max(failovers):.2f} s"
    )
    print(
        f"  of which the survivor's restore: p50 {percentile(restores, 0.5):.2f} s, "
        f"max {max(restores):.2f} s"
    )
    print(
        f"raw anchor, same run: {len(anchor)} SIGKILLs of one of two plain kafka-python group "
        f"members, same timings, until the other has every partition: "
        f"p50 {percentile(anchor, 0.5):.2f} s, max {max(anchor):.2f} s"
    )
    figures = Figures("failover", f"failover: {len(rounds)} SIGKILLs of one of two workers")
    group_anchor_text = (
        f"a plain kafka-python group, same timings, {len(anchor)} SIGKILLs: "
        f"p50 {percentile(anchor, 0.5):.2f} s, max {max(anchor):.2f} s"
    )
    settings = (f"session {args.session:g} s, heartbeat {args.heartbeat:g} s, rebalance "
               f"{args.rebalance:g} s")  # fmt: skip
    for name, value, note in (
        ("p50", percentile(failovers, 0.5), f"the survivor's restore p50 "
         f"{percentile(restores, 0.5):.2f} s; {settings}"),
        ("max", max(failovers), f"the survivor's restore max {max(restores):.2f} s"),
    ):  # fmt: skip
        figures.add(f"failover, kill -> the partitions progress on the survivor ({name})", value,
                    "s", at_most(value, 10), anchor=group_anchor_text, note=note)  # fmt: skip
    print(f"figures: {figures.write()}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--anchor-kills", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--session", type=float, default=3.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--rebalance", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=300.0, help="submissions per second")
    parser.add_argument("--keep", type=Path, help="Work in this directory and keep the logs.")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        sys.exit(run(args, args.keep))
    with tempfile.TemporaryDirectory(prefix="okr-failover-") as tmp:
        sys.exit(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
