"""Profile the Kafka worker during benchmarks/kafka_end_to_end.py's throughput phase.

Runs the end-to-end benchmark (it starts a Tansu broker and ``okr-ledger worker``), attaches
py-spy (sampling, idle threads included) to the worker as soon as it starts, and stops when
the benchmark reports the end of its throughput phase. Then prints where the worker's threads
spent their samples: sequencer, projector, chDB inserts, aiokafka, kafka-python, Faust/mode,
imports and start-up, idle; and the top functions.

Needs py-spy (``pip install py-spy``; not a dependency of the project).
Usage: python benchmarks/profiling/kafka_worker_profile.py [--check-ins 20000] [--rate 500]
       [--lag-samples 500] [--orgs 6] [--gil] [--raw FILE]
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CATEGORIES = (
    ("imports / start-up", ("_find_and_load",)),
    ("idle: waiting (select/epoll/lock/sleep)", ()),  # decided on the leaf frame
    ("projector: Projector.project", ("processors/projector.py",)),
    ("projector: store insert (clickhouse-connect + chDB)", ("projections/store.py",
                                                            "clickhouse_connect/")),
    ("sequencer: decide (events/sequencer.py)", ("events/sequencer.py",)),
    ("sequencer: batch, records, outcomes", ("processors/kafka_sequencer.py",
                                             "events/kafka_records.py",
                                             "processors/kafka_worker.py")),
    ("ledger writer (confluent-kafka transactions)", ("events/kafka_transactions.py",
                                                      "events/kafka_log.py")),
    ("kafka-python (restore reads, admin)", ("(kafka/", "events/kafka_client.py")),
    ("batch drain (Faust group consumer)", ("processors/faust_batches.py",)),
    ("aiokafka (fetch, decode)", ("aiokafka/",)),
    ("query server (aiohttp)", ("projections/query_server.py", "aiohttp/")),
    ("faust / mode", ("faust/", "mode/")),
    ("asyncio loop", ("asyncio/",)),
)  # fmt: skip
BASE_FRAMES = ("threading.py", "asyncio/", "concurrent/", "<frozen", "(mode/", "selectors.py")
IDLE_LEAVES = (
    "select (",
    "poll (",
    "wait (",
    "acquire (",
    "sleep (",
    "_worker (",
    "get (",
    "Connection._recv (",
    "main (multiprocessing/resource_tracker.py)",
)
"""Leaves that wait: a pipe read (the sequencer process waiting for a call, the worker for a
result) and the resource tracker's read are idle, not work."""
SEQUENCER_STAGES = (
    ("BEGIN / COMMIT of the state file", ("SqliteStateStore.transaction",)),
    ("view load (bulk reads of the state file)", ("SqliteStateStore.view", "FileState.deciding")),
    ("keep (save the state)", ("PartitionSequencer.keep",)),
    ("append (encode, produce, transaction)", ("SequencerCore._write",)),
    ("decide (events/sequencer.py, apply)", ("PartitionSequencer._decide_all",)),
    ("parse + probe (intake headers, probe)", ("PartitionSequencer.deciding",)),
    ("restore, fence", ("SequencerCore.restore", "SequencerCore.fence")),
    ("pipe (pickle, send, receive)", ("_child_main",)),
)  # fmt: skip
"""The sequencer process's stages, by the innermost of these frames on the stack (checked in
this order): where its busy samples go."""


def _children(pid: int) -> list[int]:
    found = []
    for task in Path("/proc").iterdir():
        if not task.name.isdigit():
            continue
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(task.name))
    return found


def _worker_pid(bench: int) -> int | None:
    for child in _children(bench):
        try:
            command = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in command and any(part.endswith(b"okr-ledger") for part in command):
            return child
    return None


def _waits(leaf: str) -> bool:
    """Whether a leaf frame waits (``wait (`` or a method ``X.wait (``, ...)."""
    return leaf.startswith(IDLE_LEAVES) or any(f".{idle}" in leaf for idle in IDLE_LEAVES)


def _category(frames: list[str]) -> str:
    leaf = frames[-1] if frames else ""
    stack = ";".join(frames)
    if "_find_and_load" in stack:
        return CATEGORIES[0][0]
    if _waits(leaf) or "selectors.py" in leaf:
        return CATEGORIES[1][0]
    for name, needles in CATEGORIES[2:]:
        if any(needle in stack for needle in needles):
            return name
    return "other"


def _stage(frames: list[str]) -> str:
    """The sequencer stage of a busy sample of the sequencer process (innermost frame wins)."""
    for frame in reversed(frames):
        for name, needles in SEQUENCER_STAGES:  # innermost frame first
            if frame.startswith(needles):
                return name
    return "other"


def _samples(raw: Path, process: Callable[[str], bool]) -> Iterator[tuple[list[str], int]]:
    """The frames (thread and process frames left out) and count of each sample of ``raw``
    whose stack ``process`` keeps."""
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit() and process(stack):
            yield (
                [f for f in stack.split(";") if not f.startswith(("thread", "process"))],
                int(count_text),
            )


def _shares(counts: Counter[str], busy: int, top: int | None = None) -> None:
    """``counts`` as shares of ``busy``, largest first (the first ``top``)."""
    for name, count in counts.most_common(top):
        print(f"  {100 * count / busy:6.1f}%  {name[:110]}")


