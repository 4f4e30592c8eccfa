"""Profile the queries on the benchmark store: progress (now, --as-of, --at), cascade,
coverage, history, and the monitoring answers (trend, attention, coverage --at).

Projects the ledger of benchmarks/projection_throughput.py (K key results, N check-ins) into
a fresh chDB store once, then for each query prints:
- p50/p95 in process over ``--samples`` runs;
- the split of one run: Python (ours and the driver's decoding) against ClickHouse's own
  elapsed time, per SQL statement, with the rows and bytes ClickHouse read and the rows
  returned; the statements' text with ``--sql``. Statements an answer runs at once
  (``ProjectionStore.dicts_together``) overlap: their sums may exceed the total, and the
  "critical" column sums, per batch run at once, its longest statement;
- table sizes, to read "rows read" against.

``--store DIR``: a data directory already projected from that ledger (its ``clickhouse``), used
as it is instead of projecting anew (a first catch-up at 1,000,000 check-ins takes ~30 s; use
a copy: opening it migrates it).

Usage: python benchmarks/profiling/query_profile.py [--key-results 1000] [--check-ins 200000]
       [--samples 20] [--sql] [--store DIR]
"""

import argparse
import functools
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.profiling.common import bench_ledger, print_top, profiled, rate
from benchmarks.projection_throughput import _timed
from events.sqlite_log import SqliteEventLog
from processors.runner import EmbeddedRunner
from projections import monitoring, queries
from projections.queries import Moment
from projections.store import ProjectionStore

ORG = "bench"
FOCUS_LIMIT = 5


@dataclass
class Statement:
    sql: str
    parameters: Any
    wall: float
    engine: float
    result_rows: int
    start: float = 0.0
    scans: str = ""
    """What ClickHouse estimates it reads (EXPLAIN ESTIMATE): table rows/marks/parts."""


