"""Profile ``submit``: N check-in lines into a fresh embedded ledger, then the same file again.

Prints, for the first run (all accepted) and the rerun (all duplicates):
- raw anchors of the same run: orjson parse, pydantic validation (envelope + payload models),
  sha256 and a bare SQLite insert of the same lines;
- the CLI's wall time and max RSS (``okr-ledger submit --json``, as benchmarks/submit_throughput);
- a stage-by-stage replay of the sequencer's steps, timed without a profiler (µs per line);
- cProfile of the real ``Ledger.submit_many`` path: named stages, self time by area, the top
  functions by cumulative and self time, and who calls canonical JSON.

Usage: python benchmarks/profiling/submit_profile.py [--lines 100000] [--key-results 100]
"""

import argparse
import hashlib
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.profiling.common import (
    Stages,
    by_caller,
    gc_watch,
    print_areas,
    print_stage_table,
    print_top,
    profiled,
    rate,
    total_time,
)
from benchmarks.submit_throughput import write_workload
from events.collector import collector_paused
from events.ledger import Ledger
from events.outcomes import Accepted, Duplicate, Outcome
from events.rules import check
from events.sequencer import (
    DEFAULT_POLICY,
    Probe,
    _Content,
    _parse,
    probe,
    recorded_at_member,
)
from events.sqlite_log import _MIGRATIONS, PAGE_SIZE, SqliteEventLog, wal_autocheckpoint
from events.state import LedgerState, OrgState
from okr_ledger.submissions import Summary, ndjson_lines
from schemas.envelope import Submission, event_id_text, format_timestamp, utc_now
from schemas.registry import payload_model

BATCH = 1000
"""``OKR_SUBMIT_BATCH_SIZE``'s default: submissions per ledger transaction."""

SUBMIT_STAGES = (
    ("line reading (ndjson_lines)", "self", "okr_ledger/submissions.py:ndjson_lines"),
    ("probe (orjson + ids + submission digest)", "cum", "events/sequencer.py:probe"),
    ("state view read before the lock", "cum", "events/state_store.py:prepare"),
    ("decide_batch (whole)", "cum", "events/sequencer.py:decide_batch"),
    ("  _decide", "cum", "events/sequencer.py:_decide"),
    ("    _parse (duplicate keys + both validations)", "cum", "events/sequencer.py:_parse"),
    ("    pydantic validation (model_validate)", "cum", "pydantic/main.py:model_validate"),
    ("    payload.model_dump", "cum", "pydantic/main.py:model_dump"),
    ("    event id (derive_event_key)", "cum", "schemas/envelope.py:derive_event_key"),
    ("    content pieces (canonical JSON of data)", "cum", "events/sequencer.py:__init__"),
    ("    event bytes + hash", "cum", "events/sequencer.py:event_bytes"),
    ("    format_timestamp", "cum", "schemas/envelope.py:format_timestamp"),
    ("    rules (check)", "cum", "events/rules.py:check"),
    ("  state apply (apply_record)", "cum", "events/state_store.py:apply_record"),
    ("SQLite append_decided (whole)", "cum", "events/sqlite_log.py:append_decided"),
    ("  insert (continuity + executemany + state)", "cum", "events/sqlite_log.py:_insert"),
    ("    state tables (record)", "cum", "events/state_store.py:record"),
    ("  executemany", "self", "executemany' of 'sqlite3.Connection' objects>"),
    ("  execute (BEGIN/COMMIT/lookups)", "self", "execute' of 'sqlite3.Connection' objects>"),
    ("outcome summary (Summary.add)", "cum", "okr_ledger/submissions.py:add"),
    ("LedgerEvent built (should be none)", "cum", "schemas/envelope.py:from_record"),
)  # fmt: skip


def read_lines(path: Path) -> list[tuple[bytes, int | None]]:
    with path.open("rb") as stream:
        return list(ndjson_lines(stream))


# --- anchors ------------------------------------------------------------------------------------


