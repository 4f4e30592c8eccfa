"""Takeover cost: what a worker's takeover of a partition reads to find the rows of commits cut
short (``ProjectionStore.discard_unfinished``), on stores of 10,000 and of 1,000,000 check-ins
over 12 orgs (the ratio of the two is the point: it must not grow with history).

For each size, in a fresh process: a ledger of ``--orgs`` orgs (cached in benchmarks/.work;
the workload of ``benchmarks/projection_throughput.py``, each org's events chained, org n with
n + 1 shares of the check-ins, so that their checkpoints differ widely, the orgs interleaved
in blocks) is projected into a new chDB store by the embedded runner (timed: the catch-up's
events/s and CPU, which an index on the history tables slows), then every org gets a
``ledger-begun`` mark :data:`~projections.store.MARK_AHEAD` beyond its checkpoint, as a
worker's commits leave them. Then, ``--rounds`` times each, p50 of wall and CPU (the process's,
all threads):

- ``discard_unfinished`` of all the orgs (the checkpoints given, as a takeover reads them: no
  row is beyond them, so nothing is deleted), and its read alone (``_beyond``) for all the orgs
  and for 2 of them (the smallest and the largest), with the parts, granules and rows those
  statements read (``EXPLAIN ESTIMATE``: chDB's query summary does not count them);
- the raw anchors of the same run: ``SELECT 1``, and a read of ``event_times`` (sorted by
  ``(org_id, sequence)``) beyond the same checkpoints.

Figures go to benchmarks/.work/figures/takeover.json (``benchmarks/summary.py``). With
``--inputs DIR`` (``benchmarks/inputs.py``) each size starts from a copy of the suite's ledger
and of its store, projected by the same embedded runner when the suite built it; the catch-up
is then not timed here (``projection_throughput.py`` times it).
Usage: python benchmarks/takeover_cost.py [--sizes 10000,1000000] [--orgs 12] [--rounds 7]
       [--inputs DIR]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figure, Figures
from benchmarks.inputs import (
    copy_ledger,
    copy_store,
    given,
    takeover_ledger_name,
    takeover_store_name,
)
from benchmarks.projection_throughput import WORK, chained_events
from events.sqlite_log import SqliteEventLog
from processors import tables as t
from processors.runner import EmbeddedRunner
from projections import store as store_module
from projections.store import ProjectionStore

BLOCK = 5_000
"""Events of one org written together before the next org's (the orgs' events interleave)."""


def build_ledger(path: Path, orgs: int, key_results: int, check_ins: int) -> int:
    """``orgs`` orgs of ``key_results`` key results sharing ``check_ins`` check-ins: org n
    (from 0) has n + 1 shares of them, so that their checkpoints differ widely."""
    log = SqliteEventLog(path)
    share = check_ins / (orgs * (orgs + 1) // 2)
    streams = [
        chained_events(f"org{n:02d}", key_results, round(share * (n + 1))) for n in range(orgs)
    ]
    written = 0
    try:
        while streams:
            for stream in list(streams):
                block = list(islice(stream, BLOCK))
                if not block:
                    streams.remove(stream)
                    continue
                log.append(block)
                written += len(block)
    finally:
        log.close()
    return written


def _timed(call: Callable[[], object], rounds: int) -> tuple[float, float]:
    """p50 of wall and of process CPU (ms) over ``rounds`` runs, after one unmeasured run."""
    call()
    walls, cpus = [], []
    for _ in range(rounds):
        cpu, start = time.process_time(), time.perf_counter()
        call()
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def _read(store: ProjectionStore, call: Callable[[], object]) -> tuple[int, int, int]:
    """The parts, rows and granules that the statements of ``call`` would read, by
    ``EXPLAIN ESTIMATE`` (chDB's query summary does not count them)."""
    statements: list[tuple[str, Any]] = []
    query = store.client.query

    def recording(sql: str, *args: Any, **kwargs: Any) -> Any:
        statements.append((sql, kwargs.get("parameters")))
        return query(sql, *args, **kwargs)

    store.client.query = recording  # type: ignore[method-assign,assignment]
    try:
        call()
    finally:
        del store.client.query
    parts = rows = granules = 0
    for sql, parameters in statements:
        for _db, _table, *counts in query(f"EXPLAIN ESTIMATE {sql}", parameters).result_rows:
            parts, rows, granules = (
                a + int(b) for a, b in zip((parts, rows, granules), counts, strict=True)
            )
    return parts, rows, granules


def _settle(store: ProjectionStore, limit: float = 60.0) -> None:
    """Wait (at most ``limit`` s) until no merge runs: the reads are timed on a quiet store."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        merges = store.rows("SELECT count() FROM system.merges WHERE database = {db:String}",
                            {"db": store.database})  # fmt: skip
        if merges == [(0,)]:
            return
        time.sleep(0.5)


def measure(ledger: Path, data: Path, rounds: int, built: Path | None = None) -> list[Figure]:
    """The figures of one size; the store is projected here (timed), or a copy of ``built``."""
    figures = Figures("part", "part")
    if built is not None:
        data.mkdir(parents=True)
        copy_ledger(ledger, data / "ledger.db")
        copy_store(built, data / "clickhouse")
        ledger = data / "ledger.db"
    log = SqliteEventLog(ledger, create=False, read_only=True)
    store = ProjectionStore.open(f"chdb://{data / 'clickhouse'}")
    if built is None:
        cpu, start = os.times(), time.perf_counter()
        done = EmbeddedRunner(log, store).catch_up()
        elapsed = time.perf_counter() - start
        used = sum(os.times()[:2]) - sum(cpu[:2])
        note = f"{done.events:,} events in {elapsed:.1f} s, CPU {used:.1f} s"
        figures.add("catch-up", done.events / elapsed, "events/s", note=note)
        print(f"    {note}", flush=True)
    _settle(store)
    committed = store.positions()
    marks = [
        (t.BEGUN_STREAM, org, end + store_module.MARK_AHEAD, 0) for org, end in committed.items()
    ]
    store.insert({t.CHECKPOINTS: marks})
    found = store.checkpoints()
    orgs = sorted(committed)
    history = sum(
        int(store.rows(f"SELECT count() FROM {{db}}.{table}")[0][0])
        for table in t.HISTORY
        if table != t.REJECTIONS
    )
    figures.add("history rows", history, "rows", note=f"{len(orgs)} orgs")

    def beyond(some: list[str]) -> Callable[[], object]:
        return lambda: store._beyond({org: committed[org] for org in some})

    def event_times(some: list[str]) -> Callable[[], object]:
        where = " OR ".join(f"(org_id = '{org}' AND sequence > {committed[org]})" for org in some)
        return lambda: store.rows(f"SELECT DISTINCT org_id FROM {{db}}.event_times WHERE {where}")

    cases = {
        f"discard_unfinished, {len(orgs)} orgs": lambda: store.discard_unfinished(found),
        f"_beyond, {len(orgs)} orgs": beyond(orgs),
        "_beyond, 2 orgs": beyond([orgs[0], orgs[-1]]),
        "anchor: SELECT 1": lambda: store.rows("SELECT 1"),
        f"anchor: event_times beyond, {len(orgs)} orgs": event_times(orgs),
    }
    for name, call in cases.items():
        assert name.startswith("anchor") or call() in ([], set()), "nothing is beyond"
        wall, cpu_ms = _timed(call, rounds)
        parts, rows, granules = _read(store, call)
        note = f"CPU {cpu_ms:.1f} ms; reads {parts} parts, {granules:,} granules, {rows:,} rows"
        figures.add(f"{name} (p50 wall)", wall, "ms", note=note)
        print(f"    {note}", flush=True)
    store.close()
    log.close()
    return figures.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="Check-ins, over all the orgs.")
    parser.add_argument("--orgs", type=int, default=12)
    parser.add_argument("--key-results", type=int, default=100, help="Per org.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--inputs", type=Path, help="The suite's inputs (benchmarks/inputs.py).")
    parser.add_argument("--part", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--built", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        ledger, data, out = args.part
        rows = measure(Path(ledger), Path(data), args.rounds, args.built)
        Path(out).write_bytes(orjson.dumps(rows))
        return
    WORK.mkdir(exist_ok=True)
    print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    figures = Figures("takeover", "takeover: rows beyond the checkpoints (discard_unfinished)")
    by_size: dict[int, dict[str, float]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        names = (args.orgs, args.key_results, size)
        built: list[str] = []
        if args.inputs is not None:
            ledger = given(args.inputs, takeover_ledger_name(*names))
            built = ["--built", str(given(args.inputs, takeover_store_name(*names)))]
        else:
            ledger = WORK / takeover_ledger_name(*names)
        if not ledger.exists():
            start = time.perf_counter()
            partial = ledger.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            count = build_ledger(partial, args.orgs, args.key_results, size)
            partial.rename(ledger)
            print(f"built a ledger of {count:,} events in {time.perf_counter() - start:.0f} s")
        print(f"--- {size:,} check-ins over {args.orgs} orgs")
        directory = Path(tempfile.mkdtemp(prefix="okr-takeover-"))
        try:
            out = directory / "figures.json"
            part = [sys.executable, __file__, "--rounds", str(args.rounds), *built, "--part"]
            subprocess.run([*part, str(ledger), str(directory / "data"), str(out)], check=True)
            rows = [Figure(**row) for row in orjson.loads(out.read_bytes())]
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        by_size[size] = {row.figure: row.value for row in rows}
        for row in rows:
            row.figure = f"{row.figure}, {size:,} check-ins"
        figures.rows.extend(rows)
    if len(by_size) > 1:
        small, large = by_size[min(by_size)], by_size[max(by_size)]
        for name in small:
            if name.endswith("(p50 wall)"):
                figures.add(f"{name}: {max(by_size):,} / {min(by_size):,}",
                            large[name] / small[name], "x")  # fmt: skip
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
