"""Schema evolution: released migrations never change, a store made before issue 9 is upgraded
(its projections made anew from the ledger), and every table is as the code inserts into it."""

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import projections.store as store_module
from okr_ledger.projection_compare import fingerprint
from processors import tables as t
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections import queries
from projections.migrations import COLUMN_TYPES, MIGRATIONS, VIEWS
from projections.queries import Moment
from projections.store import ProjectionStore, _beyond_checkpoint
from schemas.errors import ProjectionError, ProjectionQueryError
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import LedgerBuilder, day
from tests.projections.old_store_ledger import write_ledger
from tests.projections.serve_store_support import served_store
from tests.projections.store_support import answers, parts_without

FIXTURE = Path(__file__).parent / "fixtures" / "store-issue-7.json"
PINNED = {
    1: "6666da331d38d0e28b5219c5c1963c673210627c933d07f5240a2a5435999388",
    2: "0d8541ac671f9c07177ea94f5129df78ddf64c5046df20df07c218866f908bf5",
    3: "94aa3aa0071b15215390352369d1191b025a746959036acbdda7696e98ef2a34",
    4: "36131276182c231f0719ff303cf67c9a4891c407b64a5c547ae2d954e12c94c5",
    5: "6734c80b75296170827b6ebcac65d704485954d78388a0bf085d8f7e9c00b157",
    6: "706664ade7b994a0f01cdc95f2f8854beee1569e4efae781e4c85d82f6df8e0b",
    7: "f4fbe9422e52fbf24c25e16456b840cc3906b83577b7412e43e5bee6bd5f854a",
    8: "56373b7057e75f82c840359b559c03c16aaaa5b16f97409db0119a302435288f",
    9: "d4a6626585e33307cdc2a15f58e4e6943e1da7e6ad7e3c1c9c519a57e9f193ce",
    10: "3a9652d2d644f035da5c67f57d26af92fbe07e1f1cb98b396df34c9b06f26168",
    11: "2623191248c9a52e040e1499e1925235d370f00f6622e69412994a087969e675",
    12: "9d14fd0157625c31a4037422e0bad4290a84ff141f5f903ff2ee2d80bd0818d6",
    13: "fc86c911cafe0042c6e80035aed6bd9102a55605f1c440c09d2ae5881e4067ba",
    14: "49468176df1d033c0fd00e5afde81720b20eb35a39b091a8008a6f10b031fb99",
}
"""The SHA-256 of each released migration's file."""


def test_released_migrations_never_change() -> None:
    """Their SQL is what every store in the field ran: a schema change is a new migration."""
    digests = {m.version: hashlib.sha256(m.text.encode()).hexdigest() for m in MIGRATIONS}
    assert digests == PINNED


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert all(m.file.startswith(f"{m.version:04d}-") for m in MIGRATIONS)
    assert len({m.file for m in MIGRATIONS}) == len(MIGRATIONS)


def described(store: ProjectionStore, table: str) -> list[tuple[str, str]]:
    """Each column's name and type, the type's white space as in ``COLUMN_TYPES``."""
    rows = store.rows(f"DESCRIBE TABLE {{db}}.{table}")
    return [(row[0], " ".join(row[1].split()).replace("( ", "(")) for row in rows]


def test_every_table_has_the_columns_and_types_the_store_inserts(store: ProjectionStore) -> None:
    for table, columns in COLUMN_TYPES.items():
        assert described(store, table) == columns, table


