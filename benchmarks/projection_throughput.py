"""Projections: throughput, memory, rebuild, and every query's latency, beside raw anchors.

Builds (once, cached in benchmarks/.work) a ledger of one org with K key results and N
check-ins (some late, corrected, retracted; a few target revisions). Then, each in a fresh
process:

1. projects it into a new chDB store (the embedded runner, as a command's first catch-up does)
   and prints events/s, the rows per event and the peak RSS of that process (Python and the
   embedded chDB together), split at its highest sample into anonymous memory and mapped file
   pages (chDB's library most of them: how many depends on the page cache, see
   docs/benchmarks.md), beside a fresh process that only imports chDB and opens a store;
   then the p50/p95 of every query kind in the process, and the cost of a restart from the
   saved state. The raw anchors of the same run: reading the SQLite ledger alone, and
   clickhouse-connect inserting the same rows into chDB (its own serialization);
2. runs each query as the CLI (``okr-ledger ... --json``) on that store: wall times, beside
   ``python -c pass`` and the CLI's imports;
3. runs ``okr-ledger rebuild`` (drop, project the whole ledger, compare): wall time, peak RSS
   and its split, beside the same open alone.

Figures go to benchmarks/.work/figures/projections.json (``benchmarks/summary.py``). The ledger
is written directly as hash-chained events (valid by construction) to save time;
``benchmarks/submit_throughput.py`` measures submission. With ``--inputs DIR``
(``benchmarks/inputs.py``) the ledger is a copy of the suite's instead (the store still starts
empty).
Usage: python benchmarks/projection_throughput.py [--key-results 1000] [--check-ins 1000000]
       [--inputs DIR]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import RSS_LIMIT_MIB, Figure, Figures, at_least, at_most, process_memory
from benchmarks.inputs import copy_ledger, given, ledger_name
from events.chain import event_hash
from events.sqlite_log import SqliteEventLog
from okr_ledger.projection_compare import ROW_HASH, TEXT_ROW_HASH, fingerprint
from processors import tables as t
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from processors.snapshots import FILE_NAME, SqliteSnapshots
from projections import monitoring, queries
from projections.migrations import COLUMN_TYPES
from projections.queries import Moment
from projections.store import ProjectionStore
from schemas.envelope import GENESIS_HASH, LedgerEvent, format_timestamp
from schemas.registry import latest_version

ORG = "bench"
WORK = Path(__file__).resolve().parent / ".work"
PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_SECONDS = 91 * 86_400
KINDS = (
    ("increase", 0, 100),
    ("decrease", 100, 0),
    ("increase", 10, 60),
    ("stay_above", 90, 95),
    ("milestone", 0, 1),
)
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
        yield (
            "ObjectiveCreated",
            {
                "objective_id": f"top{n}",
                "title": f"Top {n}",
                "owner_unit_id": "co",
                "period_id": "q4",
                "theme_ids": [f"t{n % 4}"],
                "rollup": "both",
            },
            at,
        )
    children = max(1, key_results // 5)
    for n in range(children):
        yield (
            "ObjectiveCreated",
            {
                "objective_id": f"obj{n}",
                "title": f"Objective {n}",
                "owner_unit_id": f"u{n % 20}",
                "period_id": "q4",
                "theme_ids": [],
                "parent_objective_id": f"top{n % tops}",
                "rollup": "key_results",
                "weight": 1 + n % 3,
            },
            at,
        )
    for n in range(key_results):
        kind, start, target = KINDS[n % len(KINDS)]
        yield (
            "KeyResultDefined",
            {
                "key_result_id": f"kr{n}",
                "objective_id": f"obj{n % children}",
                "title": f"Key result {n}",
                "kind": kind,
                "start": start,
                "target": target,
                "unit": "u",
                "weight": 1 + n % 2,
            },
            at,
        )


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
        data = {
            "key_result_id": f"kr{n}",
            "value": _kr_value(n, round_, rounds),
            "confidence": 0.5 + (i % 5) / 10,
        }
        yield "CheckInRecorded", data, occurred
        if i % 997 == 996:
            yield "correct", f"kr{n}", 0
        elif i % 4999 == 4998:
            yield "retract", f"kr{n}", 0
        if i % (check_ins // 10 or 1) == 0 and i:
            yield (
                "KeyResultTargetRevised",
                {
                    "key_result_id": f"kr{(i // 7) % key_results}",
                    "target": 120,
                    "reason": "stretch",
                },
                occurred,
            )


def chained_events(org: str, key_results: int, check_ins: int) -> Iterator[LedgerEvent]:
    """The workload of ``org`` as chained ledger events (corrections and retractions name
    the key result's latest check-in; one with none before it is left out)."""
    prev, sequence = GENESIS_HASH, 0
    last_check_in: dict[str, tuple[str, datetime]] = {}
    for spec in specs(key_results, check_ins):
        type_name, data, occurred = spec
        if type_name in ("correct", "retract"):
            kr = str(data)
            event_id, occurred = last_check_in.pop(kr, ("", PERIOD_START))
            if not event_id:
                continue
            if type_name == "correct":
                fix = {"corrects_event_id": event_id, "value": 1.0, "reason": "typo"}
                type_name, data = "CheckInCorrected", {"key_result_id": kr, **fix}
            else:
                fix = {"retracts_event_id": event_id, "reason": "wrong"}
                type_name, data = "CheckInRetracted", {"key_result_id": kr, **fix}
        assert isinstance(data, dict)
        assert isinstance(occurred, datetime)
        sequence += 1
        event_id = str(uuid5(NAMESPACE_URL, f"{org}/{sequence}"))
        record: dict[str, Any] = {
            "sequence": sequence,
            "event_id": event_id,
            "org_id": org,
            "type": type_name,
            "schema_version": latest_version(type_name),
            "occurred_at": format_timestamp(occurred),
            "recorded_at": format_timestamp(occurred + timedelta(minutes=5)),
            "actor": "bench",
            "source": "bench",
            "source_event_id": None,
            "correlation_id": None,
            "causation_id": None,
            "data": data,
            "prev_hash": prev,
        }
        record["hash"] = prev = event_hash(record)
        if type_name == "CheckInRecorded":
            last_check_in[data["key_result_id"]] = (event_id, occurred)
        yield LedgerEvent.from_record(record)


def build_ledger(path: Path, key_results: int, check_ins: int) -> int:
    """Write the workload as chained ledger events; returns how many."""
    log = SqliteEventLog(path)
    written = 0
    events = chained_events(ORG, key_results, check_ins)
    while batch := list(islice(events, 20_000)):
        log.append(batch)
        written += len(batch)
    log.close()
    return written


def _timed(call: Callable[[], object], samples: int) -> tuple[float, float]:
    """(p50, p95) seconds of ``samples`` runs of ``call`` (after one unmeasured run)."""
    call()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95


class MemorySampler:
    """Samples a process's memory (``/proc/<pid>/status``) every 20 ms: the sample of the
    highest VmRSS (its RssAnon and RssFile: the split of the peak) and the highest RssAnon."""

    def __init__(self, pid: str = "self") -> None:
        self.pid = pid
        self.peak: dict[str, int] = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self.anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                found = process_memory(self.pid)
            except (OSError, ValueError):
                found = {}
            if "VmRSS" in found:  # not once the process has exited
                self.anon = max(self.anon, found["RssAnon"])
                if found["VmRSS"] > self.peak["VmRSS"]:
                    self.peak = found
            time.sleep(0.02)

    def stop(self) -> "MemorySampler":
        self._stop.set()
        self._thread.join()
        return self

    def split(self) -> str:
        """The peak sample's split, and the highest anonymous sample."""
        return (
            f"at the highest sample ({self.peak['VmRSS']} MiB): RssAnon {self.peak['RssAnon']} "
            f"+ RssFile {self.peak['RssFile']} MiB; anonymous memory peaked at {self.anon} MiB"
        )


OPEN_ALONE = """
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
from benchmarks.figures import process_memory
from projections.store import ProjectionStore
with tempfile.TemporaryDirectory() as directory:
    store = ProjectionStore.open(f"chdb://{directory}/clickhouse")
    store.rows("SELECT 1")
    print(json.dumps(process_memory()))
    store.close()
"""


def open_alone() -> str:
    """The raw anchor of a command's memory: a fresh process that imports chDB, opens a new
    store and runs ``SELECT 1``, with the page cache as the measured runs find it."""
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", OPEN_ALONE, root], check=True, capture_output=True, text=True
    )
    found = orjson.loads(done.stdout.splitlines()[-1])
    return (
        f"chDB import + open + SELECT 1 alone (a fresh process): peak {found['VmHWM']} MiB "
        f"(RssAnon {found['RssAnon']}, RssFile {found['RssFile']})"
    )


