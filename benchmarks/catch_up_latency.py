"""Catch-up latency: what ``progress`` costs after one new event and with nothing new, on a
ledger of 10,000 and of 1,000,000 check-ins (the ratio of the two is the point).

For each size, in a fresh process and a data directory holding a copy of the benchmark ledger
(``benchmarks/projection_throughput.py``): the first catch-up (``okr-ledger progress``: wall
time, peak RSS); then, ``--rounds`` times, one check-in appended to the ledger (chained
directly, as the ledger writes them) and ``progress`` measured twice: once after the new event
and once with nothing new, each

- in process, as a command runs it: open the store (the chDB engine, the migrations check),
  catch up (the saved state, the new event, its rows), query; each part timed. All rounds
  run in one process, so after the first its median has chDB imported (and pyarrow, which
  the first write imports): the engine's start, not its import;
- in a fresh process: the same parts in a new process for each (the ledger side imported,
  as ``okr-ledger`` has it; then the projection side's imports, and ``open`` with chDB's
  import and clickhouse-connect's): what a command pays beyond the CLI's own imports;
- as the CLI: the wall time of ``okr-ledger progress --json``;
- in a long-lived process, as ``okr-ledger serve`` reads (the store kept open between reads:
  ``okr_ledger/kept_projections.py``), with the query alone on the open store as its anchor.

Beside them, the constant part of a command: ``python -c pass``, ``import okr_ledger.cli``, and
chDB alone on the same store in a fresh process (its import; opening the store and ``SELECT 1``).
Figures go to benchmarks/.work/figures/catch_up.json (``benchmarks/summary.py``). With
``--inputs DIR`` (``benchmarks/inputs.py``) the ledgers are copies of the suite's instead.
Usage: python benchmarks/catch_up_latency.py [--sizes 10000,1000000] [--rounds 5] [--inputs DIR]
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import RSS_LIMIT_MIB, Figure, Figures, at_most
from benchmarks.inputs import copy_ledger, given, ledger_name
from benchmarks.projection_throughput import ORG, WORK, _cli, build_ledger
from events.chain import event_hash
from events.sqlite_log import SqliteEventLog
from schemas.envelope import LedgerEvent, format_timestamp

KEY_RESULTS = 1000


def append_check_in(ledger: Path, n: int) -> None:
    """One check-in more, chained to the ledger's head (as the ledger would write it)."""
    log = SqliteEventLog(ledger)
    try:
        head = log.heads()[ORG]
        last = next(log.read(ORG, head.sequence, head.sequence))
        record: dict[str, Any] = {
            "sequence": head.sequence + 1,
            "event_id": f"00000000-0000-4000-8000-{n:012d}",
            "org_id": ORG,
            "type": "CheckInRecorded",
            "schema_version": 2,
            "occurred_at": format_timestamp(last.recorded),
            "recorded_at": format_timestamp(last.recorded + timedelta(seconds=1)),
            "actor": "bench",
            "source": "bench",
            "source_event_id": None,
            "correlation_id": None,
            "causation_id": None,
            "data": {"key_result_id": f"kr{n % 7}", "value": 50.0 + n, "confidence": 0.7},
            "prev_hash": head.hash,
        }
        record["hash"] = event_hash(record)
        log.append([LedgerEvent.from_record(record)])
    finally:
        log.close()


def in_process(data: Path) -> dict[str, float]:
    """A ``progress`` command's parts, timed (ms), in this process: the imports of the
    projection side (0 once imported; chDB's own is in ``open``), then as below."""
    begun = time.perf_counter()
    from okr_ledger.embedded_runtime import catch_up
    from okr_ledger.runtime import no_progress
    from okr_ledger.settings import Settings
    from okr_ledger.wiring import open_event_log, open_projection_store
    from projections import queries
    from projections.queries import Moment

    settings = Settings(data_dir=data)
    start = time.perf_counter()
    store = open_projection_store(settings)
    opened = time.perf_counter()
    log = open_event_log(settings, create=False)
    try:
        catch_up(store, log, settings, no_progress, "projecting")
    finally:
        log.close()
    caught_up = time.perf_counter()
    queries.progress(store, ORG, Moment(), settings.over_focus_limit)
    answered = time.perf_counter()
    store.close()
    return {
        "imports": (start - begun) * 1000,
        "open": (opened - start) * 1000,
        "catch-up": (caught_up - opened) * 1000,
        "query": (answered - caught_up) * 1000,
        "total": (answered - begun) * 1000,
    }


