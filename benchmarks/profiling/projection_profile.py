"""Profile the projection: ledger -> projector -> chDB, on the benchmark org.

The ledger is the one of benchmarks/projection_throughput.py (K key results, N check-ins,
some late, corrected, retracted; a few target revisions), built once in benchmarks/.work.
Each phase runs in its own process (chDB allows one engine per process, and the memory
figures must not mix):

- ``catch-up``: the runner as the CLI runs it (inserts overlap projecting), events/s, cyclic
  GC time, RSS by step; raw anchors of the same run (SQLite fetch of the bodies, orjson parse,
  clickhouse-connect inserts into chDB of the same rows);
- ``split``: the same work done sequentially and timed without a profiler (wall, and CPU per
  stage): read + decode, projector, staging (Arrow), and per table the insert; rows per event
  and bytes per row (in the parts on disk); the saved state's save and load;
- ``cprofile``: the sequential loop under cProfile: handlers, emitters, helpers;
- ``memory``: tracemalloc of the projector's state and of the sequencer's state after the
  whole ledger (bytes per check-in, largest allocation sites) and of one batch of rows;
- ``structure``: CPU of structural events at a few org sizes (the benchmark org's setup with
  50, 200, 800 objectives, then 100 objective revisions), each event recomputing only what
  it can change and (same run, the anchor) every objective.

Usage: python benchmarks/profiling/projection_profile.py [--key-results 1000]
       [--check-ins 200000] [--phases catch-up,split,cprofile,memory]
"""

import argparse
import functools
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.profiling.common import (
    Stages,
    bench_ledger,
    gc_watch,
    peak_rss_mib,
    print_areas,
    print_stage_table,
    print_top,
    profiled,
    rate,
    rss_mib,
)
from events.collector import collector_paused
from events.sqlite_log import SqliteEventLog
from processors import tables as t
from processors.projector import Projector
from processors.runner import DEFAULT_BATCH_SIZE, DEFAULT_COMMIT_BYTES, EmbeddedRunner
from processors.snapshots import Snapshot, SqliteSnapshots
from processors.tables import RowBatch
from projections.store import ProjectionStore

ORG = "bench"

PROJECTOR_STAGES = (
    ("SQLite read_records (fetch + orjson.loads)", "cum", "events/sqlite_log.py:read_records"),
    ("  orjson.loads", "self", "orjson.loads>"),
    ("Projector.project_records (whole)", "cum", "processors/projector.py:project_records"),
    ("  micros (timestamps)", "cum", "processors/projector.py:micros"),
    ("  audit_row", "cum", "processors/audit.py:audit_row"),
    ("    orjson.dumps (data column)", "self", "orjson.dumps>"),
    ("  handler: check_in_recorded", "cum", "processors/key_results.py:check_in_recorded"),
    ("    id_bytes", "cum", "processors/state.py:id_bytes"),
    ("    score", "cum", "processors/scoring.py:score"),
    ("    key_result_moved", "cum", "processors/objectives.py:key_result_moved"),
    ("      _moved_exactly (rare)", "cum", "processors/objectives.py:_moved_exactly"),
    ("  handler: check_in_corrected", "cum", "processors/key_results.py:check_in_corrected"),
    ("  handler: check_in_retracted", "cum", "processors/key_results.py:check_in_retracted"),
    ("  handler: target_revised", "cum", "processors/key_results.py:target_revised"),
    ("  all_objectives_changed", "cum", "processors/objectives.py:all_objectives_changed"),
    ("  fresh (exact roll-up, per commit)", "cum", "processors/objectives.py:fresh"),
    ("  Batch.finish (current-state rows)", "cum", "processors/batch.py:finish"),
    ("ProjectionStore.stage (Arrow)", "cum", "projections/store.py:stage"),
    ("ProjectionStore.commit (inserts)", "cum", "projections/store.py:commit"),
    ("  chdb engine call (raw insert)", "cum", "chdb_backend.py:execute_raw_insert"),
)  # fmt: skip


