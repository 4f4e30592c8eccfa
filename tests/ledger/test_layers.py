"""The architecture: what each layer of the ledger core may import (checked on the source)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {"schemas", "events", "processors", "projections", "okr_ledger", "tests"}
INFRASTRUCTURE = {
    "sqlite3",
    "kafka",
    "faust",
    "aiokafka",
    "clickhouse_connect",
    "chdb",
    "okr_ledger",
    "processors",
    "projections",
}
PURE_EVENT_MODULES = [
    "canonical",
    "chain",
    "reasons",
    "state",
    "rules",
    "sequencer",
    "outcomes",
    "log",
    "ledger",
    "stored",
    "strict_json",
]


def top_level_imports(path: Path) -> set[str]:
    """Every module imported anywhere in the file (also inside functions), by its top name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add(path.parent.name)  # a relative import stays in its package
            else:
                names.add((node.module or "").partition(".")[0])
    return names


SCHEMA_MODULES = sorted((ROOT / "schemas").glob("*.py"))


def test_the_checked_modules_exist() -> None:
    assert len(SCHEMA_MODULES) >= 8
    for name in PURE_EVENT_MODULES:
        assert (ROOT / "events" / f"{name}.py").is_file()


@pytest.mark.parametrize("path", SCHEMA_MODULES, ids=lambda p: p.name)
def test_the_contract_imports_nothing_else_of_the_project(path: Path) -> None:
    project = top_level_imports(path) & PROJECT_PACKAGES
    assert project <= {"schemas"}, f"schemas/{path.name} imports {project - {'schemas'}}"


@pytest.mark.parametrize("name", PURE_EVENT_MODULES)
def test_the_pure_ledger_core_imports_no_infrastructure(name: str) -> None:
    imported = top_level_imports(ROOT / "events" / f"{name}.py")
    assert not imported & INFRASTRUCTURE, f"events/{name}.py imports {imported & INFRASTRUCTURE}"
    assert "tests" not in imported


@pytest.mark.parametrize("name", PURE_EVENT_MODULES)
def test_the_pure_ledger_core_imports_no_backend_of_its_own_package(name: str) -> None:
    tree = ast.parse((ROOT / "events" / f"{name}.py").read_text())
    dotted = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    dotted |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    backends = {m for m in dotted if m.startswith("events.") and ("sqlite" in m or "kafka" in m)}
    assert backends == set()


def test_the_import_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import sqlite3\n    from kafka.admin import X\n")
    assert top_level_imports(module) == {"sqlite3", "kafka"}


LAYERS = ["schemas", "events", "processors", "projections", "okr_ledger"]
"""Dependencies point one way: each layer imports only the layers before it."""


@pytest.mark.parametrize(
    "path",
    sorted(p for layer in LAYERS[:-1] for p in (ROOT / layer).glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_a_layer_imports_no_later_layer(path: Path) -> None:
    later = set(LAYERS[LAYERS.index(path.parent.name) + 1 :])
    imported = top_level_imports(path) & later
    assert not imported, f"{path.parent.name}/{path.name} imports {sorted(imported)}"
