"""Oversized submissions: N lines of M KiB through ``submit``, then ``progress`` (which projects
the rejections). Prints the ledger's size and the peak memory (max RSS) of each command, beside
raw anchors measured in the same run: a bare interpreter, and Python iterating the same file
line by line (what holding one whole line costs).

Usage: python benchmarks/oversized_rejections.py [--lines 40] [--kib 10240] [--small 2000]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import check_in, setup

CLI = Path(sys.executable).parent / "okr-ledger"


def write_workload(path: Path, lines: int, kib: int, small: int) -> None:
    """A valid org, ``small`` check-ins, and ``lines`` oversized lines woven in."""
    head = setup("acme", 10)
    filler = b"x" * (kib * 1024)
    with path.open("wb") as out:
        for line in head:
            out.write(line + b"\n")
        for i in range(max(small, lines)):
            if i < small:
                out.write(check_in("acme", i, 10) + b"\n")
            if i < lines:
                out.write(b'{"type":"CheckInRecorded","data":{"comment":"' + filler + b'"}}\n')


def peak_of(command: list[str], env: dict[str, str]) -> tuple[float, int, bytes]:
    """Run ``command`` alone; its seconds, max RSS (KiB) and stdout."""
    started = time.perf_counter()
    script = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "sys.stdout.buffer.write(done.stdout)\n"
        "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
        "sys.exit(done.returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *command], env=env, capture_output=True, check=False
    )
    elapsed = time.perf_counter() - started
    return elapsed, int(done.stderr.decode().strip().splitlines()[-1]), done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--kib", type=int, default=10 * 1024)
    parser.add_argument("--small", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "submissions.ndjson"
        write_workload(path, args.lines, args.kib, args.small)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OKR_")}
        env["OKR_DATA_DIR"] = str(work / "data")

        bare = peak_of([sys.executable, "-c", "pass"], env)[1]
        iterate = f"for line in open({str(path)!r}, 'rb'): pass"
        naive = peak_of([sys.executable, "-c", iterate], env)[1]
        seconds, submit_peak, out = peak_of([str(CLI), "submit", str(path), "--json"], env)
        summary = orjson.loads(out)
        ledger = sum(p.stat().st_size for p in (work / "data").glob("ledger.db*"))
        progress_s, progress_peak, _ = peak_of([str(CLI), "progress", "--org", "acme"], env)
        size_mb = path.stat().st_size / 1e6

    what = f"{args.lines} lines of {args.kib} KiB + {args.small} check-ins"
    print(f"input: {what} ({size_mb:,.0f} MB)")
    print(f"  submit: {seconds:.1f} s, rejected by reason {summary['rejected_by_reason']}")
    print(f"  ledger file (with WAL): {ledger / 1e6:.2f} MB")
    print(f"  submit peak memory:   {submit_peak / 1024:7.0f} MiB")
    print(f"  progress peak memory: {progress_peak / 1024:7.0f} MiB ({progress_s:.1f} s)")
    print("anchors, same run:")
    print(f"  bare python:                         {bare / 1024:7.0f} MiB")
    print(f"  python iterating the file by line:   {naive / 1024:7.0f} MiB")


if __name__ == "__main__":
    main()