class CpuStages(Stages):
    """:class:`Stages` that also charge each lap's CPU time (user and system, this process's
    threads), steadier than wall time on a shared machine."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.cpu_mark = os.times()

    def reset(self) -> None:
        super().reset()
        self.cpu_mark = os.times()

    def lap(self, name: str, calls: int = 1) -> None:
        super().lap(name, calls)
        now, mark = os.times(), self.cpu_mark
        spent = self.cpu[name]
        spent[0] += now.user - mark.user
        spent[1] += now.system - mark.system
        self.cpu_mark = now

    def print_cpu(self, items: int) -> None:
        print("  CPU per item (user + system, µs; the clock ticks are 10 ms, so laps are summed):")
        for name, (user, system) in self.cpu.items():
            print(f"    {name:<44} {(user + system) / items * 1e6:7.2f} "
                  f"({user / items * 1e6:.2f} + {system / items * 1e6:.2f})")  # fmt: skip


def _fresh_store(where: Path) -> ProjectionStore:
    return ProjectionStore.open(f"chdb://{where / 'clickhouse'}")


# --- catch-up, as the CLI runs it -------------------------------------------------------------


def phase_catch_up(ledger: Path, work: Path) -> None:
    print(f"\n=== catch-up as the CLI runs it (EmbeddedRunner.catch_up, batches of "
          f"{DEFAULT_BATCH_SIZE:,}) ===")  # fmt: skip
    rss = {"after imports": rss_mib()}
    log = SqliteEventLog(ledger, create=False, read_only=True)  # as the CLI opens it
    store = _fresh_store(work)
    rss["after chDB open + migrate"] = rss_mib()
    runner = EmbeddedRunner(log, store, snapshots=SqliteSnapshots(work / "state.sqlite"))
    collector: dict[str, float] = {}
    start = time.perf_counter()
    with gc_watch(collector):
        done = runner.catch_up()
        gc.collect()
    elapsed = time.perf_counter() - start
    rss["after catch-up"] = rss_mib()
    print(f"  projected {done.events:,} events in {elapsed:.2f} s: {rate(done.events, elapsed)}"
          f" (cyclic GC {collector.get('seconds', 0):.2f} s in {collector.get('runs', 0):.0f}"
          f" runs; includes the saved state's save)")  # fmt: skip
    print(
        f"  peak RSS {peak_rss_mib():.0f} MiB; RSS by step: "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items())
    )
    anchors(log, store, done.events)
    store.close()
    log.close()


def anchors(log: SqliteEventLog, store: ProjectionStore, events: int) -> None:
    """SQLite fetch, orjson parse and chDB inserts of the same data, in this run."""
    db = log._db
    start = time.perf_counter()
    cursor = db.execute("SELECT body FROM events WHERE org_id = ? ORDER BY sequence", (ORG,))
    bodies = [body for rows in iter(lambda: cursor.fetchmany(2000), []) for (body,) in rows]
    fetch = time.perf_counter() - start
    start = time.perf_counter()
    for body in bodies:
        orjson.loads(body)
    parse = time.perf_counter() - start
    print("\n  raw anchors (this run):")
    print(f"    SQLite fetch of the bodies:        {rate(len(bodies), fetch):>12} events")
    print(f"    orjson parse of the bodies:        {rate(len(bodies), parse):>12} events")
    for table in (t.AUDIT, t.CHECK_INS, t.OBJECTIVE_UPDATES, t.KEY_RESULTS_NOW):
        rows = store.rows(f"SELECT * FROM {{db}}.{table} LIMIT 200000")
        store._run(f"CREATE TABLE IF NOT EXISTS {{db}}.anchor_{table} AS {{db}}.{table}")
        columns = [list(c) for c in zip(*rows, strict=True)]
        names = list(t.COLUMNS[table])
        start = time.perf_counter()
        for first in range(0, len(rows), DEFAULT_BATCH_SIZE):
            store.client.insert(
                f"{store.database}.anchor_{table}",
                [c[first : first + DEFAULT_BATCH_SIZE] for c in columns],
                column_names=names,
                column_oriented=True,
            )
        insert = time.perf_counter() - start
        print(f"    clickhouse-connect insert into chDB, {table} ({len(rows):,} rows, "
              f"{len(names)} columns): {rate(len(rows), insert)} rows")  # fmt: skip
    print(f"    ({events:,} events projected above)")


# --- the sequential split ---------------------------------------------------------------------


class InsertMeter:
    """Wraps a store's ``_insert``: time and inserts per table (the rows are counted as staged)."""

    def __init__(self, store: ProjectionStore) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.rows: Counter[str] = Counter()
        self.inserts: Counter[str] = Counter()
        inner_insert: Callable[..., Any] = store._insert

        @functools.wraps(inner_insert)
        def timed_insert(table: str, stream: Any) -> None:
            start = time.perf_counter()
            inner_insert(table, stream)
            self.total[table] += time.perf_counter() - start
            self.inserts[table] += 1

        store._insert = timed_insert  # type: ignore[method-assign]  # measuring, not changing

    def count(self, rows: RowBatch) -> None:
        for table, batch in rows.items():
            self.rows[table] += len(batch)

    def print(self, events: int, store: ProjectionStore) -> None:
        parts = {
            str(row[0]): row[1:]
            for row in store.rows(
                "SELECT table, sum(rows), sum(data_uncompressed_bytes), "
                "sum(data_compressed_bytes) FROM system.parts WHERE database = {db:String} "
                "AND active GROUP BY table",
                {"db": store.database},
            )
        }
        whole = sum(self.total.values())
        print(f"\n  inserts per table ({whole:.2f} s in all: clickhouse-connect's raw insert of "
              "the staged Arrow stream, chDB's work):")  # fmt: skip
        print(f"    {'table':<28} {'rows/event':>10} {'inserts':>7} {'% time':>6} "
              f"{'s':>7} {'rows/s':>10} {'B/row disk':>10} {'B/row raw':>9}")  # fmt: skip
        for table in sorted(self.total, key=lambda name: -self.total[name]):
            rows = self.rows[table]
            disk = parts.get(table, (0, 0, 0))
            disk_rows = int(disk[0]) or 1
            print(
                f"    {table:<28} {rows / events:10.3f} {self.inserts[table]:7d} "
                f"{100 * self.total[table] / whole:6.1f} {self.total[table]:7.2f} "
                f"{rate(rows, self.total[table]):>10} "
                f"{int(disk[2]) / disk_rows:10.1f} {int(disk[1]) / disk_rows:9.1f}"
            )
        history = sum(n for table, n in self.rows.items() if table in t.HISTORY)
        total_rows = sum(self.rows.values())
        print(f"    all tables: {total_rows / events:.2f} rows per event "
              f"({history / events:.2f} history rows), "
              f"{rate(total_rows, whole)} rows inserted")  # fmt: skip


