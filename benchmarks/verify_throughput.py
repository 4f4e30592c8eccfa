"""``verify`` throughput on the benchmark ledger (1,000 key results and N check-ins, cached in
benchmarks/.work), beside raw anchors on the same stored bytes measured in the same run.

Prints events/s of ``log.verify()`` in process (best of 3; wall time and CPU time, which other
work on the machine disturbs less), serial (``processes=1``) and on ``--processes`` processes
(events/verify_ranges.py: its CPU time is this process's and its workers', start-up included),
of the reference path it falls back to (``ChainVerifier.add`` of each ``read_stored`` event:
what ``verify`` did before its fast path), of the CLI (``okr-ledger verify --json``, wall time
including interpreter start, with ``OKR_VERIFY_PROCESSES=1`` and ``--processes``) and its peak
RSS; anchors: the SQLite fetch of the rows alone, orjson parse of every stored body, orjson
dumps (sorted keys) of every parsed event, sha256 of every body, parse + dumps + sha256, timed
the same ways; fetch + parse + dumps + sha256 split in two halves on two spawned processes
(wall, start-up included), and its ceiling: the one-process CPU rate times the processes (what
no verifier on that many cores can pass); ``okr-ledger --version`` (the CLI's fixed cost).

With ``--inputs DIR`` (``benchmarks/inputs.py``) the ledger is a copy of the suite's instead.
Figures go to benchmarks/.work/figures/verify.json (``benchmarks/summary.py``).
Usage: python benchmarks/verify_throughput.py [--check-ins 200000] [--processes 2]
       [--inputs DIR]
"""

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.command_latency import timed
from benchmarks.figures import Figures, at_least
from benchmarks.inputs import copy_ledger, given, ledger_name
from benchmarks.profiling.common import bench_ledger
from events.chain import ChainVerifier
from events.sqlite_log import SqliteEventLog

BEST_OF = 3
CLI = Path(sys.executable).parent / "okr-ledger"


def _children() -> float:
    """CPU seconds of this process's ended children (the workers of a pool)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def best(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (this process's and its workers') of the fastest of a few runs
    (the least disturbed)."""
    wall, own, workers = best_split(call)
    return wall, own + workers


def best_split(call: Callable[[], object]) -> tuple[float, float, float]:
    """:func:`best` with the CPU seconds of this process and of its workers apart."""
    times = []
    for _ in range(BEST_OF):
        start, cpu, children = time.perf_counter(), time.process_time(), _children()
        call()
        times.append((time.perf_counter() - start, time.process_time() - cpu,
                      _children() - children))  # fmt: skip
    return min(times)


def anchor_half(path: str, low: int, high: int | None) -> int:
    """Fetch + parse + dumps + sha256 of the benchmark org's events from ``low`` to before
    ``high`` (the two-process anchor's half); the events read."""
    log = SqliteEventLog(path, read_only=True)
    count = 0
    for rows in log.sequence_rows("bench", low, high):
        for row in rows:
            orjson.dumps(orjson.loads(row[0]), option=orjson.OPT_SORT_KEYS)
            hashlib.sha256(row[0]).hexdigest()
        count += len(rows)
    log.close()
    return count


