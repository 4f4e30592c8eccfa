"""The projection store: migrations, idempotent batch inserts, checkpoints, read-only queries."""

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from processors import tables as t
from processors.tables import RowBatch
from projections.client import (
    ClickHouseClient,
    Target,
    connect,
    parse_url,
    release_code_pages,
    trim_c_allocator,
    unanswered,
)
from projections.migrations import (
    BASELINE,
    BASELINE_BEGUN,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    PARAMETERIZED_VIEWS,
    SETTINGS_TABLE,
    TIME,
    VIEWS,
    VIEWS_SETTING,
    Migration,
    view_statements,
    views_digest,
)
from projections.readonly_sql import QueryLimits, ReadOnlyGuard, Rows
from schemas.errors import (
    MissingExtraError,
    ProjectionError,
    ProjectionQueryError,
    ProjectionUnavailableError,
)

if TYPE_CHECKING:
    from projections.arrow_rows import ArrowTables

Params = dict[str, Any]
SCAN_DISTINCT_BYTES = 4 << 20
"""In chDB, a whole-table ``DISTINCT`` (a fingerprint) spills its set to disk beyond this."""
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadOnlyAnswer:
    """What a read-only statement gave: columns and rows, or, with FORMAT, that format's bytes."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    formatted: bytes | None = None


RELEASE_CODE_AFTER_BYTES = 4 << 20
"""Once this many bytes have been staged since the store opened (over all its commits: a
worker's flushes are small), in chDB, the store drops the pages of chDB's library that only
its start touched (:func:`projections.client.release_code_pages`): a long catch-up's peak
RSS; a command that projects a few events skips the ~8 ms of reading ``/proc/self/smaps``."""
RELEASE_CODE_EVERY_BYTES = 16 << 20
"""Then again each time this many more bytes have been staged (about each commit of a long
catch-up): where the library sits in the page cache in large folios, each fault maps up to
2 MiB of it, and what one commit's inserts and merges touched stays in the resident set
(RssFile 178 MiB through a first catch-up of 1,000,000 check-ins, 132 MiB so: its peak RSS
425 -> 379 MiB, for 0-2 s more of its 34-38 s of CPU, within the runs' spread)."""
APART = (t.AUDIT,)
"""History tables inserted on their own, as soon as their staged rows reach
:attr:`ProjectionStore.part_bytes`, not with the commit (``audit_events`` is ~60% of the staged
bytes): their parts are as large as a commit's whole, the other tables' commits hold fewer
bytes for them (the runner commits on :attr:`ProjectionStore.staged_bytes`, which leaves them
out), and fewer parts are made per event, with no more held in memory at once."""
DEFAULT_PART_BYTES = 16 << 20
"""The size at which an :data:`APART` table's staged rows are inserted."""

ONE_THREAD = " SETTINGS max_threads = 1"
"""Added to a statement in chDB (here or :attr:`ProjectionStore.served_chdb`) that is better on
one thread (a few rows: a thread more only waits), as its own ``SETTINGS`` clause (a served
store's process ignores the settings a request names)."""

READERS = 2
"""Connections besides the store's own on which :meth:`ProjectionStore.dicts_together` runs
an answer's independent statements at once (most of a small statement's time is the engine's
analysis, on one core each: two such statements take about the time of one on two cores).
0: one after the other on the store's connection (on a machine whose cores are all busy,
threads handing over only add waits)."""

WRITERS = 2
"""Connections besides the store's own on which a worker's commit (one with ``owners``: a few
hundred events, a few times a second), in chDB, inserts its tables at once, the checkpoints
after all of them. Almost all of a small insert's cost is its statement and its part, whatever
its rows, and chDB runs each on the calling thread: paired by commit (load 2.7-3.6), a commit
of 300 check-ins took 81 -> 77, 75 -> 74, 83 -> 67 ms (median), of 600 93 -> 90, with the
same CPU.
0: one after the other on the store's connection (as the embedded runner's commits, whose
inserts are large: one at a time keeps their peak memory)."""

MARK_AHEAD = 100_000
"""How far beyond its commit's end a worker's ``ledger-begun`` mark is set (a commit with
``owners``: the Kafka projector's, a few hundred events a few times a second), so that the next
commits, up to that position, need no mark of their own: the mark only has to be beyond the
org's checkpoint while rows beyond it may be going in. The mark is renewed, at no statement of
its own, with a commit's checkpoints once less than half of this is left."""

READ_WHOLE = 10_000
"""The checkpoint up to which the read of the rows beyond the checkpoints reads an org whole
(:func:`_beyond_checkpoint`): beyond it, an org's own term bounds the read to the granules
beyond its checkpoint (migration 12), but each such term costs ClickHouse's analysis ~0.6 ms
per table, ~9 ms per org over the history tables in chDB (1,000,000 check-ins: 12 orgs 130 ms,
50 orgs 515, 200 orgs 1,950), as much as reading ~10,000 events' rows."""
BEYOND_ORGS = 200
"""Orgs per statement that reads or deletes the rows beyond their checkpoints (each org beyond
:data:`READ_WHOLE` is one term of its condition: a query's text and its expression stay well
within ClickHouse's limits)."""

HISTORY_INSERT: Params = {"optimize_on_insert": 0}
"""Settings of an insert into a history table in chDB: its rows go into the part as they come,
sorted, not also merged as a merge would (``optimize_on_insert``, on by default for a
ReplacingMergeTree: a copy of the block besides the sorted one). A history table's rows are
a function of the ledger, one per event and key (:data:`processors.tables.HISTORY`): no two
rows of one insert share a sorting key, so the part is the same row for row. At 1,000,000
check-ins the first catch-up's highest RssAnon (during the inserts of ``audit_events`` and
``check_in_versions``) 241-246 -> 224-238 MiB, its commits' CPU 4.3 -> 3.7 s. The
current-state tables and the checkpoints, whose rows of one insert may share a key, keep it."""

CLEANUP_PASS_SECONDS = 1.0
"""MergeTree's cleanup of a table passes at most this often in chDB
(``merge_tree_clear_old_parts_interval_seconds``): a wake sooner does nothing."""


class ProjectionStore:
    """One database of projections on a ClickHouse server or in chDB."""

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        description: str = "",
        target: Target | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.description = description or database
        self._migrated = False
        self._settings: dict[str, str] = {}
        self._staged: ArrowTables | None = None
        self._checkpoints: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.part_bytes = DEFAULT_PART_BYTES
        """When an :data:`APART` table's staged rows are inserted (before the commit)."""
        self._begun: set[str] = set()
        """The orgs whose ``ledger-begun`` mark this commit inserted already."""
        self._marked: dict[str, int] = {}
        """Per org, the highest ``ledger-begun`` mark this store inserted (the store keeps the
        highest: a mark only grows, until :meth:`drop_all`). Only this object's
        :meth:`drop_all` forgets it: another process's drop, or a migration that empties
        ``checkpoints``, leaves it stale, but such a store has lost its checkpoints and claims
        too and is projected anew."""
        self._ahead = 0
        """How far beyond a commit's end its marks go: :data:`MARK_AHEAD` once a commit came
        with ``owners``, else 0 (a mark at the commit's end)."""
        self._inserted: set[str] = set()
        """The :data:`APART` tables this commit inserted already."""
        self._guard = ReadOnlyGuard()
        self.embedded = False
        """chDB, in this process (its memory is this process's)."""
        self.served_chdb = False
        """chDB served to this process alone by a process of its own
        (:mod:`okr_ledger.store_host`), whose writer's statements run at once on as many
        handles as :meth:`dicts_together` opens connections: an answer's statements are sent
        at once, each on one thread, as they run in chDB here."""
        self._woken: dict[str, float] = {}
        """When :meth:`wake_cleanup` last woke each table (``time.monotonic``)."""
        self._bytes_staged = 0
        """Bytes staged since the store opened (:data:`RELEASE_CODE_AFTER_BYTES`)."""
        self._released_at: int | None = None
        """The bytes staged when chDB's library pages were last dropped (None: not yet)."""
        self._target = target
        """Where to open the readers of :meth:`dicts_together` (None: one connection)."""
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.readers: list[ClickHouseClient] = []
        """The connections :meth:`dicts_together` opened (one per pool thread)."""
        self._readers_lock = threading.Lock()
        self._writers: ThreadPoolExecutor | None = None
        self._writer_clients: list[ClickHouseClient] = []
        """The connections of :data:`WRITERS` (one per writer thread)."""

    @classmethod
    def open(
        cls,
        url: str,
        database: str | None = None,
        migrate: bool = True,
        release_load_pages: bool = True,
    ) -> "ProjectionStore":
        """Connect, and apply pending migrations (first use creates everything).
        ``release_load_pages``: :func:`projections.client.load_chdb`'s ``release``."""
        target: Target = parse_url(url, database)
        client = connect(target, release_load_pages)
        store = cls(client, target.database, target.describe(), target)
        store.embedded = target.embedded
        try:
            if migrate:
                store.migrate(exclusive=target.embedded)  # the embedded store has one process
                store.wake_cleanup([*t.COLUMNS, t.CHECK_IN_DAYS])  # earlier merges' parts
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        for pool in (self._pool, self._writers):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._writers = None
        with self._readers_lock:
            readers, self.readers = self.readers, []
            readers += self._writer_clients
            self._writer_clients = []
        for reader in readers:
            reader.close()
        self.client.close()

    def __enter__(self) -> "ProjectionStore":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- schema ---------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("{db}", self.database)

    def _run(self, statement: str, parameters: Params | None = None) -> None:
        try:
            self.client.command(self._sql(statement), parameters)
        except Exception as error:
            raise self._failure(error, ProjectionError, f"{self.description}: {error}") from error

    def _failure(
        self, error: Exception, kind: type[ProjectionError], message: str
    ) -> ProjectionError:
        """``kind`` with ``message``, or :class:`ProjectionUnavailableError` when a server
        store did not answer (:func:`projections.client.unanswered`): what a Kafka worker's
        projector takes as the store down, and waits out (an embedded store's failures are its
        statements'). Its ``store`` is this store's description."""
        failure = (
            ProjectionUnavailableError(message)
            if not self.embedded and unanswered(error)
            else kind(message)
        )
        failure.store = self.description
        return failure

    def migrate(self, baseline: bool = True, exclusive: bool = True) -> list[int]:
        """Apply the migrations not yet recorded, and the views if their definition changed;
        return the versions applied now. ``baseline``: a new store (no table yet) is created
        from :data:`BASELINE` at once, not migration by migration. ``exclusive``: no other
        process writes to the store, so an exclusive migration may run (else it is refused)."""
        settings: dict[str, str] | None = None
        try:  # a store in use: its migrations and settings in one read
            done, settings = self._read_state()
        except ProjectionQueryError:
            try:
                done = self._recorded_versions()
            except ProjectionQueryError:  # a new store: no database or no record of migrations
                self._run("CREATE DATABASE IF NOT EXISTS {db}")
                self._run(
                    f"CREATE TABLE IF NOT EXISTS {{db}}.{MIGRATIONS_TABLE} "
                    f"(version UInt32, name String, applied_at {TIME}) "
                    "ENGINE = ReplacingMergeTree ORDER BY version"
                )
                done = set()
        self.client.database = self.database  # unqualified names in ad-hoc SQL
        applied = []
        begun = done == {BASELINE_BEGUN.version}  # a baseline cut short: run it again
        if begun or (baseline and not done and self._holds_no_table()):
            if not begun:
                self._record([BASELINE_BEGUN])
            for statement in BASELINE.statements:  # each CREATE ... IF NOT EXISTS
                self._run(statement)
            applied = [m.version for m in MIGRATIONS if m.version <= BASELINE.version]
            self._record([m for m in MIGRATIONS if m.version in applied])
            done = set(applied)
        pending = [m for m in MIGRATIONS if m.version not in done]
        if not exclusive and (held := [m.version for m in pending if m.exclusive]):
            raise ProjectionError(
                f"{self.description}: migration {held[0]} rewrites tables and must run with no "
                "other writer: stop the workers and run `okr-ledger init`, then start them again"
            )
        for migration in pending:
            for statement in migration.statements:
                self._run(statement)
            self._record([migration])
            applied.append(migration.version)
        self._settings = self._read_settings() if settings is None or applied else settings
        if self._settings.get(VIEWS_SETTING) != views_digest():
            if missing := self.missing_tables():
                # A view over a missing table cannot be created: left as they are, so that
                # `rebuild` (which drops everything and creates it anew) can open the store.
                log.warning(
                    "%s: tables missing (%s: a drop cut short); the views are not recreated "
                    "until `okr-ledger rebuild` repairs the store",
                    self.description,
                    ", ".join(missing),
                )
            else:
                for statement in view_statements():
                    self._run(statement)
                self.set_setting(VIEWS_SETTING, views_digest())
        self._migrated = True
        return applied

    def _record(self, migrations: list[Migration]) -> None:
        """Record ``migrations`` as applied, in one insert."""
        self._run(
            f"INSERT INTO {{db}}.{MIGRATIONS_TABLE} SELECT pair.1, pair.2, now64(6) FROM "
            "(SELECT arrayJoin(arrayZip({versions:Array(UInt32)}, {names:Array(String)})) AS pair)",
            {"versions": [m.version for m in migrations], "names": [m.name for m in migrations]},
        )

    def _holds_no_table(self) -> bool:
        """Whether the database holds no table but the record of migrations: a new store, or
        one whose every table was dropped (``rebuild``). Any other (an older store's tables, a
        user's own view) is migrated one by one."""
        found = self.rows(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name != {m:String}",
            {"db": self.database, "m": MIGRATIONS_TABLE},
        )
        return int(found[0][0]) == 0

    def _recorded_versions(self) -> set[int]:
        """The versions recorded, :data:`BASELINE_BEGUN`'s among them."""
        rows = self.rows(f"SELECT DISTINCT version FROM {{db}}.{MIGRATIONS_TABLE}")
        return {int(version) for (version,) in rows}

    def applied_migrations(self) -> list[tuple[int, str, datetime]]:
        rows = self.rows(
            f"SELECT version, any(name), min(applied_at) FROM {{db}}.{MIGRATIONS_TABLE} "
            f"WHERE version != {BASELINE_BEGUN.version} GROUP BY version ORDER BY version"
        )
        return [(int(v), str(n), _aware(a)) for v, n, a in rows]

    def missing_tables(self) -> list[str]:
        """The projector's tables that are not there: a drop cut short (``rebuild`` killed in
        :meth:`drop_all`) leaves the migrations saying the store is complete without them."""
        found = self.rows(
            "SELECT name FROM system.tables WHERE database = {db:String}", {"db": self.database}
        )
        return sorted(set(t.COLUMNS) - {str(name) for (name,) in found})

    def drop_all(self, sync: bool = False) -> None:
        """Drop every view and table of the projections (``rebuild`` recreates them).

        ``sync``: remove them at once. An Atomic database (chDB's, a server's default) keeps a
        dropped table, its data on disk and, in each process that opens the store, its parts in
        memory, for 8 minutes (``database_atomic_delay_before_drop_table_sec``)."""
        suffix = " SYNC" if sync else ""
        for view in (*VIEWS, *PARAMETERIZED_VIEWS.values(), t.CHECK_IN_DAYS_FILLER):
            self._run(f"DROP VIEW IF EXISTS {{db}}.{view}{suffix}")  # not a user's own views
        for table in (*t.COLUMNS, t.CHECK_IN_DAYS, SETTINGS_TABLE, MIGRATIONS_TABLE):
            self._run(f"DROP TABLE IF EXISTS {{db}}.{table}{suffix}")
        self._settings = {}
        self._marked = {}
        self._migrated = False

    # --- writing --------------------------------------------------------------------------

    def insert(self, rows: RowBatch, owners: Mapping[str, tuple[str, int]] | None = None) -> None:
        """Insert each table's rows in one go, the checkpoints last (:meth:`stage`, then
        :meth:`commit`)."""
        self.stage(rows)
        self.commit(owners=owners)

    def stage(self, rows: RowBatch) -> None:
        """Keep ``rows`` (as Arrow) to insert with the next :meth:`commit`; an :data:`APART`
        table's at once if they reach :attr:`part_bytes`, after a ``ledger-begun`` mark (as
        the commit would insert), so that a commit cut short after it is still discarded."""
        staged = self._staged = self._staged or _arrow_tables()
        before = staged.bytes
        for table, batch in rows.items():
            if table == t.CHECKPOINTS:
                for checkpoint in batch:
                    self._checkpoints[checkpoint[0], checkpoint[1]] = checkpoint
            else:
                staged.add(table, batch)
        self._bytes_staged += staged.bytes - before
        last = self._released_at
        due = RELEASE_CODE_AFTER_BYTES if last is None else last + RELEASE_CODE_EVERY_BYTES
        if self.embedded and self._bytes_staged >= due:
            self._released_at = self._bytes_staged
            release_code_pages()
        for table in APART:
            if staged.table_bytes(table) >= self.part_bytes and self._mark_begun(staged):
                self._insert(table, staged.take(table))
                self._inserted.add(table)
                if self.embedded:
                    trim_c_allocator()

    def _mark_begun(self, staged: "ArrowTables") -> bool:
        """Insert a ``ledger-begun`` mark for the orgs staged that need one: not marked by this
        commit yet, and staged beyond the highest mark this store inserted (one set ahead by an
        earlier commit covers this one); whether any org is staged (rows may then go in before
        the commit: every org staged is marked)."""
        ledger = [row for row in self._checkpoints.values() if row[0] == t.LEDGER_STREAM]
        begun = [
            (t.BEGUN_STREAM, row[1], row[2] + self._ahead, row[3])
            for row in ledger
            if row[1] not in self._begun and row[2] > self._marked.get(row[1], 0)
        ]
        if begun:
            staged.add(t.CHECKPOINTS, begun)
            self._insert(t.CHECKPOINTS, staged.take(t.CHECKPOINTS))
            self._note_marks(begun)
        self._begun.update(row[1] for row in ledger)
        return bool(ledger)

    def _note_marks(self, marks: list[tuple[Any, ...]]) -> None:
        for _stream, org, position, _at in marks:
            self._marked[org] = max(position, self._marked.get(org, 0))

    def _marks_ahead(self, checkpoints: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Marks renewed with a commit's checkpoints: :data:`MARK_AHEAD` beyond the org's
        new checkpoint, where less than half of it is left (none when :attr:`_ahead` is 0)."""
        if not self._ahead:
            return []
        return [
            (t.BEGUN_STREAM, row[1], row[2] + self._ahead, row[3])
            for row in checkpoints
            if row[0] == t.LEDGER_STREAM and self._marked.get(row[1], 0) - row[2] < self._ahead // 2
        ]

    @property
    def staged_bytes(self) -> int:
        """The bytes staged for the next commit, less the :data:`APART` tables' (inserted
        when they reach :attr:`part_bytes` on their own)."""
        if not self._staged:
            return 0
        return self._staged.bytes - sum(self._staged.table_bytes(table) for table in APART)

    def commit(self, owners: Mapping[str, tuple[str, int]] | None = None) -> None:
        """Insert what was staged: one insert per table (the audit first; a worker's, with
        ``owners``, at once on :data:`WRITERS`), the checkpoints last.

        If this is cut short, the checkpoints still point before the batches. A ``BEGUN_STREAM``
        checkpoint, inserted before the rows, says where the commit would have ended (a
        worker's is set :data:`MARK_AHEAD` beyond it and covers its next commits): one beyond
        its org's checkpoint says that a commit may have been cut short, and the next catch-up
        removes the rows beyond the checkpoint, in every history table where there are some,
        before it projects those events again (:meth:`discard_unfinished`).

        ``owners``: org -> (owner key, claim), as for :meth:`discard_unfinished`: those
        orgs' checkpoints are inserted only while the claim is their partition's latest
        claim, so that a worker paused in a commit and woken after the next owner's takeover
        cannot move a checkpoint over rows that takeover discarded (its rows, inserted late,
        are identical to the next owner's and collapse).
        """
        staged, self._staged = self._staged or _arrow_tables(), None
        inserted = [*self._inserted, *staged.tables()]
        if owners is not None:
            self._ahead = MARK_AHEAD
        try:
            if staged.tables():  # rows still to go in: orgs not marked yet by an early insert
                self._mark_begun(staged)
        finally:
            checkpoints, self._checkpoints = list(self._checkpoints.values()), {}
            self._begun, self._inserted = set(), set()
        self._insert_tables(staged, together=owners is not None)
        marks = self._marks_ahead(checkpoints)
        claimed: list[tuple[tuple[Any, ...], str, int]] = []
        if owners is not None:
            claimed = [
                (row, *owners[row[1]])
                for row in checkpoints
                if row[0] == t.LEDGER_STREAM and row[1] in owners
            ]
            checkpoints = [
                row for row in checkpoints if row[0] != t.LEDGER_STREAM or row[1] not in owners
            ]
        if claimed:  # one statement: the claimed checkpoints, the others and the marks
            self._insert_if_claimed(claimed, [*checkpoints, *marks])
        elif checkpoints or marks:
            staged.add(t.CHECKPOINTS, [*checkpoints, *marks])
            self._insert(t.CHECKPOINTS, staged.take(t.CHECKPOINTS))
        self._note_marks(marks)
        if self.embedded:  # what this commit's buffers freed: not kept for the next one
            trim_c_allocator()
        filled = [t.CHECK_IN_DAYS] if t.CHECK_INS in inserted else []  # by its view
        self.wake_cleanup([*inserted, *filled, t.CHECKPOINTS])  # the parts merges replaced

    def _insert_if_claimed(
        self,
        claimed: list[tuple[tuple[Any, ...], str, int]],
        others: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        """Insert ledger checkpoints, each with its partition's (owner key, claim), and
        ``others`` (checkpoint rows that need no claim: rejections lanes, marks), in one
        statement that checks the claims itself: a claimed row goes in only while its claim
        is the latest on its partition (as :data:`_STILL_CLAIMED`, for every partition at
        once). A statement costs chDB ~7-15 ms of CPU however few its rows: one, not two."""
        rows = [*((row, key, claim) for row, key, claim in claimed), *((r, "", 0) for r in others)]
        self._run(
            "INSERT INTO {db}.checkpoints (stream, org_id, position, last_recorded_at) "
            "SELECT c.1, c.2, c.3, fromUnixTimestamp64Micro(c.4, 'UTC') FROM "
            "(SELECT arrayJoin(arrayZip({streams:Array(String)}, {orgs:Array(String)}, "
            "{positions:Array(UInt64)}, {recorded:Array(Int64)}, {owners:Array(String)}, "
            "{claims:Array(UInt64)})) AS c) "
            "WHERE c.5 = '' OR (c.5, c.6) IN (SELECT toString(org_id), max(position) "
            "FROM {db}.checkpoints WHERE stream = {owner_stream:String} "
            "AND has({owners:Array(String)}, org_id) GROUP BY org_id)",
            {
                "streams": [row[0] for row, _, _ in rows],
                "orgs": [row[1] for row, _, _ in rows],
                "positions": [row[2] for row, _, _ in rows],
                "recorded": [row[3] for row, _, _ in rows],
                "owners": [key for _, key, _ in rows],
                "claims": [claim for _, _, claim in rows],
                "owner_stream": t.OWNER_STREAM,
            },
        )

    def _insert_tables(self, staged: "ArrowTables", together: bool) -> None:
        """Insert each staged table's rows: ``together``, at once on :data:`WRITERS` more
        connections (chDB only), returning once all have ended (the first failure raised)."""
        tables = staged.tables()
        alone = len(tables) < 2 or WRITERS < 1 or self._target is None or not self.embedded
        if alone or not together:
            for table in tables:
                self._insert(table, staged.take(table))
            return
        if self._writers is None:
            self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="projection-writer")
        streams = [(table, staged.take(table)) for table in tables]
        futures = [self._writers.submit(self._insert_on_writer, *each) for each in streams]
        wait(futures)  # none left running when this returns or raises
        for future in futures:
            future.result()

    def _insert_on_writer(self, table: str, stream: Iterable[bytes]) -> None:
        """:meth:`_insert` on this writer thread's connection (opened on first use)."""
        self._thread_client("writer", self._writer_clients)
        self._insert(table, stream)

    def _thread_client(self, role: str, opened: list[ClickHouseClient]) -> ClickHouseClient:
        """This pool thread's connection for ``role`` (``client``: a reader's, ``writer``),
        opened on first use and kept in ``opened`` (closed with the store)."""
        client: ClickHouseClient | None = getattr(self._local, role, None)
        if client is None:
            assert self._target is not None
            client = connect(self._target)
            client.database = self.database
            with self._readers_lock:
                opened.append(client)
            setattr(self._local, role, client)
        return client

    def _insert(self, table: str, stream: Iterable[bytes]) -> None:
        client: ClickHouseClient = getattr(self._local, "writer", None) or self.client
        try:
            client.raw_insert(
                f"{self.database}.{table}",
                t.COLUMNS[table],
                stream,
                settings=HISTORY_INSERT if self.embedded and table in t.HISTORY else None,
                fmt="ArrowStream",
            )
        except Exception as error:
            message = f"insert into {table} failed: {error}"
            raise self._failure(error, ProjectionError, message) from error

    def positions(self, stream: str = t.LEDGER_STREAM) -> dict[str, int]:
        """The projected position of every org (or of the rejection log, under org '').

        Each org's highest by one sort (a few rows: one per org, and those of commits not
        merged yet), on one thread in chDB: ~1.3 ms of CPU less than a ``GROUP BY`` on all
        of them (3.7 against 2.4 ms on the demo store; ``SELECT 1`` ~1 ms)."""
        rows = self.rows(
            "SELECT org_id, position FROM {db}.checkpoints WHERE stream = {stream:String} "
            "ORDER BY position DESC LIMIT 1 BY org_id",
            {"stream": stream},
            {"max_threads": 1} if self.embedded else None,
        )
        return {str(org): int(position) for org, position in rows}

    def checkpoints(self) -> dict[str, dict[str, int]]:
        """Every stream's positions (see :meth:`positions`), in one read (in chDB on one
        thread: 2.4 -> 1.8 ms on the demo store, the catch-up's check before every read)."""
        found: dict[str, dict[str, int]] = {}
        for stream, org, position in self.rows(
            "SELECT stream, org_id, max(position) FROM {db}.checkpoints GROUP BY stream, org_id"
            + (ONE_THREAD if self.embedded or self.served_chdb else "")
        ):
            found.setdefault(str(stream), {})[str(org)] = int(position)
        return found

    def discard_unfinished(
        self,
        checkpoints: dict[str, dict[str, int]] | None = None,
        owners: Mapping[str, tuple[str, int]] | None = None,
    ) -> list[str]:
        """Remove the history rows of commits cut short (beyond their org's checkpoint);
        return those orgs. ``checkpoints``: what :meth:`checkpoints` returned, if read already.
        ``owners``: org -> (owner key, claim) (:data:`processors.tables.OWNER_STREAM`):
        each ``DELETE`` then checks, in the statement itself, that the claim is still
        the latest owner's, so that one sent by a worker paused since it read the checkpoints
        removes nothing the next owner projected.

        So no history table holds a row twice, even for a while: answers may count rows.
        """
        checkpoints = self.checkpoints() if checkpoints is None else checkpoints
        committed = checkpoints.get(t.LEDGER_STREAM, {})
        unfinished = {
            org: committed.get(org, 0)
            for org, end in checkpoints.get(t.BEGUN_STREAM, {}).items()
            if end > committed.get(org, 0)
        }
        if unfinished:  # a mark set ahead (MARK_AHEAD) is beyond the checkpoint after any commit
            beyond = self._beyond(unfinished)
            unfinished = {org: at for org, at in unfinished.items() if org in beyond}
        # One statement a table for all the orgs (up to BEYOND_ORGS; a DELETE is a mutation
        # that waits for its parts: one a table and org took a failover's takeover of 12 orgs
        # ~20 s).
        by_claim: dict[int | None, dict[str, int]] = {}
        for org, position in unfinished.items():
            claim = None if owners is None else owners[org][1]
            by_claim.setdefault(claim, {})[org] = position
        for claim, positions in by_claim.items():
            for orgs in _chunks(sorted(positions)):
                self._discard(orgs, positions, claim, owners)
        return sorted(unfinished)

    def _discard(
        self,
        orgs: list[str],
        positions: Mapping[str, int],
        claim: int | None,
        owners: Mapping[str, tuple[str, int]] | None,
    ) -> None:
        """Delete ``orgs``' history rows beyond their checkpoints (``positions``), while
        ``claim`` (if not None) is the latest on their partitions, in one statement a table."""
        where, params = _beyond_checkpoint(orgs, positions)
        if owners is not None and claim is not None:
            where = f"({where}) AND {_STILL_CLAIMED}"
            params |= {"orgs": orgs} | _claim_params([owners[org][0] for org in orgs], claim)
        for table in t.HISTORY:
            if table == t.CHECK_INS:
                # A lightweight DELETE drops the projection `by_check_in` from the parts it
                # marks, and such a part never merges with one that has it (migration 10); a
                # mutation rewrites the parts with the projection kept.
                self._run(
                    f"ALTER TABLE {{db}}.{table} DELETE WHERE {where} SETTINGS mutations_sync = 2",
                    params,
                )
            elif table != t.REJECTIONS:
                self._run(f"DELETE FROM {{db}}.{table} WHERE {where}", params)

    def _beyond(self, positions: dict[str, int]) -> set[str]:
        """Those of ``positions``' orgs (org -> checkpoint) that have a history row beyond
        their checkpoint, in one read (per :data:`BEYOND_ORGS` orgs): only their commits were
        cut short (a ``DELETE`` is a mutation, whether or not it matches a row). Its cost does
        not grow with the orgs' history: the primary key of the tables sorted by
        ``(org_id, sequence)``, and the index ``org_sequence`` of the others (migration 12),
        skip every granule whose rows are all at or before their org's checkpoint."""
        found: set[str] = set()
        for orgs in _chunks(sorted(positions)):
            where, params = _beyond_checkpoint(orgs, positions)
            union = " UNION ALL ".join(
                f"SELECT DISTINCT toString(org_id) AS org FROM {{db}}.{table} WHERE {where}"
                for table in t.HISTORY
                if table != t.REJECTIONS
            )
            found |= {
                str(org) for (org,) in self.rows(f"SELECT DISTINCT org FROM ({union})", params)
            }
        return found

    def wake_cleanup(self, tables: "Iterable[str]") -> None:
        """In chDB, have MergeTree's cleanup of ``tables`` remove the parts their merges left
        outdated (``SYSTEM START CLEANUP <table>``: it wakes that table's cleanup, holds no
        lock, changes nothing else; ~0.2-0.6 ms a table). chDB's cleanup did not run by
        itself (chdb-io/chdb#107: "Cleanup thread hasn't seen this part yet"): after a first
        catch-up of 1,000,000 events 425 outdated parts (538 MB) stayed beside 41 active ones,
        on disk and loaded by every process that opened the store. chDB removes an outdated
        part at once (``old_parts_lifetime`` 0), in at most one pass a second per table
        (``merge_tree_clear_old_parts_interval_seconds``): a wake within a second of the last
        pass does nothing, and what is left goes at a later one (the next open at the latest).
        A server cleans up by itself: nothing to do
        (the store's writer may not hold the SYSTEM privilege). A table woken less than a
        second ago is not woken again (its pass would not run; a long-lived process commits
        often: ~0.2 ms a table saved per commit)."""
        if not self.embedded:
            return
        now = time.monotonic()
        for table in tables:
            if now - self._woken.get(table, -CLEANUP_PASS_SECONDS) < CLEANUP_PASS_SECONDS:
                continue
            self._woken[table] = now
            try:
                self.client.command(f"SYSTEM START CLEANUP {self.database}.{table}")
            except Exception as error:  # an engine without it: the parts only stay
                log.debug("chDB did not wake the cleanup of %s: %s", table, error)
                return

    def release_memory(self) -> None:
        """In chDB, hand back to the kernel the memory its allocator (jemalloc) keeps for reuse:
        after a large catch-up, so that the next queries do not add to it (``rebuild``). A
        server's memory is its own: nothing to do."""
        if self.embedded:
            try:
                self.client.command("SYSTEM JEMALLOC PURGE")
            except Exception as error:  # an engine built without jemalloc: nothing kept
                log.debug("chDB did not purge its allocator: %s", error)

    def setting(self, name: str) -> str | None:
        return self._settings.get(name)

    def set_setting(self, name: str, value: str) -> None:
        """Record a setting the views read (e.g. ``over_focus_limit``), if it changed."""
        if self._settings.get(name) == value:
            return
        self._run(
            f"INSERT INTO {{db}}.{SETTINGS_TABLE} VALUES ({{name:String}}, {{value:String}}, "
            "now64(6))",
            {"name": name, "value": value},
        )
        self._settings[name] = value

    def _read_state(self) -> tuple[set[int], dict[str, str]]:
        """The versions of the migrations applied and the settings, in one read (one round
        trip: the views' digest is one of the settings)."""
        rows = self.rows(
            f"SELECT toUInt32(version), '', '' FROM {{db}}.{MIGRATIONS_TABLE} UNION ALL "
            f"SELECT toUInt32(0), name, argMax(value, updated_at) FROM {{db}}.{SETTINGS_TABLE} "
            "GROUP BY name"
        )
        done = {int(version) for version, name, _value in rows if not name}
        return done, {str(name): str(value) for _version, name, value in rows if name}

    def _read_settings(self) -> dict[str, str]:
        rows = self.rows(
            f"SELECT name, argMax(value, updated_at) FROM {{db}}.{SETTINGS_TABLE} GROUP BY name"
        )
        return {str(name): str(value) for name, value in rows}

    # --- reading --------------------------------------------------------------------------

    def rows(
        self, query: str, parameters: Params | None = None, settings: Params | None = None
    ) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._query(query, parameters, settings).result_rows]

    def scan_settings(self) -> Params | None:
        """Settings for a query that reads whole tables (a fingerprint): in chDB, whose memory
        is this process's (``rebuild``'s peak RSS), one thread (each thread of a ``DISTINCT``
        keeps its own set of hashes), blocks of 8,192 rows, and a ``DISTINCT`` that moves its
        set to disk beyond :data:`SCAN_DISTINCT_BYTES` (the same answer: at 1,000,000 events
        the fingerprint of ``audit_events`` took 57 MiB more than before it, now 22, and no
        longer). A server's memory is its own."""
        if not self.embedded:
            return None
        return {
            "max_threads": 1,
            "max_block_size": 8192,
            "max_bytes_before_external_distinct": SCAN_DISTINCT_BYTES,
        }

    def dicts(self, query: str, parameters: Params | None = None) -> list[dict[str, Any]]:
        result = self._query(query, parameters)
        names = list(result.column_names)
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def dicts_together(
        self, statements: Sequence[tuple[str, Params | None]]
    ) -> list[list[dict[str, Any]]]:
        """What :meth:`dicts` gives for each of ``statements``, which depend on no write
        between them: run at once, the first on the store's connection in this thread, the
        others on :data:`READERS` more (opened on first use, each kept for its pool thread
        until :meth:`close`). In chDB only, here or :attr:`served_chdb`: a server's statements
        (the worker's query endpoint runs one at a time) and a store made without a target (a
        client given) run in turn on the one connection."""
        alone = not (self.embedded or self.served_chdb)
        if len(statements) < 2 or self._target is None or alone or READERS < 1:
            return [self.dicts(query, parameters) for query, parameters in statements]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="projection-reader")
        futures = [
            self._pool.submit(self._reader_dicts, query, parameters)
            for query, parameters in statements[1:]
        ]
        try:
            first = self.dicts(*statements[0])
        finally:
            wait(futures)  # none left running on a reader when this returns or raises
        return [first, *(future.result() for future in futures)]

    def _reader_dicts(self, query: str, parameters: Params | None) -> list[dict[str, Any]]:
        client = self._thread_client("client", self.readers)
        result = self._query(query, parameters, client=client)
        names = list(result.column_names)
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def _query(
        self,
        query: str,
        parameters: Params | None,
        settings: Params | None = None,
        client: ClickHouseClient | None = None,
    ) -> Any:
        """Times come back aware, in UTC (as every time column is)."""
        try:
            return (client or self.client).query(
                self._sql(query), parameters=parameters or {}, settings=settings, tz_mode="aware"
            )
        except Exception as error:
            raise self._failure(error, ProjectionQueryError, _first_line(error)) from error

    # --- read-only SQL (``okr-ledger sql``) -----------------------------------------------

    def read_only(self, query: str, limits: QueryLimits) -> ReadOnlyAnswer:
        """Run one statement if :mod:`projections.readonly_sql` accepts it (parsed by this
        engine), with ``readonly = 1`` and ``limits``, on a connection of its own
        (:meth:`_read_only_client`); else :class:`QueryRefusedError`."""
        settings = self._read_only_settings(limits)
        with self._read_only_client() as client:

            def run(sql: str) -> Rows:
                return client.query(sql, settings=settings).result_rows

            checked = self._guard.check(query, run)
            # As checked: not through _sql(), which would rewrite "{db}" inside the statement.
            try:
                if checked.output_format:
                    formatted = client.raw_query(checked.sql, settings=settings)
                    return ReadOnlyAnswer([], [], formatted)
                result = client.query(checked.sql, settings=settings)
            except Exception as error:
                raise ProjectionQueryError(_first_line(error)) from error
        return ReadOnlyAnswer(list(result.column_names), [tuple(r) for r in result.result_rows])

    @contextmanager
    def _read_only_client(self) -> Iterator[ClickHouseClient]:
        """A connection for one read-only statement and its checks, closed after it. In
        chDB, the driver applies a statement's settings to its session with ``SET`` when it
        cannot add a ``SETTINGS`` clause (a statement with ``FORMAT``), and cannot undo
        ``readonly = 1`` (read-only mode forbids it): the store's own connection would stay
        read-only, and its writes fail. And a failed statement's output is handed to the next
        statement on its connection. A store made without a target uses its own."""
        if self._target is None:
            yield self.client
            return
        client = connect(self._target)
        client.database = self.database
        try:
            yield client
        finally:
            client.close()

    def _read_only_settings(self, limits: QueryLimits) -> Params:
        """``readonly = 1`` and the limits, but for those the server holds read-only itself
        (a server in read-only mode, such as the worker's endpoint, applies its own limits;
        clickhouse-connect refuses to send a setting the server reports read-only)."""
        fixed = self.client.server_settings
        return {
            name: value
            for name, value in limits.settings().items()
            if not (name in fixed and bool(getattr(fixed[name], "readonly", False)))
        }

    def export(self, relation: str, fmt: str) -> bytes:
        """One view or table in a ClickHouse output format (Parquet, CSVWithNames...)."""
        if relation not in (*VIEWS, *t.COLUMNS):  # named in SQL: never a caller's text
            raise ProjectionQueryError(f"{relation!r} is not a view or table of the projections")
        try:
            return self.client.raw_query(self._sql(f"SELECT * FROM {{db}}.{relation}"), fmt=fmt)
        except Exception as error:
            raise ProjectionQueryError(_first_line(error)) from error

    def export_at(
        self, view: str, fmt: str, *, as_of: datetime | None, at: datetime | None
    ) -> bytes:
        """One view as of ``as_of`` (recorded time), at ``at`` (business time): its
        parameterized twin (``<view>_at``), in a ClickHouse output format."""
        if view not in PARAMETERIZED_VIEWS:  # named in SQL: never a caller's text
            raise _never(view)
        query = (
            f"SELECT * FROM {{db}}.{PARAMETERIZED_VIEWS[view]}("
            "as_of = {as_of:Nullable(DateTime64(6, 'UTC'))}, "
            "at = {at:Nullable(DateTime64(6, 'UTC'))})"
        )
        try:
            return self.client.raw_query(
                self._sql(query), parameters={"as_of": as_of, "at": at}, fmt=fmt
            )
        except Exception as error:
            raise ProjectionQueryError(_first_line(error)) from error


_STILL_CLAIMED = (
    "{owners:Array(String)}[indexOf({orgs:Array(String)}, org_id)] IN (SELECT toString(org_id) "
    "FROM {db}.checkpoints WHERE stream = {owner_stream:String} GROUP BY org_id "
    "HAVING max(position) = {claim:UInt64})"
)
"""True for a row of one of ``orgs`` while ``claim`` is the latest on that org's partition,
whose owner key (:data:`processors.tables.OWNER_STREAM`) is at the same place in ``owners``:
checked inside the statement that writes."""


def _beyond_checkpoint(orgs: list[str], positions: Mapping[str, int]) -> tuple[str, Params]:
    """A condition on history rows, true for those of ``orgs`` beyond their checkpoints
    (``positions``), and its parameters. An org beyond :data:`READ_WHOLE` has a term of its
    own, ``org_id = o AND sequence > checkpoint``, which ClickHouse's index analysis bounds
    granule by granule (an array looked up by ``org_id`` it cannot); the others share one
    term, whose analysis costs the same however many they are, and are read whole."""
    whole = [org for org in orgs if positions[org] <= READ_WHOLE]
    params: Params = {}
    terms = []
    if whole:
        terms.append(
            "(org_id IN {whole:Array(String)} AND sequence > "
            "{whole_after:Array(UInt64)}[indexOf({whole:Array(String)}, org_id)])"
        )
        params |= {"whole": whole, "whole_after": [positions[org] for org in whole]}
    for n, org in enumerate(org for org in orgs if positions[org] > READ_WHOLE):
        terms.append(f"(org_id = {{o{n}:String}} AND sequence > {{a{n}:UInt64}})")
        params |= {f"o{n}": org, f"a{n}": positions[org]}
    return " OR ".join(terms), params


def _chunks(orgs: list[str]) -> list[list[str]]:
    return [orgs[i : i + BEYOND_ORGS] for i in range(0, len(orgs), BEYOND_ORGS)]


def _claim_params(owners: list[str], claim: int) -> dict[str, Any]:
    return {"owner_stream": t.OWNER_STREAM, "owners": owners, "claim": claim}


def _never(relation: str) -> ProjectionQueryError:
    return ProjectionQueryError(f"{relation!r} is not a view or table of the projections")


def _arrow_tables() -> "ArrowTables":
    """Where rows wait for a commit (pyarrow is imported when a store first writes)."""
    try:
        from projections.arrow_rows import ArrowTables
    except ModuleNotFoundError as error:
        raise MissingExtraError(error.name or "pyarrow", "clickhouse") from error
    return ArrowTables()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