def _old_store(url: str, database: str) -> ProjectionStore:
    """A store as OKR Ledger made it before issue 9: migrations 1 to 3, and the rows its
    projector wrote (``fixtures/store-issue-7.json``, dumped by that version)."""
    store = ProjectionStore.open(url, database, migrate=False)
    store.client.command(f"CREATE DATABASE {database}")
    for migration in MIGRATIONS[:3]:
        for statement in migration.statements:
            store.client.command(statement.replace("{db}", database))
    tables: dict[str, list[dict[str, Any]]] = orjson.loads(FIXTURE.read_bytes())
    store.client.command(
        f"CREATE TABLE {database}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(6, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    for table, rows in tables.items():
        if rows:
            body = b"\n".join(orjson.dumps(row) for row in rows)
            store.client.raw_insert(f"{database}.{table}", None, body, fmt="JSONEachRow")
    return store


def test_a_store_from_before_issue_9_is_upgraded_and_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder
) -> None:
    write_ledger(builder)
    old = _old_store(chdb_url, "upgraded")
    try:
        assert old.positions() == {"acme": 22}  # projected by the old version
        assert old.rows("SELECT count() FROM {db}.key_result_versions") == [(15,)]
        assert old.migrate() == [m.version for m in MIGRATIONS[3:]]
        assert old.positions() == {}  # the next catch-up projects the ledger again
        done = EmbeddedRunner(builder.log, old, Projector()).catch_up()
        assert (done.events, done.replayed) == (22, 0)
        fresh = open_store("fresh")
        project(builder, fresh)
        assert fingerprint(old) == fingerprint(fresh)
        assert answers(old) == answers(fresh)
        for table, columns in COLUMN_TYPES.items():
            assert described(old, table) == columns, table
        for view in VIEWS:
            old.rows(f"SELECT count() FROM {{db}}.{view}")
        assert [v for v, _name, _at in old.applied_migrations()] == [m.version for m in MIGRATIONS]
        assert old.migrate() == []
    finally:
        old.close()


def _store_before(
    url: str, database: str, source: ProjectionStore, version: int
) -> ProjectionStore:
    """A store as OKR Ledger made it before migration ``version + 1``: migrations 1 to
    ``version`` recorded, and rows in every table they made (copied from ``source``, a store
    projected by this version)."""
    store = ProjectionStore.open(url, database, migrate=False)
    store.client.command(f"CREATE DATABASE {database}")
    store.client.command(
        f"CREATE TABLE {database}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(6, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    for migration in MIGRATIONS[:version]:
        for statement in migration.statements:
            store.client.command(statement.replace("{db}", database))
        name = migration.name.replace("'", "\\'")  # migration 12's has one
        store.client.command(
            f"INSERT INTO {database}.schema_migrations VALUES ({migration.version}, "
            f"'{name}', now64(6))"
        )
    made = {name for (name,) in store.rows(f"SHOW TABLES FROM {database}")}
    for table in COLUMN_TYPES:
        if table in made:
            store.client.command(
                f"INSERT INTO {database}.{table} SELECT * FROM {source.database}.{table}"
            )
    return store


def _issue_9_store(url: str, database: str, source: ProjectionStore) -> ProjectionStore:
    """A store as OKR Ledger made it before issue 11: migrations 1 to 4."""
    return _store_before(url, database, source, 4)


def test_a_store_from_before_issue_11_is_upgraded_and_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder
) -> None:
    """Migration 5 empties the projected tables and the checkpoints, and makes
    ``period_grades``: the next catch-up projects the ledger again, as a fresh store has it."""
    write_ledger(builder)
    fresh = open_store("fresh11")
    project(builder, fresh)
    old = _issue_9_store(chdb_url, "upgraded11", fresh)
    try:
        assert old.positions() == {"acme": 22}
        assert old.migrate() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
        assert old.positions() == {}
        assert old.rows("SELECT count() FROM {db}.objectives_now") == [(0,)]
        done = EmbeddedRunner(builder.log, old, Projector()).catch_up()
        assert (done.events, done.replayed) == (22, 0)
        assert fingerprint(old) == fingerprint(fresh)
        assert answers(old) == answers(fresh)
        for table, columns in COLUMN_TYPES.items():
            assert described(old, table) == columns, table
        for view in VIEWS:
            old.rows(f"SELECT count() FROM {{db}}.{view}")
        assert old.migrate() == []
    finally:
        old.close()