def summarise_sequencer(raw: Path) -> None:
    """The sequencer process alone: its busy samples by stage. With ``--gil``, only the
    thread holding the GIL is sampled: the shares are then of its Python CPU time (without,
    threads waiting for the GIL count as busy too)."""
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    busy = 0
    for frames, count in _samples(raw, lambda stack: "_child_main" in stack):
        if _category(frames) == CATEGORIES[1][0]:
            continue
        busy += count
        stages[_stage(frames)] += count
        leaves[frames[-1]] += count
    if not busy:
        return
    print(f"\nsequencer process: {busy:,} busy samples (all its threads), by stage:")
    _shares(stages, busy)
    print("  top leaves:")
    _shares(leaves, busy, 12)


def _is_sequencer(stack: str) -> bool:
    return "_child_main" in stack or "spawn_main" in stack


def summarise_main(raw: Path) -> None:
    """The worker's main process alone (no sequencer-process stack): its busy samples by
    category, its top leaves and its top inclusive frames of the project."""
    by_category: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = 0
    for frames, count in _samples(raw, lambda stack: not _is_sequencer(stack)):
        category = _category(frames)
        if category in (CATEGORIES[0][0], CATEGORIES[1][0]):
            continue
        busy += count
        by_category[category] += count
        leaves[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not busy:
        return
    print(f"\nmain process: {busy:,} busy samples (start-up and idle left out), by category:")
    _shares(by_category, busy)
    print("  top leaves:")
    _shares(leaves, busy, 25)
    print("  top inclusive frames:")
    ours = Counter({f: c for f, c in inclusive.items() if not any(b in f for b in BASE_FRAMES)})
    _shares(ours, busy, 40)


def summarise(raw: Path) -> None:
    by_category: Counter[str] = Counter()
    by_thread: dict[str, Counter[str]] = defaultdict(Counter)
    thread_leaves: dict[str, Counter[str]] = defaultdict(Counter)
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        category = _category(frames)
        by_category[category] += count
        by_thread[thread][category] += count
        total += count
        if frames and category != CATEGORIES[1][0]:
            leaves[frames[-1]] += count
            thread_leaves[thread][frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        print("no samples (could py-spy attach? it needs ptrace rights)")
        return
    print(f"\nworker samples: {total:,} (all threads, idle included)")
    for name, count in by_category.most_common():
        print(f"  {100 * count / total:6.1f}%  {name}")
    print("\nper thread (share of that thread's samples):")
    for thread, counts in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values())):
        whole = sum(counts.values())
        parts = ", ".join(f"{name} {100 * n / whole:.0f}%" for name, n in counts.most_common(5))
        print(f"  {thread[:60]:<60} {whole:>7,} samples: {parts}")
        for frame, count in thread_leaves[thread].most_common(4):
            print(f"      busy in {frame[:100]}: {100 * count / whole:.0f}%")
    busy = total - by_category[CATEGORIES[1][0]]
    print(f"\ntop functions where a busy thread was (leaf frame; % of {busy:,} busy samples):")
    for frame, count in leaves.most_common(25):
        print(f"  {100 * count / busy:6.1f}%  {frame[:120]}")
    print("\ntop inclusive frames of the project and its libraries (% of all samples):")
    shown = 0
    for frame, count in inclusive.most_common():
        if shown < 40 and not any(base in frame for base in BASE_FRAMES):
            print(f"  {100 * count / total:6.1f}%  {frame[:120]}")
            shown += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-ins", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--lag-samples", type=int, default=500)
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--sample-rate", type=int, default=100)
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples in this file")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (CPU shares)"
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory(prefix="okr-profile-kafka-") as tmp:
        raw = Path(tmp) / "worker.raw"
        command = [sys.executable, str(ROOT / "benchmarks" / "kafka_end_to_end.py"),
                   "--check-ins", str(args.check_ins), "--rate", str(args.rate),
                   "--lag-samples", str(args.lag_samples),
                   "--orgs", str(args.orgs)]  # fmt: skip
        bench = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        assert bench.stdout is not None
        sampler: subprocess.Popen[bytes] | None = None
        started = 0.0
        for line in bench.stdout:
            print(f"  | {line.rstrip()}")
            if sampler is None:
                deadline = time.monotonic() + 30
                while (pid := _worker_pid(bench.pid)) is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                if pid is not None:
                    sampler = subprocess.Popen(
                        [spy, "record", "--pid", str(pid), "--subprocesses", "--idle", "--threads",
                         "--nolineno", *(["--gil"] if args.gil else []),
                         "--rate", str(args.sample_rate), "--format", "raw", "-o", str(raw)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    started = time.monotonic()
            if "kafka throughput done" in line and sampler is not None:
                sampler.send_signal(signal.SIGINT)
                sampler.wait(timeout=60)
                print(f"  (sampled the worker for {time.monotonic() - started:.1f} s)")
        bench.wait()
        if sampler is not None and sampler.poll() is None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(timeout=60)
        if raw.exists():
            summarise(raw)
            summarise_main(raw)
            summarise_sequencer(raw)
            if args.raw is not None:
                shutil.copyfile(raw, args.raw)
        else:
            print("py-spy wrote nothing")


if __name__ == "__main__":
    main()
