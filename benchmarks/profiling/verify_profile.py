"""Profile ``verify``: the hash chain of the benchmark ledger checked event by event.

Prints the real ``verify`` path (``log.verify()`` in process, and the CLI's wall time), a
stage-by-stage replay of the reference path (``ChainVerifier.add``, which the fast path
``add_rows`` leaves unusual rows to) timed without a profiler (SQLite fetch, orjson parse, the
types check, the canonical form by ``orjson.dumps``, the columns, sha256 over the stored bytes,
the chain),
raw anchors of the same run (orjson parse, orjson dumps with sorted keys, sha256 of the stored
bodies) and a cProfile of ``log.verify()``.

Usage: python benchmarks/profiling/verify_profile.py [--key-results 1000] [--check-ins 200000]
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.profiling.common import (
    Stages,
    bench_ledger,
    print_areas,
    print_stage_table,
    print_top,
    profiled,
    rate,
)
from events.chain import _columns_problem, _plain_event
from events.sqlite_log import SqliteEventLog
from events.stored import parse_event
from schemas.envelope import GENESIS_HASH

ORG = "bench"
BEST_OF = 3
VERIFY_STAGES = (
    ("stored_rows (SQLite fetch, plain rows in chunks)", "cum", "events/sqlite_log.py:stored_rows"),
    ("add_rows (verify's fast path, inline checks)", "cum", "events/chain.py:add_rows"),
    ("  _fast_data (data's types for the canonical form)", "cum", "events/chain.py:_fast_data"),
    ("  add (the reference path: rows it leaves)", "cum", "events/chain.py:add"),
    ("read_stored (SQLite fetch + StoredBytes)", "cum", "events/sqlite_log.py:read_stored"),
    ("  fetchmany", "self", "fetchmany' of 'sqlite3.Cursor' objects>"),
    ("examine (each event's own checks)", "cum", "events/chain.py:examine"),
    ("  parse_event (orjson.loads + bounds)", "cum", "events/stored.py:parse_event"),
    ("  _content_checks (checks 3 to 5 and 8)", "cum", "events/chain.py:_content_checks"),
    ("    _plain_event (types: orjson writes it as JCS)", "cum", "events/chain.py:_plain_event"),
    ("    orjson.dumps (the canonical form)", "self", "orjson.dumps>"),
    ("    columns", "cum", "events/chain.py:_columns_problem"),
    ("    sha256 + update + hexdigest", "self", "'hexdigest' of '_hashlib.HASH' objects>"),
    ("    canonical_bytes (general path: none)", "cum", "events/canonical.py:canonical_bytes"),
    ("add_examined (sequence and link)", "cum", "events/chain.py:add_examined"),
)  # fmt: skip


def best_of(call: Callable[[], object], times: int = BEST_OF) -> float:
    """The fastest of ``times`` runs: the least disturbed by other work on the machine."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _each(call: Callable[[Any], object], items: list[Any]) -> None:
    """``call`` on every item, keeping no result (a kept result would time the allocator)."""
    for item in items:
        call(item)


def replay(ledger: Path) -> None:
    """``ChainVerifier.add`` (events/chain.py) step by step, without a profiler."""
    log = SqliteEventLog(ledger, create=False)
    stages = Stages()
    count = 0
    wall = time.perf_counter()
    stored = log.read_stored(ORG)
    stages.reset()
    head = GENESIS_HASH
    for one in stored:
        stages.lap("SQLite fetch + StoredBytes (read_stored)")
        record = parse_event(one.body)
        stages.lap("parse_event (orjson.loads + bounds)")
        plain = _plain_event(record)
        stages.lap("types: does orjson write it as JCS? (_plain_event)")
        canonical = plain and one.body == orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        stages.lap("canonical form: orjson.dumps + compare")
        columns = _columns_problem(one, record)
        stages.lap("columns against the body")
        body, member = one.body, b',"hash":' + orjson.dumps(record["hash"])
        at = body.rfind(member)
        digest = hashlib.sha256(str(record["prev_hash"]).encode("ascii"))
        digest.update(body[:at] + body[at + len(member) :])
        intact = digest.hexdigest() == record["hash"]
        stages.lap("hash over the stored bytes without hash (sha256)")
        linked = record["sequence"] == count + 1 and record["prev_hash"] == head
        head = record["hash"]
        stages.lap("sequence + link checks")
        assert canonical, count
        assert columns is None, count
        assert intact, count
        assert linked, count
        count += 1
    wall = time.perf_counter() - wall
    stages.print(f"stage replay: {rate(count, wall)} without a profiler", count, wall)
    bodies = [body for (body,) in log._db.execute("SELECT body FROM events WHERE org_id = ?",
                                                   (ORG,))]  # fmt: skip
    records = [orjson.loads(b) for b in bodies]
    anchors = {
        "orjson parse of the bodies": lambda: _each(orjson.loads, bodies),
        "orjson dumps, sorted keys": lambda: _each(
            lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS), records
        ),
        "sha256 of the bodies": lambda: _each(
            lambda b: hashlib.sha256(b.encode()).digest(), bodies
        ),
    }
    print(f"\nraw anchors on the same events (this run, best of {BEST_OF}):")
    total = 0.0
    for name, call in anchors.items():
        seconds = best_of(call)
        total += seconds
        print(f"  {name + ':':<38}{rate(len(bodies), seconds):>12}")
    print(f"  {'all three:':<38}{rate(len(bodies), total):>12}")
    log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-results", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=200_000)
    args = parser.parse_args()
    ledger = bench_ledger(args.key_results, args.check_ins)
    log = SqliteEventLog(ledger, create=False)
    events = log.heads()[ORG].sequence
    print(f"verify profile: {events:,} events ({ledger.name})")
    assert all(r.ok for r in log.verify())
    elapsed = best_of(log.verify)
    print(f"  log.verify() (best of {BEST_OF}): {elapsed:.2f} s, {rate(events, elapsed)}")
    with tempfile.TemporaryDirectory(prefix="okr-profile-verify-") as tmp:
        shutil.copyfile(ledger, Path(tmp) / "ledger.db")
        env = {**os.environ, "OKR_DATA_DIR": tmp}
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "okr-ledger"), "verify"], env=env,
                       check=True, capture_output=True)  # fmt: skip
        elapsed = time.perf_counter() - start
        print(f"  okr-ledger verify (CLI wall): {elapsed:.2f} s, {rate(events, elapsed)}")
    replay(ledger)
    _, stats, wall = profiled(log.verify)
    print(f"\n=== cProfile of log.verify(): {wall:.1f} s under the profiler ===")
    print_stage_table(stats, events, VERIFY_STAGES, "named stages (per event)")
    print_areas(stats)
    print_top(stats, events, 20, "verify")
    log.close()


if __name__ == "__main__":
    main()
