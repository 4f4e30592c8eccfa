"""``submit`` throughput: an N-line NDJSON file through the CLI into a fresh embedded ledger.

Prints events/s and the peak memory (max RSS) of the ``okr-ledger submit`` process.
Usage: python benchmarks/submit_throughput.py [--lines 100000] [--key-results 100]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import check_in, setup


def write_workload(path: Path, lines: int, key_results: int) -> None:
    """Setup events for one org, then check-ins spread over the key results."""
    head = setup("acme", key_results)
    with path.open("wb") as out:
        for line in head:
            out.write(line + b"\n")
        for i in range(lines - len(head)):
            out.write(check_in("acme", i, key_results) + b"\n")


def run_submit(data_dir: Path, path: Path) -> tuple[float, dict[str, int]]:
    env = {**os.environ, "OKR_DATA_DIR": str(data_dir)}
    cli = Path(sys.executable).parent / "okr-ledger"
    started = time.perf_counter()
    done = subprocess.run(
        [str(cli), "submit", str(path), "--json"], env=env, capture_output=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise SystemExit(f"submit failed ({done.returncode}): {done.stderr.decode()}")
    summary: dict[str, int] = orjson.loads(done.stdout)
    return elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--key-results", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "submissions.ndjson"
        write_workload(path, args.lines, args.key_results)
        elapsed, summary = run_submit(work / "data", path)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rerun_elapsed, rerun = run_submit(work / "data", path)
        size_mb = path.stat().st_size / 1e6
    print(f"submit: {args.lines:,} lines ({size_mb:.1f} MB)")
    print(f"  first run: {elapsed:.2f} s, {summary['submitted'] / elapsed:,.0f} events/s")
    print(f"    accepted={summary['accepted']} duplicate={summary['duplicate']}")
    print(f"    rejected={summary['rejected']}")
    print(f"  peak memory (max RSS of the submit process): {peak_kib / 1024:.0f} MiB")
    print(
        f"  rerun (all duplicates): {rerun_elapsed:.2f} s, "
        f"{rerun['submitted'] / rerun_elapsed:,.0f} events/s, duplicate={rerun['duplicate']}"
    )


if __name__ == "__main__":
    main()
