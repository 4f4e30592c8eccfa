"""Properties on random ledgers: projections are a function of the ledger prefix alone.

- incremental projection (any batches, restarts) equals a full rebuild, row for row;
- the answer as of recorded time T equals a rebuild from the ledger recorded up to T;
- projecting the same batch twice changes nothing.
"""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okr_ledger.projection_compare import fingerprint
from processors.projector import Projector, micros
from projections.queries import Moment
from projections.store import ProjectionStore
from tests.projections.conftest import StoreFactory
from tests.projections.ledgers import utc
from tests.projections.properties import (
    AS_OF_CASES,
    INCREMENTAL_CASES,
    PROPERTY_SETTINGS,
    Fresh,
    Script,
    all_answers,
    as_of_equals_a_rebuild_of_the_prefix,
    build,
    incremental_projection_equals_a_full_rebuild,
    scripts,
    snapshots_every,
)


@pytest.fixture
def two_stores(open_store: StoreFactory) -> tuple[ProjectionStore, ProjectionStore]:
    return open_store("left"), open_store("right")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@PROPERTY_SETTINGS
@INCREMENTAL_CASES
def test_incremental_projection_equals_a_full_rebuild(
    workdir: Path,
    two_stores: tuple[ProjectionStore, ProjectionStore],
    *,
    script: Script,
    cuts: list[int],
    restart: bool,
    every: int,
) -> None:
    with snapshots_every(every):
        incremental_projection_equals_a_full_rebuild(workdir, two_stores, script, cuts, restart)


@PROPERTY_SETTINGS
@AS_OF_CASES
def test_as_of_equals_a_rebuild_of_the_prefix(
    workdir: Path,
    two_stores: tuple[ProjectionStore, ProjectionStore],
    *,
    script: Script,
    split: float,
    at_day: int,
    every: int,
) -> None:
    """``every``: the snapshots' interval (small ones: answers from a snapshot and the rows
    after it, corrections and retractions on either side of it)."""
    full, prefix = two_stores
    fresh = Fresh(workdir, two_stores)
    builder = fresh.ledger()
    with snapshots_every(every):
        as_of_equals_a_rebuild_of_the_prefix(
            workdir=workdir,
            full=full,
            prefix=prefix,
            builder=builder,
            split=split,
            at_day=at_day,
            script=script,
        )


@PROPERTY_SETTINGS
@given(script=scripts)
def test_projecting_the_same_batch_twice_changes_nothing(
    workdir: Path,
    two_stores: tuple[ProjectionStore, ProjectionStore],
    script: Script,
) -> None:
    store, _unused = two_stores
    builder = Fresh(workdir, two_stores).ledger()
    try:
        build(builder, script)
        events = builder.events()
        projector = Projector()
        rows = projector.project(events)
        assert projector.project(events) == {table: [] for table in rows}
        store.insert(rows)
        moment = Moment(now=utc(2026, 11, 20))
        before = (fingerprint(store), all_answers(store, moment))
        store.insert(Projector().project(events))  # a restarted projector re-sends it all
        assert (fingerprint(store), all_answers(store, moment)) == before
    finally:
        builder.close()


@settings(max_examples=2000, deadline=None)
@given(
    moment=st.datetimes(
        timezones=st.one_of(
            st.none(), st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439))
        )
    )
)
def test_micros_is_the_exact_count_of_microseconds_since_the_epoch(moment: datetime) -> None:
    """A time from the ledger (with an offset, or none: UTC) as an integer, exactly (before
    1970 and beyond 2262 too)."""
    text = moment.isoformat()
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    assert micros(text) == (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    if moment.tzinfo is None or moment.utcoffset() == timedelta(0):
        assert micros(text.removesuffix("+00:00") + "Z") == micros(text)