QUERY_TARGETS = {
    "progress": 30,
    "progress --as-of": 60,
    "progress --at": 100,
    "cascade": 100,
    "coverage": 100,
    "history kr7": 100,
    "history obj3": 100,
}
"""p95 targets in ms (issue 9; ``cascade``, ``coverage`` and ``history``: "the same range").
The other queries measured (``trend``) have none."""


def _moments(log: SqliteEventLog, events: int) -> tuple[datetime, datetime]:
    first = next(log.read(ORG, 1, 1))
    last = next(log.read(ORG, events, events))
    return first.recorded + (last.recorded - first.recorded) / 2, last.recorded


def project_and_query(ledger: Path, data: Path, samples: int, figures: Figures) -> None:
    """Part 1: the first catch-up, the queries in process, a restart, the anchors."""
    alone = open_alone()
    sampler = MemorySampler()
    log = SqliteEventLog(ledger, create=False, read_only=True)  # as a command's catch-up
    store = ProjectionStore.open(f"chdb://{data / 'clickhouse'}")
    snapshots = SqliteSnapshots(data / FILE_NAME)
    before = process_memory()
    cpu = os.times()
    start = time.perf_counter()
    done = EmbeddedRunner(log, store, snapshots=snapshots).catch_up()
    elapsed = time.perf_counter() - start
    user, system = os.times().user - cpu.user, os.times().system - cpu.system
    after, sampled = process_memory(), sampler.stop()
    snapshots.close()
    rows = sum(
        int(store.rows(f"SELECT count() FROM {{db}}.{table}")[0][0])
        for table in t.COLUMNS
        if table not in (t.CHECKPOINTS, t.KEY_RESULTS_NOW, t.OBJECTIVES_NOW)
    )
    read_rate = _read_anchor(log)
    rate = done.events / elapsed
    figures.add(
        "projection (first catch-up, embedded runner)",
        rate,
        "events/s",
        at_least(rate, 120_000),
        anchor=f"reading the SQLite ledger alone: {read_rate:,.0f} events/s",
        note=f"{done.events:,} events in {elapsed:.1f} s (CPU user {user:.1f} + sys "
        f"{system:.1f} s), {rows / done.events:.2f} history rows per event",
    )
    figures.add(
        "peak RSS of the projection",
        after["VmHWM"],
        "MiB",
        at_most(after["VmHWM"], RSS_LIMIT_MIB),
        anchor=f"{alone}; this process before projecting: {before['VmRSS']} MiB "
        f"({before['RssFile']} MiB of it mapped files)",
        note=f"{sampled.split()} (load {os.getloadavg()[0]:.1f})",
    )
    print(f"    {sampled.split()}")

    middle, _last = _moments(log, done.events)
    now = datetime.now(UTC)
    cases: dict[str, Callable[[], object]] = {
        "progress": lambda: queries.progress(store, ORG, Moment(now=now), 5),
        "progress --as-of": lambda: queries.progress(store, ORG, Moment(as_of=middle, now=now), 5),
        "progress --at": lambda: queries.progress(store, ORG, Moment(at=middle, now=now), 5),
        "cascade": lambda: (
            queries.objectives(store, ORG, Moment(now=now), 5),
            queries.coverage(store, ORG, Moment(now=now)),
        ),
        "coverage": lambda: queries.coverage(store, ORG, Moment(now=now)),
        "history kr7": lambda: queries.history(store, ORG, "kr7", Moment(now=now)),
        "history obj3": lambda: queries.history(store, ORG, "obj3", Moment(now=now)),
        "trend kr7, 8 weeks": lambda: monitoring.trend(store, ORG, "kr7", Moment(now=now), 5),
        "trend obj3, 8 weeks": lambda: monitoring.trend(store, ORG, "obj3", Moment(now=now), 5),
    }
    for name, call in cases.items():
        p50, p95 = _timed(call, samples)
        limit = QUERY_TARGETS.get(name)
        figures.add(
            f"{name}, in process (p95)",
            p95 * 1000,
            "ms",
            at_most(p95 * 1000, limit) if limit is not None else None,
            note=f"p50 {p50 * 1000:.0f} ms",
        )

    restarted = SqliteSnapshots(data / FILE_NAME)
    start = time.perf_counter()
    EmbeddedRunner(log, store, snapshots=restarted)._restore(ORG, done.events, True)
    restore = time.perf_counter() - start
    restarted.close()
    size = sum(p.stat().st_size for p in data.glob(FILE_NAME + "*")) / 2**20
    figures.add(
        "restart: the projector's state from the saved state",
        restore * 1000,
        "ms",
        note=f"saved state {size:,.0f} MiB; what an event needs is read when it comes",
    )
    by_value, as_text, read = _fingerprint_times(store)
    figures.add(
        "fingerprint of the projections (`rebuild` takes two), in process",
        by_value,
        "s",
        anchor=f"reading every column of the same tables alone: {read:.2f} s; the rows' text "
        f"form hashed instead (servers before ClickHouse 25.5): {as_text:.2f} s",
    )
    insert_rate, insert_rows = _insert_anchor(log, store)
    figures.add(
        "anchor: clickhouse-connect inserting the same rows into chDB",
        insert_rate,
        "rows/s",
        note=f"{insert_rows:,} rows of the first events",
    )
    store.close()
    log.close()


