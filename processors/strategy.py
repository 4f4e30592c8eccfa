"""Strategy, SWOT, competitors, themes, org units and periods: their handlers and version rows.

Each handler folds one event into the org's state and emits the new version of what it
changed. A theme changes the cascade (which themes objectives reach), so theme events also
re-examine every objective (:func:`processors.objectives.all_objectives_changed`).
"""

from collections.abc import Mapping
from datetime import date
from typing import Any

from processors import tables as t
from processors.batch import Batch
from processors.objectives import all_objectives_changed
from processors.state import Competitor, OrgProjection, Period, Review, Theme, Unit
from processors.tables import Row

Data = dict[str, Any]
Record = Mapping[str, Any]
Stamp = tuple[int, int]

QUADRANTS = ("strength", "weakness", "opportunity", "threat")


def _strategy_row(org: OrgProjection, stamp: Stamp) -> Row:
    strategy = org.strategy
    quadrants: dict[str, list[str]] = {q: [] for q in QUADRANTS}
    for quadrant, text in strategy.swot.values():
        quadrants[quadrant].append(text)
    active = [(theme_id, theme.name) for theme_id, theme in org.themes.items() if theme.active]
    review = strategy.review
    return (
        org.org_id,
        *stamp,
        strategy.mission,
        strategy.vision,
        quadrants["strength"],
        quadrants["weakness"],
        quadrants["opportunity"],
        quadrants["threat"],
        [
            (x.name, x.strengths, x.weaknesses, x.differentiation)
            for x in strategy.competitors.values()
        ],
        [theme_id for theme_id, _name in active],
        [name for _theme_id, name in active],
        review.verdict if review else None,
        review.notes if review else None,
        review.reviewer if review else None,
        review.reviewed_at if review else None,
    )


def _strategy_changed(b: Batch, org: OrgProjection, stamp: Stamp) -> None:
    b.rows[t.STRATEGY].append(_strategy_row(org, stamp))


def strategy_defined(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.strategy.mission = d["mission"]
    org.strategy.vision = d["vision"]
    _strategy_changed(b, org, stamp)


def strategy_revised(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    strategy = org.strategy
    strategy.mission = d.get("mission", strategy.mission)
    strategy.vision = d.get("vision", strategy.vision)
    _strategy_changed(b, org, stamp)


def strategy_reviewed(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    occurred, stamp = b.occurred, b.stamp
    org.strategy.review = Review(d["verdict"], d["notes"], d["reviewer"], occurred)
    _strategy_changed(b, org, stamp)


def swot_added(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.strategy.swot[d["swot_id"]] = (d["quadrant"], d["text"])
    _strategy_changed(b, org, stamp)


def swot_removed(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.strategy.swot.pop(d["swot_id"], None)
    _strategy_changed(b, org, stamp)


def competitor_noted(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.strategy.competitors[d["competitor_id"]] = Competitor(
        d["name"], d.get("strengths", ""), d.get("weaknesses", ""), d.get("differentiation", "")
    )
    _strategy_changed(b, org, stamp)


def _theme_changed(b: Batch, org: OrgProjection, theme_id: str, stamp: Stamp) -> None:
    theme = org.themes[theme_id]
    b.rows[t.THEMES].append(
        (org.org_id, theme_id, *stamp, theme.name, theme.description, theme.active)
    )
    all_objectives_changed(b, org, stamp)
    _strategy_changed(b, org, stamp)


def theme_added(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.themes[d["theme_id"]] = Theme(d["name"], d.get("description"))
    _theme_changed(b, org, d["theme_id"], stamp)


def theme_revised(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    theme = org.themes.get(d["theme_id"])
    if theme is None:  # as ThemeAdded (the rules refuse it; an old ledger may have it)
        org.themes[d["theme_id"]] = Theme(d["name"], d.get("description"))
    else:
        theme.name = d.get("name", theme.name)
        theme.description = d.get("description", theme.description)
    _theme_changed(b, org, d["theme_id"], stamp)


def theme_retired(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    theme = org.themes.get(d["theme_id"])
    if theme is None:
        org.themes[d["theme_id"]] = Theme(d["name"], d.get("description"))
    else:
        theme.active = False
    _theme_changed(b, org, d["theme_id"], stamp)


def _unit_changed(b: Batch, org: OrgProjection, unit_id: str, stamp: Stamp) -> None:
    unit = org.units[unit_id]
    b.rows[t.UNITS].append(
        (org.org_id, unit_id, *stamp, unit.name, unit.kind, unit.parent_unit_id, unit.active)
    )


def unit_added(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.units[d["unit_id"]] = Unit(d["name"], d["kind"], d.get("parent_unit_id"))
    _unit_changed(b, org, d["unit_id"], stamp)


def unit_retired(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.units[d["unit_id"]].active = False
    _unit_changed(b, org, d["unit_id"], stamp)


def period_changed(b: Batch, org: OrgProjection, period_id: str, stamp: Stamp) -> None:
    period = org.periods[period_id]
    b.rows[t.PERIODS].append((org.org_id, period_id, *stamp, period.name, period.starts_on,
                              period.ends_on, period.closed))  # fmt: skip


def period_defined(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.periods[d["period_id"]] = Period(
        d["name"], date.fromisoformat(d["starts_on"]), date.fromisoformat(d["ends_on"])
    )
    period_changed(b, org, d["period_id"], stamp)


HANDLERS = {
    "StrategyDefined": strategy_defined,
    "StrategyRevised": strategy_revised,
    "StrategyReviewed": strategy_reviewed,
    "SwotItemAdded": swot_added,
    "SwotItemRemoved": swot_removed,
    "CompetitorNoted": competitor_noted,
    "ThemeAdded": theme_added,
    "ThemeRevised": theme_revised,
    "ThemeRetired": theme_retired,
    "OrgUnitAdded": unit_added,
    "OrgUnitRetired": unit_retired,
    "PeriodDefined": period_defined,
}
"""(``PeriodClosed`` and ``PeriodReopened``: :mod:`processors.periods`.)"""
