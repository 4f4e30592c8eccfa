"""The query commands end to end: the demo ledger, the embedded runner, chDB, the CLI."""

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from okr_ledger.cli import app

runner = CliRunner()


@pytest.fixture
def demo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    return tmp_path


def lines(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_the_default_store_lives_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OKR_DATA_DIR", raising=False)
    monkeypatch.delenv("OKR_CLICKHOUSE_URL", raising=False)
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert (tmp_path / ".okr-ledger" / "clickhouse").is_dir()


def test_a_query_without_a_ledger_refuses_and_creates_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKR_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(app, ["progress"])
    assert result.exit_code == 1
    assert "no ledger at" in str(result.exception)
    assert not (tmp_path / "data").exists()


def test_demo_ends_with_the_tree_and_the_warnings(demo_dir: Path) -> None:
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0
    tail = result.output[result.output.index("chain of northwind") :]
    assert "Customers love working with us" in tail
    assert "Alignment warnings" in tail
    assert "Results of Q3 2026 (2026-Q3) in northwind, closed 2026-10-02 08:00Z" in tail
    assert "'office-move': no path to an active theme (orphan)" in tail
    assert "'operational-excellence' has no objective in 2026-Q4" in tail


def test_progress_json(demo_dir: Path) -> None:
    found = {line["id"]: line for line in lines("progress")}
    assert {line["kind"] for line in found.values()} == {"objective", "key_result"}
    nps = found["nps"]
    assert (nps["value"], nps["target"], nps["attainment"]) == (42, 45, 11 / 14)
    assert nps["status"] in {"on_track", "at_risk", "off_track"}
    assert found["midmarket-deals"]["target"] == 15  # revised from 20 on 1 November
    assert found["onboarding-days"]["value"] == 9  # the corrected typo
    # rollup both: the weakest of its key result nps (0.8) and its children faster-support
    # (0.8) and smooth-onboarding (0.7: its milestone self-serve's confidence)
    assert found["delight-customers"]["confidence"] == 0.7
    assert found["smooth-onboarding"]["confidence"] == 0.7
    assert found["office-move"]["flags"] == ["orphan"]
    only_sales = lines("progress", "--unit", "sales")
    assert [line["id"] for line in only_sales] == ["grow-midmarket", "midmarket-deals"]


def test_results_of_the_demo_s_closed_quarter(demo_dir: Path) -> None:
    """Q3 2026, closed on 2 October 08:00 UTC (after its end: everything expected at 1)."""
    found = {line["id"]: line for line in lines("results", "--period", "2026-Q3")}
    articles, live, objective = (
        found["help-articles"], found["help-center-live"], found["help-center"],
    )  # fmt: skip
    assert (articles["value"], articles["target"], articles["progress"]) == (34, 40, 34 / 40)
    assert (articles["expected_progress"], articles["status"], articles["confidence"]) == (
        1.0,
        "at_risk",
        0.8,
    )  # fmt: skip: 0.15 behind
    assert (live["progress"], live["status"], live["confidence"], live["unit"]) == (
        1.0,
        "on_track",
        0.9,
        "",
    )  # fmt: skip: a milestone without a unit
    assert (objective["kind"], objective["progress"], objective["confidence"]) == (
        "objective", (34 / 40 + 1.0) / 2, 0.8,
    )  # fmt: skip
    assert objective["status"] == "on_track"
    assert {line["closed_at"] for line in found.values()} == {"2026-10-02T08:00:00Z"}
    assert lines("results", "--period", "2026-Q4") == []  # still open


def test_progress_as_of_and_at(demo_dir: Path) -> None:
    assert lines("progress", "--as-of", "2020-01-01") == []
    at = {line["id"]: line for line in lines("progress", "--at", "2026-10-20")}
    assert at["nps"]["value"] == 36  # the week-3 check-in of 19 October
    assert at["midmarket-deals"]["target"] == 20  # before the revision
    assert at["onboarding-days"]["value"] == 15  # the late entry, measured on 19 October


def test_submit_then_progress_shows_the_new_numbers(demo_dir: Path) -> None:
    check_in = {
        "type": "CheckInRecorded",
        "org_id": "northwind",
        "occurred_at": "2026-11-20T09:00:00Z",
        "actor": "nps-owner@northwind.example",
        "source": "cli",
        "source_event_id": "nps-final",
        "data": {"key_result_id": "nps", "value": 45, "confidence": 0.95},
    }
    submitted = runner.invoke(app, ["submit", "-"], input=orjson.dumps(check_in).decode())
    assert submitted.exit_code == 0, submitted.output
    found = {line["id"]: line for line in lines("progress", "--org", "northwind")}
    assert (found["nps"]["value"], found["nps"]["progress"]) == (45, 1.0)


def test_cascade_coverage_and_history(demo_dir: Path) -> None:
    cascade = {line["id"]: line for line in lines("cascade")}
    assert cascade["office-move"]["flags"] == ["orphan"]
    assert cascade["helpdesk-sla"]["ancestor_ids"] == ["faster-support", "delight-customers"]
    assert cascade["helpdesk-sla"]["reached_theme_ids"] == ["customer-satisfaction", "retention"]
    assert all(line["flags"] == [] for key, line in cascade.items() if key != "office-move")
    coverage = {line["theme_id"]: line for line in lines("coverage")}
    assert coverage["operational-excellence"]["uncovered"] is True
    assert coverage["new-markets"]["objective_count"] == 1
    history = [line["type"] for line in lines("history", "nps")]
    assert history[0] == "KeyResultDefined"
    assert "CheckInRetracted" in history


def test_sql_is_read_only(demo_dir: Path) -> None:
    assert lines("sql", "SELECT count() AS n FROM key_result_progress") == [{"n": 9}]
    refused = runner.invoke(app, ["sql", "DROP TABLE audit_events"])
    assert refused.exit_code == 1
    assert "DROP is not allowed in read-only SQL" in str(refused.exception)
    sneaky = runner.invoke(app, ["sql", "WITH 1 AS x INSERT INTO themes SELECT * FROM themes"])
    assert sneaky.exit_code == 1
    assert "INSERT is not allowed in read-only SQL" in str(sneaky.exception)
    assert lines("sql", "SELECT count() AS n FROM audit_history") == [{"n": 85}]


def test_rebuild_equals_what_was_there(demo_dir: Path) -> None:
    result = runner.invoke(app, ["rebuild"])
    assert result.exit_code == 0, result.output
    assert "rebuilt the projections from 85 ledger events" in result.output
    assert "identical" in result.output


def test_export_and_init(demo_dir: Path) -> None:
    for fmt, magic in (("parquet", b"PAR1"), ("csv", b'"org_id"')):
        target = demo_dir / f"export-{fmt}"
        result = runner.invoke(app, ["export-projections", "--format", fmt, str(target)])
        assert result.exit_code == 0, result.output
        assert (target / f"key_result_progress.{fmt}").read_bytes().startswith(magic)
        assert (target / f"theme_coverage.{fmt}").exists()
    init = runner.invoke(app, ["init"])
    assert init.exit_code == 0
    assert "migration 1: history tables (applied" in init.output
    assert "applied now" not in init.output