def test_a_store_from_before_the_snapshots_is_upgraded_and_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 7 empties the projected tables and the checkpoints, sorts ``objective_updates``
    by sequence and makes ``key_result_numbers`` and ``objective_stamps``: the next catch-up
    projects the ledger again, as a fresh store has it, and answers as of a moment agree
    (snapshots every 4 events here)."""
    monkeypatch.setattr(t, "SNAPSHOT_EVERY", 4)
    write_ledger(builder)
    fresh = open_store("fresh7")
    project(builder, fresh)
    old = _store_before(chdb_url, "upgraded7", fresh, 6)
    try:
        assert old.positions() == {"acme": 22}
        assert old.rows(
            "SELECT sorting_key FROM system.tables WHERE database = 'upgraded7' "
            "AND name = 'objective_updates'"
        ) == [("org_id, objective_id, sequence",)]
        assert old.migrate() == [7, 8, 9, 10, 11, 12, 13, 14]
        assert old.positions() == {}
        for table in t.HISTORY:
            assert old.rows(f"SELECT count() FROM {{db}}.{table}") == [(0,)], table
        done = EmbeddedRunner(builder.log, old, Projector()).catch_up()
        assert (done.events, done.replayed) == (22, 0)
        assert fingerprint(old) == fingerprint(fresh)
        assert answers(old) == answers(fresh)
        for event in builder.events()[::5]:
            moment = Moment(as_of=event.recorded, now=day(30))
            assert queries.progress(old, "acme", moment, 5) == queries.progress(
                fresh, "acme", moment, 5
            )
        assert old.rows(
            "SELECT sorting_key FROM system.tables WHERE database = 'upgraded7' "
            "AND name = 'objective_updates'"
        ) == [("org_id, sequence, objective_id",)]
        for table, columns in COLUMN_TYPES.items():
            assert described(old, table) == columns, table
        assert old.migrate() == []
    finally:
        old.close()


def test_a_store_at_migration_7_gains_event_times_and_is_not_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 8 makes ``event_times`` and fills it from ``audit_events``: nothing is emptied,
    the checkpoints stay, nothing is projected again, and the store is a fresh one's row for
    row; as-of answers agree. Cut short and run again, it adds no row twice."""
    monkeypatch.setattr(t, "SNAPSHOT_EVERY", 4)
    write_ledger(builder)
    fresh = open_store("fresh8")
    project(builder, fresh)
    old = _store_before(chdb_url, "upgraded8", fresh, 7)
    try:
        counts = {table: _count(old, table) for table in t.HISTORY if table != t.EVENT_TIMES}
        assert counts[t.AUDIT] == 22
        assert old.migrate() == [8, 9, 10, 11, 12, 13, 14]
        assert old.positions() == {"acme": 22}
        assert {table: _count(old, table) for table in counts} == counts
        assert _count(old, t.EVENT_TIMES) == 22
        for statement in MIGRATIONS[7].statements:  # cut short after its last statement
            old.client.command(statement.replace("{db}", old.database))
        assert _count(old, t.EVENT_TIMES) == 22
        done = EmbeddedRunner(builder.log, old, Projector()).catch_up()
        assert (done.events, done.replayed) == (0, 0)
        assert fingerprint(old) == fingerprint(fresh)
        assert answers(old) == answers(fresh)
        for event in builder.events()[::3]:
            moment = Moment(as_of=event.recorded, now=day(30))
            assert queries.sequence_as_of(old, "acme", event.recorded) == event.sequence
            assert queries.progress(old, "acme", moment, 5) == queries.progress(
                fresh, "acme", moment, 5
            )
        for table, columns in COLUMN_TYPES.items():
            assert described(old, table) == columns, table
        assert old.migrate() == []
    finally:
        old.close()


def _assert_at_answers_agree(
    old: ProjectionStore, fresh: ProjectionStore, builder: LedgerBuilder
) -> None:
    """``progress --at`` (alone and with ``--as-of``) at every third event: the same on both."""
    for event in builder.events()[::3]:
        for moment in (
            Moment(at=event.occurred, now=day(30)),
            Moment(as_of=event.recorded, at=event.occurred, now=day(30)),
        ):
            assert queries.progress(old, "acme", moment, 5) == queries.progress(
                fresh, "acme", moment, 5
            )


