"""The projection properties on the served store (``okr-ledger serve-store``, over HTTP), as
``test_properties`` proves them on chDB in this process: incremental projection equals a full
rebuild, and the answer as of T equals a rebuild of the ledger recorded up to T (the queries,
and the parameterized views BI tools read)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from projections.store import ProjectionStore
from tests.projections.properties import (
    AS_OF_CASES,
    INCREMENTAL_CASES,
    PROPERTY_SETTINGS,
    Fresh,
    Script,
    as_of_equals_a_rebuild_of_the_prefix,
    incremental_projection_equals_a_full_rebuild,
    snapshots_every,
)
from tests.projections.serve_store_support import ServedStore, served_store
from tests.projections.store_support import store_in_own_database

SERVED_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=4)
"""Fewer examples than on chDB (12), where the same code is proven: each one's queries go over
HTTP (~5-12 s an example here, at a load of 4-11 on two cores)."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStore]:
    with served_store(tmp_path_factory.mktemp("served") / "data") as store:
        yield store


@pytest.fixture(scope="module")
def served_stores(served: ServedStore) -> Iterator[tuple[ProjectionStore, ProjectionStore]]:
    """Two databases of the served store (emptied between examples)."""
    for left in store_in_own_database(served.writer_url):
        for right in store_in_own_database(served.writer_url):
            yield left, right


@SERVED_SETTINGS
@INCREMENTAL_CASES
def test_incremental_projection_equals_a_full_rebuild_on_the_served_store(
    tmp_path: Path,
    served_stores: tuple[ProjectionStore, ProjectionStore],
    *,
    script: Script,
    cuts: list[int],
    restart: bool,
    every: int,
) -> None:
    with snapshots_every(every):
        incremental_projection_equals_a_full_rebuild(tmp_path, served_stores, script, cuts, restart)


@settings(SERVED_SETTINGS, max_examples=2)
@AS_OF_CASES
def test_as_of_equals_a_rebuild_of_the_prefix_on_the_served_store(
    tmp_path: Path,
    served_stores: tuple[ProjectionStore, ProjectionStore],
    *,
    script: Script,
    split: float,
    at_day: int,
    every: int,
) -> None:
    full, prefix = served_stores
    builder = Fresh(tmp_path, served_stores).ledger()
    with snapshots_every(every):
        as_of_equals_a_rebuild_of_the_prefix(
            workdir=tmp_path,
            full=full,
            prefix=prefix,
            builder=builder,
            split=split,
            at_day=at_day,
            script=script,
        )