def _fingerprint_times(store: ProjectionStore) -> tuple[float, float, float]:
    """Seconds of a fingerprint with each row hash, and of reading every column of the same
    tables with the same settings (``NOT ignore(*)``: read, nothing computed)."""
    times = []
    for hash_ in (ROW_HASH, TEXT_ROW_HASH):
        start = time.perf_counter()
        fingerprint(store, hash_=hash_)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    for table in (*t.HISTORY, *t.CURRENT):
        store.rows(
            f"SELECT count() FROM {{db}}.{table} WHERE NOT ignore(*)", None, store.scan_settings()
        )
    return times[0], times[1], time.perf_counter() - start


def _read_anchor(log: SqliteEventLog) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in log.read_records(ORG))
    return count / (time.perf_counter() - start)


def _insert_anchor(log: SqliteEventLog, store: ProjectionStore) -> tuple[float, int]:
    """clickhouse-connect's own insert (Python values, its serialization) of the rows of the
    first 100,000 events, into copies of the tables."""
    rows = Projector().project_records(islice(log.read_records(ORG), 100_000))
    client, database = store.client, "anchor"
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    count = 0
    elapsed = 0.0
    for table, batch in rows.items():
        if not batch or table == t.CHECKPOINTS:
            continue
        client.command(f"CREATE TABLE {database}.{table} AS {store.database}.{table}")
        names = [name for name, _kind in COLUMN_TYPES[table]]
        kinds = [kind for _name, kind in COLUMN_TYPES[table]]
        columns = [list(column) for column in zip(*batch, strict=True)]
        start = time.perf_counter()
        client.insert(
            f"{database}.{table}",
            columns,
            column_names=names,
            column_type_names=kinds,
            column_oriented=True,
        )
        elapsed += time.perf_counter() - start
        count += len(batch)
    client.command(f"DROP DATABASE {database}")
    return count / elapsed, count


