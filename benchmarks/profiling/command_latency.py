"""Profile single commands as the ledger grows: one ``submit``, ``progress`` after one new
event, and ``progress`` with nothing new, on an embedded data directory.

For each size (1,000 key results and N check-ins, the ledger of
benchmarks/projection_throughput.py) it prints:
- wall time of each command (median of ``--samples`` runs), beside ``python -c pass`` and
  ``python -c 'import okr_ledger.cli'`` of the same run;
- ``python -X importtime`` of each command: the slowest top-level imports;
- cProfile of each command: named stages (fold, snapshot load, chDB start, migrations check,
  catch-up, queries, rendering) with % of the command, and the top functions;
- component timings without a profiler, in process: the sequencer fold, the snapshot load,
  opening the store (chDB start + migrations check), the catch-up and the query.

Usage: python benchmarks/profiling/command_latency.py [--check-ins 10000,300000] [--samples 3]
"""

import argparse
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.profiling.common import bench_ledger, print_stage_table, print_top

BIN = Path(sys.executable).parent
CLI = BIN / "okr-ledger"
ORG = "bench"

SUBMIT_STAGES = (
    ("imports (all _find_and_load)", "cum", "_find_and_load"),
    ("typer/click dispatch (whole command)", "cum", "typer/main.py:__call__"),
    ("Settings() (pydantic-settings)", "cum", "pydantic_settings/main.py:__init__"),
    ("open the ledger (SqliteEventLog.__init__)", "cum", "events/sqlite_log.py:__init__"),
    ("submit the line (_submit_batch)", "cum", "events/ledger.py:_submit_batch"),
    ("  state read before the lock (prepare)", "cum", "events/state_store.py:prepare"),
    ("  decide_batch", "cum", "events/sequencer.py:decide_batch"),
    ("  SQLite append (append_decided)", "cum", "events/sqlite_log.py:append_decided"),
    ("    state tables (record)", "cum", "events/state_store.py:record"),
    ("  fold (should be none)", "cum", "events/sequencer.py:from_ledger"),
)  # fmt: skip

PROGRESS_STAGES = (
    ("imports (all _find_and_load)", "cum", "_find_and_load"),
    ("typer/click dispatch (whole command)", "cum", "typer/main.py:__call__"),
    ("open the store (ProjectionStore.open)", "cum", "projections/store.py:open"),
    ("  connect (imports clickhouse_connect + chdb)", "cum", "projections/client.py:connect"),
    ("    chDB engine start (_open_handle)", "cum", "chdb_backend.py:_open_handle"),
    ("    client handshake (init_sequence)", "cum", "orchestration.py:init_sequence"),
    ("  migrations check (migrate)", "cum", "projections/store.py:migrate"),
    ("catch up (embedded_runtime.catch_up)", "cum", "okr_ledger/embedded_runtime.py:catch_up"),
    ("  set_setting (focus limit)", "cum", "projections/store.py:set_setting"),
    ("  backlog (positions + heads)", "cum", "processors/runner.py:backlog"),
    ("  restore projector state (_restore)", "cum", "processors/runner.py:_restore"),
    ("    snapshot load (pickle)", "cum", "processors/snapshots.py:load"),
    ("    replay (Projector.project)", "cum", "processors/projector.py:project"),
    ("  SQLite read_records", "cum", "events/sqlite_log.py:read_records"),
    ("  project the new events (catch_up's own)", "cum", "processors/runner.py:catch_up"),
    ("  wait for the insert thread (lock acquire)", "self", "'acquire' of '_thread.lock' objects>"),
    ("  store.insert", "cum", "projections/store.py:insert"),
    ("  snapshot save", "cum", "processors/snapshots.py:save"),
    ("  rejections catch-up", "cum", "processors/runner.py:_catch_up_rejections"),
    ("queries.progress", "cum", "projections/queries.py:progress"),
    ("  store._query (ClickHouse)", "cum", "projections/store.py:_query"),
    ("render (rich tree / print)", "cum", "okr_ledger/query_cli.py:show_progress"),
    ("  rich Console.print", "cum", "rich/console.py:print"),
    ("store.close", "cum", "projections/store.py:close"),
)  # fmt: skip


def _run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.decode()}")
    return elapsed


