"""Layering of the projections: the projector is pure, ClickHouse stays in the store."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_PROCESSORS = ["audit", "batch", "key_results", "objectives", "projector", "rejections",
                   "scoring", "state", "strategy", "tables"]  # fmt: skip
INFRASTRUCTURE = {"sqlite3", "clickhouse_connect", "chdb", "pyarrow", "faust", "kafka",
                  "projections", "okr_ledger"}  # fmt: skip


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.parametrize("name", PURE_PROCESSORS)
def test_the_projector_imports_no_infrastructure(name: str) -> None:
    found = imports(ROOT / "processors" / f"{name}.py") & INFRASTRUCTURE
    assert found == set(), f"processors/{name}.py imports {found}"


def test_the_runner_knows_the_store_only_by_its_protocol() -> None:
    assert (
        imports(ROOT / "processors" / "runner.py") & {"projections", "clickhouse_connect"} == set()
    )


def test_only_the_client_module_imports_clickhouse_connect() -> None:
    importing = {
        path.name
        for path in (ROOT / "projections").glob("*.py")
        if "clickhouse_connect" in imports(path)
    }
    assert importing == {"client.py"}