def _cli(data: Path, *args: str, sampled: list[MemorySampler] | None = None) -> tuple[float, int]:
    """Wall time (s) and peak RSS (MiB) of one ``okr-ledger`` command on the data directory;
    with ``sampled``, its memory sampled too (appended there)."""
    env = {**os.environ, "OKR_DATA_DIR": str(data), "COLUMNS": "200"}
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "okr-ledger"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sampler = MemorySampler(str(process.pid)) if sampled is not None else None
    _pid, status, usage = os.wait4(process.pid, 0)
    if sampler is not None and sampled is not None:
        sampled.append(sampler.stop())
    elapsed = time.perf_counter() - start
    if status:
        stderr = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"okr-ledger {' '.join(args)} failed: {stderr}")
    return elapsed, usage.ru_maxrss // 1024


def cli_queries(data: Path, samples: int, figures: Figures) -> None:
    """Part 2: each query as the CLI runs it, beside the constant cost of a command."""
    python = [sys.executable, "-c"]
    bare = min(_wall([*python, "pass"]) for _ in range(3))
    imports = min(_wall([*python, "import okr_ledger.cli"]) for _ in range(3))
    log = SqliteEventLog(data / "ledger.db")
    middle, _last = _moments(log, log.heads()[ORG].sequence)
    log.close()
    when = middle.isoformat()
    commands = {
        "progress": ["progress", "--json"],
        "progress --as-of": ["progress", "--json", "--as-of", when],
        "progress --at": ["progress", "--json", "--at", when],
        "cascade": ["cascade", "--json"],
        "coverage": ["coverage", "--json"],
        "history kr7": ["history", "kr7", "--json"],
        "history obj3": ["history", "obj3", "--json"],
    }
    anchor = f"python -c pass: {bare * 1000:.0f} ms; import okr_ledger.cli: {imports * 1000:.0f} ms"
    for name, args in commands.items():
        times = sorted(_cli(data, *args)[0] for _ in range(samples))
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        figures.add(
            f"{name}, CLI wall (p95)",
            p95 * 1000,
            "ms",
            anchor=anchor,
            note=f"p50 {statistics.median(times) * 1000:.0f} ms",
        )


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def rebuild(data: Path, figures: Figures) -> None:
    """Part 3: ``okr-ledger rebuild`` (drop, project the whole ledger again, compare)."""
    alone = open_alone()
    sampled: list[MemorySampler] = []
    before = os.times()
    elapsed, peak = _cli(data, "rebuild", sampled=sampled)
    after = os.times()  # the command's CPU, its child process's included
    user = after.children_user - before.children_user
    system = after.children_system - before.children_system
    figures.add(
        "rebuild (CLI wall)",
        elapsed,
        "s",
        at_most(elapsed, 15),
        note=f"CPU user {user:.1f} + sys {system:.1f} s (load {os.getloadavg()[0]:.1f})",
    )
    figures.add(
        "peak RSS of rebuild",
        peak,
        "MiB",
        at_most(peak, RSS_LIMIT_MIB),
        anchor=alone,
        note=sampled[0].split(),
    )
    print(f"    {sampled[0].split()}")