def _assert_as_fresh_without_projecting_again(
    old: ProjectionStore, fresh: ProjectionStore, builder: LedgerBuilder
) -> None:
    """A migrated store catches up with nothing to project, and holds a fresh store's rows
    and answers (now, and as of and at earlier moments)."""
    done = EmbeddedRunner(builder.log, old, Projector()).catch_up()
    assert (done.events, done.replayed) == (0, 0)
    assert fingerprint(old) == fingerprint(fresh)
    assert answers(old) == answers(fresh)
    _assert_at_answers_agree(old, fresh, builder)


def _check_in_lookup(store: ProjectionStore, projection: str | None) -> list[tuple[Any, ...]]:
    """Each check-in's last version by its sequence (as ``sql.current_versions`` reads it),
    from the projection ``projection`` (None: from the table itself; "auto": as chosen)."""
    setting = (
        "optimize_use_projections = 1"
        if projection == "auto"
        else f"force_optimize_projection_name = '{projection}'"
        if projection
        else "optimize_use_projections = 0"
    )
    every = [
        n for (n,) in store.rows("SELECT DISTINCT check_in_sequence FROM {db}.check_in_versions")
    ]
    return store.rows(
        "SELECT check_in_sequence, check_in_id, value, confidence FROM {db}.check_in_versions "
        "WHERE org_id = 'acme' AND sequence <= 1000 AND check_in_sequence IN {every:Array(UInt64)} "
        "ORDER BY check_in_sequence, sequence DESC LIMIT 1 BY check_in_sequence "
        f"SETTINGS {setting}",
        {"every": every},
    )


def test_a_store_at_migration_9_gains_check_ins_by_check_in_and_is_not_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 10 adds to ``check_in_versions`` the projection ``by_check_in`` (sorted by
    check-in, for ``--at``) and makes it for the rows there: nothing is emptied or projected
    again, the rows are a fresh store's, the projection answers as the table does (after a
    merge, rows inserted twice and merged, and the DELETE of a commit cut short too), and
    ``--at`` answers agree. Cut short and run again, it changes nothing."""
    monkeypatch.setattr(t, "SNAPSHOT_EVERY", 4)
    write_ledger(builder)
    fresh = open_store("fresh10")
    project(builder, fresh)
    old = _store_before(chdb_url, "upgraded10", fresh, 9)
    try:
        with pytest.raises(ProjectionQueryError, match="by_check_in"):  # none before it
            _check_in_lookup(old, "by_check_in")
        counts = {table: _count(old, table) for table in t.HISTORY}
        # A commit cut short before migration 10, discarded by a lightweight DELETE, its rows
        # projected again: the part it marked must get the projection too.
        old.client.command(f"DELETE FROM {old.database}.{t.CHECK_INS} WHERE sequence > 20")
        old.client.command(
            f"INSERT INTO {old.database}.{t.CHECK_INS} "
            f"SELECT * FROM {fresh.database}.{t.CHECK_INS} WHERE sequence > 20"
        )
        assert {table: _count(old, table) for table in counts} == counts
        assert old.migrate() == [10, 11, 12, 13, 14]
        assert parts_without(old, t.CHECK_INS, "by_check_in") == 0
        assert old.positions() == {"acme": 22}
        assert {table: _count(old, table) for table in counts} == counts
        for statement in MIGRATIONS[9].statements:  # cut short after its last statement
            old.client.command(statement.replace("{db}", old.database))
        by_check_in = _check_in_lookup(old, "by_check_in")
        assert by_check_in == _check_in_lookup(old, None) == _check_in_lookup(fresh, None)
        assert (
            len(by_check_in)
            == old.rows("SELECT uniqExact(check_in_sequence) FROM {db}.check_in_versions")[0][0]
        )
        _assert_as_fresh_without_projecting_again(old, fresh, builder)
        old.client.command(f"OPTIMIZE TABLE {old.database}.{t.CHECK_INS} FINAL")
        assert _check_in_lookup(old, "by_check_in") == by_check_in  # merged with the rows
        old.client.command(  # a worker's commit inserted again after a takeover: rows twice
            f"INSERT INTO {old.database}.{t.CHECK_INS} "
            f"SELECT * FROM {old.database}.{t.CHECK_INS} WHERE sequence > 12"
        )
        old.client.command(f"OPTIMIZE TABLE {old.database}.{t.CHECK_INS} FINAL")
        assert _count(old, t.CHECK_INS) == counts[t.CHECK_INS]  # the table keeps one
        assert _check_in_lookup(old, "by_check_in") == by_check_in  # the last version: the same
        old.client.command(  # an operator's lightweight DELETE (the store's is a mutation)
            f"DELETE FROM {old.database}.{t.CHECK_INS} WHERE sequence > 15"
        )
        left = _check_in_lookup(old, None)
        assert left != by_check_in
        assert _check_in_lookup(old, "auto") == left  # the parts it was dropped from: the rows
        for table, columns in COLUMN_TYPES.items():
            assert described(old, table) == columns, table
        assert old.migrate() == []
    finally:
        old.close()


def _days(store: ProjectionStore) -> list[tuple[Any, ...]]:
    """Each (key result, day)'s numbers in ``check_in_days``, its partial rows summed."""
    return store.rows(
        "SELECT key_result_id, day, sum(recorded), sum(retracted), max(latest), "
        "max(latest_gone), max(newest), arraySort(groupUniqArrayArray(recorded_keys)), "
        "arraySort(groupUniqArrayArray(gone_keys)) FROM {db}.check_in_days "
        "GROUP BY key_result_id, day ORDER BY key_result_id, day"
    )


