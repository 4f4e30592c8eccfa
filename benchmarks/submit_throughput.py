"""``submit`` throughput: an N-line NDJSON file through the CLI into a fresh embedded ledger,
then the same file again (every line a duplicate), beside raw anchors of the same run.

Prints events/s and the peak RSS of each ``okr-ledger submit`` process, and, on the same
lines: orjson parse, pydantic validation with the project's models (envelope + payload), and
a raw sqlite3 ``executemany`` of the very rows the ledger stored (same table, same pragmas,
the same number of rows per transaction). Each figure also as CPU time per event (user +
system, the submit process's from its rusage), which other work on a shared machine
disturbs far less than wall time: compare those ratios when the load average is high.
Figures go to benchmarks/.work/figures/submit.json (``benchmarks/summary.py``).
Usage: python benchmarks/submit_throughput.py [--lines 100000] [--key-results 100]
"""

import argparse
import compileall
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.command_latency import timed
from benchmarks.figures import Figures, at_least
from benchmarks.workload import check_in, setup
from events.sqlite_log import _MIGRATIONS, PAGE_SIZE, wal_autocheckpoint
from schemas.envelope import Submission
from schemas.registry import payload_model

BATCH = 1000
"""``OKR_SUBMIT_BATCH_SIZE``'s default."""


PACKAGES = ("schemas", "events", "processors", "projections", "okr_ledger")


def compile_bytecode() -> None:
    """The project's bytecode, written before the timed runs, as an install has it. An editable
    install run with ``PYTHONDONTWRITEBYTECODE`` set (as in some shells and CI) would otherwise
    compile every module of the CLI on each start (about 40 ms of CPU a start here, timed with
    a one-line submit: 0.21-0.22 s against 0.17 s), a cost no installed ``okr-ledger`` has."""
    root = Path(__file__).resolve().parent.parent
    for package in PACKAGES:
        compileall.compile_dir(root / package, quiet=1)


def write_workload(path: Path, lines: int, key_results: int) -> None:
    """Setup events for one org, then check-ins spread over the key results."""
    head = setup("acme", key_results)
    with path.open("wb") as out:
        for line in head:
            out.write(line + b"\n")
        for i in range(lines - len(head)):
            out.write(check_in("acme", i, key_results) + b"\n")