def measure(ledger: Path, samples: int, cli_samples: int, *, copy: bool = False) -> None:
    """The three parts, each in a fresh process, on a data directory whose ledger is ``ledger``
    (linked to, or a copy of it with ``copy``) and whose store starts empty."""
    figures = Figures("projections", "projections: throughput, memory, queries")
    directory = Path(tempfile.mkdtemp(prefix="okr-bench-"))
    data = directory / "data"
    try:
        data.mkdir()
        if copy:
            copy_ledger(ledger, data / "ledger.db")
        else:
            (data / "ledger.db").symlink_to(ledger)
        part = [sys.executable, __file__, "--part"]
        for name in ("project", "cli", "rebuild"):
            subprocess.run([*part, name, str(data), str(samples), str(cli_samples)], check=True)
            document = orjson.loads((directory / f"{name}.json").read_bytes())
            figures.rows.extend(Figure(**row) for row in document)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"figures: {figures.write()}")


def run_part(name: str, data: Path, samples: int, cli_samples: int) -> None:
    figures = Figures(name, name)
    print(f"--- {name}")
    if name == "project":
        project_and_query(data / "ledger.db", data, samples, figures)
    elif name == "cli":
        cli_queries(data, cli_samples, figures)
    else:
        rebuild(data, figures)
    (data.parent / f"{name}.json").write_bytes(orjson.dumps(figures.rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-results", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20, help="Runs of each query in process.")
    parser.add_argument("--cli-samples", type=int, default=5, help="Runs of each CLI query.")
    parser.add_argument("--inputs", type=Path, help="The suite's inputs (benchmarks/inputs.py).")
    parser.add_argument("--part", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        name, data, samples, cli_samples = args.part
        run_part(name, Path(data), int(samples), int(cli_samples))
        return
    if args.inputs is not None:
        ledger = given(args.inputs, ledger_name(args.key_results, args.check_ins))
        print(f"org with {args.key_results:,} key results and {args.check_ins:,} check-ins, "
              f"a copy of {ledger}")  # fmt: skip
        measure(ledger, args.samples, args.cli_samples, copy=True)
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
    print(
        f"org with {args.key_results:,} key results and {args.check_ins:,} check-ins "
        f"(load average {', '.join(f'{x:.1f}' for x in os.getloadavg())})"
    )
    measure(ledger, args.samples, args.cli_samples)


if __name__ == "__main__":
    main()
