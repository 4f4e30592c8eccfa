"""How projections look in a terminal (rich) and as NDJSON lines."""

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from okr_ledger import layout
from projections.queries import Progress, Record

STATUS_STYLE = {
    "on_track": "green", "at_risk": "yellow", "off_track": "red", "achieved": "cyan",
    "abandoned": "grey50",
}  # fmt: skip
STATUS_LABEL = {
    "on_track": "on track", "at_risk": "at risk", "off_track": "off track",
    "achieved": "achieved", "abandoned": "abandoned",
}  # fmt: skip
FLAG_TEXT = {
    "orphan": "no path to an active theme",
    "parent_inactive": "its parent is abandoned or in another period",
    "over_focus": "its unit has too many objectives in this period",
}
BAR_WIDTH = 20
_WIDE = Console(width=layout.WIDE_ENOUGH)
"""Where no console is given: the one-table layout."""


def bar(progress: float, status: str) -> Text:
    filled = round(max(0.0, min(1.0, progress)) * BAR_WIDTH)
    text = Text("█" * filled, style=STATUS_STYLE.get(status, "white"))
    text.append("░" * (BAR_WIDTH - filled), style="grey37")
    text.append(f" {progress:>4.0%}")
    return text


def _number(value: float) -> str:
    return f"{value:g}"


def _confidence(value: float | None) -> str:
    return "conf -" if value is None else f"conf {value:.2f}"


def _objective_label(objective: Record) -> Text:
    label = Text.assemble((objective["title"], "bold"), (f"  {objective['objective_id']}", "dim"))
    label.append("  ")
    label.append_text(bar(objective["progress"], objective["status"]))
    status = objective["status"]
    label.append(f"  {STATUS_LABEL[status]}", style=STATUS_STYLE[status])
    label.append(f"  {_confidence(objective['confidence'])}", style="cyan")
    if objective["lifecycle"] != "active":
        label.append(f"  [{objective['lifecycle']}]", style="magenta")
    for flag in objective["flags"]:
        label.append(f"  ⚠ {flag}", style="yellow")
    return label


def _key_result_label(kr: Record) -> Text:
    label = Text(kr["title"])
    label.append(f"  {kr['key_result_id']}", style="dim")
    label.append("  ")
    label.append_text(bar(kr["progress"], kr["status"]))
    label.append(f"  {_number(kr['value'])} / {_number(kr['target'])} {kr['unit']}")
    status = kr["status"]
    label.append(f"  {STATUS_LABEL[status]}", style=STATUS_STYLE[status])
    label.append(f"  {_confidence(kr['confidence'])}", style="cyan")
    if kr["stale"]:
        label.append("  stale", style="red")
    if kr["retired"]:
        label.append("  [retired]", style="magenta")
    return label


def ordered(progress: Progress) -> Iterator[tuple[Record, list[Record]]]:
    """Objectives depth-first (roots in id order), each with its key results."""
    by_id = {o["objective_id"]: o for o in progress.objectives}
    children: dict[str | None, list[Record]] = defaultdict(list)
    for objective in progress.objectives:
        parent = objective["parent_objective_id"]
        children[parent if parent in by_id else None].append(objective)
    key_results: dict[str, list[Record]] = defaultdict(list)
    for kr in progress.key_results:
        key_results[kr["objective_id"]].append(kr)

    def walk(parent: str | None) -> Iterator[tuple[Record, list[Record]]]:
        for objective in sorted(children[parent], key=lambda o: str(o["objective_id"])):
            yield objective, key_results[objective["objective_id"]]
            yield from walk(objective["objective_id"])

    yield from walk(None)


def progress_tree(org_id: str, progress: Progress, title: str) -> RenderableType:
    root = Tree(Text.assemble((org_id, "bold"), (f"  {title}", "dim")))
    nodes: dict[str, Tree] = {}
    for objective, key_results in ordered(progress):
        parent = nodes.get(objective["parent_objective_id"] or "", root)
        node = parent.add(_objective_label(objective))
        nodes[objective["objective_id"]] = node
        for kr in key_results:
            node.add(_key_result_label(kr))
    if not progress.objectives:
        root.add(Text("no objectives", style="dim"))
    return root


def progress_lines(org_id: str, progress: Progress) -> Iterator[dict[str, Any]]:
    for objective, key_results in ordered(progress):
        yield {
            "kind": "objective",
            "org_id": org_id,
            "id": objective["objective_id"],
            "title": objective["title"],
            "period_id": objective["period_id"],
            "unit_id": objective["owner_unit_id"],
            "parent_id": objective["parent_objective_id"],
            "depth": objective["depth"],
            "lifecycle": objective["lifecycle"],
            "rollup": objective["rollup"],
            "weight": objective["weight"],
            "progress": objective["progress"],
            "expected_progress": objective["expected_progress"],
            "status": objective["status"],
            "confidence": objective["confidence"],
            "flags": objective["flags"],
        }
        for kr in key_results:
            yield {
                "kind": "key_result",
                "org_id": org_id,
                "id": kr["key_result_id"],
                "objective_id": kr["objective_id"],
                "title": kr["title"],
                "kr_kind": kr["kind"],
                "unit": kr["unit"],
                "start": kr["start"],
                "target": kr["target"],
                "current_target": kr["current_target"],
                "value": kr["value"],
                "progress": kr["progress"],
                "attainment": kr["attainment"],
                "expected_progress": kr["expected_progress"],
                "status": kr["status"],
                "confidence": kr["confidence"],
                "last_check_in_at": kr["last_check_in_at"],
                "check_in_count": kr["check_in_count"],
                "stale": kr["stale"],
                "retired": kr["retired"],
                "weight": kr["weight"],
            }