def test_a_store_at_migration_10_gains_check_ins_per_day_and_is_not_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 11 adds ``check_in_days`` (per key result per business day, for ``--at``),
    fills it from the check-ins there and has a materialized view fill it from every insert:
    nothing is emptied or projected again, its rows are a fresh store's, events projected
    after it are counted once, and ``--at`` answers agree. Cut short and run again, it
    changes nothing."""
    monkeypatch.setattr(t, "SNAPSHOT_EVERY", 4)
    write_ledger(builder)
    fresh = open_store("fresh11")
    project(builder, fresh)
    old = _store_before(chdb_url, "upgraded11", fresh, 10)
    try:
        counts = {table: _count(old, table) for table in t.HISTORY}
        assert old.migrate() == [11, 12, 13, 14]
        assert {table: _count(old, table) for table in counts} == counts
        assert _days(old) == _days(fresh) != []
        for statement in MIGRATIONS[10].statements:  # cut short after its last statement
            old.client.command(statement.replace("{db}", old.database))
        assert _days(old) == _days(fresh)
        done = EmbeddedRunner(builder.log, old, Projector()).catch_up()
        assert (done.events, done.replayed) == (0, 0)
        assert fingerprint(old) == fingerprint(fresh)
        assert answers(old) == answers(fresh)
        builder.check_in("k2", 6, day(6))  # projected after the migration: counted once
        for store in (old, fresh):
            EmbeddedRunner(builder.log, store, Projector()).catch_up()
        assert _days(old) == _days(fresh)
        _assert_at_answers_agree(old, fresh, builder)
        assert old.migrate() == []
    finally:
        old.close()


def test_migration_11_misses_no_check_in_inserted_while_it_runs(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder
) -> None:
    """Another writer of a served store inserts check-ins while migration 11 runs: one after
    each of its statements. The view is made before the table is emptied and filled, so
    each is counted in ``check_in_days``: once, or twice if it came between the emptying and
    the filling (an over-count, which ``--at``'s check finds: tests/projections/
    test_at_days.py). Never not at all."""
    write_ledger(builder)
    fresh = open_store("fresh11w")
    project(builder, fresh)
    old = _store_before(chdb_url, "written11", fresh, 10)
    db = old.database
    statements = MIGRATIONS[10].statements
    assert [s.split()[0] for s in statements] == ["CREATE", "CREATE", "TRUNCATE", "INSERT"]
    try:
        for n, statement in enumerate(statements, start=1):
            old.client.command(statement.replace("{db}", db))
            old.client.command(  # a new check-in: a copy of the first, on a day of its own
                f"INSERT INTO {db}.{t.CHECK_INS} SELECT * REPLACE (check_in_sequence + "
                f"{1000 * n} AS check_in_sequence, sequence + {1000 * n} AS sequence, "
                f"occurred_at + toIntervalDay({1000 * n}) AS occurred_at) "
                f"FROM {db}.{t.CHECK_INS} WHERE change = 'recorded' ORDER BY sequence LIMIT 1"
            )
        first = old.rows(f"SELECT min(day) FROM {db}.{t.CHECK_IN_DAYS}")[0][0]
        counted = old.rows(
            f"SELECT intDiv(dateDiff('day', toDate32('{first}'), day), 1000) AS n, sum(recorded) "
            f"FROM {db}.{t.CHECK_IN_DAYS} WHERE day >= toDate32('{first}') + 1000 "
            "GROUP BY n ORDER BY n"
        )
        # after the tables (1, 2: the view), once; after the emptying (3), twice; after (4), once
        assert counted == [(1, 1), (2, 1), (3, 2), (4, 1)]
        assert _days(fresh) == [row for row in _days(old) if row[1] < first + timedelta(1000)]
    finally:
        old.close()


INDEXED = [
    t.AUDIT, t.CHECK_INS, t.KEY_RESULTS, t.TARGETS, t.OBJECTIVES, t.THEMES, t.UNITS, t.PERIODS,
    t.PERIOD_GRADES, t.OWNERS,
]  # fmt: skip
"""The history tables that migration 12 gives the index ``org_sequence``: those a takeover
reads beyond the checkpoints whose sort key does not start with ``(org_id, sequence)``."""


def _indexed(store: ProjectionStore) -> list[str]:
    """The tables with the index ``org_sequence``, by ``(org_id, sequence)``, minmax."""
    rows = store.rows(
        "SELECT table FROM system.data_skipping_indices WHERE database = {db:String} "
        "AND name = 'org_sequence' AND type = 'minmax' AND expr = 'org_id, sequence' "
        "ORDER BY table",
        {"db": store.database},
    )
    return [str(table) for (table,) in rows]


def _granules_beyond(store: ProjectionStore, positions: dict[str, int]) -> dict[str, int]:
    """The granules each history table's read beyond ``positions`` reads (EXPLAIN ESTIMATE)."""
    where, params = _beyond_checkpoint(sorted(positions), positions)
    read = {}
    for table in t.HISTORY:
        if table != t.REJECTIONS:
            query = f"EXPLAIN ESTIMATE SELECT org_id FROM {{db}}.{table} WHERE {where}"
            read[table] = sum(int(row[-1]) for row in store.rows(query, params))
    return read


