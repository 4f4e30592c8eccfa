"""Fixtures of the projection tests, all on a real chDB engine.

chDB opens one data directory per process at a time: a test may open several databases
(stores) in its own directory, and every store is closed at the end of the test, so that the
next test can open its own directory.
"""

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


@pytest.fixture
def chdb_url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def open_store(chdb_url: str) -> Iterator[StoreFactory]:
    """Opens stores (one database each) in this test's chDB directory; closes them after."""
    opened: list[ProjectionStore] = []

    def factory(database: str = "okr_ledger") -> ProjectionStore:
        store = ProjectionStore.open(chdb_url, database=database)
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


@pytest.fixture
def demo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``okr-ledger demo`` run in ``tmp_path`` (the current directory, its data under
    ``data``), as the CLI tests then find it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    return tmp_path