def in_fresh_process(data: Path) -> dict[str, float]:
    """:func:`in_process` in a new process, as a command meets it: chDB not yet imported (nor
    the projection side), the ledger side imported already (as ``okr-ledger`` has it)."""
    done = subprocess.run([sys.executable, __file__, "--fresh", str(data)], check=True,
                          capture_output=True)  # fmt: skip
    parts: dict[str, float] = orjson.loads(done.stdout.splitlines()[-1])
    return parts


def kept_rounds(data: Path, rounds: int, first: int) -> tuple[list[float], list[float], float]:
    """``progress`` in a long-lived process (``okr-ledger serve``'s reads:
    :class:`~okr_ledger.kept_projections.KeptProjections`, the store kept open): ms after one
    new event and with nothing new, per round; and the query alone on the open store (ms,
    median), the anchor."""
    from okr_ledger.kept_projections import KeptProjections
    from okr_ledger.settings import Settings
    from projections import queries
    from projections.queries import Moment

    settings = Settings(data_dir=data)
    reader = KeptProjections(settings, idle_s=3600)

    def progress(store: Any) -> object:
        return queries.progress(store, ORG, Moment(), settings.over_focus_limit)

    def timed() -> float:
        start = time.perf_counter()
        reader.read(progress)
        return (time.perf_counter() - start) * 1000

    try:
        reader.read(progress)  # opens the store
        new, same, alone = [], [], []
        for n in range(rounds):
            append_check_in(data / "ledger.db", first + n)
            new.append(timed())
            same.append(timed())
            start = time.perf_counter()
            reader.read(lambda store: None)  # nothing new: the catch-up's check only
            check = time.perf_counter()
            reader.read(progress)
            alone.append((time.perf_counter() - check) * 1000 - (check - start) * 1000)
    finally:
        reader.close()
    return new, same, max(statistics.median(alone), 0.0)


CHDB_ALONE = """
import sys, time
start = time.perf_counter()
import chdb
imported = time.perf_counter()
connection = chdb.connect(sys.argv[1])
connection.query("SELECT 1")
print((imported - start) * 1000, (time.perf_counter() - imported) * 1000)
connection.close()
"""


def chdb_alone(store: Path) -> str:
    """The raw anchor of a command's fixed part: chDB by itself in a fresh process, on the same
    store (best of 3): its import, then opening the store and answering ``SELECT 1``."""
    runs = [
        [float(ms) for ms in subprocess.run(
            [sys.executable, "-c", CHDB_ALONE, str(store)], check=True, capture_output=True,
            text=True,
        ).stdout.split()]
        for _ in range(3)
    ]  # fmt: skip
    imported = min(run[0] for run in runs)
    opened = min(run[1] for run in runs)
    return f"chDB alone, fresh process: import {imported:.0f} ms, open + SELECT 1 {opened:.0f} ms"