def phase_split(ledger: Path, work: Path) -> None:
    print("\n=== sequential split, no profiler (read -> project -> stage -> commit) ===")
    log = SqliteEventLog(ledger)
    store = _fresh_store(work)
    meter = InsertMeter(store)
    projector = Projector()
    stages = CpuStages()
    events = 0
    by_type: Counter[str] = Counter()
    records = log.read_records(ORG)
    collector: dict[str, float] = {}
    wall = time.perf_counter()
    with gc_watch(collector), collector_paused():
        while True:
            stages.reset()
            batch = list(islice(records, DEFAULT_BATCH_SIZE))
            if not batch:
                break
            stages.lap("SQLite fetch + orjson.loads (read_records)", len(batch))
            rows = projector.project_records(batch, current=False)
            if store.staged_bytes >= DEFAULT_COMMIT_BYTES:
                t.merge(rows, projector.current_rows())
            stages.lap("Projector.project_records", len(batch))
            meter.count(rows)
            store.stage(rows)
            stages.lap("ProjectionStore.stage (Arrow)", len(batch))
            if rows[t.KEY_RESULTS_NOW]:
                store.commit()
                stages.lap("ProjectionStore.commit (inserts)", 0)
            events += len(batch)
            by_type.update(e["type"] for e in batch)
        rows = projector.current_rows()
        meter.count(rows)
        store.stage(rows)
        store.commit()
        stages.lap("ProjectionStore.commit (inserts)", 0)
    state = projector.state.orgs[ORG]
    snapshots = SqliteSnapshots(work / "state.sqlite")
    stages.reset()
    snapshots.save(Snapshot(ORG, state.last_sequence, "x", state))
    stages.lap("saved state: save", 0)
    wall = time.perf_counter() - wall
    size = sum(p.stat().st_size for p in work.glob("state.sqlite*"))
    stages.print(f"split of {events:,} events: {rate(events, wall)} sequential", events, wall)
    stages.print_cpu(events)
    print(f"  cyclic GC (paused as in the runner): {collector.get('seconds', 0):.2f} s")
    snapshots.close()
    again = SqliteSnapshots(work / "state.sqlite")
    start = time.perf_counter()
    loaded = again.load(ORG)
    assert loaded is not None
    for key_result in loaded.state.key_results.values():
        loaded.state.check_ins_of(key_result)
    print(f"  saved state: {size / 2**20:.1f} MiB ({size / by_type['CheckInRecorded']:.0f} B per "
          f"check-in); load, every key result's check-ins too: "
          f"{time.perf_counter() - start:.2f} s")  # fmt: skip
    again.close()
    print("  events by type: " + ", ".join(f"{k} {v:,}" for k, v in by_type.most_common()))
    meter.print(events, store)
    store.close()
    log.close()