@dataclass
class QueryLog:
    """Every statement of the store, on any of its connections: its SQL, wall time and
    ClickHouse's summary."""

    statements: list[Statement] = field(default_factory=list)
    enabled: bool = False

    def wrap(self, store: ProjectionStore) -> None:
        query: Callable[..., Any] = store._query

        @functools.wraps(query)
        def logged(sql: str, parameters: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = query(sql, parameters, *args, **kwargs)
            wall = time.perf_counter() - start
            if self.enabled:
                info = result.summary or {}  # chDB's read_rows counts the result, not the scan
                self.statements.append(
                    Statement(
                        store._sql(sql),
                        parameters,
                        wall,
                        int(info.get("elapsed_ns", 0)) / 1e9,
                        len(result.result_rows),
                        start,
                    )
                )
            return result

        store._query = logged  # type: ignore[method-assign,assignment]  # measuring only


def _critical(statements: list[Statement]) -> float:
    """The wall time of the statements, those that overlap counted once (their union)."""
    spans = sorted((s.start, s.start + s.wall) for s in statements)
    total, end = 0.0, float("-inf")
    for begin, finish in spans:
        if finish > end:
            total += finish - max(begin, end)
            end = finish
    return total


def _short(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 150 else text[:147] + "..."


def measure(store: ProjectionStore, middle: Any, samples: int, show_sql: bool) -> None:
    log = QueryLog()
    log.wrap(store)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("progress (now)", partial(queries.progress, store, ORG, Moment(), FOCUS_LIMIT)),
        ("progress --as-of mid", partial(queries.progress, store, ORG, Moment(as_of=middle),
                                         FOCUS_LIMIT)),
        ("progress --at mid", partial(queries.progress, store, ORG, Moment(at=middle),
                                      FOCUS_LIMIT)),
        ("cascade (objectives + coverage)", lambda: (
            queries.objectives(store, ORG, Moment(), FOCUS_LIMIT),
            queries.coverage(store, ORG, Moment()))),
        ("coverage", partial(queries.coverage, store, ORG, Moment())),
        ("history kr7", partial(queries.history, store, ORG, "kr7", Moment())),
        ("history obj3", partial(queries.history, store, ORG, "obj3", Moment())),
        ("history kr7 --as-of mid", partial(queries.history, store, ORG, "kr7",
                                            Moment(as_of=middle))),
        ("trend kr7", partial(monitoring.trend, store, ORG, "kr7", Moment(), FOCUS_LIMIT)),
        ("trend obj3", partial(monitoring.trend, store, ORG, "obj3", Moment(), FOCUS_LIMIT)),
        ("attention", partial(monitoring.attention, store, ORG, Moment(), FOCUS_LIMIT)),
        ("attention --at mid", partial(monitoring.attention, store, ORG, Moment(at=middle),
                                       FOCUS_LIMIT)),
        ("coverage --at mid", partial(queries.coverage, store, ORG, Moment(at=middle))),
    ]  # fmt: skip
    print(f"\n{'query':<34} {'p50 ms':>7} {'p95 ms':>7}   one run: {'total':>6} "
          f"{'python':>6} {'stmts':>6} {'chDB':>6} (ms, sums)  stmts  critical")  # fmt: skip
    details: list[tuple[str, list[Statement]]] = []
    for name, call in cases:
        call()  # warm
        p50, p95 = _timed(call, samples)
        log.statements, log.enabled = [], True
        start = time.perf_counter()
        call()
        total = time.perf_counter() - start
        log.enabled = False
        in_driver = sum(s.wall for s in log.statements)
        engine = sum(s.engine for s in log.statements)
        critical = _critical(log.statements)
        print(f"{name:<34} {p50 * 1e3:7.1f} {p95 * 1e3:7.1f}   {'':9}{total * 1e3:6.1f} "
              f"{(total - critical) * 1e3:6.1f} {in_driver * 1e3:6.1f} "
              f"{engine * 1e3:6.1f}            {len(log.statements):>2} "
              f"{critical * 1e3:9.1f}")  # fmt: skip
        details.append((name, log.statements))
        for statement in log.statements:
            statement.scans = _estimate(store, statement)
    print("\nper statement (ms wall / ms chDB -> rows returned; EXPLAIN ESTIMATE: table "
          "rows read in marks of 8192 rows, parts)")  # fmt: skip
    for name, statements in details:
        print(f"  {name}")
        for s in statements:
            print(f"    {s.wall * 1e3:7.1f} / {s.engine * 1e3:7.1f} -> {s.result_rows:>6,}  "
                  f"{_short(s.sql)}")  # fmt: skip
            print(f"{'':30}scans: {s.scans}")
            if show_sql:
                print("      " + s.sql.replace("\n", "\n      "))
    for name, call in cases[:3]:
        _, stats, wall = profiled(call)
        print(f"\n--- cProfile of one {name}: {wall * 1e3:.0f} ms under the profiler ---")
        print_top(stats, 1, 12, name)


def _estimate(store: ProjectionStore, statement: Statement) -> str:
    try:
        rows = store.client.query(
            "EXPLAIN ESTIMATE " + statement.sql, parameters=statement.parameters
        ).result_rows
    except Exception as error:  # a statement EXPLAIN ESTIMATE cannot take
        return f"(no estimate: {str(error).splitlines()[0][:80]})"
    return "; ".join(f"{table} {int(r):,} rows/{int(m)} marks/{int(p)} parts"
                     for _db, table, p, r, m in rows) or "(nothing from MergeTree)"  # fmt: skip


def table_sizes(store: ProjectionStore) -> None:
    print("\ntables (active parts): rows, parts, MB on disk (compressed / raw)")
    for table, rows, parts, compressed, raw in store.rows(
        "SELECT table, sum(rows), count(), sum(data_compressed_bytes), "
        "sum(data_uncompressed_bytes) FROM system.parts WHERE database = {db:String} AND active "
        "GROUP BY table ORDER BY sum(rows) DESC",
        {"db": store.database},
    ):
        print(f"  {table:<22} {int(rows):>10,} rows {int(parts):>4} parts "
              f"{int(compressed) / 1e6:8.1f} / {int(raw) / 1e6:8.1f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-results", type=int, default=1000)
    parser.add_argument("--check-ins", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--sql", action="store_true", help="Print each statement's full SQL.")
    parser.add_argument("--store", type=Path, help="A data directory projected from the ledger.")
    args = parser.parse_args()
    ledger = bench_ledger(args.key_results, args.check_ins)
    directory = Path(tempfile.mkdtemp(prefix="okr-profile-queries-"))
    try:
        log = SqliteEventLog(ledger)
        store = ProjectionStore.open(f"chdb://{(args.store or directory) / 'clickhouse'}")
        start = time.perf_counter()
        done = EmbeddedRunner(log, store).catch_up()
        elapsed = time.perf_counter() - start
        print(f"query profile: {args.key_results:,} key results, {args.check_ins:,} check-ins; "
              f"projected {done.events:,} events in {elapsed:.1f} s "
              f"({rate(done.events, elapsed)})")  # fmt: skip
        first = next(log.read(ORG, 1, 1))
        events = store.positions()[ORG]
        last = next(log.read(ORG, events, events))
        middle = first.recorded + (last.recorded - first.recorded) / 2
        table_sizes(store)
        measure(store, middle, args.samples, args.sql)
        store.close()
        log.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
