"""How the grades of closed periods (``okr-ledger results``) look in a terminal."""

from collections.abc import Iterable
from itertools import groupby

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from okr_ledger.progress_render import STATUS_LABEL, STATUS_STYLE
from projections.queries import Record


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def results_view(org_id: str, rows: Iterable[Record]) -> RenderableType:
    """One table per closed period: its objectives, then its key results, as graded at the
    period's latest close (expected progress and units: ``--json``)."""
    tables: list[RenderableType] = []
    for period_id, graded in groupby(rows, key=lambda r: r["period_id"]):
        items = list(graded)
        first = items[0]
        table = Table(
            title=(
                f"Results of {first['period_name']} ({period_id}) in {org_id}, closed "
                f"{first['closed_at']:%Y-%m-%d %H:%M}Z (ledger sequence {first['close_sequence']})"
            ),
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        table.add_column("")
        table.add_column("id", no_wrap=True)
        for column in ("value", "target", "prog.", "attain."):
            table.add_column(column, justify="right", min_width=len(column))
        table.add_column("status", no_wrap=True)
        table.add_column("conf.", justify="right", min_width=5)
        for row in items:
            objective = row["subject_kind"] == "objective"
            status = str(row["status"])
            table.add_row(
                "obj." if objective else "  kr",
                Text(str(row["subject_id"]), style="bold" if objective else ""),
                "" if objective else _number(row["value"]),
                "" if objective else _number(row["target"]),
                _percent(row["progress"]),
                _percent(row["attainment"]),
                Text(STATUS_LABEL.get(status, status), style=STATUS_STYLE.get(status, "")),
                _number(row["confidence"]),
            )
        tables.append(table)
    if not tables:
        return Text(f"no closed period in {org_id}")
    return Group(*tables)
