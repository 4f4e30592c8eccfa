"""The query commands end to end: the demo ledger, the embedded runner, chDB, the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from okr_ledger.cli import app
from schemas.errors import UnknownNameError
from tests.projections.cli_support import lines, runner


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
    assert lines("sql", "SELECT count() AS n FROM audit_history") == [{"n": 92}]


def test_rebuild_equals_what_was_there(demo_dir: Path) -> None:
    result = runner.invoke(app, ["rebuild"])
    assert result.exit_code == 0, result.output
    assert "rebuilt the projections from 92 ledger events" in result.output
    assert "identical" in result.output


def test_export_and_init(demo_dir: Path) -> None:
    for fmt, magic in (("parquet", b"PAR1"), ("csv", b'"org_id"')):
        target = demo_dir / f"export-{fmt}"
        result = runner.invoke(app, ["export-projections", "--format", fmt, str(target)])
        assert result.exit_code == 0, result.output
        assert (target / f"key_result_progress.{fmt}").read_bytes().startswith(magic)
        assert (target / f"theme_coverage.{fmt}").exists()
    before = demo_dir / "export-before"
    result = runner.invoke(
        app, ["export-projections", "--format", "csv", "--as-of", "2020-01-01", str(before)]
    )
    assert result.exit_code == 0, result.output
    assert (before / "key_result_progress.csv").read_text().count("\n") == 1  # the header
    at = demo_dir / "export-at"
    result = runner.invoke(app, ["export-projections", "--at", "2026-10-20", str(at)])
    assert result.exit_code == 0, result.output
    assert (at / "objective_progress.parquet").read_bytes().startswith(b"PAR1")
    init = runner.invoke(app, ["init"])
    assert init.exit_code == 0
    assert "migration 1: history tables (applied" in init.output
    assert "applied now" not in init.output


def test_cascade_and_coverage_take_as_of_and_at(demo_dir: Path) -> None:
    assert lines("cascade", "--as-of", "2020-01-01") == []
    assert lines("cascade", "--as-of", "-3650d") == []  # a relative time: ten years ago
    now = {line["id"]: line for line in lines("cascade", "--as-of", "now")}
    then = {line["id"]: line for line in lines("cascade", "--at", "2026-10-20")}
    progress_then = {
        line["id"]: line for line in lines("progress", "--at", "2026-10-20")
    }  # the same numbers as progress --at
    for objective_id, line in then.items():
        expected = progress_then[objective_id]
        assert (line["progress"], line["expected_progress"], line["status"]) == (
            expected["progress"], expected["expected_progress"], expected["status"]
        )  # fmt: skip
    assert then["delight-customers"]["progress"] < now["delight-customers"]["progress"]
    coverage = {row["theme_id"]: row for row in lines("coverage", "--at", "2026-10-20")}
    assert coverage["new-markets"]["progress"] == then["grow-midmarket"]["progress"]
    bad = runner.invoke(app, ["coverage", "--at", "soon"])
    assert bad.exit_code == 2
    assert "--at" in bad.output


NARROW_IDS = ("delight-customers", "smooth-onboarding", "customer-satisfaction")


def _terminal(columns: int, *args: str) -> str:
    """``okr-ledger ARGS`` in a process of its own on a terminal ``columns`` wide (rich reads
    COLUMNS when the process starts)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "okr-ledger"), *args],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_narrow_terminals_get_whole_ids_and_json(demo_dir: Path) -> None:
    cascade = _terminal(80, "cascade")
    assert all(len(line) <= 80 for line in cascade.splitlines())
    for name in NARROW_IDS:
        assert name in cascade
    assert "…" not in cascade
    history = _terminal(80, "history", "nps")
    assert "…" not in history
    assert all(len(line) <= 80 for line in history.splitlines())
    data = "".join(  # the JSON of the definition, folded over whole lines, not a 9-char column
        line.rstrip().removeprefix("data").strip() if line.startswith(("data", "    ")) else ""
        for line in history.splitlines()[:12]
    )
    assert data.startswith('{"checkin_every_days":7,"key_result_id":"nps"')
    assert '"title":"Raise NPS from 31 to 45"' in data
    rejections = _terminal(80, "rejections")
    assert "key result 'churn' does not exist" in rejections
    assert "…" not in rejections
    assert all(len(line) <= 80 for line in rejections.splitlines())


@pytest.mark.parametrize(
    ("command", "ids"),
    [
        (("attention", "--at", "2026-12-20"), ("subject_id", "owner")),
        (("engagement", "--at", "2026-11-10"), ("id",)),
        (("results",), ("subject_id",)),
    ],
)
def test_narrow_terminals_keep_owner_and_subject_ids_whole(
    demo_dir: Path, command: tuple[str, ...], ids: tuple[str, ...]
) -> None:
    """On 80 columns the monitoring tables are stacked: every id and owner of the --json
    answer appears whole on one line, nothing is cut, no line is wider than 80."""
    shown = _terminal(80, *command)
    assert "…" not in shown
    assert all(len(line) <= 80 for line in shown.splitlines())
    answer = [orjson.loads(line) for line in _terminal(80, *command, "--json").splitlines()]
    names = {str(row[key]) for row in answer for key in ids if row.get(key)}
    assert any("@northwind.example" in name for name in names) or command[0] == "results"
    shown_lines = shown.splitlines()
    for name in names:
        assert any(name in line for line in shown_lines), (name, shown)


