"""The projection CLI in process (the demo's data directory is the fixture ``demo_dir``,
tests/projections/conftest.py): a command's JSON lines."""

from typing import Any

import orjson
from typer.testing import CliRunner

from okr_ledger.cli import app

runner = CliRunner()


def lines(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