# --- cProfile ---------------------------------------------------------------------------------


def phase_cprofile(ledger: Path, work: Path) -> None:
    log = SqliteEventLog(ledger)
    store = _fresh_store(work)
    projector = Projector()

    def run() -> int:
        events = 0
        with collector_paused():
            records = log.read_records(ORG)
            while batch := list(islice(records, DEFAULT_BATCH_SIZE)):
                store.stage(projector.project_records(batch, current=False))
                if store.staged_bytes >= DEFAULT_COMMIT_BYTES:
                    store.stage(projector.current_rows())
                    store.commit()
                events += len(batch)
            store.stage(projector.current_rows())
            store.commit()
        return events

    events, stats, wall = profiled(run)
    print(f"\n=== cProfile of the sequential loop: {events:,} events in {wall:.1f} s under "
          "the profiler ===")  # fmt: skip
    print_stage_table(stats, events, PROJECTOR_STAGES, "named stages (per event)")
    print_areas(stats)
    print_top(stats, events, 30, "projection")
    store.close()
    log.close()


# --- memory -----------------------------------------------------------------------------------


def _top_sites(snapshot: tracemalloc.Snapshot, count: int, per: int, what: str) -> None:
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    print(f"    largest allocation sites ({what}; bytes per check-in):")
    for stat in stats[:count]:
        frame = stat.traceback[0]
        where = frame.filename.replace(str(Path(__file__).resolve().parents[2]) + "/", "")
        if "site-packages" in where:
            where = where.split("site-packages/", 1)[1]
        print(f"      {stat.size / per:7.1f} B  {100 * stat.size / total:5.1f}%  "
              f"{stat.count:>9,} blocks  {where}:{frame.lineno}")  # fmt: skip


def phase_memory(ledger: Path, work: Path) -> None:
    log = SqliteEventLog(ledger)
    check_ins = log._db.execute(
        "SELECT count(*) FROM events WHERE type = 'CheckInRecorded'"
    ).fetchone()[0]
    events = log.heads()[ORG].sequence
    print(f"\n=== memory (tracemalloc; {events:,} events, {check_ins:,} check-ins) ===")
    rss_before = rss_mib()
    tracemalloc.start()
    projector = Projector()
    batch_peak = 0
    one_batch = 0
    with collector_paused():
        records = log.read_records(ORG)
        while batch := list(islice(records, DEFAULT_BATCH_SIZE)):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            rows: RowBatch | None = projector.project_records(batch)
            after, peak = tracemalloc.get_traced_memory()
            if batch[0]["sequence"] > 20_000 and not one_batch:  # a batch of check-ins
                one_batch = after - before
            batch_peak = max(batch_peak, peak)
            rows = None
            del rows
    gc.collect()
    state_bytes = tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot()
    print(f"  projector state: {state_bytes / 2**20:.1f} MiB traced = "
          f"{state_bytes / check_ins:.0f} B per check-in "
          f"({state_bytes / events:.0f} B per event)")  # fmt: skip
    print(f"    one batch of {DEFAULT_BATCH_SIZE:,} events: rows + new state "
          f"{one_batch / 2**20:.1f} MiB ({one_batch / DEFAULT_BATCH_SIZE:.0f} B per event); "
          f"peak while projecting {batch_peak / 2**20:.1f} MiB traced")  # fmt: skip
    print(f"    RSS grew {rss_mib() - rss_before:.0f} MiB (tracemalloc's own overhead included)")
    _top_sites(snapshot, 12, check_ins, "projector state")
    state = projector.state
    del projector
    tracemalloc.stop()
    del state
    gc.collect()

    from events.sequencer import Sequencer

    tracemalloc.start()
    sequencer = Sequencer.from_ledger(log.read())
    gc.collect()
    size = tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot()
    print(f"  sequencer state (Sequencer.from_ledger): {size / 2**20:.1f} MiB traced = "
          f"{size / check_ins:.0f} B per check-in ({size / events:.0f} B per event; "
          f"{len(sequencer.state.known):,} known ids, "
          f"{len(sequencer.state.orgs[ORG].check_ins):,} check-ins)")  # fmt: skip
    _top_sites(snapshot, 10, check_ins, "sequencer state")
    tracemalloc.stop()
    log.close()


