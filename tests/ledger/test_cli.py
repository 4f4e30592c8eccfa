"""The ledger commands of ``okr-ledger``: submit, verify, export, rejections, schema, demo."""

import gc
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from events.canonical import canonical_json
from okr_ledger import cli as cli_module
from schemas.errors import UnknownNameError
from schemas.export import all_schemas, render
from tests.builders import org_setup, raw
from tests.ledger.independent_verifier import KEYS
from tests.ledger.support import Cli, ndjson, run, tamper


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def summary(result_stdout: str, row: str) -> int:
    match = re.search(rf"{row}\W+(\d+)", result_stdout)
    assert match, result_stdout
    return int(match.group(1))


@pytest.fixture
def setup_file(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "setup.ndjson", org_setup("acme") + org_setup("globex"))


# --- submit --------------------------------------------------------------------------------


def test_submit_a_file_prints_a_summary_and_exits_0(cli: Cli, setup_file: Path) -> None:
    result = cli("submit", str(setup_file))
    assert result.exit_code == 0, result.output
    assert summary(result.stdout, "accepted") == 14
    assert summary(result.stdout, "rejected") == 0


def test_submit_json_counts_each_outcome_as_an_integer(cli: Cli, setup_file: Path) -> None:
    first = orjson.loads(cli("submit", str(setup_file), "--json").stdout)
    again = orjson.loads(cli("submit", str(setup_file), "--json").stdout)
    assert first == {
        "submitted": 14,
        "accepted": 14,
        "duplicate": 0,
        "rejected": 0,
        "rejected_by_reason": {},
    }
    assert (again["accepted"], again["duplicate"], again["rejected"]) == (0, 14, 0)


