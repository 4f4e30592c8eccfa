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
from events.canonical import canonical_bytes, canonical_json
from events.ledger import Ledger
from events.log import EventLog
from events.outcomes import Accepted, Duplicate, Outcome
from events.rules import check
from events.sequencer import Sequencer, _content
from events.sqlite_log import SqliteEventLog
from events.state import LedgerState, OrgState
from okr_ledger.submissions import Summary, ndjson_lines
from schemas.envelope import LedgerEvent, Submission, format_timestamp, utc_now
from schemas.registry import EVENT_TYPES, payload_model

BATCH = 1000
"""``OKR_SUBMIT_BATCH_SIZE``'s default: submissions per ledger transaction."""

SUBMIT_STAGES = (
    ("line reading (ndjson_lines)", "self", "okr_ledger/submissions.py:ndjson_lines"),
    ("decide (whole)", "cum", "events/sequencer.py:decide"),
    ("  _parse (orjson + both validations)", "cum", "events/sequencer.py:_parse"),
    ("    orjson.loads", "self", "orjson.loads>"),
    ("  pydantic validation (model_validate)", "cum", "pydantic/main.py:model_validate"),
    ("  payload.model_dump", "cum", "pydantic/main.py:model_dump"),
    ("  event id (uuid5 / derive_event_id)", "cum", "schemas/envelope.py:derive_event_id"),
    ("  canonical JSON (all callers)", "cum", "events/canonical.py:canonical_bytes"),
    ("  event_hash (body copy + JCS + sha256)", "cum", "events/chain.py:event_hash"),
    ("  sha256 (constructor, all callers)", "self", "_hashlib.openssl_sha256>"),
    ("  sha256 hexdigest", "self", "'hexdigest' of '_hashlib.HASH' objects>"),
    ("  format_timestamp", "cum", "schemas/envelope.py:format_timestamp"),
    ("  rules (check)", "cum", "events/rules.py:check"),
    ("  LedgerEvent.from_record (model_construct)", "cum", "schemas/envelope.py:from_record"),
    ("state apply (LedgerState.apply)", "cum", "events/state.py:apply"),
    ("  UUID(str) parse", "cum", "stdlib:uuid.py:__init__"),
    ("SQLite append (whole)", "cum", "events/sqlite_log.py:append"),
    ("  to_record", "cum", "schemas/envelope.py:to_record"),
    ("  canonical_json (stored body)", "cum", "events/canonical.py:canonical_json"),
    ("  executemany", "self", "executemany' of 'sqlite3.Connection' objects>"),
    ("  execute (BEGIN/COMMIT/head)", "self", "execute' of 'sqlite3.Connection' objects>"),
    ("heads check (_log_moved)", "cum", "events/ledger.py:_log_moved"),
    ("outcome summary (Summary.add)", "cum", "okr_ledger/submissions.py:add"),
    ("fold on start (Sequencer.from_ledger)", "cum", "events/sequencer.py:from_ledger"),
    ("  content_digest", "cum", "events/sequencer.py:content_digest"),
    ("  read_records (SQLite + orjson)", "cum", "events/sqlite_log.py:read_records"),
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
    print(f"\nraw anchors on the same {n:,} lines (this run)")
    print(f"  orjson parse:                       {rate(n, parse):>12}")
    print(f"  pydantic validation (env+payload):  {rate(n, validate):>12}")
    print(f"  orjson parse + validation:          {rate(n, parse + validate):>12}")
    print(f"  sha256 of each line:                {rate(n, sha):>12}")
    print(f"  SQLite insert (WAL, FULL, {BATCH}/tx):  {rate(n, insert):>12}")


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


def _replay_one(state: LedgerState, raw: bytes, now: datetime, stages: Stages) -> Outcome:
    lap = stages.lap
    document = orjson.loads(raw)
    lap("orjson parse")
    submission = Submission.model_validate(document)
    lap("pydantic: Submission.model_validate")
    version = submission.schema_version or EVENT_TYPES[submission.type]
    payload = payload_model(submission.type, version).model_validate(submission.data)
    lap("pydantic: payload model_validate")
    event_id = submission.resolved_event_id()
    lap("event id (uuid5 from source_event_id)")
    data = payload.model_dump(mode="json", exclude_none=True)
    lap("payload.model_dump(mode=json)")
    envelope = {"event_id": str(event_id), **_content(submission, version, data)}
    lap("envelope dict (+ format_timestamp)")
    body = canonical_bytes(envelope)
    lap("canonical JSON #1 (content digest)")
    digest = hashlib.sha256(body).digest()[:16]
    lap("sha256 #1 (content digest)")
    known = state.known.get((submission.org_id, event_id.bytes))
    lap("known-id lookup (UUID.bytes + dict)")
    if known is not None:
        return Duplicate(str(event_id), submission.org_id)
    org = state.orgs.get(submission.org_id) or OrgState()
    violation = check(org, payload)
    lap("rules (check) + org state")
    assert violation is None, violation
    record = {
        "sequence": org.last_sequence + 1,
        **envelope,
        "recorded_at": format_timestamp(now),
        "prev_hash": org.last_hash,
    }
    hashed = {k: v for k, v in record.items() if k != "hash"}
    lap("record dict (+ format_timestamp)")
    chained = canonical_bytes(hashed)
    lap("canonical JSON #2 (event_hash)")
    sha = hashlib.sha256(str(record["prev_hash"]).encode("ascii"))
    sha.update(chained)
    record["hash"] = sha.hexdigest()
    lap("sha256 #2 (event_hash, hexdigest)")
    event = LedgerEvent.from_record(record)
    lap("LedgerEvent.from_record (model_construct)")
    state.apply(event, digest)
    lap("state apply (LedgerState.apply)")
    return Accepted(event, digest)


def _replay_append(log: SqliteEventLog, events: list[LedgerEvent], stages: Stages) -> None:
    lap = stages.lap
    stages.reset()
    records = [e.to_record() for e in events]
    lap("to_record (append)", len(events))
    bodies = [canonical_json(r) for r in records]
    lap("canonical JSON #3 (stored body)", len(events))
    db = log._db
    db.execute("BEGIN IMMEDIATE")
    log._check_continuity(events)
    lap("SQLite BEGIN + continuity check", 0)
    db.executemany(
        "INSERT INTO events (org_id, sequence, event_id, type, occurred_at, recorded_at,"
        " hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.org_id, e.sequence, e.event_id, e.type, e.occurred_at, e.recorded_at, e.hash, b)
            for e, b in zip(events, bodies, strict=True)
        ],
    )
    lap("SQLite executemany", 0)
    db.execute("COMMIT")
    lap("SQLite COMMIT (fsync)", 0)