def measure(check_ins: int, rounds: int, out: Path, inputs: Path | None) -> None:
    """One size, in this (fresh) process: the figures as JSON rows into ``out``."""
    name = ledger_name(KEY_RESULTS, check_ins)
    ledger = given(inputs, name) if inputs is not None else WORK / name
    size = f"{check_ins:,} check-ins"
    figures = Figures("part", size)
    directory = Path(tempfile.mkdtemp(prefix="okr-latency-"))
    data = directory / "data"
    try:
        data.mkdir()
        copy_ledger(ledger, data / "ledger.db")
        print(f"--- {size}", flush=True)
        wall, peak = _cli(data, "progress", "--json")
        figures.add(f"first catch-up, CLI wall ({size})", wall, "s")
        figures.add(
            f"peak RSS of the first catch-up ({size})", peak, "MiB", at_most(peak, RSS_LIMIT_MIB)
        )
        alone = chdb_alone(data / "clickhouse")
        print(f"  {alone}", flush=True)
        new: list[dict[str, float]] = []
        same: list[dict[str, float]] = []
        new_fresh: list[dict[str, float]] = []
        same_fresh: list[dict[str, float]] = []
        new_cli: list[float] = []
        same_cli: list[float] = []
        for n in range(rounds):
            append_check_in(data / "ledger.db", 3 * n)
            new.append(in_process(data))
            same.append(in_process(data))
            append_check_in(data / "ledger.db", 3 * n + 1)
            new_fresh.append(in_fresh_process(data))
            same_fresh.append(in_fresh_process(data))
            append_check_in(data / "ledger.db", 3 * n + 2)
            new_cli.append(_cli(data, "progress", "--json")[0] * 1000)
            same_cli.append(_cli(data, "progress", "--json")[0] * 1000)
        for label, parts, fresh, cli, limit in (
            ("after one new event", new, new_fresh, new_cli, 300),
            ("nothing new", same, same_fresh, same_cli, 150),
        ):
            for where, runs, named in (
                ("in process", parts, ("open", "catch-up", "query")),
                ("in a fresh process", fresh, ("imports", "open", "catch-up", "query")),
            ):
                median = {part: statistics.median(p[part] for p in runs) for part in runs[0]}
                split = ", ".join(f"{part} {median[part]:.0f}" for part in named)
                figures.add(f"progress, {label}, {where} ({size}, p50)", median["total"], "ms",
                            at_most(median["total"], limit), anchor=alone,
                            note=f"{split} ms")  # fmt: skip
            figures.add(f"progress, {label}, CLI wall ({size}, p50)", statistics.median(cli), "ms")
        kept_new, kept_same, query = kept_rounds(data, rounds, 3 * rounds)
        for label, times, limit in (
            ("after one new event", kept_new, 300),
            ("nothing new", kept_same, 150),
        ):
            p50 = statistics.median(times)
            figures.add(f"progress, {label}, long-lived process: serve ({size}, p50)", p50,
                        "ms", at_most(p50, limit),
                        anchor=f"the query alone on the open store: {query:.0f} ms")  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    out.write_bytes(orjson.dumps(figures.rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="Check-ins of each ledger.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inputs", type=Path, help="The suite's inputs (benchmarks/inputs.py).")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--fresh", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fresh:
        print(orjson.dumps(in_process(args.fresh)).decode())
        return
    if args.measure:
        check_ins, rounds, out = args.measure
        measure(int(check_ins), int(rounds), Path(out), args.inputs)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    for check_ins in sizes:
        ledger = WORK / ledger_name(KEY_RESULTS, check_ins)
        if args.inputs is None and not ledger.exists():
            WORK.mkdir(exist_ok=True)
            partial = ledger.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            build_ledger(partial, KEY_RESULTS, check_ins)
            partial.rename(ledger)
    figures = Figures("catch_up", "catch-up latency: 10k vs 1M check-ins")
    python = [sys.executable, "-c"]
    walls = {}
    for name, code in (
        ("python -c pass", "pass"),
        ("import okr_ledger.cli", "import okr_ledger.cli"),
    ):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([*python, code], check=True)
            runs.append(time.perf_counter() - start)
        walls[name] = min(runs) * 1000
    print(f"constant part of a command: {walls}")
    with tempfile.TemporaryDirectory() as tmp:
        for check_ins in sizes:
            out = Path(tmp) / f"{check_ins}.json"
            given_inputs = ["--inputs", str(args.inputs)] if args.inputs is not None else []
            subprocess.run([sys.executable, __file__, *given_inputs, "--measure", str(check_ins),
                            str(args.rounds), str(out)], check=True)  # fmt: skip
            figures.rows.extend(Figure(**row) for row in orjson.loads(out.read_bytes()))
    anchor = ", ".join(f"{name}: {ms:.0f} ms" for name, ms in walls.items())
    for row in figures.rows:
        if "CLI wall" in row.figure:
            row.anchor = anchor
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