def test_wide_terminals_keep_the_table(demo_dir: Path) -> None:
    cascade = runner.invoke(app, ["cascade"])
    assert "┃ objective" in cascade.output
    assert "  helpdesk-sla" in cascade.output  # indented under its parent


@pytest.mark.parametrize(
    "command",
    [
        "progress", "cascade", "coverage", "history", "sql", "export-projections", "rebuild",
        "submit", "verify", "export", "rejections", "schema", "results", "engagement",
        "trend", "attention", "strategy",
    ],
)  # fmt: skip
def test_help_shows_real_metavars(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    shown = runner.invoke(app, [command, "--help"])
    assert shown.exit_code == 0, shown.output
    options = [line for line in shown.output.splitlines() if line.startswith("│ -")]
    assert options, shown.output
    for placeholder in ("<str>", "<int>", "<path>", "<text>", "<float>"):
        assert not any(placeholder in line.lower() for line in options), (command, options)


def test_help_names_time_org_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    shown = runner.invoke(app, ["progress", "--help"]).output
    for option, metavar in (("--as-of", "TIME"), ("--at", "TIME"), ("--org", "ORG"),
                            ("--period", "PERIOD"), ("--unit", "UNIT")):  # fmt: skip
        assert any(option in line and metavar in line for line in shown.splitlines()), option
    for command in ("cascade", "coverage", "history", "rejections", "export-projections",
                    "results", "engagement", "trend", "attention", "strategy"):  # fmt: skip
        shown = runner.invoke(app, [command, "--help"]).output
        assert any("--as-of" in line and "TIME" in line for line in shown.splitlines()), command
    for command in ("results", "engagement", "trend", "attention", "strategy"):
        shown = runner.invoke(app, [command, "--help"]).output
        assert any("--org" in line and "ORG" in line for line in shown.splitlines()), command
    for command in ("engagement", "trend", "attention"):
        shown = runner.invoke(app, [command, "--help"]).output
        assert any("--at " in line and "TIME" in line for line in shown.splitlines()), command
    for command in ("results", "engagement"):
        shown = runner.invoke(app, [command, "--help"]).output
        assert any("--period" in line and "PERIOD" in line for line in shown.splitlines())
    trend = runner.invoke(app, ["trend", "--help"]).output
    assert any("--weeks" in line and " N " in line for line in trend.splitlines())
    assert "SUBJECT" in trend


def test_export_to_a_file_says_what_it_wrote(demo_dir: Path) -> None:
    target = demo_dir / "ledger.ndjson"
    result = runner.invoke(app, ["export", "-o", str(target)])
    assert result.exit_code == 0, result.output
    written = target.read_bytes()
    assert f"wrote 92 events ({len(written)} bytes) to {target}" in " ".join(result.output.split())


def test_a_path_is_printed_whole_on_a_narrow_terminal(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path broken over lines cannot be copied: the terminal may wrap it, the CLI does not
    (and each command measures the terminal anew, not once per process)."""
    monkeypatch.setenv("COLUMNS", "40")
    target = demo_dir / ("a-rather-long-directory-name-" * 3) / "ledger.ndjson"
    target.parent.mkdir()
    result = runner.invoke(app, ["export", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert f"to {target}\n" in result.output


def test_the_readme_as_of_example_works_on_a_fresh_demo(demo_dir: Path) -> None:
    """README: the demo prints a usable time; after ``submit examples/checkins.ndjson``,
    ``progress --as-of`` that time answers what ``progress`` answered before the submit,
    whatever today's date."""
    demo = runner.invoke(app, ["demo"])
    assert demo.exit_code == 0, demo.output
    hint = next(line for line in demo.output.splitlines() if line.startswith("time travel: "))
    command = hint.removeprefix("time travel: okr-ledger ").split(" (")[0].split()
    assert command[:2] == ["progress", "--as-of"]
    before = lines("progress", "--unit", "support")
    examples = Path(__file__).parents[2] / "examples" / "checkins.ndjson"
    submitted = runner.invoke(app, ["submit", str(examples)])
    assert submitted.exit_code == 0, submitted.output
    after = lines("progress", "--unit", "support")
    assert after != before
    then = lines(*command, "--unit", "support")
    volatile = {"expected_progress", "status", "stale"}  # they move with the clock
    assert [{k: v for k, v in line.items() if k not in volatile} for line in then] == [
        {k: v for k, v in line.items() if k not in volatile} for line in before
    ]
