"""How the grades of closed periods (``okr-ledger results``) look in a terminal."""

from collections.abc import Iterable
from itertools import groupby

from rich.console import Console, Group, RenderableType
from rich.text import Text

from okr_ledger import layout
from okr_ledger.progress_render import STATUS_LABEL, STATUS_STYLE
from projections.queries import Record


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def results_view(console: Console, org_id: str, rows: Iterable[Record]) -> RenderableType:
    """One table per closed period: its objectives, then its key results, as graded at the
    period's latest close (expected progress and units: ``--json``); stacked on a narrow
    ``console`` (:mod:`okr_ledger.layout`): ids are never cut."""
    columns = [
        layout.Column("id", no_wrap=True), layout.Column("kind"),
        *(layout.Column(c, justify="right") for c in ("value", "target", "prog.", "attain.")),
        layout.Column("status", no_wrap=True), layout.Column("conf.", justify="right"),
    ]  # fmt: skip
    parts: list[RenderableType] = []
    for period_id, graded in groupby(rows, key=lambda r: r["period_id"]):
        items = list(graded)
        first = items[0]
        title = (
            f"Results of {first['period_name']} ({period_id}) in {org_id}, closed "
            f"{first['closed_at']:%Y-%m-%d %H:%M}Z (ledger sequence {first['close_sequence']})"
        )
        cells: list[list[layout.Cell]] = []
        for row in items:
            objective = row["subject_kind"] == "objective"
            status = str(row["status"])
            cells.append([
                Text(str(row["subject_id"]), style="bold" if objective else ""),
                "objective" if objective else "key result",
                "" if objective else _number(row["value"]),
                "" if objective else _number(row["target"]),
                _percent(row["progress"]),
                _percent(row["attainment"]),
                Text(STATUS_LABEL.get(status, status), style=STATUS_STYLE.get(status, "")),
                _number(row["confidence"]),
            ])  # fmt: skip
        parts.append(layout.records(console, title, columns, cells))
    if not parts:
        return Text(f"no closed period in {org_id}")
    return Group(*parts)
