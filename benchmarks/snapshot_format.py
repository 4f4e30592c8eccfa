"""Snapshot format: save and load time and file size of one org's projector state.

Projects the ledger of ``projection_throughput.py`` (K key results, N check-ins; built once
and cached in benchmarks/.work) in memory, then times the snapshot codec (gzip of JSON,
validated on load) beside raw anchors measured on the same state in the same run: ``pickle``
(the format of snapshot formats 1 and 2, in memory only: nothing here is unpickled from a
file), ``orjson`` on the snapshot's JSON document, and ``gzip`` at the codec's level.

Usage: python benchmarks/snapshot_format.py [--key-results 1000] [--check-ins 200000]
"""

import argparse
import gc
import gzip
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from benchmarks.projection_throughput import ORG, WORK, build_ledger
from events.sqlite_log import SqliteEventLog
from processors.projector import Projector, StoredEvent
from processors.runner import batched
from processors.snapshot_codec import COMPRESSION_LEVEL, decode, encode
from processors.state import OrgProjection


def best_of(call: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """The fastest of ``runs`` calls (the collector paused, as the runner does), and a result."""
    best, result = float("inf"), None
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = call()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best, result


def projected_state(key_results: int, check_ins: int) -> OrgProjection:
    WORK.mkdir(exist_ok=True)
    ledger = WORK / f"ledger-{key_results}kr-{check_ins}ci.db"
    if not ledger.exists():
        partial = ledger.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build_ledger(partial, key_results, check_ins)
        partial.rename(ledger)
    log = SqliteEventLog(ledger)
    projector = Projector()
    try:
        records = (StoredEvent.from_record(r) for r in log.read_records(ORG))
        for batch in batched(records, 20_000):
            projector.project(batch)
    finally:
        log.close()
    return projector.state.orgs[ORG]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-results", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="Best of this many runs.")
    args = parser.parse_args()
    state = projected_state(args.key_results, args.check_ins)
    print(
        f"state: {len(state.key_results):,} key results, {len(state.objectives):,} objectives, "
        f"{len(state.check_ins):,} check-ins, {state.last_sequence:,} events"
    )
    runs = args.runs
    saved, data = best_of(lambda: encode(ORG, state.last_sequence, "0" * 64, state), runs)
    loaded, _ = best_of(lambda: decode(data), runs)
    document = gzip.decompress(data)
    pickled_in, pickled = best_of(lambda: pickle.dumps(state, pickle.HIGHEST_PROTOCOL), runs)
    pickled_out, _ = best_of(lambda: pickle.loads(pickled), runs)
    parsed, tree = best_of(lambda: orjson.loads(document), runs)
    dumped, _ = best_of(lambda: orjson.dumps(tree), runs)
    zipped, _ = best_of(lambda: gzip.compress(document, COMPRESSION_LEVEL), runs)
    unzipped, _ = best_of(lambda: gzip.decompress(data), runs)
    mib = 2**20
    rows = [
        ("snapshot codec (gzip JSON, validated)", saved, loaded, len(data) / mib),
        ("anchor: pickle (formats 1-2)", pickled_in, pickled_out, len(pickled) / mib),
        ("anchor: orjson dumps/loads of the JSON", dumped, parsed, len(document) / mib),
        (f"anchor: gzip level {COMPRESSION_LEVEL} of the JSON", zipped, unzipped, len(data) / mib),
    ]
    print(f"{'':42} {'save s':>8} {'load s':>8} {'MiB':>8}")
    for label, save, load, size in rows:
        print(f"{label:42} {save:8.2f} {load:8.2f} {size:8.1f}")


if __name__ == "__main__":
    main()
