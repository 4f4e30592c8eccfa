"""What the image installs: the extras declare every import, the lock file pins every need."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {"schemas", "events", "processors", "projections", "okr_ledger"}
WORKER_ENTRIES = ["okr_ledger.worker_cli", "okr_ledger.worker_runtime", "processors.faust_app"]
STORE_BACKENDS = {"clickhouse_connect": "clickhouse", "chdb": "embedded", "pyarrow": "clickhouse"}
"""Imported only when a store of that kind is opened (pyarrow: when any store first writes,
and both stores' extras provide it); its extra provides it."""
SERVE_STORE_ONLY = {"lz4", "backports"}
"""Decoding writers' bodies (``okr-ledger serve-store``, on the embedded store)."""
PYTHON_3_14 = {"compression"}
"""Standard modules of later Pythons (the code imports them there, and backports before)."""
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, anywhere in it (also inside functions), dotted."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def worker_imports() -> set[str]:
    """The top-level names of every other distribution the worker's modules import."""
    seen: set[str] = set()
    outside: set[str] = set()
    todo = list(WORKER_ENTRIES)
    while todo:
        module = todo.pop()
        path = ROOT / (module.replace(".", "/") + ".py")
        if module in seen or not path.is_file():
            continue  # a name imported from a module, not a module
        seen.add(module)
        for name in imported_modules(path):
            top = name.partition(".")[0]
            if top in PROJECT_PACKAGES:
                todo.append(name)
            elif top not in sys.stdlib_module_names | PYTHON_3_14:
                outside.add(top)
    assert len(seen) > 10, seen  # the walk found the worker
    return outside


def declared(*extras: str) -> set[str]:
    requirements = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        requirements += PYPROJECT["project"]["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_the_kafka_extra_declares_every_distribution_the_worker_imports() -> None:
    providers = importlib.metadata.packages_distributions()
    kafka = declared("kafka")
    missing = []
    for name in sorted(worker_imports()):
        distributions = {canonicalize_name(d) for d in providers.get(name, [name])}
        if name in STORE_BACKENDS:
            extras: tuple[str, ...] = ("kafka", STORE_BACKENDS[name])
        elif name in SERVE_STORE_ONLY:
            extras = ("kafka", "embedded")
        else:
            extras = ("kafka",)
        if not distributions & declared(*extras):
            missing.append(f"{name} ({', '.join(sorted(distributions))}) not in {extras}")
    assert not missing
    assert {"aiokafka", "aiohttp", "prometheus-client", "confluent-kafka"} <= kafka


def locked() -> dict[str, str]:
    """``requirements.lock``: name -> pinned version (each with its hashes)."""
    text = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", text, re.MULTILINE))
    assert text.count("==") == len(pins)
    for name in pins:
        block = text.split(f"\n{name}=={pins[name]} \\\n", 1)[1].split("\n    # via", 1)[0]
        assert "--hash=sha256:" in block, f"{name} has no hash"
    return {canonicalize_name(name): version for name, version in pins.items()}


def test_the_lock_file_pins_everything_the_image_needs_as_tested() -> None:
    """Every requirement of the image's extras, and theirs in turn, is pinned, at the version
    installed here (where the tests run): run `make lock` after changing a dependency."""
    pins = locked()
    environment = {"extra": ""}
    wanted = [
        Requirement(r)
        for r in [
            *PYPROJECT["project"]["dependencies"],
            *PYPROJECT["project"]["optional-dependencies"]["kafka"],
            *PYPROJECT["project"]["optional-dependencies"]["clickhouse"],
        ]
    ]
    seen: set[str] = set()
    problems = []
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate(environment)):
            continue
        seen.add(name)
        if name not in pins:
            problems.append(f"{name} is not in requirements.lock")
            continue
        if pins[name] not in requirement.specifier:
            problems.append(f"{name}=={pins[name]} does not satisfy {requirement}")
        installed = importlib.metadata.version(name)
        if installed != pins[name]:
            problems.append(f"{name}: locked {pins[name]}, tested with {installed}")
        wanted += [Requirement(r) for r in importlib.metadata.requires(name) or ()]
    assert not problems
    assert len(seen) > 30


def test_every_importable_directory_is_a_listed_package() -> None:
    """setuptools warns of ("Package would be ignored") and may drop any directory Python
    could import that ``packages`` does not list: data directories are listed too."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.relative_to(ROOT).parts)
        for top in PROJECT_PACKAGES
        for path in [ROOT / top, *(ROOT / top).rglob("*")]
        if path.is_dir()
        and all(part.isidentifier() for part in path.relative_to(ROOT).parts)
        and "__pycache__" not in path.parts  # bytecode: setuptools never ships it
        and any(child.is_file() for child in path.iterdir())
    }
    assert "okr_ledger.http.templates" in found, found  # the walk sees data directories
    assert found == listed, {"unlisted": found - listed, "listed but absent": listed - found}