def test_a_store_at_migration_11_gains_org_sequence_bounds_and_is_not_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 12 adds the index ``org_sequence`` to the history tables a takeover reads
    beyond the checkpoints (sorted otherwise than by ``(org_id, sequence)``) and builds it for
    the parts there: nothing is emptied or projected again, the rows and answers are a fresh
    store's, ``check_in_versions`` keeps its projection ``by_check_in``, and the read beyond
    the checkpoints skips every granule of the old parts and still finds a commit cut short.
    Cut short and run again, it changes nothing."""
    monkeypatch.setattr(t, "SNAPSHOT_EVERY", 4)
    monkeypatch.setattr(store_module, "READ_WHOLE", 0)  # the org by a term of its own
    write_ledger(builder)
    fresh = open_store("fresh12")
    project(builder, fresh)
    assert _indexed(fresh) == sorted(INDEXED)
    old = _store_before(chdb_url, "upgraded12", fresh, 11)
    try:
        assert _indexed(old) == []
        counts = {table: _count(old, table) for table in t.HISTORY}
        committed = old.positions()
        assert committed == {"acme": 22}
        assert sum(_granules_beyond(old, committed).values()) > 0  # no index: read them all
        assert old.migrate() == [12, 13, 14]
        assert _indexed(old) == sorted(INDEXED)
        assert parts_without(old, t.CHECK_INS, "by_check_in") == 0
        assert {table: _count(old, table) for table in counts} == counts
        assert set(_granules_beyond(old, committed).values()) == {0}
        for statement in MIGRATIONS[11].statements:  # cut short after its last statement
            old.client.command(statement.replace("{db}", old.database))
        assert _indexed(old) == sorted(INDEXED)
        assert parts_without(old, t.CHECK_INS, "by_check_in") == 0
        _assert_as_fresh_without_projecting_again(old, fresh, builder)
        assert old._beyond(committed) == set()
        old.client.command(  # a commit cut short, in an old part once merged
            f"INSERT INTO {old.database}.{t.AUDIT} SELECT * REPLACE (toUInt64(23) AS sequence) "
            f"FROM {old.database}.{t.AUDIT} LIMIT 1"
        )
        old.client.command(f"OPTIMIZE TABLE {old.database}.{t.AUDIT} FINAL")
        assert old._beyond(committed) == {"acme"}
        for table, columns in COLUMN_TYPES.items():
            assert described(old, table) == columns, table
        assert old.migrate() == []
    finally:
        old.close()


def _count(store: ProjectionStore, table: str) -> int:
    return int(store.rows(f"SELECT count() FROM {{db}}.{table}")[0][0])


@pytest.fixture
def store(open_store: StoreFactory) -> ProjectionStore:
    return open_store("described")


def test_every_table_writes_and_merges_with_small_buffers(store: ProjectionStore) -> None:
    """Migration 9 (issue 9, peak RSS): compression blocks of at most 128 KiB and merge blocks
    of 1,024 rows, in every table the projector writes (and in migration 11's, which its
    materialized view writes)."""
    for table in (*t.COLUMNS, t.CHECK_IN_DAYS):
        [(engine,)] = store.rows(
            "SELECT engine_full FROM system.tables WHERE database = {db:String} "
            "AND name = {table:String}",
            {"db": store.database, "table": table},
        )
        for setting in (
            "max_compress_block_size = 131072",
            "min_compress_block_size = 32768",
            "merge_max_block_size = 1024",
        ):
            assert setting in engine, (table, engine)


SMALL_PARTS_TOGETHER = "merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0"
"""Migration 13's setting: a table's small new parts merged together, not each into its
largest part."""


def _merging_small_parts_together(store: ProjectionStore) -> list[str]:
    rows = store.rows(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": store.database},
    )
    return [str(name) for name, engine in rows if SMALL_PARTS_TOGETHER in engine]


def test_every_table_merges_its_small_parts_together(store: ProjectionStore) -> None:
    """Migration 13 (issue 9, a one-event catch-up): in every table the projector writes
    (and migration 11's, which its materialized view writes), one-row parts are not each
    merged into the table's largest part."""
    assert _merging_small_parts_together(store) == sorted((*t.COLUMNS, t.CHECK_IN_DAYS))


def test_a_store_at_migration_12_merges_small_parts_together_and_is_not_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder
) -> None:
    """Migration 13 changes a setting of each table the projector writes: nothing is emptied
    or projected again, the rows and answers are a fresh store's, ``check_in_versions`` keeps
    its projection and index; run again, it changes nothing."""
    write_ledger(builder)
    fresh = open_store("fresh13")
    project(builder, fresh)
    old = _store_before(chdb_url, "upgraded13", fresh, 12)
    try:
        assert _merging_small_parts_together(old) == []
        counts = {table: _count(old, table) for table in (*t.COLUMNS, t.CHECK_IN_DAYS)}
        assert old.migrate() == [13, 14]
        assert _merging_small_parts_together(old) == sorted((*t.COLUMNS, t.CHECK_IN_DAYS))
        assert {table: _count(old, table) for table in counts} == counts
        assert parts_without(old, t.CHECK_INS, "by_check_in") == 0
        assert _indexed(old) == sorted(INDEXED)
        for statement in MIGRATIONS[12].statements:  # cut short after its last statement
            old.client.command(statement.replace("{db}", old.database))
        _assert_as_fresh_without_projecting_again(old, fresh, builder)
        assert old.migrate() == []
    finally:
        old.close()


