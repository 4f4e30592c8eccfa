"""Fixtures of the ledger-core tests."""

from pathlib import Path

import pytest
from typer.testing import Result

from tests.ledger.support import Cli, run_cli


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty OKR_DATA_DIR: the embedded ledger lives in ``ledger.db`` under it."""
    return tmp_path / "data"


@pytest.fixture
def cli(data_dir: Path) -> Cli:
    """``cli("submit", "-", stdin=b"...")`` runs the command line on :func:`data_dir`."""

    def run(*args: str, stdin: bytes | None = None) -> Result:
        return run_cli(data_dir, *args, stdin=stdin)

    return run
