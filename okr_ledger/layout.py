"""Tables that stay readable on a narrow terminal.

A table of many columns squeezed into 80 columns cuts ids ("delight-…") and folds JSON into a
column a few characters wide. Below :data:`WIDE_ENOUGH` columns, :func:`records` stacks each
row instead: a rule naming it, then one ``label  value`` line per column, the value folded
over the whole width, never cut. Imports only rich (``rejections`` runs on a core install).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

WIDE_ENOUGH = 120
"""Terminals at least this wide get one table; narrower ones the stacked layout."""

Cell = str | Text


@dataclass(frozen=True, slots=True)
class Column:
    label: str
    justify: str = "left"
    no_wrap: bool = False
    """Ids: never wrapped or cut in the table (the other columns give way)."""


def narrow(console: Console) -> bool:
    return console.width < WIDE_ENOUGH


def records(
    console: Console,
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    heading: int = 0,
) -> RenderableType:
    """A table of ``rows``, or on a narrow ``console`` one block per row, headed by its
    ``heading`` column's value. A ``str`` cell is shown as it is (never read as markup)."""
    rows = [[Text(cell) if isinstance(cell, str) else cell for cell in row] for row in rows]
    if not narrow(console):
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(
                column.label,
                justify=column.justify,  # type: ignore[arg-type]
                no_wrap=column.no_wrap,
                overflow="ellipsis" if column.no_wrap else "fold",
            )
        for row in rows:
            table.add_row(*row)
        return table
    width = max((len(column.label) for column in columns), default=0)
    parts: list[RenderableType] = [Text(title, style="bold")]
    for row in rows:
        parts.append(Text.assemble(("── ", "dim"), row[heading], overflow="fold", style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True, min_width=width)
        grid.add_column(overflow="fold")
        for index, (column, value) in enumerate(zip(columns, row, strict=True)):
            if index != heading and str(value):
                grid.add_row(column.label, value)
        parts.append(grid)
    return Group(*parts)