def anchors(lines: list[bytes]) -> None:
    n = len(lines)
    documents = [orjson.loads(line) for line in lines]
    start = time.perf_counter()
    for line in lines:  # keeping each result would time the allocator and the GC as well
        orjson.loads(line)
    parse = time.perf_counter() - start
    start = time.perf_counter()
    for document in documents:
        submission = Submission.model_validate(document)
        payload_model(submission.type).model_validate(submission.data)
    validate = time.perf_counter() - start
    start = time.perf_counter()
    for line in lines:
        hashlib.sha256(line).digest()
    sha = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "anchor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, body TEXT)")
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO t (k, body) VALUES (?, ?)",
                [(str(i), lines[i].decode()) for i in range(first, min(n, first + BATCH))],
            )
            db.execute("COMMIT")
        insert = time.perf_counter() - start
        db.close()
    ledger_table = ledger_table_inserts(lines)
    print(f"\nraw anchors on the same {n:,} lines (this run)")
    print(f"  orjson parse:                       {rate(n, parse):>12}")
    print(f"  pydantic validation (env+payload):  {rate(n, validate):>12}")
    print(f"  orjson parse + validation:          {rate(n, parse + validate):>12}")
    print(f"  sha256 of each line:                {rate(n, sha):>12}")
    print(f"  SQLite insert (WAL, FULL, {BATCH}/tx):  {rate(n, insert):>12}")
    for label, (wall, cpu) in ledger_table.items():
        print(f"  {label:<36}{rate(n, wall):>12}  wall {wall / n * 1e6:5.2f} µs/row, "
              f"CPU {cpu / n * 1e6:5.2f} µs/row")  # fmt: skip


def ledger_table_inserts(lines: list[bytes]) -> dict[str, tuple[float, float]]:
    """Rows like the ledger's (the ledger's ``events`` table, its pragmas, BATCH a
    transaction), with and without its ``UNIQUE (org_id, event_id)`` index: what the one
    random-keyed index costs each event (each insert dirties another of its pages, and every
    dirty page is written to the WAL and synced at commit). Then what other choices would
    give: the id as a compact key (16 bytes, or an 8-byte integer prefix, indexed instead of
    the text), and other page sizes for a new file. Wall and CPU seconds."""
    events_table = _MIGRATIONS[0][0]
    without = events_table.replace(",\n    UNIQUE (org_id, event_id)", "")
    assert without != events_table, "the events table's DDL changed: update this anchor"
    with_key = without.replace("body        TEXT    NOT NULL,", "body TEXT NOT NULL, k NOT NULL,")
    assert with_key != without, "the events table's DDL changed: update this anchor"
    rows = []
    for sequence, line in enumerate(lines, start=1):
        key = hashlib.sha256(line).hexdigest()  # random, as event ids are
        event_id = f"{key[:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:32]}"
        rows.append(("acme", sequence, event_id, "CheckInRecorded", "t", "t", key, line.decode()))

    def blob(row: tuple[Any, ...]) -> Any:
        return bytes.fromhex(row[2].replace("-", ""))

    def prefix(row: tuple[Any, ...]) -> Any:
        return int.from_bytes(blob(row)[:8], "big", signed=True)

    variants: list[tuple[str, str, Any, str | None, int]] = [
        ("ledger events table (a new file):", events_table, None, None, PAGE_SIZE),
        ("  the same without UNIQUE(org, id):", without, None, None, PAGE_SIZE),
        ("  UNIQUE(org, 16-byte id) instead:", with_key, blob, "UNIQUE", PAGE_SIZE),
        ("  INDEX(org, 8-byte prefix) instead:", with_key, prefix, "", PAGE_SIZE),
        ("  page size 4,096 (older files):", events_table, None, None, 4096),
        ("  page size 2,048:", events_table, None, None, 2048),
    ]
    timings: dict[str, tuple[float, float]] = {}
    for label, ddl, extra, index, page_size in variants:
        data = rows if extra is None else [(*row, extra(row)) for row in rows]
        columns = "org_id, sequence, event_id, type, occurred_at, recorded_at, hash, body"
        columns += "" if extra is None else ", k"
        with tempfile.TemporaryDirectory() as tmp:
            db = sqlite3.connect(Path(tmp) / "anchor.db", isolation_level=None)
            db.execute(f"PRAGMA page_size={page_size}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA cache_size=-65536")
            db.execute(f"PRAGMA wal_autocheckpoint={wal_autocheckpoint(page_size)}")
            db.execute(ddl)
            if index is not None:
                db.execute(f"CREATE {index} INDEX events_k ON events (org_id, k)")
            insert = f"INSERT INTO events ({columns}) VALUES ({_marks(len(data[0]))})"
            start, cpu = time.perf_counter(), time.process_time()
            for first in range(0, len(data), BATCH):
                db.execute("BEGIN IMMEDIATE")
                db.executemany(insert, data[first : first + BATCH])
                db.execute("COMMIT")
            timings[label] = (time.perf_counter() - start, time.process_time() - cpu)
            db.close()
    return timings


def _marks(count: int) -> str:
    return ", ".join("?" * count)


# --- the CLI --------------------------------------------------------------------------------------


