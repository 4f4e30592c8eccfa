"""The monitoring commands: engagement, trend, attention, strategy (issue 11).

Like the other query commands they catch the projections up first, take ``--as-of`` (what the
ledger knew then) and, where the answer depends on business time, ``--at``.
"""

from typing import Annotated

import typer

from okr_ledger import cli_options, query_json
from okr_ledger import monitor_render as render
from okr_ledger.cli_options import AsOf, At, Json, Org, Period
from okr_ledger.consoles import out
from okr_ledger.query_cli import (
    _moment,
    _orgs,
    _title,
    _write_lines,
    caught_up_store,
)
from okr_ledger.settings import Settings
from projections import queries

WeeksOption = Annotated[
    int, typer.Option("--weeks", min=1, max=104, metavar="N", help="How many weeks (or days).")
]


def engagement(
    org: Org = None,
    period: Period = None,
    as_of: AsOf = None,
    at: At = None,
    json: Json = False,
) -> None:
    """Per owner and per unit: key results owned (of --period, else of the periods running at
    the reference time), check-ins in 7 and 28 days, share checked in within their cadence,
    last check-in."""
    moment = _moment(as_of, at)
    with caught_up_store() as store:
        orgs = _orgs(store, org)
        if period is not None:
            queries.require_entity(store, "period", period, orgs)
        for org_id in orgs:
            rows = query_json.engagement_lines(store, org_id, moment, period=period)
            if json:
                _write_lines(rows)
            else:
                out.print(render.engagement_table(out, org_id, _title(moment), rows))


def trend(  # noqa: PLR0917 - a command's options
    subject: Annotated[
        str, typer.Argument(metavar=cli_options.SUBJECT, help="A key result or objective id.")
    ],
    org: Org = None,
    weeks: WeeksOption = 8,
    daily: Annotated[bool, typer.Option("--daily", help="Days instead of weeks.")] = False,
    as_of: AsOf = None,
    at: At = None,
    json: Json = False,
) -> None:
    """The progress of one key result or objective, week by week (or day by day), with a
    sparkline; with --as-of, the chart as it was shown then."""
    moment = _moment(as_of, at)
    with caught_up_store() as store:
        for org_id in _orgs(store, org):
            points = query_json.trend_lines(
                store, org_id, subject, moment, Settings().over_focus_limit,
                count=weeks, daily=daily,
            )  # fmt: skip
            if json:
                _write_lines(points)
            elif points or org:
                out.print(render.trend_view(subject, _title(moment), points))


def attention(org: Org = None, as_of: AsOf = None, at: At = None, json: Json = False) -> None:
    """What needs someone this week: stale key results, falling confidence, cascade flags,
    themes nobody works on, periods ending with key results behind."""
    moment = _moment(as_of, at)
    with caught_up_store() as store:
        for org_id in _orgs(store, org):
            items = query_json.attention_lines(store, org_id, moment, Settings().over_focus_limit)
            if json:
                _write_lines(items)
            else:
                out.print(render.attention_table(out, org_id, _title(moment), items))


def strategy(org: Org = None, as_of: AsOf = None, json: Json = False) -> None:
    """The strategy as it stood: mission, vision, SWOT, competitors, themes, latest review."""
    moment = _moment(as_of)
    with caught_up_store() as store:
        for org_id in _orgs(store, org):
            lines = query_json.strategy_lines(store, org_id, moment)
            if json:
                _write_lines(lines)
            else:
                out.print(render.strategy_view(org_id, _title(moment), lines[0] if lines else None))


def register(app: typer.Typer) -> None:
    """Add the monitoring commands to the ``okr-ledger`` app."""
    app.command()(engagement)
    app.command()(trend)
    app.command()(attention)
    app.command()(strategy)


def show_demo_monitoring(org_id: str, trend_subject: str) -> None:
    """The end of ``demo``: the attention list and one trend."""
    moment = _moment(None)
    with caught_up_store() as store:
        items = query_json.attention_lines(store, org_id, moment, Settings().over_focus_limit)
        out.print(render.attention_table(out, org_id, _title(moment), items))
        points = query_json.trend_lines(
            store, org_id, trend_subject, moment, Settings().over_focus_limit
        )
        out.print(render.trend_view(trend_subject, _title(moment), points))
