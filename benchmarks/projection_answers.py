"""Every query's answer on the benchmark org, recorded with one version of the code and compared
with another: the projected answers must not change when the projections are reworked.

``record`` projects the ledger of ``benchmarks/projection_throughput.py`` (K key results, N
check-ins) into a fresh chDB store and writes the answers of progress (now, ``--as-of``,
``--at``, both), objectives, coverage, history and the check-ins of a few key results, at fixed
moments, as JSON. ``compare`` projects the same ledger with the code checked out now and
reports every answer that differs (floats compared to 12 significant digits, as the property
tests do: SQL may sum in another order).

Usage: python benchmarks/projection_answers.py record|compare ANSWERS.json
       [--key-results 1000] [--check-ins 200000]
"""

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.projection_throughput import ORG, PERIOD_START, WORK, build_ledger
from events.sqlite_log import SqliteEventLog
from processors.runner import EmbeddedRunner
from projections import queries
from projections.queries import Moment
from projections.store import ProjectionStore

FOCUS_LIMIT = 5
NOW = datetime(2027, 1, 15, tzinfo=UTC)
DAYS = (0, 9, 30, 45, 61, 90, 95)
"""Days after the period's start: the moments asked about (recorded and business time)."""
SUBJECTS = ("kr7", "kr999", "obj3", "top1", "t1", "u3", "q4", "co")


def _moments() -> dict[str, Moment]:
    moments = {"now": Moment(now=NOW)}
    for n in DAYS:
        moment = PERIOD_START + timedelta(days=n, hours=7, minutes=13)
        moments[f"as_of+{n}d"] = Moment(as_of=moment, now=NOW)
        moments[f"at+{n}d"] = Moment(at=moment, now=NOW)
        moments[f"as_of+{n}d,at+{n - 9}d"] = Moment(
            as_of=moment, at=moment - timedelta(days=9), now=NOW
        )
    return moments


def answers(store: ProjectionStore) -> dict[str, Any]:
    """Every question, by name."""
    found: dict[str, Any] = {}
    for name, moment in _moments().items():
        progress = queries.progress(store, ORG, moment, FOCUS_LIMIT)
        found[f"progress {name}"] = [progress.objectives, progress.key_results]
        if moment.at is None:
            found[f"objectives {name}"] = queries.objectives(store, ORG, moment, FOCUS_LIMIT)
            found[f"coverage {name}"] = queries.coverage(store, ORG, moment)
            for subject in SUBJECTS:
                found[f"history {subject} {name}"] = queries.history(store, ORG, subject, moment)
            for key_result in ("kr0", "kr7"):
                found[f"check-ins {key_result} {name}"] = queries.check_ins(
                    store, ORG, key_result, moment
                )
    return found


def _plain(value: Any) -> Any:
    """JSON-ready: times as RFC 3339 (UTC), dates as ISO, tuples as lists."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float | int):
        return left == right or abs(left - right) <= 1e-12 * max(1.0, abs(left), abs(right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            _same(a, b) for a, b in zip(left, right, strict=True)
        )
    return bool(left == right)


def _first_difference(left: Any, right: Any, path: str = "") -> str:
    if isinstance(left, dict) and isinstance(right, dict):
        if left.keys() != right.keys():
            return f"{path}: keys {sorted(left.keys() ^ right.keys())}"
        for key in left:
            if not _same(left[key], right[key]):
                return _first_difference(left[key], right[key], f"{path}.{key}")
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return f"{path}: {len(left)} items recorded, {len(right)} now"
        for n, (a, b) in enumerate(zip(left, right, strict=True)):
            if not _same(a, b):
                return _first_difference(a, b, f"{path}[{n}]")
    return f"{path}: recorded {left!r}, now {right!r}"


def project(ledger: Path, directory: Path) -> ProjectionStore:
    log = SqliteEventLog(ledger)
    store = ProjectionStore.open(f"chdb://{directory / 'clickhouse'}")
    start = time.perf_counter()
    done = EmbeddedRunner(log, store).catch_up()
    print(f"projected {done.events:,} events in {time.perf_counter() - start:.1f} s")
    log.close()
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("answers", type=Path)
    parser.add_argument("--key-results", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=200_000)
    args = parser.parse_args()
    ledger = WORK / f"ledger-{args.key_results}kr-{args.check_ins}ci.db"
    if not ledger.exists():
        WORK.mkdir(exist_ok=True)
        build_ledger(ledger, args.key_results, args.check_ins)
    directory = Path(tempfile.mkdtemp(prefix="okr-answers-"))
    try:
        store = project(ledger, directory)
        start = time.perf_counter()
        found = _plain(answers(store))
        print(f"{len(found)} answers in {time.perf_counter() - start:.1f} s")
        store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if args.mode == "record":
        args.answers.write_bytes(orjson.dumps(found, option=orjson.OPT_INDENT_2))
        print(f"recorded in {args.answers}")
        return
    recorded = orjson.loads(args.answers.read_bytes())
    differing = [name for name in recorded if not _same(recorded[name], found.get(name))]
    for name in differing:
        print(f"DIFFERS {name}: {_first_difference(recorded[name], found.get(name))}")
    print(f"{len(recorded) - len(differing)} of {len(recorded)} answers identical")
    if differing:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