CASCADE_FIELDS = (
    "title", "owner_unit_id", "period_id", "lifecycle", "parent_objective_id", "ancestor_ids",
    "depth", "theme_ids", "reached_theme_ids", "contributes_to", "depends_on", "progress",
    "expected_progress", "status",
)  # fmt: skip


def cascade_line(org_id: str, objective: Record) -> dict[str, Any]:
    line: dict[str, Any] = {"org_id": org_id, "id": objective["objective_id"]}
    line.update({name: objective[name] for name in CASCADE_FIELDS})
    line["flags"] = objective["flags"]
    return line


def warnings(objectives: list[Record], coverage: list[Record]) -> list[str]:
    """The alignment warnings: flagged objectives, and themes nobody works on in a period."""
    found = [
        f"objective {o['objective_id']!r}: {FLAG_TEXT[flag]} ({flag})"
        for o in objectives
        for flag in o["flags"]
    ]
    found.extend(
        f"theme {c['theme_id']!r} has no objective in {c['period_id']}"
        for c in coverage
        if c["uncovered"]
    )
    return found


def _tree_order(objective: Record) -> tuple[str, list[str]]:
    """Period, then root-to-leaf path: children come right after their parent."""
    return objective["period_id"], [*reversed(objective["ancestor_ids"]), objective["objective_id"]]


def cascade_view(
    org_id: str, objectives: list[Record], coverage: list[Record], console: Console | None = None
) -> Group:
    """Every objective with its unit, period, parent, themes, links and flags; stacked on a
    narrow ``console`` (:mod:`okr_ledger.layout`)."""
    columns = [
        layout.Column("objective", no_wrap=True), layout.Column("unit"), layout.Column("period"),
        layout.Column("parent"), layout.Column("themes reached"), layout.Column("links"),
        layout.Column("status"), layout.Column("flags"),
    ]  # fmt: skip
    stacked = console is not None and layout.narrow(console)
    rows: list[list[layout.Cell]] = []
    for objective in sorted(
        objectives, key=lambda o: (o["period_id"], list(o["ancestor_ids"])[::-1], o["objective_id"])
    ):
        links = [f"→ {o}" for o in objective["contributes_to"]]
        links += [f"needs {o}" for o in objective["depends_on"]]
        indent = "" if stacked else "  " * int(objective["depth"])
        status = objective.get("status", "")
        rows.append([
            indent + objective["objective_id"],
            objective["owner_unit_id"],
            objective["period_id"],
            objective["parent_objective_id"] or "",
            ", ".join(objective["reached_theme_ids"]),
            ", ".join(links),
            Text(str(status).replace("_", " "), style=STATUS_STYLE.get(str(status), "")),
            Text(", ".join(objective["flags"]), style="yellow"),
        ])  # fmt: skip
    view = layout.records(console or _WIDE, f"Cascade of {org_id}", columns, rows)
    return Group(view, warnings_view(objectives, coverage))


def warnings_view(objectives: list[Record], coverage: list[Record]) -> RenderableType:
    found = warnings(objectives, coverage)
    if not found:
        return Text("No alignment warnings.", style="green")
    text = Text("Alignment warnings\n", style="bold yellow")
    for warning in found:
        text.append(f"  ⚠ {warning}\n", style="yellow")
    return text


def coverage_table(org_id: str, coverage: list[Record]) -> Table:
    table = Table(title=f"Theme coverage of {org_id}", title_justify="left")
    for column in ("period", "theme", "objectives", "direct", "key results", "progress"):
        table.add_column(column, justify="right" if column not in ("period", "theme") else "left")
    for row in coverage:
        style = "red" if row["uncovered"] else ""
        table.add_row(
            row["period_id"],
            Text(f"{row['theme_name']} ({row['theme_id']})", style=style),
            str(row["objective_count"]),
            str(row["direct_objective_count"]),
            str(row["key_result_count"]),
            f"{row['progress']:.0%}",
        )
    return table


def history_table(
    subject: str, events: list[Record], console: Console | None = None
) -> RenderableType:
    """The events about ``subject``; stacked on a narrow ``console`` (ids and JSON whole)."""
    columns = [
        layout.Column("seq", justify="right"), layout.Column("occurred at"),
        layout.Column("recorded at"), layout.Column("type", no_wrap=True),
        layout.Column("actor"), layout.Column("source"), layout.Column("data"),
    ]  # fmt: skip
    rows: list[list[layout.Cell]] = [
        [
            str(event["sequence"])
            if console is None or not layout.narrow(console)
            else f"#{event['sequence']} {event['type']}",
            f"{event['occurred_at']:%Y-%m-%d %H:%M}",
            f"{event['recorded_at']:%Y-%m-%d %H:%M:%S}",
            event["type"],
            event["actor"],
            event["source"],
            event["data"],
        ]
        for event in events
    ]
    return layout.records(console or _WIDE, f"History of {subject}", columns, rows)