_counter = iter(range(10**9))


def _one_check_in(directory: Path) -> Path:
    """A file with one new check-in (a fresh source_event_id each call)."""
    from benchmarks.workload import check_in

    path = directory / "one.ndjson"
    path.write_bytes(check_in(ORG, 7_000_000 + next(_counter), 1000) + b"\n")
    return path


def _importtime(args: list[str], env: dict[str, str], top: int = 12) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], env=env, capture_output=True, check=False
    )
    rows = []
    for line in done.stderr.decode().splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or "[us]" in line:
            continue
        rows.append((int(fields[0]), int(fields[1]), fields[2].rstrip()))
    total = sum(c for _s, c, n in rows if not n.startswith("  "))  # depth 0 only
    print(f"    import time (python -X importtime): {total / 1e3:.0f} ms for {len(rows)} modules")
    direct = [(c, n.strip()) for _s, c, n in rows if n.startswith("  ") and n[3] != " "]
    print("      slowest imports at depth 1 (ms, cumulative):  " + ", ".join(
        f"{name} {c / 1e3:.0f}" for c, name in sorted(direct, reverse=True)[:top]))  # fmt: skip
    by_package: dict[str, int] = {}
    for self_us, _c, name in rows:
        package = name.strip().split(".", 1)[0]
        by_package[package] = by_package.get(package, 0) + self_us
    print("      self time by top package (ms):  " + ", ".join(
        f"{name} {us / 1e3:.0f}" for name, us in sorted(
            by_package.items(), key=lambda kv: -kv[1])[:top]))  # fmt: skip


_PROFILED = """
import cProfile, sys
out, sys.argv = sys.argv[1], ["okr-ledger", *sys.argv[2:]]
profile = cProfile.Profile()
profile.enable()
try:
    from okr_ledger.cli import main
    main()
except SystemExit:
    pass
profile.disable()
profile.dump_stats(out)
"""


def _profile(args: list[str], env: dict[str, str], out: Path) -> pstats.Stats:
    """cProfile of ``okr-ledger ARGS`` (:func:`okr_ledger.cli.main` in a fresh process: the
    program's fast exit, ``run``, would end it before the profile is written)."""
    _run([sys.executable, "-c", _PROFILED, str(out), *args], env)
    return pstats.Stats(str(out))


def measure_size(check_ins: int, samples: int, work: Path, submit_only: bool = False) -> None:
    ledger = bench_ledger(1000, check_ins)
    data = work / f"data-{check_ins}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    shutil.copyfile(ledger, data / "ledger.db")
    env = {**os.environ, "OKR_DATA_DIR": str(data), "COLUMNS": "120"}
    import sqlite3

    events = sqlite3.connect(data / "ledger.db").execute("SELECT count(*) FROM events").fetchone()
    print(f"\n######## 1,000 key results, {check_ins:,} check-ins: {events[0]:,} ledger events")
    if not submit_only:
        first = _run([str(CLI), "progress"], env)
        print(f"  first progress (catches up the whole ledger, saves a snapshot): {first:.1f} s")

    plain = statistics.median(_run([sys.executable, "-c", "pass"], env) for _ in range(samples))
    imports = statistics.median(
        _run([sys.executable, "-c", "import okr_ledger.cli"], env) for _ in range(samples)
    )
    help_ = statistics.median(_run([str(CLI), "--help"], env) for _ in range(samples))
    print(f"  python -c pass: {plain * 1e3:.0f} ms; import okr_ledger.cli: {imports * 1e3:.0f} ms;"
          f" okr-ledger --help: {help_ * 1e3:.0f} ms")  # fmt: skip

    walls: dict[str, list[float]] = {"submit one line": [], "progress after one new event": [],
                                     "progress, nothing new": []}  # fmt: skip
    if submit_only:
        walls = {"submit one line": []}
    for _ in range(samples):
        walls["submit one line"].append(_run([str(CLI), "submit", str(_one_check_in(work))], env))
        if not submit_only:
            walls["progress after one new event"].append(_run([str(CLI), "progress"], env))
            walls["progress, nothing new"].append(_run([str(CLI), "progress"], env))
    print("  wall time (median of samples, min-max):")
    for name, times in walls.items():
        print(f"    {name:<30} {statistics.median(times) * 1e3:7.0f} ms "
              f"({min(times) * 1e3:.0f}-{max(times) * 1e3:.0f})")  # fmt: skip

    commands = [
        ("submit one line", ["submit", str(_one_check_in(work))], SUBMIT_STAGES),
        ("progress after one new event", ["progress"], PROGRESS_STAGES),
        ("progress, nothing new", ["progress"], PROGRESS_STAGES),
    ]
    for name, args, stages in commands[:1] if submit_only else commands:
        print(f"\n  --- {name} ({events[0]:,} events) ---")
        if name.startswith("progress after"):
            _run([str(CLI), "submit", str(_one_check_in(work))], env)
        _importtime([str(CLI), *args], env)
        if name.startswith("progress after"):
            _run([str(CLI), "submit", str(_one_check_in(work))], env)
        stats = _profile(args, env, work / "command.prof")
        print_stage_table(stats, 1, stages, f"cProfile of okr-ledger {' '.join(args[:1])}")
        print_top(stats, 1, 15, name)

    if not submit_only:
        subprocess.run([sys.executable, __file__, "--components", str(data)], env=env, check=True)


