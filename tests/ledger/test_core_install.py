"""A core install (no extras) runs the ledger commands; the others name the extra to install."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def core_cli(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.ledger.core_install", *args],
        cwd=ROOT,
        env={**os.environ, "OKR_DATA_DIR": str(data_dir), "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_ledger_commands_work_without_any_extra(tmp_path: Path) -> None:
    demo = core_cli(tmp_path, "demo")
    assert demo.returncode == 0, demo.stderr
    assert "chain of northwind: 76 events, intact" in demo.stdout
    assert "pip install 'okr-ledger[embedded]'" in demo.stdout
    assert core_cli(tmp_path, "verify").returncode == 0
    exported = core_cli(tmp_path, "export")
    assert exported.returncode == 0
    assert len(exported.stdout.splitlines()) == 76


@pytest.mark.parametrize(
    ("command", "extra"), [("progress", "embedded"), ("worker", "kafka"), ("serve", "http")]
)
def test_commands_of_an_extra_say_which_extra_to_install(
    tmp_path: Path, command: str, extra: str
) -> None:
    assert core_cli(tmp_path, "demo").returncode == 0
    done = core_cli(tmp_path, command)
    assert done.returncode == 1
    assert f"pip install 'okr-ledger[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_keys_are_made_without_the_http_extra(tmp_path: Path) -> None:
    made = core_cli(tmp_path, "keys", "create", "--source", "jira", "--org", "northwind")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("okr_")
    listed = core_cli(tmp_path, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"source":"jira"' in listed.stdout


def test_a_server_url_names_the_clickhouse_extra(tmp_path: Path) -> None:
    assert core_cli(tmp_path, "demo").returncode == 0
    done = core_cli(tmp_path, "progress", env={"OKR_CLICKHOUSE_URL": "http://localhost:8123/okr"})
    assert done.returncode == 1
    assert "pip install 'okr-ledger[clickhouse]'" in done.stderr