def two_halves(path: Path, count: int, processes: int) -> None:
    step = count // processes + 1
    lows = list(range(1, count + 1, step))
    highs = [*lows[1:], None]
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        assert sum(pool.map(anchor_half, [str(path)] * len(lows), lows, highs)) == count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-ins", type=int, default=200_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--inputs", type=Path, help="The suite's inputs (benchmarks/inputs.py).")
    args = parser.parse_args()
    if args.inputs is not None:
        cached = given(args.inputs, ledger_name(1000, args.check_ins))
    else:
        cached = bench_ledger(1000, args.check_ins)
        SqliteEventLog(cached).close()  # a cache made before the state store is upgraded once
    with tempfile.TemporaryDirectory(prefix="okr-bench-verify-") as tmp:
        data = Path(tmp)
        copy_ledger(cached, data / "ledger.db")
        log = SqliteEventLog(data / "ledger.db", read_only=True)
        bodies = [stored.body for stored in log.read_stored()]
        count = len(bodies)

        parsed = [orjson.loads(body) for body in bodies]

        def fetch() -> None:
            for _ in log.stored_rows():
                pass

        def dumps() -> None:
            for event in parsed:
                orjson.dumps(event, option=orjson.OPT_SORT_KEYS)

        def all_three() -> None:
            for body in bodies:
                orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
                hashlib.sha256(body).hexdigest()

        def parse() -> None:
            for body in bodies:  # not kept: that would time the allocator
                orjson.loads(body)

        def digest() -> None:
            for body in bodies:
                hashlib.sha256(body).hexdigest()

        def both() -> None:
            for body in bodies:
                orjson.loads(body)
                hashlib.sha256(body).hexdigest()

        anchors = {name: best(call) for name, call in (
            ("fetch", fetch), ("parse", parse), ("dumps", dumps), ("sha", digest),
            ("both", both), ("all", all_three))}  # fmt: skip

        def reference() -> None:
            verifier = ChainVerifier()
            for stored in log.read_stored():
                verifier.add(stored)
            assert all(report.ok for report in verifier.reports())

        processes = args.processes
        verified = best(lambda: log.verify(processes=1))
        wall, own, workers = best_split(lambda: log.verify(processes=processes))
        parallel = wall, own + workers
        halves = best(lambda: two_halves(data / "ledger.db", count, processes))
        slow = best(reference)
        reports = log.verify(processes=1)
        assert log.verify(processes=processes) == reports
        log.close()
        assert all(report.ok for report in reports), reports
        env = {**os.environ, "OKR_DATA_DIR": str(data)}
        cli: dict[int, tuple[float, float]] = {}
        for run in (1, processes):
            times = [timed([str(CLI), "verify", "--json"], {**env, "OKR_VERIFY_PROCESSES":
                           str(run)})[:2] for _ in range(BEST_OF)]  # fmt: skip
            cli[run] = min(times)
        start = min(timed([str(CLI), "--version"], env)[0] for _ in range(BEST_OF))
    load = os.getloadavg()[0]
    print(f"verify: {count:,} events (1,000 key results), load average {load:.1f}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print("                                   wall events/s    CPU events/s")
    print(f"  in process, serial:            {rate(count, verified)}")
    print(f"  in process, {processes} processes:       {rate(count, parallel)}"
          "   (CPU: all processes)")  # fmt: skip
    print(f"    of it, CPU seconds: this process {own:.2f}, its {processes - 1} worker"
          f"{'s' if processes > 2 else ''} {workers:.2f} (start-up included); serial "
          f"{verified[1]:.2f}")  # fmt: skip
    print(f"  reference path (add each):     {rate(count, slow)}")
    for run, (wall, peak) in cli.items():
        name = f"{run} process{'es' if run > 1 else ''}:"
        print(f"  CLI verify --json, {name:<12}{count / wall:>12,.0f}"
              f"                    {wall:.2f} s, peak RSS {peak:.0f} MiB")  # fmt: skip
    print(f"  CLI okr-ledger --version:      {start:>12.2f} s (interpreter and imports)")
    print("  anchors of the same run, on the same stored bytes:")
    print(f"    SQLite fetch of the rows:    {rate(count, anchors['fetch'])}")
    print(f"    orjson parse:                {rate(count, anchors['parse'])}")
    print(f"    orjson dumps, sorted keys:   {rate(count, anchors['dumps'])}")
    print(f"    sha256 + hexdigest:          {rate(count, anchors['sha'])}")
    print(f"    orjson parse + sha256:       {rate(count, anchors['both'])}")
    print(f"    parse + dumps + sha256:      {rate(count, anchors['all'])}")
    print(f"    fetch + parse + dumps + sha256 on {processes} processes (two halves, start-up "
          f"included): {rate(count, halves)}")  # fmt: skip
    floor = anchors["fetch"][1] + anchors["all"][1]
    print(f"    its ceiling on {processes} cores, one process's CPU rate x {processes}: "
          f"{count / floor * processes:>12,.0f}")  # fmt: skip
    print(
        f"  CPU µs/event: verify {verified[1] / count * 1e6:.2f}, reference "
        f"{slow[1] / count * 1e6:.2f}, fetch + parse + dumps + sha256 {floor / count * 1e6:.2f}"
    )
    print(f"  verify / (parse + sha256), CPU time: {anchors['both'][1] / verified[1]:.2f}")
    figures = Figures("verify", f"verify: {count:,} events")
    anchor = (f"fetch + parse + dumps + sha256 on {processes} processes {count / halves[0]:,.0f}"
              f"/s; one process {count / sum(anchors[n][0] for n in ('fetch', 'all')):,.0f}/s"
              )  # fmt: skip
    for name, (wall, cpu_s), judged in (
        (f"verify, in process, {processes} processes", parallel, True),
        ("verify, in process, serial", verified, False),
    ):
        figures.add(name, count / wall, "events/s",
                    at_least(count / wall, 300_000) if judged else None, anchor=anchor,
                    note=f"CPU {count / cpu_s:,.0f} events/s")  # fmt: skip
    for run, (wall, peak) in cli.items():
        figures.add(f"verify, CLI wall, {run} process{'es' if run > 1 else ''}", count / wall,
                    "events/s", at_least(count / wall, 300_000) if run > 1 else None,
                    anchor=f"okr-ledger --version {start:.2f} s",
                    note=f"{wall:.2f} s, peak RSS {peak:.0f} MiB")  # fmt: skip
    figures.add("reference path (ChainVerifier.add of each event)", count / slow[0], "events/s")
    print(f"figures: {figures.write()}")


def rate(count: int, seconds: tuple[float, float]) -> str:
    wall, cpu = seconds
    return f"{count / wall:>12,.0f}    {count / cpu:>12,.0f}"


if __name__ == "__main__":
    main()
