"""Profile ``verify``: the hash chain of the benchmark ledger checked event by event.

Prints the real ``verify`` path (``verify_log`` in process, and the CLI's wall time), a
stage-by-stage replay timed without a profiler (SQLite fetch, orjson parse, the body copy,
canonical JSON, sha256, comparisons), raw anchors of the same run (orjson parse, orjson
dumps with sorted keys, sha256 of the stored bodies) and a cProfile of ``verify_log``.

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
from events.canonical import canonical_bytes
from events.sqlite_log import SqliteEventLog
from okr_ledger.cli import verify_log

ORG = "bench"
BEST_OF = 3
VERIFY_STAGES = (
    ("read_records (SQLite fetch + orjson.loads)", "cum", "events/sqlite_log.py:read_records"),
    ("  orjson.loads", "self", "orjson.loads>"),
    ("  fetchmany", "self", "fetchmany' of 'sqlite3.Cursor' objects>"),
    ("verify_chain (own work: sequence and link checks)", "self", "events/chain.py:verify_chain"),
    ("event_hash", "cum", "events/chain.py:event_hash"),
    ("  body copy (dict comprehension)", "cum", "events/chain.py:<dictcomp>"),
    ("  canonical_bytes", "cum", "events/canonical.py:canonical_bytes"),
    ("    _prepare (Python walk of the record)", "cum", "events/canonical.py:_prepare"),
    ("    _float_fragment (lru_cache)", "cum", "events/canonical.py:_float_fragment"),
    ("    orjson.dumps", "self", "orjson.dumps>"),
    ("  sha256", "self", "_hashlib.openssl_sha256>"),
    ("  sha256 update", "self", "'update' of '_hashlib.HASH' objects>"),
    ("  hexdigest", "self", "'hexdigest' of '_hashlib.HASH' objects>"),
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
    """``verify_chain`` step by step, without a profiler."""
    log = SqliteEventLog(ledger, create=False)
    stages = Stages()
    count = 0
    wall = time.perf_counter()
    cursor = log._db.execute("SELECT body FROM events WHERE org_id = ? ORDER BY sequence", (ORG,))
    stages.reset()
    while rows := cursor.fetchmany(2000):
        stages.lap("SQLite fetchmany", 0)
        for (body,) in rows:
            record = orjson.loads(body)
            stages.lap("orjson.loads")
            ok = record.get("sequence") == count + 1
            stages.lap("sequence + link checks")
            hashed = {k: v for k, v in record.items() if k != "hash"}
            stages.lap("body copy without hash")
            text = canonical_bytes(hashed)
            stages.lap("canonical JSON (canonical_bytes)")
            digest = hashlib.sha256(str(record["prev_hash"]).encode("ascii"))
            digest.update(text)
            ok = ok and digest.hexdigest() == record["hash"]
            stages.lap("sha256 + hexdigest + compare")
            assert ok, count
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
    assert all(r.ok for r in verify_log(log, None))
    elapsed = best_of(lambda: verify_log(log, None))
    print(f"  verify_log in process (best of {BEST_OF}): {elapsed:.2f} s, {rate(events, elapsed)}")
    with tempfile.TemporaryDirectory(prefix="okr-profile-verify-") as tmp:
        shutil.copyfile(ledger, Path(tmp) / "ledger.db")
        env = {**os.environ, "OKR_DATA_DIR": tmp}
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "okr-ledger"), "verify"], env=env,
                       check=True, capture_output=True)  # fmt: skip
        elapsed = time.perf_counter() - start
        print(f"  okr-ledger verify (CLI wall): {elapsed:.2f} s, {rate(events, elapsed)}")
    replay(ledger)
    _, stats, wall = profiled(lambda: verify_log(log, None))
    print(f"\n=== cProfile of verify_log: {wall:.1f} s under the profiler ===")
    print_stage_table(stats, events, VERIFY_STAGES, "named stages (per event)")
    print_areas(stats)
    print_top(stats, events, 20, "verify")
    log.close()


if __name__ == "__main__":
    main()
