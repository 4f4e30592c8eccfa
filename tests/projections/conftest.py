"""Fixtures of the projection tests, all on a real chDB engine.

chDB opens one data directory per process at a time: a test may open several databases
(stores) in its own directory, and every store is closed at the end of the test, so that the
next test can open its own directory.

A test's first store is a copy of a new store that this process made once
(:class:`NewStores`), not a new one made again: a new store is ~60 DDL statements, 0.4-0.9 s
of CPU in chDB, most of it the engine analysing the views. The copy is byte for byte what
:meth:`ProjectionStore.open` left, so the test opens and migrates the store as any other (the
record of migrations says nothing is pending). The tests of how a store is made (a new one,
the baseline, the migrations) open their own directories (``chdb_url``).
"""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from okr_ledger.cli import app
from okr_ledger.projection_compare import fingerprint
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections.store import ProjectionStore
from tests.projections.cli_support import runner
from tests.projections.ledgers import LedgerBuilder

StoreFactory = Callable[[str], ProjectionStore]


class NewStores:
    """New stores (a chDB directory holding one database), each made once by
    :meth:`ProjectionStore.open` and copied into the directories that need one."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def copy(self, database: str, directory: Path) -> None:
        """``directory`` (not yet there) as a new store's, with the one database ``database``."""
        made = self.root / database
        if not made.exists():
            ProjectionStore.open(f"chdb://{made}", database=database).close()
        shutil.copytree(made, directory, symlinks=True)  # chDB's own links are relative


@pytest.fixture(scope="session")
def new_stores(tmp_path_factory: pytest.TempPathFactory) -> NewStores:
    return NewStores(tmp_path_factory.mktemp("new-stores"))


@pytest.fixture
def chdb_url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def open_store(tmp_path: Path, new_stores: NewStores) -> Iterator[StoreFactory]:
    """Opens stores (one database each) in this test's chDB directory (``chdb_url``'s); closes
    them after. The first is a copy of a new store (:class:`NewStores`)."""
    opened: list[ProjectionStore] = []
    directory = tmp_path / "clickhouse"

    def factory(database: str = "okr_ledger") -> ProjectionStore:
        if not directory.exists():
            new_stores.copy(database, directory)
        store = ProjectionStore.open(f"chdb://{directory}", database=database)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> ProjectionStore:
    return open_store("okr_ledger")


@pytest.fixture
def builder(tmp_path: Path) -> Iterator[LedgerBuilder]:
    ledger = LedgerBuilder(tmp_path / "ledger.db")
    yield ledger
    ledger.close()


def project(builder: LedgerBuilder, store: ProjectionStore) -> EmbeddedRunner:
    """Catch ``store`` up with ``builder``'s ledger (a fresh runner) and return the runner."""
    runner = EmbeddedRunner(builder.log, store, Projector())
    runner.catch_up()
    return runner


def assert_as_projected_afresh(
    store: ProjectionStore, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    """``store``'s rows are those of a store that projects ``builder``'s ledger from nothing
    (invariant 4: incremental = rebuild)."""
    clean = open_store("clean")
    project(builder, clean)
    assert fingerprint(store) == fingerprint(clean)


@pytest.fixture(scope="session")
def demo_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory ``okr-ledger demo`` leaves, made once per test process."""
    where = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        patch.setenv("OKR_DATA_DIR", str(where / "data"))
        patch.setenv("COLUMNS", "200")
        result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    return where / "data"


@pytest.fixture
def demo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_made: Path) -> Path:
    """``tmp_path`` (the current directory) with a copy of what ``okr-ledger demo`` leaves
    under ``data``, as the CLI tests then find it (a copy: the demo is ~1.4 s of CPU)."""
    shutil.copytree(demo_made, tmp_path / "data", symlinks=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path
