"""``okr-ledger submit --json`` imports nothing of the projection side (nor Kafka's intake wire,
nor rich), and every command is still listed: the query and worker commands are registered
lazily (okr_ledger/cli.py)."""

import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from okr_ledger.cli import LAZY_COMMANDS, app
from tests.builders import org_setup

NOT_FOR_SUBMIT = (
    "okr_ledger.query_cli",
    "okr_ledger.worker_cli",
    "okr_ledger.served_store",
    "okr_ledger.http",
    "okr_ledger.store_cli",
    "fastapi",
    "starlette",
    "uvicorn",
    "processors",
    "projections",
    "chdb",
    "clickhouse_connect",
    "pandas",
    "pyarrow",
    "kafka",
    "events.intake_wire",
    "events.kafka",
    "faust",
    "rich",  # the consoles are made when something is printed through them
)


@pytest.mark.parametrize("module", sorted(LAZY_COMMANDS))
def test_the_lazy_commands_are_the_ones_their_module_registers(module: str) -> None:
    commands = typer.Typer()
    import_module(module).register(commands)
    names = [info.name or (info.callback.__name__ if info.callback else "") for info in
             commands.registered_commands]  # fmt: skip
    for group in commands.registered_groups:
        typer_name = group.typer_instance.info.name if group.typer_instance else None
        names.append(group.name or typer_name or "")
    assert names == list(LAZY_COMMANDS[module])


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("submit", "verify", "export", "rejections", "schema", "demo"):
        assert f" {name} " in result.stdout
    for names in LAZY_COMMANDS.values():
        for name in names:
            assert f" {name} " in result.stdout, name


def test_submit_imports_nothing_of_the_projection_side(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from okr_ledger import cli\n"
        "sys.argv = ['okr-ledger', 'submit', '-', '--json']\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"loaded = [m for m in sys.modules if m.startswith({NOT_FOR_SUBMIT!r})]\n"
        "sys.stderr.write(repr(sorted(loaded)))\n"
    )
    env = {**os.environ, "OKR_DATA_DIR": str(tmp_path / "data")}
    env.pop("OKR_LEDGER_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=b"\n".join(org_setup()) + b"\n",
        env=env,
        capture_output=True,
        check=True,
    )
    assert orjson.loads(done.stdout)["accepted"] == len(org_setup())
    assert done.stderr.decode().splitlines()[-1] == "[]"
