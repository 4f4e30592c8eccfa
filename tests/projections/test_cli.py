"""The query commands end to end: the demo ledger, the embedded runner, chDB, the CLI."""

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from okr_ledger.cli import app
from schemas.errors import UnknownNameError

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
    assert "'office-move': no path to an active theme (orphan)" in tail
    assert "'operational-excellence' has no objective in 2026-Q4" in tail
    attention = tail[tail.index("Alignment warnings") :]
    assert "Attention in northwind" in attention
    assert "operational-excellence" in attention[attention.index("Attention in northwind") :]
    trend = attention[attention.index("Raise NPS from 31 to 45  nps") :]
    assert any(spark in trend for spark in "▁▂▃▄▅▆▇█")


def test_the_monitoring_commands(demo_dir: Path) -> None:
    def lines(*args: str) -> list[dict[str, object]]:
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return [orjson.loads(line) for line in result.output.splitlines()]

    at = ["--at", "2026-11-10"]
    owners = {(r["group"], r["id"]): r["key_results"] for r in lines("engagement", *at)}
    assert owners[("owner", "fay@northwind.example")] == 1  # took over midmarket-deals
    assert owners[("owner", "carla@northwind.example")] == 2
    assert owners[("unit", "team-helpdesk")] == 2
    points = lines("trend", "nps", "--weeks", "3", *at)
    assert [p["progress"] for p in points] == [0.5, 4 / 7, 5 / 7]  # 38, 39, 41 of 31 -> 45
    items = [i["item_id"] for i in lines("attention", *at)]
    assert "orphan:office-move" in items
    assert "theme_uncovered:2026-Q4:operational-excellence" in items
    (strategy,) = lines("strategy")
    assert strategy["review_verdict"] == "sound"
    trail = lines("history", "strategy")
    assert trail[0]["type"] == "StrategyDefined"
    unknown = runner.invoke(app, ["trend", "no-such-kr"])
    assert isinstance(unknown.exception, UnknownNameError)  # main() exits 5 with it
    assert "no-such-kr" in str(unknown.exception)


def test_progress_json(demo_dir: Path) -> None:
    found = {line["id"]: line for line in lines("progress")}
    assert {line["kind"] for line in found.values()} == {"objective", "key_result"}
    nps = found["nps"]
    assert (nps["value"], nps["target"], nps["attainment"]) == (42, 45, 11 / 14)
    assert nps["status"] in {"on_track", "at_risk", "off_track"}
    assert found["midmarket-deals"]["target"] == 15  # revised from 20 on 1 November
    assert found["onboarding-days"]["value"] == 9  # the corrected typo
    assert found["delight-customers"]["confidence"] == 0.8
    assert found["office-move"]["flags"] == ["orphan"]
    only_sales = lines("progress", "--unit", "sales")
    assert [line["id"] for line in only_sales] == ["grow-midmarket", "midmarket-deals"]


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
    assert lines("sql", "SELECT count() AS n FROM key_result_progress") == [{"n": 7}]
    refused = runner.invoke(app, ["sql", "DROP TABLE audit_events"])
    assert refused.exit_code == 1
    assert "DROP is not allowed in read-only SQL" in str(refused.exception)
    sneaky = runner.invoke(app, ["sql", "WITH 1 AS x INSERT INTO themes SELECT * FROM themes"])
    assert sneaky.exit_code == 1
    assert "INSERT is not allowed in read-only SQL" in str(sneaky.exception)
    assert lines("sql", "SELECT count() AS n FROM audit_history") == [{"n": 83}]


def test_rebuild_equals_what_was_there(demo_dir: Path) -> None:
    result = runner.invoke(app, ["rebuild"])
    assert result.exit_code == 0, result.output
    assert "rebuilt the projections from 83 ledger events" in result.output
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