def children_cpu() -> float:
    """User + system CPU seconds of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_submit(data_dir: Path, path: Path) -> tuple[float, float, dict[str, int], float]:
    """Wall seconds, peak RSS (MiB), summary of ``okr-ledger submit FILE --json`` and its CPU
    seconds (user + system; the measuring wrapper's own start is a few ms of it)."""
    env = {**os.environ, "OKR_DATA_DIR": str(data_dir)}
    cli = Path(sys.executable).parent / "okr-ledger"
    cpu = children_cpu()
    elapsed, peak, out = timed([str(cli), "submit", str(path), "--json"], env)
    cpu = children_cpu() - cpu
    summary: dict[str, int] = orjson.loads(out)
    return elapsed, peak, summary, cpu


def anchors(path: Path, ledger: Path, work: Path) -> dict[str, float]:
    """Seconds for the raw steps on the same lines and the same stored rows (wall; and CPU,
    under ``cpu_<step>``)."""
    lines = path.read_bytes().splitlines()
    documents = [orjson.loads(line) for line in lines]
    start, cpu = time.perf_counter(), time.process_time()
    for line in lines:  # not kept: that would time the allocator
        orjson.loads(line)
    parse, cpu_parse = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    for document in documents:
        submission = Submission.model_validate(document)
        payload_model(submission.type, submission.schema_version).model_validate(submission.data)
    validate, cpu_validate = time.perf_counter() - start, time.process_time() - cpu
    stored = sqlite3.connect(ledger)
    rows = stored.execute(
        "SELECT org_id, sequence, event_id, type, occurred_at, recorded_at, hash, body"
        " FROM events ORDER BY position"
    ).fetchall()
    stored.close()
    db = sqlite3.connect(work / "anchor.db", isolation_level=None)
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # as a new ledger file has it
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA cache_size=-65536")
    db.execute(f"PRAGMA wal_autocheckpoint={wal_autocheckpoint(PAGE_SIZE)}")
    db.execute(_MIGRATIONS[0][0])  # the events table of the ledger, as created
    start, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(rows), BATCH):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO events (org_id, sequence, event_id, type, occurred_at, recorded_at,"
            " hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows[first : first + BATCH],
        )
        db.execute("COMMIT")
    insert, cpu_insert = time.perf_counter() - start, time.process_time() - cpu
    db.close()
    return {
        "parse": parse,
        "validate": validate,
        "insert": insert,
        "cpu_parse": cpu_parse,
        "cpu_validate": cpu_validate,
        "cpu_insert": cpu_insert,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--key-results", type=int, default=100)
    args = parser.parse_args()
    compile_bytecode()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "submissions.ndjson"
        write_workload(path, args.lines, args.key_results)
        first, first_peak, summary, first_cpu = run_submit(work / "data", path)
        rerun, rerun_peak, again, rerun_cpu = run_submit(work / "data", path)
        raw = anchors(path, work / "data" / "ledger.db", work)
        size_mb = path.stat().st_size / 1e6
    n = summary["submitted"]
    load = os.getloadavg()[0]
    print(f"submit: {args.lines:,} lines ({size_mb:.1f} MB), load average {load:.1f}, "
          "the project's bytecode compiled first (as installed)")  # fmt: skip
    print(f"  first run: {first:.2f} s, {n / first:,.0f} events/s, peak RSS {first_peak:.0f} MiB"
          f"  (accepted={summary['accepted']} duplicate={summary['duplicate']} "
          f"rejected={summary['rejected']})")  # fmt: skip
    print(f"  rerun (all duplicates): {rerun:.2f} s, {n / rerun:,.0f} events/s, peak RSS "
          f"{rerun_peak:.0f} MiB  (duplicate={again['duplicate']})")  # fmt: skip
    print("  anchors of the same run, on the same lines and rows:")
    print(f"    orjson parse:                         {n / raw['parse']:>10,.0f} /s")
    print(f"    pydantic validation (envelope+data):  {n / raw['validate']:>10,.0f} /s")
    both = raw["parse"] + raw["validate"]
    print(f"    orjson parse + validation:            {n / both:>10,.0f} /s")
    print(f"    sqlite3 executemany of the same rows: {n / raw['insert']:>10,.0f} /s "
          f"({BATCH} a transaction, WAL, synchronous=FULL, {PAGE_SIZE}-byte pages)")  # fmt: skip
    print(f"  first run / (parse + validation): {both / first:.2f}; "
          f"rerun / (parse + validation): {both / rerun:.2f}")  # fmt: skip
    per = 1e6 / n
    cpu_both = raw["cpu_parse"] + raw["cpu_validate"]
    print("  CPU time per event (user + system; less disturbed by other load than wall time):")
    print(f"    submit, first run:     {first_cpu * per:6.2f} µs   rerun: {rerun_cpu * per:6.2f} µs"
          f"   (whole process, interpreter start included)")  # fmt: skip
    print(f"    anchors: orjson parse {raw['cpu_parse'] * per:.2f} µs, validation "
          f"{raw['cpu_validate'] * per:.2f} µs, "
          f"sqlite3 executemany {raw['cpu_insert'] * per:.2f} µs")  # fmt: skip
    print(f"    first run / (parse + validation): {cpu_both / first_cpu:.2f}; "
          f"rerun / (parse + validation): {cpu_both / rerun_cpu:.2f}")  # fmt: skip
    figures = Figures("submit", f"submit: {args.lines:,} lines, {args.key_results:,} key results")
    anchor = (
        f"orjson parse + pydantic validation {n / both:,.0f}/s ({cpu_both * per:.2f} µs "
        f"CPU/event); sqlite3 executemany of the same rows {n / raw['insert']:,.0f}/s"
    )
    for name, wall, cpu, peak, limit in (
        ("submit, first run (fresh ledger)", first, first_cpu, first_peak, 60_000),
        ("submit, rerun (all duplicates)", rerun, rerun_cpu, rerun_peak, 120_000),
    ):
        figures.add(name, n / wall, "events/s", at_least(n / wall, limit), anchor=anchor,
                    note=f"{cpu * per:.2f} µs CPU/event, peak RSS {peak:.0f} MiB")  # fmt: skip
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
