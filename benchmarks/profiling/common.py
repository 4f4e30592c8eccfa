"""Shared pieces of the profiling scripts: cProfile runs summarised with percentages, stage
timers, memory readings and the benchmark ledgers.

Figures on a shared 2-core machine are noisy: read the proportions and the ratios to the raw
anchors measured in the same run, not the absolute times.
"""

import cProfile
import gc
import os
import pstats
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.figures import process_memory  # noqa: E402 - after the path is set

WORK = ROOT / "benchmarks" / ".work"
FuncKey = tuple[str, int, str]
"""pstats' key of a function: (file, line, name)."""
StatRow = tuple[int, int, float, float, dict[FuncKey, tuple[int, int, float, float]]]


# --- timing -----------------------------------------------------------------------------------


@dataclass
class Stages:
    """Wall time per named stage, accumulated over many items, printed per item and as %.

    Laps: ``stages.lap(name)`` charges the time since the previous lap (or :meth:`reset`) to
    ``name``, so consecutive laps cover the loop with no gap and little overhead.
    """

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mark: float = field(default_factory=time.perf_counter)

    def reset(self) -> None:
        self.mark = time.perf_counter()

    def lap(self, name: str, calls: int = 1) -> None:
        now = time.perf_counter()
        self.seconds[name] += now - self.mark
        self.calls[name] += calls
        self.mark = now

    def print(self, title: str, items: int, total: float | None = None) -> None:
        whole = total if total is not None else sum(self.seconds.values())
        print(f"\n{title} ({items:,} items; % of {whole:.2f} s)")
        print(f"  {'stage':<44} {'s':>8} {'µs/item':>9} {'%':>6} {'calls/item':>10}")
        for name, seconds in self.seconds.items():
            print(
                f"  {name:<44} {seconds:8.3f} {seconds / items * 1e6:9.2f} "
                f"{100 * seconds / whole:6.1f} {self.calls[name] / items:10.2f}"
            )
        staged = sum(self.seconds.values())
        print(f"  {'sum of stages':<44} {staged:8.3f} {staged / items * 1e6:9.2f} "
              f"{100 * staged / whole:6.1f}")  # fmt: skip


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "n/a"


# --- cProfile -----------------------------------------------------------------------------------


def profiled(call: Callable[[], Any]) -> tuple[Any, pstats.Stats, float]:
    """Run ``call`` under cProfile; returns its result, the stats and the wall time."""
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    try:
        result = call()
    finally:
        profile.disable()
    wall = time.perf_counter() - start
    return result, pstats.Stats(profile), wall


def _rows(stats: pstats.Stats) -> dict[FuncKey, StatRow]:
    rows: dict[FuncKey, StatRow] = stats.stats  # type: ignore[attr-defined]  # pstats' own table
    return rows


def label(key: FuncKey) -> str:
    """A short name: ``package/module.py:function`` or the builtin's own name."""
    file, _line, name = key
    if file == "~":
        return name
    path = file.replace(str(ROOT) + os.sep, "")
    if "site-packages" in path:
        path = path.split("site-packages" + os.sep, 1)[1]
    elif "/lib/python" in path:
        path = "stdlib:" + path.split("/lib/python", 1)[1].split(os.sep, 1)[-1]
    return f"{path}:{name}"


def total_time(stats: pstats.Stats) -> float:
    return float(stats.total_tt)  # type: ignore[attr-defined]  # pstats' own total


def print_top(stats: pstats.Stats, items: int, count: int = 25, title: str = "") -> None:
    """Top functions by cumulative and by self time, with % of the profiled total."""
    total = total_time(stats)
    rows = _rows(stats)
    for heading, by_cumulative in (("cumulative", True), ("self", False)):
        print(f"\ntop {count} by {heading} time{' - ' + title if title else ''} "
              f"(profiled total {total:.2f} s; per item = per {items:,})")  # fmt: skip
        print(f"  {'%cum':>6} {'%self':>6} {'calls/item':>10}  function")
        ranked = sorted(
            rows.items(), key=lambda kv: kv[1][3] if by_cumulative else kv[1][2], reverse=True
        )
        for key, (_cc, calls, self_time, cumulative, _callers) in ranked[:count]:
            print(
                f"  {100 * cumulative / total:6.1f} {100 * self_time / total:6.1f} "
                f"{calls / items:10.2f}  {label(key)[:110]}"
            )


def find(stats: pstats.Stats, pattern: str) -> list[FuncKey]:
    """Functions whose label ends with ``pattern`` (``events/canonical.py:canonical_bytes``)."""
    return [key for key in _rows(stats) if label(key).endswith(pattern)]


