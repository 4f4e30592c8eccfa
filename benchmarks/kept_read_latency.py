"""A kept read through the store's process: what ``okr-ledger serve`` (one process, embedded
runtime) spends on a ``progress`` read with nothing new, its store kept open in the child
process of ``okr_ledger/store_host.py`` and read over ClickHouse's HTTP interface.

On the demo ledger, in this process, :class:`~okr_ledger.kept_projections.KeptProjections`
reads ``progress`` (as ``GET /v1/orgs/{org}/progress`` does, without the HTTP API): ``--reads``
reads per round, ``--rounds`` rounds, each round measuring in turn (the order alternating)

- **at once** (as it reads): the store's checkpoints known since the last read that found
  nothing new (no statement for the check), the answer's two statements sent at once
  (``ProjectionStore.served_chdb``), each ``SETTINGS max_threads = 1``;
- **in turn** (as it read before): the checkpoints read before every read, the statements one
  after the other, on the default threads;

and its parts through the child: the check's statement, the answer's statements at once and
in turn, ``SELECT 1``. Beside them, the raw anchors of the same run: the same statements on
chDB alone in a fresh process (the store opened in-process, as ``serve`` read before
ebdf7c0: ``dicts_together`` on three connections), and ``SELECT 1`` there.
Figures go to benchmarks/.work/figures/kept_read.json (``benchmarks/summary.py``).
Usage: python benchmarks/kept_read_latency.py [--rounds 6] [--reads 30]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figures

ORG = "northwind"


def demo(data: Path) -> None:
    from events.ledger import Ledger
    from events.sqlite_log import SqliteEventLog
    from okr_ledger.demo import demo_submissions

    data.mkdir(parents=True)
    log = SqliteEventLog(data / "ledger.db")
    try:
        list(Ledger(log).submit_many((raw, None) for raw in demo_submissions()))
    finally:
        log.close()


def median_ms(run: Callable[[], object], times: int) -> float:
    run()
    found = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        found.append((time.perf_counter() - start) * 1000)
    return statistics.median(found)


def statements(store: Any) -> list[tuple[str, dict[str, str]]]:
    from projections import queries

    org = {"org": ORG}
    return [(queries._sql(store, q), org) for q in (queries._OBJECTIVES_NOW,
                                                    queries._KEY_RESULTS_NOW)]  # fmt: skip


def in_chdb_alone(data: Path, times: int) -> dict[str, float]:
    """The anchors, in this (fresh) process: the store opened here, the same statements."""
    from okr_ledger.embedded_runtime import catch_up
    from okr_ledger.runtime import no_progress
    from okr_ledger.settings import Settings
    from okr_ledger.wiring import open_event_log, open_projection_store
    from projections import queries

    settings = Settings(data_dir=data)
    log = open_event_log(settings, create=False, read_only=True)
    store = open_projection_store(settings)
    try:
        together = statements(store)

        def read() -> None:
            catch_up(store, log, settings, no_progress, "projecting")
            queries.progress(store, ORG, queries.Moment(), settings.over_focus_limit)

        return {
            "read": median_ms(read, times),
            "check": median_ms(store.checkpoints, times),
            "together": median_ms(lambda: store.dicts_together(together), times),
            "select_1": median_ms(lambda: store.client.query("SELECT 1"), times),
        }
    finally:
        store.close()
        log.close()


def through_the_child(data: Path, rounds: int, reads: int) -> dict[str, list[float]]:
    """The kept reads, at once and in turn alternated, and their parts (ms, per round)."""
    from okr_ledger.kept_projections import KeptProjections
    from okr_ledger.settings import Settings
    from projections import queries

    settings = Settings(data_dir=data)
    kept = KeptProjections(settings, idle_s=3600)

    def progress(store: Any) -> object:
        return queries.progress(store, ORG, queries.Moment(), settings.over_focus_limit)

    found: dict[str, list[float]] = {}
    try:
        store = kept.read(lambda store: store)  # opens it, projects the demo
        opened = kept._opened
        assert opened is not None

        def in_turn() -> None:
            opened.forget_checkpoints()  # read again, as every read did
            kept.read(progress)

        def at_once() -> None:
            kept.read(progress)

        for n in range(rounds):
            order = [("at once", True), ("in turn", False)]
            for label, served in order if n % 2 == 0 else order[::-1]:
                store.served_chdb = served
                found.setdefault(label, []).append(median_ms(at_once if served else in_turn, reads))
            for part, run in parts(store).items():
                found.setdefault(part, []).append(median_ms(run, reads))
            store.served_chdb = True
    finally:
        kept.close()
    return found


def parts(store: Any) -> dict[str, Callable[[], object]]:
    """A kept read's parts through the child: its check, its statements at once and in turn
    (``store.served_chdb`` set as each needs), ``SELECT 1``."""
    store.served_chdb = True
    at_once = statements(store)
    store.served_chdb = False
    in_turn = statements(store)

    def together(served: bool, sent: list[tuple[str, dict[str, str]]]) -> object:
        store.served_chdb = served
        return store.dicts_together(sent)

    def check() -> object:
        store.served_chdb = True  # on one thread, as the reader reads it
        return store.checkpoints()

    return {
        "check": check,
        "together at once": lambda: together(True, at_once),
        "together in turn": lambda: together(False, in_turn),
        "select_1": lambda: store.client.query("SELECT 1"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--reads", type=int, default=30)
    parser.add_argument("--alone", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alone:
        print(orjson.dumps(in_chdb_alone(args.alone, args.reads * args.rounds)).decode())
        return
    figures = Figures("kept_read", "A kept read through the store's process (demo ledger)")
    print(f"load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="okr-kept-read-") as directory:
        data = Path(directory) / "data"
        demo(data)
        child = through_the_child(data, args.rounds, args.reads)
        done = subprocess.run(
            [sys.executable, __file__, "--alone", str(data), "--reads", str(args.reads),
             "--rounds", str(args.rounds)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        alone = orjson.loads(done.stdout.splitlines()[-1])
    p50 = {part: statistics.median(times) for part, times in child.items()}
    spread = {part: f"{min(times):.1f}-{max(times):.1f}" for part, times in child.items()}
    anchor = (
        f"chDB alone, in-process: the read {alone['read']:.1f} ms (check {alone['check']:.1f}, "
        f"statements at once {alone['together']:.1f}), SELECT 1 {alone['select_1']:.2f} ms"
    )
    for label in ("at once", "in turn"):
        figures.add(f"progress, nothing new, kept read through the child, {label} (p50)",
                    p50[label], "ms", anchor=anchor,
                    note=f"rounds' medians {spread[label]} ms")  # fmt: skip
    for part, what in (
        ("check", "the catch-up's check (checkpoints), when read"),
        ("together at once", "the answer's 2 statements at once"),
        ("together in turn", "the answer's 2 statements in turn"),
        ("select_1", "SELECT 1"),
    ):
        figures.add(f"{what}, through the child (p50)", p50[part], "ms", anchor=anchor,
                    note=f"rounds' medians {spread[part]} ms")  # fmt: skip
    print(f"load average {os.getloadavg()}", flush=True)
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
