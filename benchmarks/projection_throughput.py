"""Projection throughput: the embedded runner from a SQLite ledger into chDB, and query latency.

Builds (once, cached in benchmarks/.work) a ledger of one org with K key results and N
check-ins (some late, corrected, retracted; a few target revisions), then, in a fresh process,
projects it into a new chDB store and prints:

- throughput from ledger to projections (events/s) and peak memory (max RSS of that process,
  Python and the embedded chDB engine together);
- p50/p95 latency of ``progress`` (now), of an as-of query (``--as-of`` mid-period) and of a
  business-time query (``--at`` mid-period), each a full answer for the org;
- how long a restarted runner takes to rebuild the projector's state: from a snapshot, and
  by replaying the ledger.

The ledger is written directly as hash-chained events (valid by construction) to save time;
``benchmarks/submit_throughput.py`` measures submission.
Usage: python benchmarks/projection_throughput.py [--key-results 1000] [--check-ins 1000000]
"""

import argparse
import gc
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.chain import event_hash
from events.sqlite_log import SqliteEventLog
from processors.runner import EmbeddedRunner
from processors.snapshots import Snapshot, SqliteSnapshots
from projections import queries
from projections.queries import Moment
from projections.store import ProjectionStore
from schemas.envelope import GENESIS_HASH, LedgerEvent, format_timestamp
from schemas.registry import latest_version

ORG = "bench"
WORK = Path(__file__).resolve().parent / ".work"
PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_SECONDS = 91 * 86_400
KINDS = (("increase", 0, 100), ("decrease", 100, 0), ("increase", 10, 60),
         ("stay_above", 90, 95), ("milestone", 0, 1))  # fmt: skip
Spec = tuple[str, dict[str, Any], datetime]