def cli_runs(path: Path, data_dir: Path) -> None:
    cli = Path(sys.executable).parent / "okr-ledger"
    env = {**os.environ, "OKR_DATA_DIR": str(data_dir)}
    print("\nCLI: okr-ledger submit FILE --json (fresh ledger, then the same file again)")
    for label in ("first run", "rerun (all duplicates)"):
        start = time.perf_counter()
        done = subprocess.run(
            [str(cli), "submit", str(path), "--json"], env=env, capture_output=True, check=False
        )
        elapsed = time.perf_counter() - start
        summary = orjson.loads(done.stdout)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"  {label:<24} {elapsed:6.2f} s  {rate(summary['submitted'], elapsed):>10}  "
            f"accepted={summary['accepted']} duplicate={summary['duplicate']} "
            f"rejected={summary['rejected']}  max RSS so far {peak:.0f} MiB"
        )


# --- stage replay -------------------------------------------------------------------------------


def _replay_one(
    state: LedgerState, raw: bytes, probed: Probe | None, now: datetime, stages: Stages
) -> Outcome:
    """The sequencer's steps for one line (events.sequencer._decide), timed one by one. The
    stages marked ``[before the lock]`` depend only on the line: the ledger runs them for the
    whole batch before ``BEGIN IMMEDIATE`` (``parse_ahead``); they are replayed in line order
    here, under it."""
    lap = stages.lap
    recorded = (
        state.submitted(probed.org_id, probed.event_key)
        if probed is not None and probed.org_id is not None and probed.event_key is not None
        else None
    )
    if probed is not None and recorded is not None and recorded == probed.submitted:
        assert probed.event_key is not None
        repeat = Duplicate(event_id_text(probed.event_key), str(probed.org_id))
        lap("byte-identical repeat: Duplicate without validation")
        return repeat
    lap("byte-identical repeat check")
    submission, version, payload = _parse(raw, DEFAULT_POLICY, probed and probed.document)
    lap("duplicate keys + pydantic validation (both models) [before the lock]")
    key = (
        probed.event_key
        if probed is not None and probed.event_key is not None and submission.event_id is None
        else submission.resolved_event_key()
    )
    event_id = event_id_text(key)
    lap("event id (16 bytes + text) [before the lock]")
    data = payload.model_dump(mode="json", exclude_none=True)
    lap("payload.model_dump(mode=json) [before the lock]")
    occurred_at = format_timestamp(submission.occurred_at)
    lap("format_timestamp (occurred_at) [before the lock]")
    content = _Content(submission, version, occurred_at, data)
    lap("content pieces (canonical JSON of data, envelope strings) [before the lock]")
    digest = content.digest()
    lap("content digest (sha256) [before the lock]")
    known = state.known.get((submission.org_id, key))
    lap("known-id lookup")
    if known is not None:
        return Duplicate(event_id, submission.org_id)
    org = state.orgs.get(submission.org_id) or OrgState()
    violation = check(org, payload)
    lap("rules (check) + org state")
    assert violation is None, violation
    sequence = org.last_sequence + 1
    body, hash_ = content.event_bytes(
        event_id, sequence, org.last_hash, recorded_at_member(format_timestamp(now))
    )
    lap("event bytes + hash (sha256)")
    record = {
        "sequence": sequence,
        "event_id": event_id,
        "org_id": submission.org_id,
        "type": submission.type,
        "schema_version": version,
        "occurred_at": occurred_at,
        "recorded_at": format_timestamp(now),
        "actor": submission.actor,
        "source": submission.source,
        "source_event_id": submission.source_event_id,
        "correlation_id": submission.correlation_id,
        "causation_id": submission.causation_id,
        "data": data,
        "prev_hash": org.last_hash,
        "hash": hash_,
    }
    outcome = Accepted(record, digest, body, probed.submitted if probed else None)
    lap("record dict + Accepted")
    state.apply_record(record, key, digest, outcome.submitted)
    lap("state apply (apply_record)")
    return outcome


def _replay_batch(
    log: SqliteEventLog, lines: list[tuple[bytes, int | None]], stages: Stages
) -> list[Outcome]:
    """One batch as Ledger and SqliteEventLog run it, each step timed."""
    lap = stages.lap
    probes = [probe(raw) for raw, _ in lines]
    lap("probe (orjson parse, ids, submission digest)", len(lines))
    store = log.state
    store.prepare(probes)
    lap("state view read in bulk, before the lock", len(lines))
    db = log._db
    db.execute("BEGIN IMMEDIATE")
    state = store.view(probes)
    lap("SQLite BEGIN IMMEDIATE + view", 0)
    now = utc_now()
    outcomes: list[Outcome] = []
    for (raw, _line), probed in zip(lines, probes, strict=True):
        assert isinstance(raw, bytes)
        outcomes.append(_replay_one(state, raw, probed, now, stages))
    events = [o for o in outcomes if isinstance(o, Accepted)]
    log._insert(events, [])
    lap("SQLite insert (continuity, executemany, state tables)", 0)
    db.execute("COMMIT")
    store.end()
    store.committed()  # as SqliteEventLog._transaction: what the batch left is kept for the next
    lap("SQLite COMMIT (fsync)", 0)
    return outcomes