def _summed(stats: pstats.Stats, pattern: str, cumulative_time: bool) -> tuple[int, float]:
    calls, seconds = 0, 0.0
    for key in find(stats, pattern):
        row = _rows(stats)[key]
        calls += row[1]
        seconds += row[3] if cumulative_time else row[2]
    return calls, seconds


def cumulative(stats: pstats.Stats, pattern: str) -> tuple[int, float]:
    """(calls, cumulative seconds) of the functions matching ``pattern``, summed."""
    return _summed(stats, pattern, cumulative_time=True)


def self_time(stats: pstats.Stats, pattern: str) -> tuple[int, float]:
    """(calls, self seconds) of the functions matching ``pattern``, summed."""
    return _summed(stats, pattern, cumulative_time=False)


def by_caller(stats: pstats.Stats, pattern: str) -> dict[str, tuple[int, float]]:
    """For functions matching ``pattern``: caller -> (calls, cumulative seconds) from it."""
    out: dict[str, tuple[int, float]] = {}
    for key in find(stats, pattern):
        for caller, (_cc, calls, _tt, ct) in _rows(stats)[key][4].items():
            old = out.get(label(caller), (0, 0.0))
            out[label(caller)] = (old[0] + calls, old[1] + ct)
    return out


def print_stage_table(
    stats: pstats.Stats, items: int, stages: Sequence[tuple[str, str, str]], title: str
) -> None:
    """Named stages, each the cumulative (``cum``) or self (``self``) time of one function."""
    total = total_time(stats)
    print(f"\n{title} (cProfile; % of profiled total {total:.2f} s; per item = per {items:,})")
    print(f"  {'stage':<46} {'%':>6} {'calls/item':>10}  function")
    for name, kind, pattern in stages:
        calls, seconds = (cumulative if kind == "cum" else self_time)(stats, pattern)
        print(f"  {name:<46} {100 * seconds / total:6.1f} {calls / items:10.2f}  {pattern}")


def self_by_area(stats: pstats.Stats) -> dict[str, float]:
    """Self time partitioned by where the code lives (sums to the profiled total)."""
    areas: dict[str, float] = defaultdict(float)
    for key, row in _rows(stats).items():
        areas[_area(key)] += row[2]
    return dict(sorted(areas.items(), key=lambda kv: -kv[1]))


def _area(key: FuncKey) -> str:
    file, _line, name = key
    if file == "~":
        for library in ("orjson", "_hashlib", "sqlite3", "pickle", "chdb", "_json", "uuid"):
            if library in name:
                return f"builtin {library}"
        if "pydantic" in name or "SchemaValidator" in name or "SchemaSerializer" in name:
            return "builtin pydantic-core"
        return "other builtins"
    path = file.replace(str(ROOT) + os.sep, "")
    if "site-packages" in path:
        return "lib " + path.split("site-packages" + os.sep, 1)[1].split(os.sep, 1)[0]
    if "/lib/python" in path:
        module = path.split("/lib/python", 1)[1].split(os.sep, 1)[-1]
        return "stdlib " + module.split(os.sep, 1)[0].removesuffix(".py")
    return "project " + path.split(os.sep, 1)[0]


def print_areas(stats: pstats.Stats, title: str = "self time by area") -> None:
    total = total_time(stats)
    print(f"\n{title} (cProfile self time; sums to 100%)")
    for area, seconds in self_by_area(stats).items():
        if seconds / total >= 0.003:
            print(f"  {100 * seconds / total:6.1f}  {area}")


@contextmanager
def gc_watch(report: dict[str, float]) -> Iterator[None]:
    """Time spent in the cyclic garbage collector during the block (``report``: s, runs)."""
    started: list[float] = []

    def callback(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            report["seconds"] = report.get("seconds", 0.0) + time.perf_counter() - started.pop()
            report["runs"] = report.get("runs", 0) + 1

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


# --- memory -----------------------------------------------------------------------------------


def rss_mib() -> float:
    """Current resident set size of this process."""
    return float(process_memory().get("VmRSS", 0))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the benchmark ledger ---------------------------------------------------------------------


def bench_ledger(key_results: int, check_ins: int) -> Path:
    """The ledger of ``benchmarks/projection_throughput.py`` (built once, cached in .work)."""
    from benchmarks.projection_throughput import build_ledger

    WORK.mkdir(exist_ok=True)
    ledger = WORK / f"ledger-{key_results}kr-{check_ins}ci.db"
    if not ledger.exists():
        start = time.perf_counter()
        partial = ledger.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        count = build_ledger(partial, key_results, check_ins)
        partial.rename(ledger)
        print(f"built {ledger.name}: {count:,} events in {time.perf_counter() - start:.0f} s")
    return ledger
