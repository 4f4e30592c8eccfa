"""Profile the memory of the first catch-up (as a command runs it) and of a rebuild's replay.

Runs the embedded runner on the benchmark ledger of benchmarks/projection_throughput.py into a
fresh chDB store, in this process, and prints:

- first, the raw anchor: a fresh process that only imports chDB and opens a store (its peak,
  RssAnon, RssFile, with the page cache as the runs find it);
- RSS over time (VmRSS, RssAnon, RssFile sampled every 20 ms) beside the events projected, and
  the peak (VmHWM);
- at the end of the catch-up (the state saved, as a command saves it), what the projector's
  state holds: the key results' check-in logs in memory and their bytes, the rows staged;
- with ``--tracemalloc``: the Python allocations alive at the largest traced moment, by line
  (tracemalloc slows the run several times; the RSS figures of such a run are not the
  benchmark's);
- with ``--split``: where the anonymous memory was at its highest sample, by owner (glibc's
  arenas and pyarrow's pool in them, chDB's jemalloc and its own account, pymalloc, stacks:
  :mod:`benchmarks.profiling.anon_split`);
- with ``--rebuild``: then ``okr-ledger rebuild`` on that store (a child process: catch up,
  fingerprint, drop, project the whole ledger again, fingerprint), its RSS sampled from here.

Usage: python benchmarks/profiling/memory_profile.py [--key-results 1000]
       [--check-ins 1000000] [--tracemalloc] [--top 25] [--rebuild] [--batch-size N]
       [--commit-mib N] [--save-every N] [--part-mib N] [--split]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.figures import process_memory
from benchmarks.profiling.anon_split import AnonSplits
from benchmarks.profiling.common import bench_ledger
from benchmarks.projection_throughput import open_alone
from events.sqlite_log import SqliteEventLog
from processors.runner import EmbeddedRunner
from processors.snapshots import FILE_NAME, SqliteSnapshots
from projections.client import connect, parse_url
from projections.store import ProjectionStore

ORG = "bench"


class Sampler:
    """RSS every 20 ms, beside the events projected so far."""

    def __init__(self) -> None:
        self.events = 0
        self.samples: list[tuple[float, int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._start, self.events, process_memory()))
            time.sleep(0.02)

    def progress(self, count: int) -> None:
        self.events += count

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def print(self, points: int = 12) -> None:
        print(f"  {'s':>6} {'events':>10} {'VmRSS':>6} {'RssAnon':>7} {'RssFile':>7}")
        step = max(1, len(self.samples) // points)
        for at, events, found in self.samples[::step]:
            print(
                f"  {at:6.1f} {events:10,} {found['VmRSS']:6} {found['RssAnon']:7} "
                f"{found['RssFile']:7}"
            )
        peak = max(self.samples, key=lambda sample: sample[2]["VmRSS"])
        print(
            f"  peak sampled VmRSS {peak[2]['VmRSS']} MiB at {peak[0]:.1f} s "
            f"({peak[1]:,} events; RssAnon {peak[2]['RssAnon']}, RssFile {peak[2]['RssFile']})"
        )


def describe_state(runner: EmbeddedRunner, store: ProjectionStore) -> None:
    org = runner.projector.state.orgs.get(ORG)
    if org is None:
        return
    loaded = [kr.check_ins for kr in org.key_results.values() if kr.check_ins is not None]
    data = sum(len(log.data) for log in loaded)
    allocated = sum(log.data.__sizeof__() for log in loaded)
    records = sum(len(log) for log in loaded)
    print(
        f"  check-in logs in memory: {len(loaded):,} of {len(org.key_results):,} key results, "
        f"{records:,} check-ins, {data / 2**20:.1f} MiB of records "
        f"({allocated / 2**20:.1f} MiB allocated)"
    )
    print(f"  rows staged in the store: {store.staged_bytes / 2**20:.1f} MiB of Arrow")


def rebuild(data: Path) -> None:
    """``okr-ledger rebuild`` on ``data``, its RSS sampled every 20 ms."""
    env = {**os.environ, "OKR_DATA_DIR": str(data)}
    command = [str(Path(sys.executable).parent / "okr-ledger"), "rebuild"]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, dict[str, int]]] = []
    while process.poll() is None:
        try:
            found = process_memory(str(process.pid))
        except (OSError, ValueError):
            found = {}
        if "VmRSS" in found:  # not once it has exited
            samples.append((time.perf_counter() - start, found))
        time.sleep(0.02)
    out, err = process.communicate()
    print(f"\n=== rebuild: {time.perf_counter() - start:.1f} s ({out.decode().strip()}) ===")
    if process.returncode:
        print(err.decode())
    print(f"  {'s':>6} {'VmRSS':>6} {'RssAnon':>7} {'RssFile':>7}")
    for at, found in samples[:: max(1, len(samples) // 16)]:
        print(f"  {at:6.1f} {found['VmRSS']:6} {found['RssAnon']:7} {found['RssFile']:7}")
    peak = max(samples, key=lambda sample: sample[1].get("VmRSS", 0))
    print(f"  peak sampled VmRSS {peak[1]['VmRSS']} MiB at {peak[0]:.1f} s; VmHWM "
          f"{samples[-1][1]['VmHWM']} MiB (last sample)")  # fmt: skip


def run(
    ledger: Path,
    trace: bool,
    top: int,
    then_rebuild: bool,
    options: dict[str, int],
    *,
    split: bool = False,
) -> None:
    work = Path(tempfile.mkdtemp(prefix="okr-memory-"))
    print(f"anchor: {open_alone()} (load {os.getloadavg()[0]:.1f})")
    try:
        (work / "ledger.db").symlink_to(ledger)
        log = SqliteEventLog(ledger, create=False, read_only=True)
        url = f"chdb://{work / 'clickhouse'}"
        store = ProjectionStore.open(url)
        snapshots = SqliteSnapshots(work / FILE_NAME)
        print(f"before projecting: {process_memory()}")
        runner = EmbeddedRunner(log, store, snapshots=snapshots)
        runner.batch_size = options.get("batch_size", runner.batch_size)
        runner.commit_bytes = options.get("commit_bytes", runner.commit_bytes)
        runner.save_every = options.get("save_every", runner.save_every)
        store.part_bytes = options.get("part_bytes", store.part_bytes)
        sampler = Sampler()
        splits = AnonSplits(connect(parse_url(url))) if split else None
        if trace:
            tracemalloc.start(1)
        start = time.perf_counter()
        done = runner.catch_up(sampler.progress)  # saving the state as a command does
        elapsed = time.perf_counter() - start
        traced = tracemalloc.get_traced_memory() if trace else (0, 0)
        snapshot = tracemalloc.take_snapshot() if trace else None
        if trace:
            tracemalloc.stop()
        print(f"\n=== catch-up: {done.events:,} events in {elapsed:.1f} s ===")
        describe_state(runner, store)
        sampler.stop()
        sampler.print()
        if splits is not None:
            splits.stop()
            splits.print()
            splits.client.close()
        print(f"  final: {process_memory()}")
        if snapshot is not None:
            print(
                f"\n=== tracemalloc at the end: {traced[0] / 2**20:.1f} MiB alive, "
                f"peak {traced[1] / 2**20:.1f} MiB ==="
            )
            for stat in snapshot.statistics("lineno")[:top]:
                frame = stat.traceback[0]
                name = Path(frame.filename)
                where = f"{name.parent.name}/{name.name}:{frame.lineno}"
                print(f"  {stat.size / 2**20:8.1f} MiB {stat.count:>10,}  {where}")
        snapshots.close()
        store.close()
        log.close()
        if then_rebuild:
            rebuild(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-results", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=1_000_000)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--batch-size", type=int, help="Events projected at a time.")
    parser.add_argument("--commit-mib", type=int, help="Staged Arrow MiB that make a commit.")
    parser.add_argument("--save-every", type=int, help="Events between saves of the state.")
    parser.add_argument("--part-mib", type=int, help="Staged MiB of audit_events inserted apart.")
    parser.add_argument("--split", action="store_true", help="Split the anonymous peak by owner.")
    args = parser.parse_args()
    ledger = bench_ledger(args.key_results, args.check_ins)
    options = {}
    if args.batch_size:
        options["batch_size"] = args.batch_size
    if args.commit_mib:
        options["commit_bytes"] = args.commit_mib << 20
    if args.save_every:
        options["save_every"] = args.save_every
    if args.part_mib:
        options["part_bytes"] = args.part_mib << 20
    print(f"runner options: {options or 'the defaults'}")
    run(ledger, args.tracemalloc, args.top, args.rebuild, options, split=args.split)


if __name__ == "__main__":
    main()
