"""The projection CLI in process (the demo's data directory is the fixture ``demo_dir``,
tests/projections/conftest.py): a command's JSON lines."""

import sys
from typing import Any

import orjson
from typer.testing import CliRunner

from okr_ledger.cli import app, main

runner = CliRunner()


def lines(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]


def main_exit(*args: str) -> int:
    """``okr-ledger ARGS`` through the real entry point (its error handling and exit codes,
    which Typer's test runner bypasses), in this process: its exit code."""
    argv = sys.argv
    sys.argv = ["okr-ledger", *args]
    try:
        main()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    finally:
        sys.argv = argv
    return 0
