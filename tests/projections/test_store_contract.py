"""The projection-store contract: one abstract suite, run on every backend.

On chDB always; over HTTP always, on a real ``okr-ledger serve-store`` process (the embedded
store served with ClickHouse's HTTP interface, with the writer credential it prints); on a
ClickHouse server too when ``OKR_TEST_CLICKHOUSE_URL`` is set
(``http://user:password@host:8123``). Over HTTP, each test has a database of its own that is
dropped afterwards.
"""

import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import projections.store as store_module
from okr_ledger.projection_compare import fingerprint
from processors import tables as t
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from processors.tables import RowBatch
from projections import queries
from projections.migrations import MIGRATIONS, MIGRATIONS_TABLE, SETTINGS_TABLE, VIEWS
from projections.queries import Moment
from projections.readonly_sql import QueryLimits
from projections.store import MARK_AHEAD, ProjectionStore, _beyond_checkpoint
from schemas.errors import ProjectionError, QueryRefusedError
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import ORG, LedgerBuilder, day, emptied, small_ledger
from tests.projections.serve_store_support import ServedStore, served_store
from tests.projections.store_support import answers, parts_without, store_in_own_database


def two_commits(builder: LedgerBuilder) -> tuple[RowBatch, RowBatch, int]:
    """The small ledger's rows as two commits (its first 6 events, the rest); how many events
    it has."""
    small_ledger(builder)
    events = builder.events()
    projector = Projector()
    return projector.project(events[:6]), projector.project(events[6:]), len(events)


def cut_short(store: ProjectionStore, builder: LedgerBuilder) -> int:
    """The small ledger's first 6 events committed, the rest stored without their checkpoint
    (a commit cut short); how many events it has."""
    first, second, count = two_commits(builder)
    store.insert(first)
    store.insert({table: rows for table, rows in second.items() if table != t.CHECKPOINTS})
    return count