def test_submit_runs_with_the_collector_paused_and_collects_every_so_many_outcomes(
    cli: Cli, setup_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic collector is paused for the whole run (not only inside each batch), runs
    on the young generations every ``COLLECT_EVERY`` outcomes, and is on again afterwards."""
    runs: list[tuple[int, bool]] = []
    real = gc.collect

    def collect(generation: int = 2) -> int:
        runs.append((generation, gc.isenabled()))
        return real(generation)

    monkeypatch.setattr(cli_module, "COLLECT_EVERY", 5)
    monkeypatch.setattr(gc, "collect", collect)
    assert gc.isenabled()
    result = cli("submit", str(setup_file), "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["accepted"] == 14
    assert runs == [(1, False), (1, False)]  # after outcomes 5 and 10, the collector paused
    assert gc.isenabled()


def test_submit_reads_stdin_for_a_dash(cli: Cli) -> None:
    result = cli("submit", "-", "--json", stdin=b"\n".join(org_setup()))
    assert result.exit_code == 0
    assert orjson.loads(result.stdout)["accepted"] == 7
    assert len(ndjson(cli("export"))) == 7


def test_a_malformed_line_is_rejected_with_its_line_number_and_the_rest_goes_in(
    cli: Cli, tmp_path: Path
) -> None:
    setup = org_setup()
    path = tmp_path / "in.ndjson"
    path.write_bytes(
        b"\n".join([setup[0], b"", setup[1], b'{"type": "ThemeAdded", ', *setup[2:]]) + b"\n"
    )
    result = cli("submit", str(path), "--json")
    assert result.exit_code == 3
    counts = orjson.loads(result.stdout)
    assert (counts["accepted"], counts["rejected"]) == (7, 1)
    assert counts["rejected_by_reason"] == {"invalid_json": 1}
    (rejection,) = ndjson(cli("rejections", "--json"))
    assert rejection["reason_code"] == "invalid_json"
    assert rejection["line"] == 4
    assert rejection["raw"] == '{"type": "ThemeAdded",'
    assert len(ndjson(cli("export"))) == 7


def test_submit_exits_3_and_points_to_the_rejections_when_any_was_rejected(
    cli: Cli, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "bad.ndjson", [raw("Bogus", {})])
    result = cli("submit", str(path))
    assert result.exit_code == 3
    assert summary(result.stdout, "unknown_type") == 1
    assert "okr-ledger rejections" in result.stdout


def test_submit_outcomes_writes_one_outcome_per_submission(cli: Cli, tmp_path: Path) -> None:
    setup = org_setup()
    path = write_lines(tmp_path / "in.ndjson", [*setup[:2], b"{", setup[0], b"", setup[2]])
    outcomes_path = tmp_path / "outcomes.ndjson"
    cli("submit", str(path), "--outcomes", str(outcomes_path))
    outcomes = [orjson.loads(line) for line in outcomes_path.read_bytes().splitlines()]
    assert [o["status"] for o in outcomes] == [
        "accepted",
        "accepted",
        "rejected",
        "duplicate",
        "accepted",
    ]
    assert [o.get("sequence") for o in outcomes] == [1, 2, None, None, 3]
    assert outcomes[2]["reason_code"] == "invalid_json"
    assert outcomes[2]["line"] == 3
    assert outcomes[3]["event_id"] == outcomes[0]["event_id"]


def test_submit_of_a_missing_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("submit", str(tmp_path / "nope.ndjson"))
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_an_unknown_option_is_a_usage_error(cli: Cli, setup_file: Path) -> None:
    assert cli("submit", str(setup_file), "--frobnicate").exit_code == 2
    assert cli("verify", "--frobnicate").exit_code == 2
    assert cli("no-such-command").exit_code == 2


# --- verify --------------------------------------------------------------------------------


def test_reading_commands_refuse_a_missing_ledger_and_create_none(cli: Cli, data_dir: Path) -> None:
    for command in ("verify", "export", "rejections"):
        result = cli(command)
        assert result.exit_code == 1, command
        assert "no ledger at" in str(result.exception or result.output), command
    assert not (data_dir / "ledger.db").exists()


def test_verify_an_intact_ledger_exits_0(cli: Cli, setup_file: Path) -> None:
    cli("submit", str(setup_file))
    result = cli("verify")
    assert result.exit_code == 0
    assert "ok acme: 7 events, chain intact" in result.stdout
    report = orjson.loads(cli("verify", "--json").stdout)
    assert (report["ok"], report["first_bad_sequence"], report["org_id"]) == (True, None, None)
    assert [o["org_id"] for o in report["orgs"]] == ["acme", "globex"]
    assert all(o["ok"] and o["events"] == 7 for o in report["orgs"])


def test_verify_a_tampered_ledger_exits_4_and_names_the_event(
    cli: Cli, setup_file: Path, data_dir: Path
) -> None:
    cli("submit", str(setup_file))
    tamper(data_dir / "ledger.db", "globex", 5, "content")
    result = cli("verify", "--json")
    assert result.exit_code == 4
    report = orjson.loads(result.stdout)
    assert (report["ok"], report["org_id"], report["first_bad_sequence"]) == (False, "globex", 5)
    assert report["problem"] == "content does not match its hash"
    text = cli("verify")
    assert text.exit_code == 4
    assert "BROKEN globex: sequence 5" in text.stdout
    assert "ok acme" in text.stdout


def test_verify_one_org(cli: Cli, setup_file: Path, data_dir: Path) -> None:
    cli("submit", str(setup_file))
    tamper(data_dir / "ledger.db", "globex", 2, "prev_hash")
    assert cli("verify", "--org", "acme").exit_code == 0
    report = orjson.loads(cli("verify", "--org", "acme", "--json").stdout)
    assert (report["ok"], report["org_id"]) == (True, "acme")
    assert cli("verify", "--org", "globex").exit_code == 4
    unknown = cli("verify", "--org", "nobody", "--json")  # exit 5 in main: test_unknown_names
    assert isinstance(unknown.exception, UnknownNameError)
    assert unknown.stdout == ""


# --- export --------------------------------------------------------------------------------


def test_export_writes_canonical_ndjson_in_sequence_order(cli: Cli, setup_file: Path) -> None:
    cli("submit", str(setup_file))
    result = cli("export")
    assert result.exit_code == 0
    lines = result.stdout_bytes.splitlines()
    events = [orjson.loads(line) for line in lines]
    assert [(e["org_id"], e["sequence"]) for e in events] == [
        (org, n) for org in ("acme", "globex") for n in range(1, 8)
    ]
    for line, event in zip(lines, events, strict=True):
        assert set(event) == KEYS
        assert canonical_json(event).encode() == line


def test_export_one_org_and_a_range(cli: Cli, setup_file: Path, tmp_path: Path) -> None:
    cli("submit", str(setup_file))
    globex = ndjson(cli("export", "--org", "globex"))
    assert {e["org_id"] for e in globex} == {"globex"}
    assert [e["sequence"] for e in globex] == list(range(1, 8))
    part = ndjson(cli("export", "--org", "acme", "--from-seq", "3", "--to-seq", "5"))
    assert [e["sequence"] for e in part] == [3, 4, 5]
    out = tmp_path / "export.ndjson"
    assert cli("export", "--org", "acme", "-o", str(out)).stdout == ""
    assert [orjson.loads(line)["sequence"] for line in out.read_bytes().splitlines()] == list(
        range(1, 8)
    )
    assert cli("export", "--from-seq", "0").exit_code == 2


# --- rejections ----------------------------------------------------------------------------


def test_rejections_json_lists_each_rejection_with_its_reason_code(
    cli: Cli, tmp_path: Path
) -> None:
    lines = [
        raw("Bogus", {}),
        b"[]",
        raw("ThemeRetired", {"theme_id": "t9", "reason": "x"}, org_id="globex"),
    ]
    cli("submit", str(write_lines(tmp_path / "in.ndjson", lines)))
    rejections = ndjson(cli("rejections", "--json"))
    assert [r["reason_code"] for r in rejections] == [
        "unknown_type",
        "invalid_json",
        "unknown_reference",
    ]
    assert [r["line"] for r in rejections] == [1, 2, 3]
    assert all(r["status"] == "rejected" and r["message"] for r in rejections)
    only = ndjson(cli("rejections", "--json", "--reason", "invalid_json"))
    assert [r["raw"] for r in only] == ["[]"]
    assert [r["org_id"] for r in ndjson(cli("rejections", "--json", "--org", "globex"))] == [
        "globex"
    ]
    table = cli("rejections")
    assert table.exit_code == 0
    assert "3 rejections" in table.stdout


def test_rejections_show_submitted_text_literally_not_as_markup(cli: Cli, tmp_path: Path) -> None:
    line = raw("[/x]", {}, org_id="[bold]acme")
    cli("submit", str(write_lines(tmp_path / "in.ndjson", [line])))
    result = cli("rejections")
    assert result.exit_code == 0, result.output
    assert "[/x]" in result.stdout
    assert "1 rejections" in result.stdout


# --- schema --------------------------------------------------------------------------------


def test_schema_prints_the_submission_schema(cli: Cli) -> None:
    result = cli("schema")
    assert result.exit_code == 0
    document = orjson.loads(result.stdout)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["title"] == "OKR Ledger submission"
    assert result.stdout_bytes == render(all_schemas()["submission.schema.json"])


def test_schema_of_one_type_and_version(cli: Cli) -> None:
    latest = orjson.loads(cli("schema", "CheckInRecorded").stdout)
    assert "confidence" in latest["properties"]
    first = orjson.loads(cli("schema", "CheckInRecorded", "--version", "1").stdout)
    assert "confidence_percent" in first["properties"]
    assert set(first["required"]) >= {"key_result_id", "value", "confidence_percent"}


def test_schema_of_an_unknown_type_is_a_usage_error(cli: Cli) -> None:
    result = cli("schema", "CheckInDeleted")
    assert result.exit_code == 2
    assert "CheckInDeleted" in result.stderr
    assert cli("schema", "CheckInRecorded", "--version", "9").exit_code == 2


def test_schema_write_produces_the_committed_export(cli: Cli, tmp_path: Path) -> None:
    result = cli("schema", "--write", str(tmp_path / "json"))
    assert result.exit_code == 0
    for relative, schema in all_schemas().items():
        assert (tmp_path / "json" / relative).read_bytes() == render(schema)


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("okr-ledger 0.")


# --- the real executable: the demo, and errors ----------------------------------------------


def test_the_demo_loads_and_a_rerun_changes_nothing(data_dir: Path, cli: Cli) -> None:
    first = run(data_dir, "demo")
    assert first.returncode == 0, first.stderr
    accepted = summary(first.stdout, "accepted")
    assert accepted > 50
    assert "intact" in first.stdout
    ledger = cli("export").stdout_bytes
    rejected = len(ndjson(cli("rejections", "--json")))
    second = run(data_dir, "demo")
    assert second.returncode == 0, second.stderr
    assert summary(second.stdout, "accepted") == 0
    assert summary(second.stdout, "duplicate") == accepted + summary(first.stdout, "duplicate")
    assert cli("export").stdout_bytes == ledger
    assert len(ndjson(cli("rejections", "--json"))) == 2 * rejected
    assert cli("verify").exit_code == 0


def test_an_error_is_one_line_on_stderr_without_a_traceback(tmp_path: Path) -> None:
    result = run(tmp_path / "data", "verify", OKR_LEDGER_URL="foo://x")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "foo://" in result.stderr
    assert "unknown scheme" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_long_error_with_brackets_stays_one_literal_line(tmp_path: Path) -> None:
    url = "foo://" + "x" * 150 + "/[kafka]/[/x]"
    result = run(tmp_path / "data", "verify", OKR_LEDGER_URL=url)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert url in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run(tmp_path / "data", "--debug", "verify", OKR_LEDGER_URL="foo://x")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ConfigurationError" in result.stderr


def test_debug_works_after_the_command_and_shows_the_traceback(data_dir: Path) -> None:
    cli_path = Path(sys.executable).parent / "okr-ledger"
    done = subprocess.run(
        [str(cli_path), "verify", "--debug"],
        env={**os.environ, "OKR_DATA_DIR": str(data_dir)},
        capture_output=True,
        check=False,
    )
    assert done.returncode == 1
    assert b"Traceback" in done.stderr
    assert b"LedgerUnavailableError" in done.stderr


def test_demo_on_a_core_install_loads_the_ledger_and_explains_the_missing_tree(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from okr_ledger import query_cli
    from schemas.errors import MissingExtraError

    def without_projections(org_id: str) -> None:
        raise MissingExtraError("clickhouse-connect", "embedded")

    monkeypatch.setattr(query_cli, "show_demo_projections", without_projections)
    result = cli("demo")
    assert result.exit_code == 0, result.output
    assert "intact" in result.stdout
    assert "no progress tree" in result.stdout
    assert "okr-ledger[embedded]" in result.stdout