def _setup(key_results: int) -> Iterator[Spec]:
    at = PERIOD_START - timedelta(days=10)
    yield "StrategyDefined", {"mission": "m", "vision": "v"}, at
    for n in range(4):
        yield "ThemeAdded", {"theme_id": f"t{n}", "name": f"Theme {n}"}, at
    yield "OrgUnitAdded", {"unit_id": "co", "name": "Co", "kind": "company"}, at
    for n in range(20):
        unit = {"unit_id": f"u{n}", "name": f"Team {n}", "kind": "team", "parent_unit_id": "co"}
        yield "OrgUnitAdded", unit, at
    period = {"period_id": "q4", "name": "Q4", "starts_on": "2026-10-01", "ends_on": "2026-12-31"}
    yield "PeriodDefined", period, at
    tops = 10
    for n in range(tops):
        yield "ObjectiveCreated", {"objective_id": f"top{n}", "title": f"Top {n}",
               "owner_unit_id": "co", "period_id": "q4", "theme_ids": [f"t{n % 4}"],
               "rollup": "both"}, at  # fmt: skip
    children = max(1, key_results // 5)
    for n in range(children):
        yield "ObjectiveCreated", {"objective_id": f"obj{n}", "title": f"Objective {n}",
               "owner_unit_id": f"u{n % 20}", "period_id": "q4", "theme_ids": [],
               "parent_objective_id": f"top{n % tops}", "rollup": "key_results",
               "weight": 1 + n % 3}, at  # fmt: skip
    for n in range(key_results):
        kind, start, target = KINDS[n % len(KINDS)]
        yield "KeyResultDefined", {"key_result_id": f"kr{n}", "objective_id": f"obj{n % children}",
               "title": f"Key result {n}", "kind": kind, "start": start, "target": target,
               "unit": "u", "weight": 1 + n % 2}, at  # fmt: skip


def _kr_value(n: int, i: int, rounds: int) -> float:
    kind, start, target = KINDS[n % len(KINDS)]
    if kind == "milestone":
        return 1.0 if i > rounds * 0.8 else 0.0
    return round(start + (target - start) * (i / rounds) * (0.7 + 0.6 * ((n * 7) % 10) / 10), 2)


def specs(key_results: int, check_ins: int) -> Iterator[Spec | tuple[str, str, int]]:
    """The workload; ("correct"/"retract", key result, 0) stand for a fix of its last check-in."""
    yield from _setup(key_results)
    rounds = max(1, check_ins // key_results)
    for i in range(check_ins):
        n, round_ = i % key_results, i // key_results
        occurred = PERIOD_START + timedelta(seconds=PERIOD_SECONDS * i / check_ins)
        if i % 101 == 100:
            occurred -= timedelta(days=3)  # a late one, measured before the latest
        data = {"key_result_id": f"kr{n}", "value": _kr_value(n, round_, rounds),
                "confidence": 0.5 + (i % 5) / 10}  # fmt: skip
        yield "CheckInRecorded", data, occurred
        if i % 997 == 996:
            yield "correct", f"kr{n}", 0
        elif i % 4999 == 4998:
            yield "retract", f"kr{n}", 0
        if i % (check_ins // 10 or 1) == 0 and i:
            yield "KeyResultTargetRevised", {"key_result_id": f"kr{(i // 7) % key_results}",
                   "target": 120, "reason": "stretch"}, occurred  # fmt: skip


def build_ledger(path: Path, key_results: int, check_ins: int) -> int:
    """Write the workload as chained ledger events; returns how many."""
    log = SqliteEventLog(path)
    prev, sequence, batch = GENESIS_HASH, 0, []
    last_check_in: dict[str, tuple[str, datetime]] = {}
    for spec in specs(key_results, check_ins):
        type_name, data, occurred = spec
        if type_name in ("correct", "retract"):
            kr = str(data)
            event_id, occurred = last_check_in.pop(kr, ("", PERIOD_START))
            if not event_id:
                continue
            if type_name == "correct":
                type_name, data = "CheckInCorrected", {"key_result_id": kr,
                    "corrects_event_id": event_id, "value": 1.0, "reason": "typo"}  # fmt: skip
            else:
                type_name, data = "CheckInRetracted", {"key_result_id": kr,
                    "retracts_event_id": event_id, "reason": "wrong"}  # fmt: skip
        assert isinstance(data, dict)
        assert isinstance(occurred, datetime)
        sequence += 1
        event_id = str(uuid5(NAMESPACE_URL, f"{ORG}/{sequence}"))
        record = {
            "sequence": sequence, "event_id": event_id, "org_id": ORG, "type": type_name,
            "schema_version": latest_version(type_name),
            "occurred_at": format_timestamp(occurred),
            "recorded_at": format_timestamp(occurred + timedelta(minutes=5)),
            "actor": "bench", "source": "bench", "source_event_id": None,
            "correlation_id": None, "causation_id": None, "data": data, "prev_hash": prev,
        }  # fmt: skip
        record["hash"] = prev = event_hash(record)
        if type_name == "CheckInRecorded":
            last_check_in[data["key_result_id"]] = (event_id, occurred)
        batch.append(LedgerEvent.from_record(record))
        if len(batch) >= 20_000:
            log.append(batch)
            batch = []
    log.append(batch)
    log.close()
    return sequence


def _timed(call: Callable[[], object], samples: int) -> tuple[float, float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95


def measure(ledger: Path, samples: int, batch_size: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="okr-bench-"))
    try:
        log = SqliteEventLog(ledger)
        store = ProjectionStore.open(f"chdb://{directory / 'clickhouse'}")
        runner = EmbeddedRunner(log, store, batch_size=batch_size)
        start = time.perf_counter()
        done = runner.catch_up()
        gc.collect()  # the collection the catch-up deferred: its cost, not the first query's
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"projected {done.events:,} events in {elapsed:.1f} s: "
              f"{done.events / elapsed:,.0f} events/s")  # fmt: skip
        print(f"peak memory (max RSS, Python + chDB): {peak:,.0f} MiB")
        first = next(log.read(ORG, 1, 1))
        last = next(log.read(ORG, done.events, done.events))
        middle = first.recorded + (last.recorded - first.recorded) / 2
        for label, moment in (
            ("progress (now)", Moment()),
            ("progress --as-of mid-period", Moment(as_of=middle)),
            ("progress --at mid-period", Moment(at=middle)),
        ):
            p50, p95 = _timed(partial(queries.progress, store, ORG, moment, 5), samples)
            print(f"{label}: p50 {p50 * 1000:,.0f} ms, p95 {p95 * 1000:,.0f} ms")
        _restarts(log, store, runner, done.events, directory)
        store.close()
        log.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _restarts(
    log: SqliteEventLog, store: ProjectionStore, runner: EmbeddedRunner, events: int, where: Path
) -> None:
    """How long a restarted runner takes to rebuild its state: from a snapshot, and without."""
    snapshots = SqliteSnapshots(where / "snapshots.sqlite")
    state = runner.projector.state.orgs[ORG]
    last = next(log.read(ORG, events, events))
    start = time.perf_counter()
    snapshots.save(Snapshot(ORG, events, last.hash, state))
    saved = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (where / "snapshots").iterdir()) / 2**20
    print(f"snapshot of the projector's state: {size:,.0f} MiB, written in {saved:.1f} s")
    for label, store_of_snapshots in (("from the snapshot", snapshots), ("by replay", None)):
        restarted = EmbeddedRunner(log, store, snapshots=store_of_snapshots)
        start = time.perf_counter()
        restarted._restore(ORG, events)
        print(f"restart {label}: state rebuilt in {time.perf_counter() - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-results", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20, help="Runs of each query.")
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.samples, args.batch_size)
        return
    WORK.mkdir(exist_ok=True)
    ledger = WORK / f"ledger-{args.key_results}kr-{args.check_ins}ci.db"
    if not ledger.exists():
        start = time.perf_counter()
        partial = ledger.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        count = build_ledger(partial, args.key_results, args.check_ins)
        partial.rename(ledger)
        print(f"built a ledger of {count:,} events in {time.perf_counter() - start:.0f} s")
    print(f"org with {args.key_results:,} key results and {args.check_ins:,} check-ins")
    subprocess.run(
        [sys.executable, __file__, "--measure", str(ledger), "--samples", str(args.samples),
         "--batch-size", str(args.batch_size)],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    main()