def components(data: Path) -> None:
    """In process, without a profiler: the parts a command is made of, timed one by one."""
    from events.sequencer import probe
    from events.sqlite_log import SqliteEventLog
    from okr_ledger.settings import Settings
    from okr_ledger.wiring import open_projection_store
    from processors.runner import EmbeddedRunner
    from processors.snapshots import FILE_NAME, SqliteSnapshots
    from projections import queries
    from projections.queries import Moment

    settings = Settings()
    log = SqliteEventLog(data / "ledger.db", create=False)
    print("\n  components, in process, no profiler:")
    start = time.perf_counter()
    probes = [probe(_one_check_in(data.parent).read_bytes().strip())]
    log.state.prepare(probes)  # the sequencer state one submission needs, read from SQLite
    print(f"    sequencer state for one line (store.prepare): {time.perf_counter() - start:8.3f} s")
    snapshots = SqliteSnapshots(data / FILE_NAME)
    start = time.perf_counter()
    snapshot = snapshots.load(ORG)
    loaded = time.perf_counter() - start
    size = sum(p.stat().st_size for p in data.glob(FILE_NAME + "*")) / 2**20
    print(f"    saved state load ({size:.1f} MiB, at {snapshot.position if snapshot else 0:,}; "
          f"check-ins read when needed): {loaded:8.3f} s")  # fmt: skip
    start = time.perf_counter()
    store = open_projection_store(settings, migrate=False)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    store.migrate()
    migrated = time.perf_counter() - start
    print(f"    chDB start (open, no migrate): {opened:8.3f} s; migrations check: {migrated:.3f} s")
    start = time.perf_counter()
    store.set_setting("over_focus_limit", str(settings.over_focus_limit))
    runner = EmbeddedRunner(log, store, snapshots=snapshots)
    backlog = runner.backlog()
    runner.catch_up(backlog=backlog)
    print(
        f"    catch-up with nothing new (backlog {backlog.events}): "
        f"{time.perf_counter() - start:8.3f} s"
    )
    restarted = EmbeddedRunner(log, store, snapshots=snapshots)
    start = time.perf_counter()
    restarted._restore(ORG, log.heads()[ORG].sequence, True)
    print(f"    projector restore to the head (saved state + replay): "
          f"{time.perf_counter() - start:8.3f} s")  # fmt: skip
    for _ in range(2):
        start = time.perf_counter()
        queries.progress(store, ORG, Moment(), settings.over_focus_limit)
        print(f"    queries.progress (in process): {time.perf_counter() - start:8.3f} s")
    snapshots.close()
    store.close()
    log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-ins", default="10000,300000", help="Comma-separated sizes.")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--components", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--submit-only", action="store_true", help="Only the submit command.")
    args = parser.parse_args()
    if args.components:
        components(args.components)
        return
    with tempfile.TemporaryDirectory(prefix="okr-profile-latency-") as tmp:
        for size in (int(s) for s in args.check_ins.split(",")):
            measure_size(size, args.samples, Path(tmp), args.submit_only)


if __name__ == "__main__":
    main()
