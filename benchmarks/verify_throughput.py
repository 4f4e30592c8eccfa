"""``verify`` throughput on the benchmark ledger (1,000 key results and N check-ins, cached in
benchmarks/.work), beside raw anchors on the same stored bytes measured in the same run.

Prints events/s of ``log.verify()`` in process (best of 3; wall time and CPU time, which other
work on the machine disturbs less), of the reference path it falls back to (``ChainVerifier.add``
of each ``read_stored`` event: what ``verify`` did before its fast path), of the CLI
(``okr-ledger verify --json``, wall time including interpreter start) and its peak RSS;
anchors: the SQLite fetch of the rows alone, orjson parse of every stored body, orjson dumps
(sorted keys) of every parsed event, sha256 of every body, and parse + dumps + sha256, timed the
same ways.

Usage: python benchmarks/verify_throughput.py [--check-ins 200000]
"""

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.command_latency import timed
from benchmarks.profiling.common import bench_ledger
from events.chain import ChainVerifier
from events.sqlite_log import SqliteEventLog

BEST_OF = 3
CLI = Path(sys.executable).parent / "okr-ledger"


def best(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of the fastest of a few runs (the least disturbed)."""
    times = []
    for _ in range(BEST_OF):
        start, cpu = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-ins", type=int, default=200_000)
    args = parser.parse_args()
    cached = bench_ledger(1000, args.check_ins)
    SqliteEventLog(cached).close()  # a cache made before the state store is upgraded once
    with tempfile.TemporaryDirectory(prefix="okr-bench-verify-") as tmp:
        data = Path(tmp)
        shutil.copyfile(cached, data / "ledger.db")
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

        verified = best(log.verify)
        slow = best(reference)
        reports = log.verify()
        log.close()
        assert all(report.ok for report in reports), reports
        env = {**os.environ, "OKR_DATA_DIR": str(data)}
        wall, peak, _ = timed([str(CLI), "verify", "--json"], env)
    load = os.getloadavg()[0]
    print(f"verify: {count:,} events (1,000 key results), load average {load:.1f}")
    print("                                   wall events/s    CPU events/s")
    print(f"  in process (log.verify()):     {rate(count, verified)}")
    print(f"  reference path (add each):     {rate(count, slow)}")
    print(f"  CLI okr-ledger verify --json:  {count / wall:>12,.0f}                    "
          f"peak RSS {peak:.0f} MiB")  # fmt: skip
    print("  anchors of the same run, on the same stored bytes:")
    print(f"    SQLite fetch of the rows:    {rate(count, anchors['fetch'])}")
    print(f"    orjson parse:                {rate(count, anchors['parse'])}")
    print(f"    orjson dumps, sorted keys:   {rate(count, anchors['dumps'])}")
    print(f"    sha256 + hexdigest:          {rate(count, anchors['sha'])}")
    print(f"    orjson parse + sha256:       {rate(count, anchors['both'])}")
    print(f"    parse + dumps + sha256:      {rate(count, anchors['all'])}")
    floor = anchors["fetch"][1] + anchors["all"][1]
    print(
        f"  CPU µs/event: verify {verified[1] / count * 1e6:.2f}, reference "
        f"{slow[1] / count * 1e6:.2f}, fetch + parse + dumps + sha256 {floor / count * 1e6:.2f}"
    )
    print(f"  verify / (parse + sha256), CPU time: {anchors['both'][1] / verified[1]:.2f}")


def rate(count: int, seconds: tuple[float, float]) -> str:
    wall, cpu = seconds
    return f"{count / wall:>12,.0f}    {count / cpu:>12,.0f}"


if __name__ == "__main__":
    main()