def fold_breakdown(log: EventLog, stages: Stages) -> LedgerState:
    """``Sequencer.from_ledger`` step by step: what every ``Ledger`` start pays."""
    state = LedgerState()
    rows = log.read_records()
    lap = stages.lap
    stages.reset()
    for record in rows:
        lap("fold: SQLite read + orjson.loads")
        event = LedgerEvent.from_record(record)
        lap("fold: LedgerEvent.from_record")
        envelope = {
            key: value
            for key, value in event.to_record().items()
            if key not in ("sequence", "recorded_at", "prev_hash", "hash")
        }
        lap("fold: content_digest: to_record + filter")
        body = canonical_bytes(envelope)
        lap("fold: content_digest: canonical JSON")
        digest = hashlib.sha256(body).digest()[:16]
        lap("fold: content_digest: sha256")
        state.apply(event, digest)
        lap("fold: state apply")
    return state


# --- cProfile of the real path --------------------------------------------------------------------


def _submit_file(path: Path, ledger_path: Path) -> Summary:
    """What ``okr-ledger submit FILE`` does in process: a Ledger (folds the log), submit_many."""
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
        # The replay needs the setup events in the ledger first: sequence them for real.
        replay_log = SqliteEventLog(work / "replay.db")
        setup_count = sum(1 for raw, _ in lines if b'"CheckInRecorded"' not in raw)
        sequencer = Sequencer()
        setup = [
            o.event
            for o in (sequencer.submit(raw, now=utc_now()) for raw, _ in lines[:setup_count])
            if isinstance(o, Accepted)
        ]
        replay_log.append(setup)
        _replay_from(lines[setup_count:], replay_log, sequencer.state)
        replay_log.close()
        profile_real(path, work, len(lines))


def _replay_from(
    lines: list[tuple[bytes, int | None]], log: SqliteEventLog, state: LedgerState
) -> None:
    stages = Stages()
    summary = Summary()
    wall = time.perf_counter()
    for first in range(0, len(lines), BATCH):
        now = utc_now()
        events: list[LedgerEvent] = []
        stages.reset()
        for raw, _line in lines[first : first + BATCH]:
            outcome = _replay_one(state, raw, now, stages)
            if isinstance(outcome, Accepted):
                events.append(outcome.event)
            summary.add(outcome)
            stages.lap("outcome summary (Summary.add)")
        _replay_append(log, events, stages)
    wall = time.perf_counter() - wall
    stages.print(
        f"stage replay, first run (all accepted): {rate(len(lines), wall)} without a profiler",
        len(lines),
        wall,
    )
    # The rerun: a new Ledger folds the log, then every line is a duplicate.
    stages = Stages()
    wall = time.perf_counter()
    state = fold_breakdown(log, stages)
    folded = time.perf_counter() - wall
    for first in range(0, len(lines), BATCH):
        now = utc_now()
        stages.reset()
        for raw, _line in lines[first : first + BATCH]:
            outcome = _replay_one(state, raw, now, stages)
            summary.add(outcome)
            stages.lap("outcome summary (Summary.add)")
    wall = time.perf_counter() - wall
    stages.print(
        f"stage replay, rerun (all duplicates): {rate(len(lines), wall)} without a profiler, "
        f"of which the start-up fold {folded:.2f} s",
        len(lines),
        wall,
    )


if __name__ == "__main__":
    main()
