"""``okr-ledger sql`` is read-only: every escape attempt is refused and changes nothing."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from okr_ledger.cli import app
from projections.readonly_sql import QueryLimits
from projections.store import ProjectionStore
from schemas.errors import ProjectionQueryError
from tests.projections.readonly_support import data_state, sql_of
from tests.projections.sql_escapes import ESCAPES

runner = CliRunner()


@pytest.fixture
def data_dir(demo_dir: Path) -> Path:
    return demo_dir / "data"


def store_of(data_dir: Path) -> ProjectionStore:
    return ProjectionStore.open(f"chdb://{data_dir / 'clickhouse'}", migrate=False)


def test_the_escape_list_is_long_and_has_the_issues_attempts() -> None:
    assert len(ESCAPES) >= 40
    assert "SELECT 'gone' INTO OUTFILE '{data}/ledger.db' TRUNCATE" in ESCAPES
    assert "SELECT 'gone' INTO OUTFILE '{data}/ledger.db' APPEND" in ESCAPES
    assert "SELECT 1; DROP TABLE okr_ledger.checkpoints; SELECT 1" in ESCAPES


def test_every_escape_is_refused_by_the_sql_command_and_nothing_changes(data_dir: Path) -> None:
    """Each escape through the whole command (it opens, catches up and closes the store), while
    the test's own store keeps chDB's engine up: most of a command's start in a process of its
    own is the engine's start (loading the store's tables and views), which each of its stores
    here finds done. The state after is read by an engine started afresh from the files."""
    with store_of(data_dir) as store:
        before = data_state(data_dir, store)
        ran = []
        for escape in ESCAPES:
            result = runner.invoke(app, ["sql", "--", sql_of(escape, data_dir)])
            message = str(result.exception or "")
            if result.exit_code != 1 or len(message.strip().splitlines()) != 1:
                ran.append(f"{escape!r}: exit {result.exit_code}, {message!r} {result.output!r}")
    assert ran == [], "\n".join(ran)
    with store_of(data_dir) as store:
        after = data_state(data_dir, store)
    assert after == before
    assert lines("SELECT count() AS n FROM audit_history") == [{"n": 92}]


def lines(query: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["sql", query, "--json"])
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_the_issues_attempts_get_one_clear_line_from_the_cli(data_dir: Path) -> None:
    env = {**os.environ, "OKR_DATA_DIR": str(data_dir)}
    cases = {
        f"SELECT 'gone' INTO OUTFILE '{data_dir}/ledger.db' TRUNCATE": "INTO OUTFILE is not",
        f"SELECT 'gone' INTO OUTFILE '{data_dir}/ledger.db' APPEND": "INTO OUTFILE is not",
        "SELECT 1; DROP TABLE okr_ledger.checkpoints; SELECT 1": "more than one statement",
    }
    ledger = (data_dir / "ledger.db").read_bytes()
    for query, reason in cases.items():
        done = subprocess.run(
            [sys.executable, "-c", "from okr_ledger.cli import main; main()", "sql", query],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("error: "), done.stderr
        assert reason in done.stderr
        assert "read-only" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (data_dir / "ledger.db").read_bytes() == ledger
    init = runner.invoke(app, ["init"])
    assert init.exit_code == 0
    assert lines("SELECT count() AS n FROM okr_ledger.checkpoints")[0]["n"] != 0


def test_legitimate_statements_still_answer(data_dir: Path) -> None:
    assert lines("SELECT count() AS n FROM key_result_progress") == [{"n": 9}]
    union = lines(
        "WITH done AS (SELECT key_result_id FROM key_result_progress WHERE progress >= 0) "
        "SELECT count() AS n FROM done UNION ALL SELECT 1 AS n"
    )
    assert sorted(row["n"] for row in union) == [1, 9]
    names = {row["name"] for row in lines("SHOW TABLES")}
    assert {"key_result_progress", "checkpoints", "audit_history"} <= names
    described = {row["name"]: row["type"] for row in lines("DESCRIBE TABLE checkpoints")}
    assert described["position"].startswith("UInt")
    assert lines("EXISTS TABLE checkpoints") == [{"result": 1}]
    assert lines("EXPLAIN SELECT 1")
    # A naive splitter sees three statements here; ClickHouse sees one string.
    assert lines("SELECT '\\'; DROP TABLE checkpoints; --' AS s") == [
        {"s": "'; DROP TABLE checkpoints; --"}
    ]
    for nothing in ("", "   "):
        empty = runner.invoke(app, ["sql", nothing])
        assert (empty.exit_code, str(empty.exception)) == (1, "no statement")
    formatted = runner.invoke(app, ["sql", "SELECT 1 AS one, 'a' AS s FORMAT JSONEachRow"])
    assert formatted.exit_code == 0, formatted.output
    assert formatted.stdout_bytes == b'{"one":1,"s":"a"}\n'


def test_the_parameterized_views_answer_as_of_a_moment(data_dir: Path) -> None:
    assert lines("SELECT count() AS n FROM key_result_progress_at(as_of = '2020-01-01')") == [
        {"n": 0}
    ]
    now = lines("SELECT key_result_id, value FROM key_result_progress_at() ORDER BY 1")
    assert now == lines("SELECT key_result_id, value FROM key_result_progress ORDER BY 1")
    then = lines(
        "SELECT key_result_id, value, target FROM key_result_progress_at("
        "as_of = '2100-01-01 00:00:00', at = '2026-10-20 00:00:00') WHERE key_result_id IN "
        "('nps', 'midmarket-deals') ORDER BY 1"
    )
    assert then == [
        {"key_result_id": "midmarket-deals", "value": 4.0, "target": 20.0},
        {"key_result_id": "nps", "value": 36.0, "target": 45.0},
    ]
    for view in ("objective_progress_at", "theme_coverage_at", "audit_history_at"):
        assert lines(f"SELECT count() AS n FROM {view}(as_of = '2020-01-01')") == [{"n": 0}]
    qualified = "SELECT key_result_id, value FROM okr_ledger.key_result_progress_at() ORDER BY 1"
    assert lines(qualified) == now  # as BI tools write it, with the database


def test_the_limits_stop_a_heavy_query_with_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKR_QUERY_MAX_SECONDS", "1")
    slow = runner.invoke(app, ["sql", "SELECT sum(number) FROM numbers(1000000000000)"])
    assert slow.exit_code == 1
    assert "TIMEOUT_EXCEEDED" in str(slow.exception)
    monkeypatch.setenv("OKR_QUERY_MAX_SECONDS", "60")
    monkeypatch.setenv("OKR_QUERY_MAX_MEMORY_BYTES", str(64 << 20))
    big = runner.invoke(app, ["sql", "SELECT groupArray(number) FROM numbers(1000000000)"])
    assert big.exit_code == 1
    assert "MEMORY_LIMIT_EXCEEDED" in str(big.exception)


def test_the_store_writes_and_answers_rightly_after_a_formatted_or_failed_statement(
    store: ProjectionStore,
) -> None:
    """Each read-only statement runs on a connection of its own: a statement with ``FORMAT``
    leaves ``readonly = 1`` on the session it ran in (chDB's driver applies it with ``SET``,
    which read-only mode forbids undoing), and a failed one leaves its output for the next
    statement on its connection. Neither reaches the store's own connection or the next
    read."""
    limits = QueryLimits()
    assert store.read_only("SELECT 1 FORMAT CSV", limits).formatted == b"1\n"
    store.set_setting("after_format", "written")
    failing = "SELECT number FROM numbers(100000) WHERE NOT throwIf(number > 50000)"
    with pytest.raises(ProjectionQueryError):
        store.read_only(f"{failing} FORMAT TSV", limits)
    assert store.read_only("SELECT 2 AS n", limits).rows == [(2,)]
    assert store.rows("SELECT value FROM {db}.projection_settings WHERE name = 'after_format'") == [
        ("written",)
    ]
