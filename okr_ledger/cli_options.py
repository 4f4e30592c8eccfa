"""Options shared by the commands, defined once: the same names, metavars and help everywhere.

Every query command takes :data:`AsOf` (recorded time); every command whose answer depends on
business time also takes :data:`At`. A new command reuses these types rather than declaring
its own. Imports only typer: ``submit`` loads this module too.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer

TIME = "TIME"
ORG = "ORG"
PERIOD = "PERIOD"
UNIT = "UNIT"
SUBJECT = "SUBJECT"
TIME_HELP = (
    "RFC 3339 (no offset: UTC), a date (its midnight, UTC), 'now', or now minus an amount: "
    "'-90s', '-15m', '-2h', '-3d'."
)

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar=TIME,
        help=f"The answer as the ledger knew it at this recorded time. {TIME_HELP}",
    ),
]
At = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar=TIME,
        help="Values, expected progress and status at this business time, as known now (or "
        "at --as-of). Same forms as --as-of.",
    ),
]
Org = Annotated[
    str | None, typer.Option("--org", metavar=ORG, help="Only this org (default: all).")
]
Period = Annotated[str | None, typer.Option("--period", metavar=PERIOD, help="Only this period.")]
Unit = Annotated[
    str | None, typer.Option("--unit", metavar=UNIT, help="Only this unit's objectives.")
]
Json = Annotated[bool, typer.Option("--json", help="NDJSON, one line per row.")]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
FIRST_YEAR, LAST_YEAR = 1900, 2299
"""The times a query takes: ClickHouse's ``DateTime64`` range."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A moment in UTC: RFC 3339 (a missing offset means UTC), a plain date (its midnight, UTC),
    ``now``, or ``-N`` followed by ``s``, ``m``, ``h`` or ``d`` (that long before now), in the
    years 1900 to 2299. ``ValueError`` otherwise."""
    try:
        moment = _parse(text.strip(), now or datetime.now(UTC))
    except OverflowError as error:  # e.g. -99999999999d, or year 1 shifted to UTC
        raise ValueError(f"{text!r} is out of range: {error}") from None
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise ValueError(f"{text!r} is not between {FIRST_YEAR} and {LAST_YEAR}")
    return moment


def _parse(text: str, current: datetime) -> datetime:
    if text == "now":
        return current
    if text.startswith("-") and text[-1:] in _UNITS and text[1:-1].isdigit():
        if len(text) > 14:  # more digits than any span back to FIRST_YEAR in seconds
            raise ValueError(f"{text!r} is too far back")
        return current - timedelta(**{_UNITS[text[-1]]: int(text[1:-1])})
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_option(text: str | None, option: str) -> datetime | None:
    """:func:`parse_time` for an option's value (``None`` stays ``None``); a usage error
    naming the option otherwise."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as error:
        problem = (
            str(error) if str(error).startswith(repr(text)) else f"not a date or time: {text!r}"
        )
        raise typer.BadParameter(problem, param_hint=option) from None
