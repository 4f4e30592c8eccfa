"""The inputs several benchmarks share, built once per ``benchmarks/suite.py`` run into one
directory (``benchmarks/.work/suite/inputs``), which a script takes as ``--inputs DIR`` and
starts from a copy of (the scripts write to their ledgers and stores). Without ``--inputs`` a
script builds its own (cached in ``benchmarks/.work``), as before.

- ``ledger-<K>kr-<N>ci.db``: the benchmark ledger of ``benchmarks/projection_throughput.py``
  (one org, K key results, N check-ins);
- ``ledger-<O>orgs-<K>kr-<N>ci.db`` and ``store-<O>orgs-<K>kr-<N>ci``: the ledger of
  ``benchmarks/takeover_cost.py`` and that ledger projected into a new chDB store by the
  embedded runner (what the takeover's reads need; its catch-up is measured by
  ``projection_throughput.py``).

Usage: python benchmarks/inputs.py DIR ledger KEY_RESULTS CHECK_INS
       python benchmarks/inputs.py DIR takeover ORGS KEY_RESULTS CHECK_INS
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def ledger_name(key_results: int, check_ins: int) -> str:
    return f"ledger-{key_results}kr-{check_ins}ci.db"


def takeover_ledger_name(orgs: int, key_results: int, check_ins: int) -> str:
    return f"ledger-{orgs}orgs-{key_results}kr-{check_ins}ci.db"


def takeover_store_name(orgs: int, key_results: int, check_ins: int) -> str:
    return f"store-{orgs}orgs-{key_results}kr-{check_ins}ci"


def given(inputs: Path, name: str) -> Path:
    """The input ``name`` in ``inputs``, which must be there (built by the suite)."""
    path = inputs / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: build it with benchmarks/suite.py (or leave out "
                         "--inputs to let the script build its own)")  # fmt: skip
    return path


def copy_ledger(source: Path, target: Path) -> None:
    """A real copy of a closed SQLite ledger (and its write-ahead log, if one is left)."""
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))


def copy_store(source: Path, target: Path) -> None:
    """A real copy of a closed chDB store directory."""
    shutil.copytree(source, target, symlinks=True)  # its tables are relative links


def _build_ledger(path: Path, key_results: int, check_ins: int) -> None:
    from benchmarks.projection_throughput import build_ledger

    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    count = build_ledger(partial, key_results, check_ins)
    partial.rename(path)
    print(f"{path.name}: {count:,} events", flush=True)


def _build_takeover(directory: Path, orgs: int, key_results: int, check_ins: int) -> None:
    from benchmarks.takeover_cost import build_ledger
    from events.sqlite_log import SqliteEventLog
    from processors.runner import EmbeddedRunner
    from projections.store import ProjectionStore

    ledger = directory / takeover_ledger_name(orgs, key_results, check_ins)
    partial = ledger.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    count = build_ledger(partial, orgs, key_results, check_ins)
    partial.rename(ledger)
    store_path = directory / takeover_store_name(orgs, key_results, check_ins)
    building = store_path.with_suffix(".partial")
    shutil.rmtree(building, ignore_errors=True)
    log = SqliteEventLog(ledger, create=False, read_only=True)
    store = ProjectionStore.open(f"chdb://{building}")
    EmbeddedRunner(log, store).catch_up()
    store.close()
    log.close()
    building.rename(store_path)
    print(f"{ledger.name} and {store_path.name}: {count:,} events", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("kind", choices=("ledger", "takeover"))
    parser.add_argument("sizes", type=int, nargs="+")
    args = parser.parse_args()
    args.directory = args.directory.resolve()  # chDB wants an absolute path
    args.directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.kind == "ledger":
        _build_ledger(args.directory / ledger_name(*args.sizes), *args.sizes)
    else:
        _build_takeover(args.directory, *args.sizes)
    print(f"  built in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
