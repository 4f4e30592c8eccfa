"""The times the query commands take (``--as-of``, ``--at``): parsed with bounds."""

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from okr_ledger.cli import app
from okr_ledger.cli_options import parse_time

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-90s", datetime(2026, 11, 28, 11, 58, 30, tzinfo=UTC)),
        ("-3d", datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
        ("2026-10-20", datetime(2026, 10, 20, tzinfo=UTC)),
        ("2026-10-20T10:00:00+02:00", datetime(2026, 10, 20, 8, 0, tzinfo=UTC)),
        ("2026-10-20T10:00:00", datetime(2026, 10, 20, 10, 0, tzinfo=UTC)),
        ("1900-01-01", datetime(1900, 1, 1, tzinfo=UTC)),
        ("2299-12-31T23:59:59Z", datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_a_time_is_parsed_in_utc(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "-99999999999d",  # timedelta overflows
        "-1000000d",  # before year 1
        "-" + "9" * 5000 + "s",
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "1899-12-31",
        "2300-01-01",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_a_time_out_of_range_is_a_value_error(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"out of range|too far back|between 1900 and 2299|Invalid"
    ):
        parse_time(text, NOW)


def test_the_cli_refuses_an_out_of_range_time_with_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["progress", "--as-of=-99999999999d"])
    assert result.exit_code == 2, result.output
    assert "out of range" in " ".join(result.output.split())
    assert "Traceback" not in result.output
