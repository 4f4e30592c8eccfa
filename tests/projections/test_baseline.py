"""A new store is created from the baseline at once: the same schema and record of migrations
as the migrations run one by one, and a baseline cut short is finished by the next open."""

from pathlib import Path

import pytest

from processors import tables as t
from projections.baseline import PATH, baseline_sql, migrated_one_by_one
from projections.migrations import (
    BASELINE,
    BASELINE_BEGUN,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    PARAMETERIZED_VIEWS,
    SETTINGS_TABLE,
    VIEWS,
)
from projections.store import ProjectionStore
from tests.projections.conftest import StoreFactory, assert_as_projected_afresh, project
from tests.projections.ledgers import LedgerBuilder, small_ledger
from tests.projections.serve_store_support import served_store


def schema(store: ProjectionStore) -> dict[str, str]:
    """Each table's and view's statement, the database's name taken out."""
    rows = store.rows(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
        {"db": store.database},
    )
    return {str(name): str(query).replace(f"{store.database}.", "") for name, query in rows}


def recorded(store: ProjectionStore) -> list[tuple[int, str]]:
    return [(version, name) for version, name, _at in store.applied_migrations()]


def test_the_baseline_file_is_what_the_migrations_leave_one_by_one(tmp_path: Path) -> None:
    """After a new migration, `make schema` makes the file anew: this fails until it does."""
    with migrated_one_by_one(tmp_path / "clickhouse") as store:
        assert PATH.read_text("utf-8") == baseline_sql(store)
    assert BASELINE.version == MIGRATIONS[-1].version


def test_a_new_store_is_made_from_the_baseline_as_the_migrations_one_by_one_make_it(
    open_store: StoreFactory,
) -> None:
    fresh = open_store("made_from_the_baseline")
    step = open_store("made_step_by_step")
    step.drop_all(sync=True)
    step.migrate(baseline=False)
    assert schema(fresh) == schema(step)
    assert len(schema(fresh)) > len(t.COLUMNS)
    assert recorded(fresh) == recorded(step) == [(m.version, m.name) for m in MIGRATIONS]
    assert BASELINE_BEGUN.version in fresh._recorded_versions()  # made from the baseline
    assert BASELINE_BEGUN.version not in step._recorded_versions()


def test_a_served_store_over_http_is_made_from_the_baseline_as_one_by_one(
    tmp_path: Path,
) -> None:
    """The same over ClickHouse's HTTP interface (`serve-store`, as workers write to it): a
    new database made from the baseline, another migrated one by one, the same schema."""
    with served_store(tmp_path / "data") as served:
        fresh = ProjectionStore.open(served.writer_url, database="made_from_the_baseline")
        step = ProjectionStore.open(served.writer_url, database="made_step_by_step")
        try:
            step.drop_all(sync=True)
            step.migrate(baseline=False)
            assert schema(fresh) == schema(step)
            assert recorded(fresh) == recorded(step) == [(m.version, m.name) for m in MIGRATIONS]
            assert BASELINE_BEGUN.version in fresh._recorded_versions()
            assert BASELINE_BEGUN.version not in step._recorded_versions()
        finally:
            fresh.close()
            step.close()


def test_a_dropped_store_is_made_again_from_the_baseline(
    store: ProjectionStore, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    small_ledger(builder)
    project(builder, store)
    before = schema(store)
    store.drop_all(sync=True)
    assert store.migrate() == [m.version for m in MIGRATIONS]
    assert schema(store) == before
    project(builder, store)
    assert_as_projected_afresh(store, builder, open_store)


@pytest.mark.parametrize(
    "ran", [0, 1, 11, -1, None], ids=["none", "one", "half", "all-but-one", "all"]
)
def test_a_baseline_cut_short_is_run_again_by_the_next_migration(
    open_store: StoreFactory, ran: int | None
) -> None:
    """Killed in the middle of the baseline (its start recorded, ``ran`` of its statements
    run, no migration recorded): the next open runs it again and records the migrations."""
    step = open_store("made_step_by_step")
    step.drop_all(sync=True)
    step.migrate(baseline=False)
    cut = open_store("cut_short")
    cut.drop_all(sync=True)
    cut.migrate(baseline=False)  # the record of migrations, then emptied but for the start
    cut.client.command(f"TRUNCATE TABLE {cut.database}.{MIGRATIONS_TABLE}")
    cut._record([BASELINE_BEGUN])
    for name in (*VIEWS, *PARAMETERIZED_VIEWS.values(), t.CHECK_IN_DAYS_FILLER):
        cut.client.command(f"DROP VIEW IF EXISTS {cut.database}.{name} SYNC")
    for name in (*t.COLUMNS, t.CHECK_IN_DAYS, SETTINGS_TABLE):
        cut.client.command(f"DROP TABLE IF EXISTS {cut.database}.{name} SYNC")
    for statement in BASELINE.statements[:ran]:
        cut.client.command(statement.replace("{db}", cut.database))
    assert cut.migrate() == [m.version for m in MIGRATIONS]
    assert schema(cut) == schema(step)
    assert recorded(cut) == recorded(step)
    assert cut.migrate() == []


def test_a_store_holding_a_table_of_its_own_is_migrated_one_by_one(
    open_store: StoreFactory,
) -> None:
    """A user's own table in the database: not a new store, so no baseline (nothing recorded
    of it), and the same schema."""
    step = open_store("made_step_by_step")
    own = open_store("with_a_table_of_its_own")
    own.drop_all(sync=True)
    own.client.command(f"CREATE TABLE {own.database}.notes (n UInt8) ENGINE = Memory")
    assert own.migrate() == [m.version for m in MIGRATIONS]
    assert own._recorded_versions() == {m.version for m in MIGRATIONS}
    assert {k: v for k, v in schema(own).items() if k != "notes"} == schema(step)
