"""Profile the views BI tools read: the CPU of a plain ``SELECT *`` of each view and of its
``_at`` twin, which is mostly the engine's analysis of the view's SQL (an empty store costs
about as much as a small one).

Builds a store (``--store empty``: migrated, nothing projected; ``demo``: the ledger of
``okr-ledger demo``; or a data directory already projected, e.g. the benchmark ledger's at
1,000 key results / 1,000,000 check-ins, copied first: opening a store migrates it), then
reads every view in rounds, A B B A: ``A`` the views of this
checkout, ``B`` those of ``--against DIR`` (another checkout, e.g. main's, whose
``projections.migrations.view_statements()`` are created in a second database of the same
store, with the same rows). Prints the least CPU (``getrusage``: every thread of this process,
chDB's among them) of each view over the rounds, and B/A, with ``--wall`` also the p50 and
p95 wall times; beside them the raw anchors read in the same rounds: ``SELECT 1`` and a plain
read of the tables the views are built on. ``--arguments``: the twins' (default: ``as_of``
on an empty store, ``at`` on the others).

Usage: python benchmarks/profiling/view_profile.py [--store empty|demo|DIR] [--rounds 3]
       [--against DIR] [--views attention_at,progress_trend_at] [--wall]
       [--arguments "(as_of = '2026-11-10 12:00:00')"]
"""

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from processors import tables as t
from projections.migrations import VIEWS
from projections.store import ProjectionStore

AS_OF = "(as_of = '2026-01-01 00:00:00')"
"""The twins' arguments on an empty store."""
AT = "(at = '2026-11-20 00:00:00')"
"""The twins' arguments on the demo store."""
ANCHORS = {
    "SELECT 1": "SELECT 1",
    "key_results_now FINAL": f"SELECT * FROM {{db}}.{t.KEY_RESULTS_NOW} FINAL",
    "objectives_now FINAL": f"SELECT * FROM {{db}}.{t.OBJECTIVES_NOW} FINAL",
    "check_in_versions scan": f"SELECT count() FROM {{db}}.{t.CHECK_INS} WHERE NOT ignore(*)",
}
"""What the engine does alone on the same store: the floor of a statement, the current-state
rows the views answer from, read plainly, and a scan of every column of the check-in versions
in the engine (not returned: a million rows in Python would measure the driver)."""
DUMP = (
    "import json, sys; sys.path.insert(0, '.'); "
    "from projections.migrations import view_statements; "
    "print(json.dumps(list(view_statements())))"
)


def percentile(seconds: list[float], p: int) -> float:
    """The ``p``-th percentile of ``seconds`` (nearest rank), in ms."""
    ranked = sorted(seconds)
    return ranked[max(0, math.ceil(p / 100 * len(ranked)) - 1)] * 1000


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_store(kind: str, directory: str) -> ProjectionStore:
    if kind not in ("empty", "demo"):
        shutil.copytree(Path(kind) / "clickhouse", f"{directory}/clickhouse", symlinks=True)
    elif kind == "demo":
        command = [str(Path(sys.executable).with_name("okr-ledger")), "demo"]
        environment = {**os.environ, "OKR_DATA_DIR": directory}
        subprocess.run(command, env=environment, check=True, capture_output=True)
    return ProjectionStore.open(f"chdb://{directory}/clickhouse")


def add_database(store: ProjectionStore, database: str, statements: list[str]) -> None:
    """A second database of ``store`` with the same rows and ``statements`` as its views."""
    ProjectionStore(store.client, database).migrate()
    for table in t.COLUMNS:
        store.client.command(
            f"INSERT INTO {database}.{table} SELECT * FROM {store.database}.{table}"
        )
    store.client.command(
        f"INSERT INTO {database}.projection_settings SELECT * FROM "
        f"{store.database}.projection_settings WHERE name != 'views'"
    )
    for statement in statements:
        store.client.command(statement.replace("{db}", database))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="empty", help="empty, demo or a data directory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", help="another checkout, whose views are B")
    parser.add_argument("--views", help="only these views and twins (comma-separated)")
    parser.add_argument("--arguments", help="the twins' arguments, in parentheses")
    parser.add_argument("--wall", action="store_true", help="also p50 and p95 wall times")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="view-profile-")
    store = open_store(args.store, directory)
    try:
        databases = {"A": store.database}
        if args.against:
            dumped = subprocess.run(
                [sys.executable, "-c", DUMP],
                cwd=args.against,
                check=True,
                capture_output=True,
                text=True,
            )
            databases["B"] = "views_b"
            add_database(store, "views_b", json.loads(dumped.stdout))
        arguments = args.arguments or (AS_OF if args.store == "empty" else AT)
        only = set(args.views.split(",")) if args.views else None
        names = [n for v in VIEWS for n in (v, f"{v}_at") if only is None or n in only]
        spent: dict[str, dict[str, list[float]]] = {k: {n: [] for n in names} for k in databases}
        walls: dict[str, dict[str, list[float]]] = {k: {n: [] for n in names} for k in databases}
        order = ("A", "B", "B", "A") if args.against else ("A", "A")
        anchors: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for key in order:
                for name in names:
                    query = f"SELECT * FROM {databases[key]}.{name}"
                    query += arguments if name.endswith("_at") else ""
                    before, start = cpu(), time.perf_counter()
                    store.client.query(query)
                    walls[key][name].append(time.perf_counter() - start)
                    spent[key][name].append(cpu() - before)
            for label, anchor in ANCHORS.items():
                before = cpu()
                store.client.query(anchor.replace("{db}", store.database))
                anchors.setdefault(label, []).append(cpu() - before)
        runs = len(spent["A"][names[0]]) if names else 0
        print(f"CPU ms of a read, least of {runs}, {args.store} store, twins {arguments}; "
              f"load {os.getloadavg()}")  # fmt: skip
        wall = "  wall p50 / p95 ms: " + " ".join(f"{k:>15s}" for k in databases)
        print(f"{'view':24s} {'A':>8s}" + (f" {'B':>8s}  B/A" if args.against else "")
              + (wall if args.wall else ""))  # fmt: skip
        for name in names:
            a = min(spent["A"][name]) * 1000
            line = f"{name:24s} {a:8.1f}"
            if args.against:
                b = min(spent["B"][name]) * 1000
                line += f" {b:8.1f}  {b / a:4.2f}"
            if args.wall:
                line += " " * 20 + " ".join(
                    f"{percentile(walls[k][name], 50):7.1f} {percentile(walls[k][name], 95):7.1f}"
                    for k in databases
                )
            print(line)
        print("raw anchors, same rounds:")
        for label, seconds in anchors.items():
            print(f"  {label:22s} {min(seconds) * 1000:8.1f}")
    finally:
        store.close()
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
