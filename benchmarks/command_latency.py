"""Ledger-side command latency as the ledger grows: ``okr-ledger submit`` of one line (a new
check-in: accepted; the same line again: duplicate), wall time including interpreter start;
and, once each, the whole-ledger commands ``verify`` and ``export`` with their peak RSS.

For each size (1,000 key results and N check-ins: the ledger of
benchmarks/projection_throughput.py, written directly and cached in benchmarks/.work) it prints
the median and the worst of ``--samples`` runs, and the peak RSS of the submit process, beside
``python -c pass`` and ``okr-ledger --help`` timed in the same run. The ratio between the
sizes is the point: the cost of a submit does not grow with the ledger.

With ``--inputs DIR`` (``benchmarks/inputs.py``) the ledgers are copies of the suite's instead.
Figures go to benchmarks/.work/figures/command_latency.json (``benchmarks/summary.py``).
Usage: python benchmarks/command_latency.py [--check-ins 10000,1000000] [--samples 7]
       [--inputs DIR]
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import RSS_LIMIT_MIB, Figures, at_most
from benchmarks.inputs import copy_ledger, given, ledger_name
from benchmarks.profiling.common import bench_ledger
from benchmarks.workload import check_in
from events.sqlite_log import SqliteEventLog

CLI = Path(sys.executable).parent / "okr-ledger"
ORG = "bench"


_MEASURE = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
elapsed = time.perf_counter() - start
child.returncode = os.waitstatus_to_exitcode(status)
sys.stderr.write(f"\\n{elapsed} {usage.ru_maxrss} {child.returncode}\\n")
"""
"""Runs a command and reports its wall time and peak RSS. A separate, small process: on Linux
a child's peak RSS is at least its parent's at the fork, and this benchmark's own is large."""


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, bytes]:
    """Wall seconds, peak RSS (MiB) and stdout of one command, which must succeed."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        command = [sys.executable, "-c", _MEASURE, *args]
        subprocess.run(command, env=env, stdout=out, stderr=err, check=False)
        out.seek(0)
        err.seek(0)
        *messages, last = err.read().decode().rstrip("\n").split("\n")
        elapsed, peak_kib, code = last.split()
        if code != "0":
            raise SystemExit(f"{' '.join(args)} failed ({code}): {chr(10).join(messages)}")
        return float(elapsed), int(peak_kib) / 1024, out.read()


def samples_of(run: list[str], env: dict[str, str], samples: int) -> list[float]:
    """Wall times (ms) of ``samples`` runs."""
    return [timed(run, env)[0] * 1000 for _ in range(samples)]


def summary(times: list[float]) -> str:
    return f"{statistics.median(times):8.0f} ms  (worst {max(times):6.0f})"


def ledger_for(check_ins: int, work: Path, inputs: Path | None) -> tuple[Path, int]:
    """A data directory holding a copy of the suite's ledger, or of the cached one (upgraded
    in the cache first)."""
    if inputs is not None:
        cached = given(inputs, ledger_name(1000, check_ins))
    else:
        cached = bench_ledger(1000, check_ins)
        SqliteEventLog(cached).close()  # a cache made before the state store is upgraded once
    data = work / f"data-{check_ins}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    copy_ledger(cached, data / "ledger.db")
    db = sqlite3.connect(data / "ledger.db")
    events: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
    db.close()
    return data, events


def submit_latency(
    check_ins: int, samples: int, work: Path, inputs: Path | None
) -> tuple[int, dict[str, list[float]], float, dict[str, tuple[float, float]]]:
    """Events in the ledger; wall times (ms) of each kind of submit; the largest peak RSS of
    a submit; wall seconds and peak RSS of verify and export."""
    data, events = ledger_for(check_ins, work, inputs)
    env = {**os.environ, "OKR_DATA_DIR": str(data)}
    whole: dict[str, tuple[float, float]] = {}
    export = work / f"export-{check_ins}.ndjson"
    for name, args in (("verify", ["verify", "--json"]), ("export", ["export", "-o", str(export)])):
        elapsed, rss, _ = timed([str(CLI), *args], env)
        whole[name] = (elapsed, rss)
    export.unlink()
    times: dict[str, list[float]] = {"accepted": [], "duplicate": []}
    peak = 0.0
    for n in range(samples):
        line = work / f"one-{check_ins}-{n}.ndjson"
        line.write_bytes(check_in(ORG, 9_000_000 + n, 1000) + b"\n")
        for status, taken in times.items():  # a new check-in, then the same line again
            elapsed, rss, out = timed([str(CLI), "submit", str(line), "--json"], env)
            assert f'"{status}":1'.encode() in out, (status, out)
            taken.append(elapsed * 1000)
            peak = max(peak, rss)
    return events, times, peak, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-ins", default="10000,1000000")
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--inputs", type=Path, help="The suite's inputs (benchmarks/inputs.py).")
    args = parser.parse_args()
    sizes = [int(size) for size in args.check_ins.split(",")]
    with tempfile.TemporaryDirectory(prefix="okr-bench-latency-") as tmp:
        work = Path(tmp)
        results = [submit_latency(size, args.samples, work, args.inputs) for size in sizes]
        env = dict(os.environ)
        python = samples_of([sys.executable, "-c", "pass"], env, args.samples)
        helped = samples_of([str(CLI), "--help"], env, args.samples)
    load = os.getloadavg()[0]
    print(f"command latency: median (and worst) of {args.samples} runs, load average {load:.1f}")
    print(f"  anchors of the same run: python -c pass {summary(python)}")
    print(f"                           okr-ledger --help {summary(helped)}")
    for size, (events, times, peak, whole) in zip(sizes, results, strict=True):
        print(f"  1,000 key results, {size:,} check-ins: {events:,} ledger events")
        for status, taken in times.items():
            print(f"    submit of one line, {status:<9} {summary(taken)}")
        print(f"    peak RSS of a submit:         {peak:8.0f} MiB")
        for name, (elapsed, rss) in whole.items():
            print(f"    {name} (the whole ledger):   {elapsed:8.2f} s, {events / elapsed:,.0f} "
                  f"events/s, peak RSS {rss:.0f} MiB")  # fmt: skip
    if len(results) > 1:
        (small, small_times, _, _), (large, large_times, _, _) = results[0], results[-1]
        print(f"  ratio {large:,} / {small:,} events of the medians:", end="")
        for status in small_times:
            ratio = statistics.median(large_times[status]) / statistics.median(small_times[status])
            print(f"  {status} x{ratio:.2f}", end="")
        print()
    write_figures(sizes, results, python, helped)


def write_figures(
    sizes: list[int],
    results: list[tuple[int, dict[str, list[float]], float, dict[str, tuple[float, float]]]],
    python: list[float],
    helped: list[float],
) -> None:
    """The figures for ``benchmarks/summary.py``: the targets (issue 9) hold on the largest
    ledger; the smaller ones are printed beside it, without a target."""
    figures = Figures("command_latency", "command latency: submit of one line, verify, export")
    anchor = (f"python -c pass {statistics.median(python):.0f} ms, okr-ledger --help "
              f"{statistics.median(helped):.0f} ms (p50)")  # fmt: skip
    largest = max(sizes)
    for size, (events, times, peak, whole) in zip(sizes, results, strict=True):
        judged = size == largest
        for status, taken in times.items():
            p50 = statistics.median(taken)
            figures.add(f"submit of one line, {status} ({events:,} events, p50)", p50, "ms",
                        at_most(p50, 300) if judged else None, anchor=anchor,
                        note=f"worst {max(taken):.0f} ms of {len(taken)}")  # fmt: skip
        figures.add(f"peak RSS of a submit ({events:,} events)", peak, "MiB",
                    at_most(peak, RSS_LIMIT_MIB) if judged else None)  # fmt: skip
        for name, (elapsed, rss) in whole.items():
            figures.add(f"{name} of the whole ledger, CLI ({events:,} events)", events / elapsed,
                        "events/s", note=f"{elapsed:.2f} s")  # fmt: skip
            figures.add(f"peak RSS of {name} ({events:,} events)", rss, "MiB",
                        at_most(rss, RSS_LIMIT_MIB) if judged else None)  # fmt: skip
    if len(results) > 1:
        small, large = results[0], results[-1]
        for status in small[1]:
            ratio = statistics.median(large[1][status]) / statistics.median(small[1][status])
            figures.add(f"submit of one line, {status}: {large[0]:,} / {small[0]:,} events",
                        ratio, "x", note="the ratio of the p50s: the cost must not grow "
                        "with the ledger")  # fmt: skip
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