def recorded_statements(store: ProjectionStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The store's writes from now on, in order: a table's name for each insert of staged
    rows, the text of each other statement (they still run)."""
    statements: list[str] = []
    insert, run = store._insert, store._run

    def recorded_insert(table: str, stream: Iterable[bytes]) -> None:
        statements.append(table)
        insert(table, stream)

    def recorded_run(statement: str, parameters: dict[str, Any] | None = None) -> None:
        statements.append(statement)
        run(statement, parameters)

    monkeypatch.setattr(store, "_insert", recorded_insert)
    monkeypatch.setattr(store, "_run", recorded_run)
    return statements


class ProjectionStoreContract:
    """What every projection store must do. Subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> ProjectionStore:
        raise NotImplementedError

    def test_migrations_are_recorded_and_idempotent(self, store: ProjectionStore) -> None:
        recorded = store.applied_migrations()
        assert [version for version, _name, _at in recorded] == [m.version for m in MIGRATIONS]
        assert store.migrate() == []
        assert store.applied_migrations() == recorded

    def test_a_store_from_before_migration_3_gains_the_rejection_columns(
        self, store: ProjectionStore
    ) -> None:
        """A store made by OKR Ledger 0.1: rejections without the whole submission's length
        and SHA-256, and migration 3 not recorded."""
        store.rows("ALTER TABLE {db}.rejections DROP COLUMN raw_length, DROP COLUMN raw_sha256")
        store.rows(
            "CREATE OR REPLACE VIEW {db}.rejection_history AS "
            "SELECT * FROM {db}.rejections FINAL ORDER BY position"
        )
        store.rows(
            "ALTER TABLE {db}.schema_migrations DELETE WHERE version = 3 "
            "SETTINGS mutations_sync = 2"
        )
        assert store.migrate() == [3]
        described = [row[0] for row in store.rows("DESCRIBE TABLE {db}.rejection_history")]
        assert described[-2:] == ["raw_length", "raw_sha256"]
        self.test_columns_match_the_row_contract(store)

    def test_columns_match_the_row_contract(self, store: ProjectionStore) -> None:
        for table, columns in t.COLUMNS.items():
            described = store.rows(f"DESCRIBE TABLE {{db}}.{table}")
            assert tuple(row[0] for row in described) == columns, table

    def test_every_view_answers_a_plain_select(self, store: ProjectionStore) -> None:
        for view in VIEWS:
            assert store.rows(f"SELECT count() FROM {view}") == [(0,)]

    def test_inserting_a_batch_twice_changes_no_answer(
        self, store: ProjectionStore, builder: LedgerBuilder
    ) -> None:
        small_ledger(builder)
        rows = Projector().project(builder.events())
        store.insert(rows)
        first = (fingerprint(store), answers(store))
        store.insert(rows)
        assert (fingerprint(store), answers(store)) == first
        for view in ("audit_history", "check_in_history", "key_result_progress"):
            distinct = f"SELECT count() = uniqExact(formatRow('TSV', *)) FROM {view}"
            assert store.rows(distinct) == [(True,)], view

    def test_checkpoints_per_org(self, store: ProjectionStore, builder: LedgerBuilder) -> None:
        small_ledger(builder)
        builder.org = "globex"
        builder.skeleton()
        project(builder, store)
        assert store.positions() == {ORG: 11, "globex": 4}
        assert store.positions(t.REJECTION_STREAM) == {}

    def test_a_crash_before_the_checkpoint_is_harmless(
        self, store: ProjectionStore, builder: LedgerBuilder
    ) -> None:
        small_ledger(builder)
        events = builder.events()
        projector = Projector()
        store.insert(projector.project(events[:6]))
        half_done: RowBatch = projector.project(events[6:])
        del half_done[t.CHECKPOINTS]  # the process died before it recorded the checkpoint
        store.insert({t.AUDIT: half_done[t.AUDIT], t.KEY_RESULTS: half_done[t.KEY_RESULTS]})
        assert store.positions() == {ORG: 6}
        runner = EmbeddedRunner(builder.log, store, Projector())  # a restart
        assert runner.catch_up().replayed == 6
        crashed = fingerprint(store)
        store.drop_all()
        store.migrate()
        project(builder, store)
        assert fingerprint(store) == crashed

    def test_a_commit_cut_short_leaves_no_row_twice(
        self, store: ProjectionStore, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first, second, _ = two_commits(builder)
        inserts: list[tuple[str, bytes]] = []  # the second commit's, in order
        with monkeypatch.context() as patched:
            patched.setattr(
                store, "_insert", lambda table, data: inserts.append((table, b"".join(data)))
            )
            store.insert(second)
        assert inserts[-1][0] == t.CHECKPOINTS
        for cut in range(len(inserts)):  # the process died before insert number `cut`
            emptied(store)  # as drop_all and migrate leave it
            store.insert(first)
            for table, data in inserts[:cut]:
                store._insert(table, [data])
            assert store.positions() == {ORG: 6}
            EmbeddedRunner(builder.log, store, Projector()).catch_up()  # a restart
            for table in t.HISTORY:
                once = f"SELECT count() = uniqExact(formatRow('TSV', *)) FROM {{db}}.{table}"
                assert store.rows(once) == [(True,)], (cut, table)
            found = queries.key_results(store, ORG, Moment(as_of=day(30), now=day(30)))
            assert [kr["check_in_count"] for kr in found] == [5]
            # The discard keeps `by_check_in` in the parts it rewrites (migration 10): a part
            # without it would never merge with the others again.
            assert parts_without(store, t.CHECK_INS, "by_check_in") == 0, cut

    def test_a_commit_cut_short_after_an_early_insert_leaves_no_row_twice(
        self, store: ProjectionStore, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An audit table's rows inserted before the commit (their size reached
        ``part_bytes``) go in after a ``ledger-begun`` mark: a commit cut short anywhere,
        before or after them, is discarded on the next catch-up, and the commit marks each
        org once."""
        small_ledger(builder)
        events = builder.events()
        projector = Projector()
        first, second = projector.project(events[:6]), projector.project(events[6:8])
        third = projector.project(events[8:])
        inserts: list[tuple[str, bytes]] = []  # the second commit's, in order
        with monkeypatch.context() as patched:
            patched.setattr(
                store, "_insert", lambda table, data: inserts.append((table, b"".join(data)))
            )
            patched.setattr(store, "part_bytes", 1)
            store.stage(second)
            assert store.staged_bytes > 0  # the other tables wait for the commit
            store.stage(third)
            store.commit()
        tables = [table for table, _ in inserts]
        assert tables[:3] == [t.CHECKPOINTS, t.AUDIT, t.AUDIT]  # one mark, then each early
        assert tables.count(t.CHECKPOINTS) == 2  # the mark, and the checkpoints last
        assert tables[-1] == t.CHECKPOINTS
        for cut in range(len(inserts)):  # the process died before insert number `cut`
            emptied(store)  # as drop_all and migrate leave it
            store.insert(first)
            for table, data in inserts[:cut]:
                store._insert(table, [data])
            assert store.positions() == {ORG: 6}
            EmbeddedRunner(builder.log, store, Projector()).catch_up()  # a restart
            for table in t.HISTORY:
                once = f"SELECT count() = uniqExact(formatRow('TSV', *)) FROM {{db}}.{table}"
                assert store.rows(once) == [(True,)], (cut, table)
            found = queries.key_results(store, ORG, Moment(as_of=day(30), now=day(30)))
            assert [kr["check_in_count"] for kr in found] == [5]

    def test_a_discard_by_an_owner_since_replaced_removes_nothing(
        self, store: ProjectionStore, builder: LedgerBuilder
    ) -> None:
        """A worker paused between reading the checkpoints and sending its discard wakes up
        after the next owner claimed the partition: its DELETEs must match nothing."""
        found = {t.LEDGER_STREAM: {ORG: 6}, t.BEGUN_STREAM: {ORG: cut_short(store, builder)}}
        counts = {table: store.rows(f"SELECT count() FROM {{db}}.{table}") for table in t.HISTORY}
        key = t.owner_key(0)
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, key, 4, 0)]})
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, key, 5, 0)]})  # the next owner's claim
        assert store.discard_unfinished(found, {ORG: (key, 4)}) == [ORG]
        after = {table: store.rows(f"SELECT count() FROM {{db}}.{table}") for table in t.HISTORY}
        assert after == counts
        store.discard_unfinished(found, {ORG: (key, 5)})  # the latest owner's removes them
        later = "SELECT count() FROM {db}.audit_events WHERE sequence > 6"
        assert store.rows(later) == [(0,)]

    def test_one_discard_removes_each_org_whose_partition_is_still_claimed(
        self, store: ProjectionStore, builder: LedgerBuilder, tmp_path: Path
    ) -> None:
        """A takeover discards the commits cut short of all its orgs at once, each only while
        its own partition's claim is the latest."""
        other = LedgerBuilder(tmp_path / "other.db", org="other")
        try:
            found: dict[str, dict[str, int]] = {t.LEDGER_STREAM: {}, t.BEGUN_STREAM: {}}
            for ledger in (builder, other):
                found[t.BEGUN_STREAM][ledger.org] = cut_short(store, ledger)
                found[t.LEDGER_STREAM][ledger.org] = 6
            replaced, held = t.owner_key(0), t.owner_key(1)
            store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, replaced, 4, 0)]})
            store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, held, 4, 0)]})
            store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, replaced, 5, 0)]})  # a later owner
            owners = {ORG: (replaced, 4), "other": (held, 4)}
            assert store.discard_unfinished(found, owners) == sorted([ORG, "other"])
            later = "SELECT org_id, count() FROM {db}.%s WHERE sequence > 6 GROUP BY org_id"
            for table in (t.AUDIT, t.CHECK_INS):
                assert dict(store.rows(later % table)) == {ORG: 5}, table
        finally:
            other.close()

    def test_a_commit_by_an_owner_since_replaced_moves_no_checkpoint(
        self, store: ProjectionStore, builder: LedgerBuilder
    ) -> None:
        """A worker paused inside a commit wakes after the next owner's takeover: its rows go
        in (identical to the next owner's), its checkpoint does not."""
        first, second, count = two_commits(builder)
        key = t.owner_key(0)
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, key, 4, 0)]})
        store.insert(first, {ORG: (key, 4)})
        assert store.positions() == {ORG: 6}
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, key, 5, 0)]})  # the next owner's claim
        store.insert(second, {ORG: (key, 4)})
        assert store.positions() == {ORG: 6}
        store.insert(second, {ORG: (key, 5)})
        assert store.positions() == {ORG: count}

    def test_one_commit_moves_the_checkpoints_of_the_partitions_still_claimed_only(
        self, store: ProjectionStore
    ) -> None:
        """A commit covering several partitions checks each one's claim (in one statement):
        the checkpoints of a partition claimed since by another owner stay where they were."""
        mine, moved = t.owner_key(0), t.owner_key(1)
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, mine, 3, 0)]})
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, moved, 6, 0)]})
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, moved, 7, 0)]})  # the next owner's
        rows = [(t.LEDGER_STREAM, org, position, 0) for org, position in (("a", 10), ("b", 20))]
        rows.append((t.LEDGER_STREAM, "c", 30, 0))
        owners = {"a": (mine, 3), "b": (moved, 6), "c": (moved, 7)}
        store.insert({t.CHECKPOINTS: rows}, owners)
        assert store.positions() == {"a": 10, "c": 30}

    def test_a_workers_commits_share_a_mark_set_ahead(
        self, store: ProjectionStore, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A commit with owners (a worker's) sets its orgs' ``ledger-begun`` marks
        ``MARK_AHEAD`` beyond their checkpoints, in its checkpoints' statement: the next one
        inserts its rows, then one checkpoint statement, no mark before the rows. A store
        dropped and migrated again marks anew."""
        first, second, count = two_commits(builder)
        key = t.owner_key(0)
        owners = {ORG: (key, 1)}
        statements = recorded_statements(store, monkeypatch)
        for _ in range(2):
            store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, key, 1, 0)]})
            statements.clear()
            store.insert(first, owners)
            assert statements[0] == t.CHECKPOINTS  # the mark, before the rows
            assert statements[-1].startswith("INSERT INTO {db}.checkpoints")
            assert store.checkpoints()[t.BEGUN_STREAM] == {ORG: 6 + MARK_AHEAD}
            statements.clear()
            store.insert(second, owners)
            assert t.CHECKPOINTS not in statements
            assert [s for s in statements if s.startswith("INSERT")] == [statements[-1]]
            assert store.positions() == {ORG: count}
            store.drop_all()
            store.migrate()

    def test_a_discard_deletes_only_where_a_commit_was_cut_short(
        self, store: ProjectionStore, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a worker's commits every mark is beyond its checkpoint: a takeover's discard
        sends no ``DELETE`` (a mutation) where no row is beyond the checkpoint, and removes
        the rows of a commit cut short after such a mark."""
        first, second, _ = two_commits(builder)
        key = t.owner_key(0)
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, key, 1, 0)]})
        store.insert(first, {ORG: (key, 1)})
        statements = recorded_statements(store, monkeypatch)
        assert store.discard_unfinished(store.checkpoints(), {ORG: (key, 1)}) == []
        assert not [s for s in statements if "DELETE" in s]
        store.insert({table: rows for table, rows in second.items() if table != t.CHECKPOINTS})
        assert store.discard_unfinished(store.checkpoints(), {ORG: (key, 1)}) == [ORG]
        for table in (t.AUDIT, t.CHECK_INS, t.EVENT_TIMES):
            later = f"SELECT count() FROM {{db}}.{table} WHERE sequence > 6"
            assert store.rows(later) == [(0,)], table
        assert store.positions() == {ORG: 6}

    def test_a_workers_commit_whose_insert_fails_moves_no_checkpoint(
        self, store: ProjectionStore, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A worker's commit inserts its tables at once (``WRITERS``, in chDB): one that fails
        fails the commit, after the others ended, and no checkpoint goes in."""
        first, second, _ = two_commits(builder)
        key = t.owner_key(0)
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, key, 1, 0)]})
        store.insert(first, {ORG: (key, 1)})
        insert = store._insert

        def failing(table: str, stream: Iterable[bytes]) -> None:
            if table == t.CHECK_INS:
                raise ProjectionError(f"insert into {table} failed: the disk is full")
            insert(table, stream)

        monkeypatch.setattr(store, "_insert", failing)
        with pytest.raises(ProjectionError, match="the disk is full"):
            store.insert(second, {ORG: (key, 1)})
        assert store.positions() == {ORG: 6}

    def test_a_takeovers_read_beyond_the_checkpoints_skips_the_committed_rows(
        self, store: ProjectionStore, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The read a takeover makes (``_beyond``) of an org beyond ``READ_WHOLE`` reads no
        granule whose rows are all at or before its checkpoint, in any history table (by the
        primary key, or by the index ``org_sequence`` of migration 12): its cost does not
        grow with the history. The granules of a commit cut short it reads, and finds."""
        monkeypatch.setattr(store_module, "READ_WHOLE", 0)
        first, second, _ = two_commits(builder)
        store.insert(first)
        where, params = _beyond_checkpoint([ORG], {ORG: 6})
        tables = [table for table in t.HISTORY if table != t.REJECTIONS]

        def granules() -> dict[str, int]:
            read = {}
            for table in tables:
                query = f"EXPLAIN ESTIMATE SELECT org_id FROM {{db}}.{table} WHERE {where}"
                read[table] = sum(int(row[-1]) for row in store.rows(query, params))
            return read

        assert store.rows("SELECT count() FROM {db}.audit_events") == [(6,)]
        assert granules() == dict.fromkeys(tables, 0)
        store.insert({table: rows for table, rows in second.items() if table != t.CHECKPOINTS})
        assert granules()[t.CHECK_INS] > 0
        assert store._beyond({ORG: 6}) == {ORG}

    def test_read_only_queries_refuse_writes(self, store: ProjectionStore) -> None:
        limits = QueryLimits()
        with pytest.raises(QueryRefusedError, match="DROP is not allowed"):
            store.read_only("DROP TABLE audit_events", limits)
        with pytest.raises(QueryRefusedError, match="INSERT"):
            store.read_only("INSERT INTO rejections (position) VALUES (1)", limits)
        one = store.read_only("SELECT 1 AS one", limits)
        assert (one.columns, one.rows, one.formatted) == (["one"], [(1,)], None)
        csv = store.read_only("SELECT 1 AS one FORMAT CSVWithNames", limits)
        assert csv.formatted == b'"one"\n1\n'
        assert store.rows("EXISTS TABLE audit_events") == [(1,)]

    def test_bad_sql_is_a_projection_error(self, store: ProjectionStore) -> None:
        with pytest.raises(ProjectionError, match="no_such_table"):
            store.rows("SELECT * FROM no_such_table")

    def test_emptied_is_what_drop_all_and_migrate_leave(
        self, store: ProjectionStore, builder: LedgerBuilder
    ) -> None:
        """The tests that start over many times in one store empty it (:func:`emptied`) rather
        than drop and migrate it: the two leave the same tables and views, every table empty,
        the same settings and migrations, no ``ledger-begun`` mark remembered, and a store that
        projects the ledger into the same rows."""
        small_ledger(builder)
        key = t.owner_key(0)

        def used() -> None:  # rows in every table the ledger fills, and marks remembered
            store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, key, 1, 0)]})
            store.insert(Projector().project(builder.events()), {ORG: (key, 1)})
            assert store.checkpoints()[t.BEGUN_STREAM]
            assert store._marked

        def state() -> Any:
            tables = store.rows(
                "SELECT name, engine, create_table_query FROM system.tables "
                "WHERE database = {db:String} ORDER BY name",
                {"db": store.database},
            )
            counts = {
                name: store.rows(f"SELECT count() FROM {{db}}.{name}")[0][0]
                for name, engine, _ in tables
                if not engine.endswith("View") and name not in (SETTINGS_TABLE, MIGRATIONS_TABLE)
            }
            kept = [  # but when they were written
                sorted(
                    tuple(v for v in row if not isinstance(v, datetime))
                    for row in store.rows(f"SELECT * FROM {{db}}.{name}")
                )
                for name in (SETTINGS_TABLE, MIGRATIONS_TABLE)
            ]
            return tables, counts, kept, dict(store._marked), store.checkpoints()

        used()
        emptied(store)
        after_emptied = state()
        project(builder, store)
        projected_after_emptied = fingerprint(store)
        used()
        store.drop_all()
        store.migrate()
        assert state() == after_emptied
        assert set(after_emptied[1].values()) == {0}
        assert after_emptied[1].keys() >= {*t.COLUMNS, t.CHECK_IN_DAYS}
        assert (after_emptied[3], after_emptied[4]) == ({}, {})
        project(builder, store)
        assert fingerprint(store) == projected_after_emptied

    def test_drop_all_and_migrate_again(
        self, store: ProjectionStore, builder: LedgerBuilder
    ) -> None:
        small_ledger(builder)
        project(builder, store)
        store.drop_all()
        assert store.rows("SELECT count() FROM system.tables WHERE database = {db:String}",
                          {"db": store.database}) == [(0,)]  # fmt: skip
        assert store.migrate() == [m.version for m in MIGRATIONS]
        assert store.positions() == {}

    def test_export_formats(self, store: ProjectionStore, builder: LedgerBuilder) -> None:
        small_ledger(builder)
        project(builder, store)
        assert store.export("key_result_progress", "Parquet").startswith(b"PAR1")
        csv = store.export("audit_history", "CSVWithNames").decode().splitlines()
        assert csv[0].startswith('"org_id","sequence"')
        assert len(csv) == 1 + 11


class TestChdbStore(ProjectionStoreContract):
    @pytest.fixture
    def store(self, open_store: StoreFactory) -> ProjectionStore:
        return open_store("contract")


@pytest.fixture(scope="module")
def serve_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStore]:
    with served_store(tmp_path_factory.mktemp("served") / "data") as served:
        yield served


class TestServedStore(ProjectionStoreContract):
    @pytest.fixture
    def store(self, serve_store: ServedStore) -> Iterator[ProjectionStore]:
        yield from store_in_own_database(serve_store.writer_url)


SERVER_URL = os.environ.get("OKR_TEST_CLICKHOUSE_URL")

if SERVER_URL:

    class TestServerStore(ProjectionStoreContract):
        @pytest.fixture
        def store(self) -> Iterator[ProjectionStore]:
            assert SERVER_URL is not None
            yield from store_in_own_database(SERVER_URL)