# --- structural events at a few org sizes -----------------------------------------------------


def _structural_records(objective_count: int, revisions: int) -> list[dict[str, Any]]:
    """The benchmark org's setup with ``objective_count`` objectives (10 at the top), then
    ``revisions`` weight revisions of objectives below them: ledger records."""
    from benchmarks.projection_throughput import chained_events
    from processors.projector import RECORD_FIELDS

    setup = chained_events(ORG, 5 * (objective_count - 10), 0)
    records = [{name: getattr(event, name) for name in RECORD_FIELDS} for event in setup]
    last = records[-1]
    for n in range(revisions):
        sequence = last["sequence"] + 1 + n
        records.append({**last, "sequence": sequence, "event_id": str(uuid5(NAMESPACE_URL,
                        f"{ORG}/{sequence}")), "type": "ObjectiveRevised", "schema_version": 1,
                        "data": {"objective_id": f"obj{n * 7 % (objective_count - 10)}",
                                 "weight": 1 + n % 4}})  # fmt: skip
    return records


def phase_structure(ledger: Path, work: Path) -> None:
    from processors import objectives

    print(
        "\n=== structural events: CPU (time.process_time; best of 3) of the setup batch and"
        " per objective revision, scoped and (the anchor) recomputing every objective ==="
    )
    print(f"  {'objectives':>10} {'setup events':>12} {'setup ms: scoped':>17} {'full':>8}"
          f" {'µs per revision: scoped':>24} {'full':>8}")  # fmt: skip
    for count in (50, 200, 800):
        records = _structural_records(count, 100)
        setup = len(records) - 100
        figures: dict[bool, list[float]] = {}
        for scoped in (True, False):
            objectives.SCOPED = scoped
            best = figures[scoped] = [float("inf"), float("inf")]
            for _ in range(3):
                projector = Projector()
                for n, part in enumerate((records[:setup], records[setup:])):
                    start = time.process_time()
                    projector.project_records(part)
                    best[n] = min(best[n], time.process_time() - start)
        objectives.SCOPED = True
        print(f"  {count:>10} {setup:>12} {figures[True][0] * 1e3:>17.1f}"
              f" {figures[False][0] * 1e3:>8.1f} {figures[True][1] / 100 * 1e6:>24.1f}"
              f" {figures[False][1] / 100 * 1e6:>8.1f}")  # fmt: skip


PHASES: dict[str, Callable[[Path, Path], None]] = {
    "catch-up": phase_catch_up,
    "split": phase_split,
    "cprofile": phase_cprofile,
    "memory": phase_memory,
    "structure": phase_structure,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-results", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=200_000)
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--ledger", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        work = Path(tempfile.mkdtemp(prefix="okr-profile-projection-"))
        try:
            PHASES[args.phase](args.ledger, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    ledger = bench_ledger(args.key_results, args.check_ins)
    print(f"projection profile: {args.key_results:,} key results, {args.check_ins:,} check-ins "
          f"({ledger.name})")  # fmt: skip
    for phase in args.phases.split(","):
        subprocess.run(
            [sys.executable, __file__, "--phase", phase, "--ledger", str(ledger)], check=True
        )


if __name__ == "__main__":
    main()