# --- cProfile of the real path --------------------------------------------------------------------


def _submit_file(path: Path, ledger_path: Path) -> Summary:
    """What ``okr-ledger submit FILE`` does in process: a Ledger, submit_many."""
    ledger = Ledger(SqliteEventLog(ledger_path), batch_size=BATCH)
    summary = Summary()
    try:
        with path.open("rb") as stream:
            for outcome in ledger.submit_many(ndjson_lines(stream)):
                summary.add(outcome)
    finally:
        ledger.log.close()
    return summary


def profile_real(path: Path, directory: Path, items: int) -> None:
    """Each run twice on its own ledger: once plain (the wall time), once under cProfile."""
    plain_ledger, profiled_ledger = directory / "plain.db", directory / "profiled.db"
    for label in ("first run (all accepted)", "rerun (all duplicates)"):
        collector: dict[str, float] = {}
        start = time.perf_counter()
        with gc_watch(collector):
            _submit_file(path, plain_ledger)
        plain = time.perf_counter() - start
        summary, stats, wall = profiled(lambda: _submit_file(path, profiled_ledger))
        print(f"\n=== cProfile, {label}: Ledger(...) + submit_many in process ===")
        print(
            f"  without profiler: {plain:.2f} s, {rate(items, plain)}; cyclic GC "
            f"{collector.get('seconds', 0):.2f} s in {collector.get('runs', 0):.0f} runs "
            f"({100 * collector.get('seconds', 0) / plain:.0f}%)"
        )
        print(
            f"  under cProfile: {wall:.2f} s, {rate(items, wall)} "
            f"(accepted={summary.accepted} duplicate={summary.duplicate})"
        )
        print_stage_table(stats, items, SUBMIT_STAGES, "named stages (cumulative)")
        total = total_time(stats)
        for pattern in ("events/canonical.py:canonical_bytes", "pydantic/main.py:model_validate"):
            print(f"\n  {pattern} by caller (calls/item, % of profiled total)")
            for caller, (n, seconds) in sorted(
                by_caller(stats, pattern).items(), key=lambda kv: -kv[1][1]
            ):
                print(f"    {n / items:5.2f}  {100 * seconds / total:5.1f}%  {caller}")
        print_areas(stats)
        print_top(stats, items, 25, label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--key-results", type=int, default=100)
    parser.add_argument("--skip-cli", action="store_true", help="No okr-ledger subprocess runs.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="okr-profile-submit-") as tmp:
        work = Path(tmp)
        path = work / "submissions.ndjson"
        write_workload(path, args.lines, args.key_results)
        lines = read_lines(path)
        print(f"submit profile: {len(lines):,} lines ({path.stat().st_size / 1e6:.1f} MB), "
              f"{args.key_results} key results, batches of {BATCH}")  # fmt: skip
        start = time.perf_counter()
        read_lines(path)
        reading = time.perf_counter() - start
        print(f"  line reading alone (ndjson_lines): {rate(len(lines), reading)}")
        anchors([raw for raw, _ in lines])
        if not args.skip_cli:
            cli_runs(path, work / "cli")
        _replay_from(lines, SqliteEventLog(work / "replay.db"))
        profile_real(path, work, len(lines))


def _replay_from(lines: list[tuple[bytes, int | None]], log: SqliteEventLog) -> None:
    for label in ("first run (all accepted)", "rerun (all duplicates)"):
        stages = Stages()
        summary = Summary()
        wall = time.perf_counter()
        for first in range(0, len(lines), BATCH):
            stages.reset()
            with collector_paused():  # as Ledger.submit_many, and the CLI for the whole run
                for outcome in _replay_batch(log, lines[first : first + BATCH], stages):
                    summary.add(outcome)
                stages.lap("outcome summary (Summary.add)", 0)
        wall = time.perf_counter() - wall
        stages.print(
            f"stage replay, {label}: {rate(len(lines), wall)} without a profiler "
            f"(accepted={summary.accepted} duplicate={summary.duplicate})",
            len(lines),
            wall,
        )
    log.close()


if __name__ == "__main__":
    main()
