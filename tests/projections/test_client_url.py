"""Where ``OKR_CLICKHOUSE_URL`` points."""

import pytest

from okr_ledger.settings import Settings
from projections.client import Target, parse_url
from schemas.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("chdb:///var/okr/clickhouse", Target("chdb", "okr_ledger", path="/var/okr/clickhouse")),
        ("chdb://./data/ch?database=q4", Target("chdb", "q4", path="./data/ch")),
        (
            "http://bi:s%40cret@ch.internal:8124/okr",
            Target("http", "okr", host="ch.internal", port=8124, username="bi", password="s@cret"),
        ),
        ("https://ch.example", Target("https", "okr_ledger", host="ch.example", port=8443)),
    ],
)
def test_urls(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(
    "url",
    [
        "postgres://x/y",
        "chdb://",
        "http:///db",
        "chdb:///x?database=drop;table",
        "chdb:///x?database=%C3%BCber",  # not ASCII: would need quoting in SQL
        "http://ch.internal/1q4",  # starts with a digit: the same
        f"chdb:///x?database={'d' * 201}",  # over the cap (file names, a rebuild's suffix)
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


def test_a_database_name_of_200_characters_is_fine() -> None:
    assert parse_url(f"chdb:///x?database={'d' * 200}").database == "d" * 200


def test_the_default_is_absolute_under_the_data_dir() -> None:
    url = Settings(data_dir="relative/dir").resolved_clickhouse_url
    assert url.startswith("chdb:///")
    assert url.endswith("/relative/dir/clickhouse")
