"""How the monitoring answers look in a terminal (rich): engagement, trend, attention, strategy."""

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from okr_ledger import layout
from okr_ledger.progress_render import STATUS_LABEL, STATUS_STYLE
from projections.monitoring import sparkline
from projections.queries import Record

ATTENTION_TEXT = {
    "stale": "no check-in within its cadence",
    "confidence_dropped": "confidence dropped since the previous check-in",
    "orphan": "no path to an active theme",
    "parent_inactive": "its parent is abandoned or in another period",
    "over_focus": "its unit has too many objectives in this period",
    "theme_uncovered": "no objective reaches this theme",
    "period_ending": "period ends soon with key results below expectation",
}


def _when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def engagement_table(
    console: Console, org_id: str, title: str, rows: list[Record]
) -> RenderableType:
    """One row per owner and per unit; stacked on a narrow ``console``
    (:mod:`okr_ledger.layout`): owner ids are never cut."""
    columns = [
        layout.Column("by"), layout.Column("who", no_wrap=True),
        *(layout.Column(c, justify="right")
          for c in ("KRs", "check-ins 7d", "28d", "within cadence", "last check-in")),
    ]  # fmt: skip
    cells: list[list[layout.Cell]] = []
    for row in rows:
        share = row["within_cadence_share"]
        style = "green" if share >= 0.8 else "yellow" if share >= 0.5 else "red"
        cells.append([
            row["group"],
            row["id"] or Text("(nobody)", style="dim"),
            str(row["key_results"]),
            str(row["check_ins_7d"]),
            str(row["check_ins_28d"]),
            Text(f"{row['within_cadence']}/{row['key_results']} {share:.0%}", style=style),
            _when(row["last_check_in_at"]),
        ])  # fmt: skip
    return layout.records(console, f"Engagement in {org_id}  {title}", columns, cells, heading=1)


def trend_view(subject: str, title: str, points: list[Record]) -> RenderableType:
    if not points:
        return Text(f"no trend of {subject} {title}", style="dim")
    first, last = points[0], points[-1]
    head = Text.assemble(
        (f"{first['title']}", "bold"), (f"  {subject}  {title}", "dim"), "\n",
        (sparkline([p["progress"] for p in points]), STATUS_STYLE[last["status"]]),
        f"  {first['progress']:.0%} → {last['progress']:.0%}  ",
        (STATUS_LABEL[last["status"]], STATUS_STYLE[last["status"]]),
    )  # fmt: skip
    table = Table(title_justify="left", box=None)
    for column in (first["granularity"], "at", "progress", "expected", "status", "confidence"):
        table.add_column(column, justify="right" if column != "status" else "left")
    for p in points:
        table.add_row(
            f"{p['bucket']:%Y-%m-%d}",
            _when(p["at"]),
            f"{p['progress']:.0%}",
            f"{p['expected_progress']:.0%}",
            Text(STATUS_LABEL[p["status"]], style=STATUS_STYLE[p["status"]]),
            "-" if p["confidence"] is None else f"{p['confidence']:.2f}",
        )
    return Group(head, table)


def _detail(item: Record) -> str:
    kind = item["kind"]
    if kind == "stale":
        return (
            f"last check-in {_when(item['last_check_in_at'])}, every {item['checkin_every_days']}d"
        )
    if kind == "confidence_dropped":
        return (
            f"{STATUS_LABEL[item['status']]}, confidence "
            f"{item['previous_confidence']:.2f} → {item['confidence']:.2f}"
        )
    if kind == "theme_uncovered":
        return f"period {item['period_id']}"
    if kind == "period_ending":
        return f"ends {item['ends_on']} ({item['days_left']}d): " + ", ".join(
            item["key_result_ids"]
        )
    return f"period {item.get('period_id', '')}"


def attention_table(
    console: Console, org_id: str, title: str, items: list[Record]
) -> RenderableType:
    """One row per item; stacked on a narrow ``console`` (:mod:`okr_ledger.layout`): subject
    and owner ids are never cut."""
    if not items:
        return Text(f"Attention in {org_id}  {title}: nothing needs attention", style="green")
    columns = [
        layout.Column("subject", no_wrap=True), layout.Column("what"), layout.Column("title"),
        layout.Column("owner", no_wrap=True), layout.Column("detail"),
    ]  # fmt: skip
    cells: list[list[layout.Cell]] = [
        [
            item["subject_id"],
            Text(ATTENTION_TEXT[item["kind"]], style="yellow"),
            Text(item.get("title") or "", style="dim"),
            item.get("owner") or "-",
            _detail(item),
        ]
        for item in items
    ]
    return layout.records(console, f"Attention in {org_id}  {title}", columns, cells)


def strategy_view(org_id: str, title: str, found: Record | None) -> RenderableType:
    if found is None:
        return Text(f"{org_id} has no strategy {title}", style="dim")
    lines: list[RenderableType] = [
        Text.assemble((f"Strategy of {org_id}", "bold"), (f"  {title}", "dim")),
        Text.assemble(("Mission  ", "bold"), found["mission"] or "-"),
        Text.assemble(("Vision   ", "bold"), found["vision"] or "-"),
    ]
    swot = Table(title="SWOT", title_justify="left")
    quadrants = ("strengths", "weaknesses", "opportunities", "threats")
    for quadrant in quadrants:
        swot.add_column(quadrant, overflow="fold")
    swot.add_row(*("\n".join(f"• {item}" for item in found[q]) or "-" for q in quadrants))
    lines.append(swot)
    if found["competitors"]:
        rivals = Table(title="Competitors", title_justify="left")
        for column in ("name", "strengths", "weaknesses", "differentiation"):
            rivals.add_column(column, overflow="fold")
        for c in found["competitors"]:
            rivals.add_row(*(c[k] or "-" for k in ("name", "strengths", "weaknesses",
                                                    "differentiation")))  # fmt: skip
        lines.append(rivals)
    themes = ", ".join(
        f"{name} ({ident})"
        for ident, name in zip(found["active_theme_ids"], found["active_themes"], strict=True)
    )
    lines.append(Text.assemble(("Themes   ", "bold"), themes or "-"))
    if found["review_verdict"]:
        style = "green" if found["review_verdict"] == "sound" else "yellow"
        lines.append(Text.assemble(
            ("Review   ", "bold"), (found["review_verdict"], style),
            f"  by {found['reviewer']} on {_when(found['reviewed_at'])}: {found['review_notes']}",
        ))  # fmt: skip
    else:
        lines.append(Text("Review   none yet", style="dim"))
    return Group(*lines)
