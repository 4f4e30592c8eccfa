"""One table of every figure the benchmarks wrote (``benchmarks/.work/figures/*.json``; the
format is in :mod:`benchmarks.figures`), with its target and the raw anchor of its run.

Usage: python benchmarks/summary.py
"""

import sys
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import FIGURES


def main() -> None:
    table = Table(title="make bench: summary", show_lines=False)
    for column in ("figure", "value", "target", "met", "raw anchor, same run"):
        table.add_column(column, overflow="fold")
    # the suite's own rows (benchmarks/suite.py: each step's time, the whole run's) come last
    for path in sorted(FIGURES.glob("*.json"), key=lambda path: (path.stem == "suite", path)):
        document = orjson.loads(path.read_bytes())
        load = ", ".join(f"{x:.1f}" for x in document.get("load", []))
        table.add_section()
        table.add_row(f"[bold]{document['title']}[/] ({document['measured_at']}, load {load})")
        for row in document["figures"]:
            value = row["value"]
            shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
            met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[row["met"]]
            note = f" ({row['note']})" if row.get("note") else ""
            table.add_row(row["figure"] + note, f"{shown} {row['unit']}", row["target"], met,
                          row["anchor"])  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