FINER = {t.EVENT_TIMES: 1024, t.KEY_RESULT_NUMBERS: 1024, t.OBJECTIVE_UPDATES: 1024,
         t.OBJECTIVE_STAMPS: 256}  # fmt: skip
"""Migration 14's granules (rows) in the tables an as-of answer reads by sequence."""


def _granules(store: ProjectionStore) -> dict[str, int]:
    """Each table's ``index_granularity``, and the names of the tables in the database."""
    rows = store.rows(
        "SELECT name, toUInt32OrZero(extract(engine_full, 'index_granularity = (\\\\d+)')) "
        "FROM system.tables "
        "WHERE database = {db:String} AND engine LIKE '%MergeTree'",
        {"db": store.database},
    )
    return {str(name): int(granules) for name, granules in rows}


def test_a_store_at_migration_13_gets_finer_granules_and_is_not_projected_again(
    chdb_url: str, open_store: StoreFactory, builder: LedgerBuilder
) -> None:
    """Migration 14 makes four tables again with finer granules, from their own rows: nothing
    is emptied or projected again, the rows and answers (as of every third event too) are a
    fresh store's; cut short after its first swap, the next open runs it again to that end."""
    write_ledger(builder)
    fresh = open_store("fresh14")
    project(builder, fresh)
    old = _store_before(chdb_url, "upgraded14", fresh, 13)
    try:
        before = _granules(old)
        assert {table: before[table] for table in FINER} == dict.fromkeys(FINER, 8192)
        counts = {table: _count(old, table) for table in (*t.COLUMNS, t.CHECK_IN_DAYS)}
        statements = MIGRATIONS[13].statements
        swap = next(i for i, s in enumerate(statements) if s.startswith("EXCHANGE"))
        for statement in statements[: swap + 1]:  # cut short after its first swap
            old.client.command(statement.replace("{db}", old.database))
        assert _granules(old)[t.EVENT_TIMES] == FINER[t.EVENT_TIMES]
        assert old.migrate() == [14]  # run again from the start
        after = _granules(old)
        assert {table: after[table] for table in FINER} == FINER
        assert after == before | FINER  # no other table changed, none left beside them
        assert {table: _count(old, table) for table in counts} == counts
        _assert_as_fresh_without_projecting_again(old, fresh, builder)
        assert old.migrate() == []
    finally:
        old.close()


def test_a_shared_store_is_not_migrated_by_an_exclusive_migration_at_open(
    tmp_path: Path, builder: LedgerBuilder
) -> None:
    """A store served to several processes (`serve-store`) at migration 13: a worker's or a
    command's open refuses, naming `okr-ledger init` (two running migration 14 at once would
    drop each other's copies), and leaves it as it was; `init`'s migration applies it."""
    write_ledger(builder)
    with served_store(tmp_path / "data") as served:
        source = ProjectionStore.open(served.writer_url, "source14")
        project(builder, source)
        old = _store_before(served.writer_url, "shared14", source, 13)
        source.close()
        try:
            before = _granules(old)
            with pytest.raises(ProjectionError, match=r"migration 14 .*`okr-ledger init`"):
                ProjectionStore.open(served.writer_url, "shared14").close()
            assert _granules(old) == before
            assert 14 not in old._recorded_versions()
            assert old.migrate() == [14]
            assert {table: _granules(old)[table] for table in FINER} == FINER
            ProjectionStore.open(served.writer_url, "shared14").close()  # nothing pending
        finally:
            old.close()
