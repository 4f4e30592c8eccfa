"""The embedded event log: one SQLite file, nothing to install or run.

Durability: WAL with ``synchronous=FULL``, so a committed append survives a power cut, not
only a process crash (``NORMAL`` would be faster but can lose the last commits). Appends are
batched into one transaction by the caller, which keeps the fsync cost per event small.

Readers that must not write (``verify``, ``export``, ``rejections``) open it read-only
(``read_only=True``): SQLite itself refuses writes, and on a read-only copy of the data
directory nothing is created or changed beside the file (see :func:`_connect_read_only`).
"""

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from events.canonical import canonical_bytes
from events.chain import ChainReport, ChainVerifier
from events.log import ChainHead, Decider, Mark, NewEvents
from events.outcomes import Accepted, Rejection
from events.reasons import ReasonCode
from events.sqlite_connection import connect_wal
from events.state_store import LEDGER_TABLES, STATE_TABLES, SqliteStateStore
from events.stored import STORED_COLUMNS, StoredBytes, read_event
from schemas.envelope import LedgerEvent
from schemas.errors import LedgerDamagedError, LedgerUnavailableError, SequenceConflictError

_TABLES_OF_0_1 = (
    """CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      TEXT    NOT NULL,
    sequence    INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    occurred_at TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    body        TEXT    NOT NULL,  -- the whole event, canonical JSON (RFC 8785)
    UNIQUE (org_id, sequence),
    UNIQUE (org_id, event_id)
)""",
    """CREATE TABLE IF NOT EXISTS rejections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT    NOT NULL,
    reason_code TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    details     TEXT    NOT NULL,
    org_id      TEXT,
    event_id    TEXT,
    type        TEXT,
    source      TEXT,
    line        INTEGER,
    raw         BLOB    NOT NULL  -- at most RAW_LIMIT bytes (events.outcomes)
)""",
    """CREATE TRIGGER IF NOT EXISTS events_are_immutable BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are immutable'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_are_permanent BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are permanent'); END""",
)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _TABLES_OF_0_1,  # 1. A file of OKR Ledger 0.1 has these tables and user_version 0.
    (  # 2. A rejection keeps the whole submission's length and SHA-256 when raw is a prefix.
        "ALTER TABLE rejections ADD COLUMN raw_length INTEGER",
        "ALTER TABLE rejections ADD COLUMN raw_sha256 TEXT",
    ),
    (  # 3. The sequencer's state (events.state_store), built from the stored events once.
        *STATE_TABLES,
        *LEDGER_TABLES,
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
"""The file's ``PRAGMA user_version`` once every migration has been applied."""
_PAGE = 256
"""Rejections read at a time (each keeps at most 64 KiB of raw bytes)."""
LANE = ""
"""The rejection log's one lane (rows are numbered in one order)."""


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/or/absolute/path.db`` -> a path (``sqlite:////abs`` also works)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise LedgerUnavailableError(f"not a sqlite URL: {url!r} (expected sqlite:///path)")
    return Path(url[len(prefix) :])


def _writable(path: Path) -> bool:
    """Whether the file and its directory may be written: by the file system and by their
    permission bits, which are honoured here even for root (who could ignore them)."""
    return all(os.access(p, os.W_OK) and p.stat().st_mode & 0o222 for p in (path.parent, path))


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write the ledger, or create or change any file beside it.

    On a writable data directory, ``mode=ro`` (SQLite may add its ``-wal`` and ``-shm`` files,
    as for any reader of a WAL database). On a read-only copy: ``immutable=1`` when there is no
    write-ahead log to read (nothing to lock or recover), and ``readonly_shm`` when the copy
    has the ``-wal`` and ``-shm`` files, whose committed events are read in place.
    """
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    if _writable(path):
        mode = "mode=ro"
    elif not wal.exists() or wal.stat().st_size == 0:
        mode = "immutable=1"
    elif shm.exists():
        mode = "mode=ro&readonly_shm=1"
    else:
        raise LedgerUnavailableError(
            f"cannot open the read-only ledger {path}: {wal.name} holds events but there is no "
            f"{shm.name} beside it (copy the data directory with all its files, or make the "
            "copy writable)"
        )
    uri = f"{path.absolute().as_uri()}?{mode}"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fail here, not mid-read
    return db


PAGE_SIZE = 8192
"""Bytes a page of a new ledger file (SQLite's default: 4,096). A file keeps the page size it
was made with (WAL mode cannot change it), so an existing ledger keeps 4,096."""


WAL_AUTOCHECKPOINT = 10_000
"""Pages of 4 KiB of WAL (about 40 MiB) after which a writer's commit checkpoints it
(SQLite's default: 1,000 pages); as many bytes in a file of larger pages
(:func:`wal_autocheckpoint`)."""


def wal_autocheckpoint(page_size: int) -> int:
    """``PRAGMA wal_autocheckpoint`` for a file of ``page_size``: :data:`WAL_AUTOCHECKPOINT`'s
    bytes in its pages."""
    return WAL_AUTOCHECKPOINT * 4096 // page_size


_CHUNK = 512
"""Rows fetched at a time by :meth:`SqliteEventLog.stored_rows` (a few hundred KiB of bodies)."""

DEFAULT_RANGE_EVENTS = 10_000
"""Events per range of a chain that ``verify`` gives a process (``OKR_VERIFY_RANGE_EVENTS``):
small enough that the processes end together, each range costing ~0.3 ms to start."""


class SqliteEventLog:
    """:class:`~events.log.EventLog` on a SQLite file."""

    def __init__(
        self,
        path: Path | str,
        *,
        create: bool = True,
        read_only: bool = False,
        verify_processes: int = 1,
        verify_range_events: int = DEFAULT_RANGE_EVENTS,
    ) -> None:
        self.path = Path(path)
        self._read_only = read_only
        self.verify_processes, self.verify_range_events = verify_processes, verify_range_events
        # How verify() runs by default (OKR_VERIFY_PROCESSES, OKR_VERIFY_RANGE_EVENTS).
        if (read_only or not create) and not self.path.is_file():
            raise LedgerUnavailableError(
                f"no ledger at {self.path} (submit events first, or set OKR_DATA_DIR or "
                "OKR_LEDGER_URL)"
            )
        if read_only:
            try:
                self._db = _connect_read_only(self.path)
            except sqlite3.Error as error:
                raise LedgerUnavailableError(f"cannot open ledger {self.path}: {error}") from error
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = connect_wal(self.path, durable=True, page_size=PAGE_SIZE)
            # 64 MiB of page cache (2 MiB by default): a batch's inserts into the random-keyed
            # UNIQUE (org_id, event_id) index find its pages in memory.
            self._db.execute("PRAGMA cache_size=-65536")
            # A checkpoint (the WAL's pages copied into the file, and an fsync of it) every
            # ~40 MiB of WAL instead of every 4 MiB: a batch of 1,000 events writes about that
            # much (its random-keyed index pages), so it was one a commit. Commits still sync.
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA wal_autocheckpoint={wal_autocheckpoint(page_size)}")
            self.state = SqliteStateStore.embedded(self._db)
            self._migrate()
        except (OSError, sqlite3.Error) as error:
            raise LedgerUnavailableError(f"cannot open ledger {self.path}: {error}") from error

    def _schema_version(self) -> int:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        return version

    def _migrate(self) -> None:
        """Bring the file to :data:`SCHEMA_VERSION`, one migration after the other, in one
        transaction (all or none; another process that opens the file meanwhile waits)."""
        if self._schema_version() == SCHEMA_VERSION:
            return
        with self._transaction():
            version = self._schema_version()  # another process may have upgraded it first
            if version > SCHEMA_VERSION:
                raise LedgerUnavailableError(
                    f"{self.path} was written by a newer version of OKR Ledger (schema "
                    f"{version}, this one knows {SCHEMA_VERSION}): upgrade okr-ledger"
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    self._db.execute(statement)
            self.state.catch_up()
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` (the write lock, waiting up to ``busy_timeout``) ... ``COMMIT``;
        rolled back on any error, a UNIQUE violation raised as a sequence conflict, and
        SQLite's operational errors (the lock still held after ``busy_timeout``, a full or
        failing disk) as the ledger being unavailable: no submission's fault, worth a retry."""
        self._refuse_if_read_only()
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise self._unavailable(error) from error
        try:
            yield
        except sqlite3.IntegrityError as error:
            db.execute("ROLLBACK")
            self.state.rolled_back()
            raise SequenceConflictError(f"append refused by the ledger: {error}") from error
        except sqlite3.OperationalError as error:
            db.execute("ROLLBACK")
            self.state.rolled_back()
            raise self._unavailable(error) from error
        except BaseException:
            db.execute("ROLLBACK")
            self.state.rolled_back()
            raise
        finally:
            self.state.end()
        try:
            db.execute("COMMIT")
        except BaseException as error:
            self.state.rolled_back()
            if isinstance(error, sqlite3.OperationalError):
                raise self._unavailable(error) from error
            raise
        self.state.committed()

    def _unavailable(self, error: sqlite3.OperationalError) -> LedgerUnavailableError:
        return LedgerUnavailableError(f"cannot write to the ledger {self.path}: {error}")

    @classmethod
    def from_url(
        cls, url: str, *, create: bool = True, read_only: bool = False, **options: int
    ) -> "SqliteEventLog":
        """``options``: ``verify_processes`` and ``verify_range_events`` (see ``__init__``)."""
        return cls(path_from_url(url), create=create, read_only=read_only, **options)

    def state_store(self) -> SqliteStateStore:
        """The sequencer's state in this file, updated by every append (events.state_store)."""
        self._refuse_if_read_only()
        return self.state

    def _refuse_if_read_only(self) -> None:
        if self._read_only:
            raise LedgerUnavailableError(f"{self.path} is open read-only: it cannot be appended to")

    def append(self, events: Sequence[LedgerEvent], rejections: Sequence[Rejection] = ()) -> None:
        if not events and not rejections:
            return
        with self._transaction():
            self._insert(events, rejections)

    def append_decided(self, decider: Decider, mark: Mark) -> Mark:
        # Fold what is new before taking the lock, so that other writers wait only for the few
        # events appended meanwhile. The ledger's own state store needs none of it (its tables
        # are updated by every append, in the same transaction), and is not given it: each
        # event rebuilt for a fold costs ~15 µs, as much again as its writer's own events
        # when two processes write.
        folds = decider.folds
        position = self._fold(decider, mark.get(0, 1)) if folds else mark.get(0, 1)
        with self._transaction():
            if folds:
                position = self._fold(decider, position)
            events, rejections = decider.decide()
            try:
                position = self._insert(events, rejections) or position
            except (SequenceConflictError, sqlite3.IntegrityError) as error:
                # Nothing else can write now: the stored chain contradicts its own events.
                raise LedgerDamagedError(
                    f"the ledger is damaged: {error}; nothing was appended. Run `okr-ledger verify`"
                ) from error
        return {0: position}

    def _fold(self, decider: Decider, position: int) -> int:
        """Fold the events stored at ``position`` and after; the next position to read."""
        cursor = self._db.execute(
            "SELECT position, CAST(body AS BLOB), org_id, sequence FROM events "
            "WHERE position >= ? ORDER BY position",
            (position,),
        )
        while rows := cursor.fetchmany(2000):
            for _, body, org, sequence in rows:
                decider.fold(LedgerEvent.from_record(read_event(body or b"", org, sequence)))
            position = rows[-1][0] + 1
        return position

    def _insert(self, events: NewEvents, rejections: Sequence[Rejection]) -> int | None:
        """Store a batch and bring the state tables up to date with it, in the caller's
        transaction; the position after its last event (None when it has none)."""
        db = self._db
        self.state.begin()  # before the batch's rows exist: it catches up with what is stored
        db.executemany(
            "INSERT INTO events (org_id, sequence, event_id, type, occurred_at, recorded_at,"
            " hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self._rows(events),
        )
        db.executemany(
            "INSERT INTO rejections (recorded_at, reason_code, message, details, org_id,"
            " event_id, type, source, line, raw, raw_length, raw_sha256)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.recorded_at,
                    r.reason.value,
                    r.message,
                    orjson.dumps(r.details).decode(),
                    r.org_id,
                    r.event_id,
                    r.type,
                    r.source,
                    r.line,
                    r.raw,
                    r.raw_length,
                    r.raw_sha256,
                )
                for r in rejections
            ],
        )
        if not events:
            return None
        end: int = db.execute("SELECT max(position) + 1 FROM events").fetchone()[0]
        self.state.record(events, {0: end})
        return end

    def _rows(self, events: NewEvents) -> list[tuple[Any, ...]]:
        """The events' rows (their columns and canonical JSON), in one pass that checks that
        each continues its org's chain: the stored head, then the batch's previous event."""
        heads: dict[str, tuple[int, str]] = {}  # (sequence, hash), as ChainHead
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        unwritten: list[tuple[int, dict[str, Any]]] = []  # events given without their bytes
        for item in events:
            if type(item) is Accepted:
                event, body = item.record, item.body
            else:
                event, body = vars(item), None
            org_id, sequence, prev_hash = event["org_id"], event["sequence"], event["prev_hash"]
            head = heads.get(org_id)
            if head is None:
                stored = self._head(org_id)
                head = (stored.sequence, stored.hash)
            if sequence == head[0] + 1 and prev_hash != head[1]:
                raise SequenceConflictError(
                    f"org {org_id!r}'s newest event (sequence {head[0]}) is filed "
                    f"under hash {head[1]!r}, but its stored content has hash {prev_hash!r}"
                )
            if sequence != head[0] + 1:
                raise SequenceConflictError(
                    f"org {org_id!r}: event {sequence} does not continue the chain at {head[0]}"
                )
            hash_ = event["hash"]
            heads[org_id] = (sequence, hash_)
            if body is None:
                unwritten.append((len(rows), event))
            append(
                (
                    org_id,
                    sequence,
                    event["event_id"],
                    event["type"],
                    event["occurred_at"],
                    event["recorded_at"],
                    hash_,
                    None if body is None else body.decode(),
                )
            )
        for at, event in unwritten:  # once the whole chain is checked, as it always was
            rows[at] = (*rows[at][:-1], canonical_bytes(event).decode())
        return rows

    def _head(self, org_id: str) -> ChainHead:
        row = self._db.execute(
            "SELECT sequence, hash FROM events WHERE org_id = ? ORDER BY sequence DESC LIMIT 1",
            (org_id,),
        ).fetchone()
        return ChainHead(row[0], row[1]) if row else ChainHead(0, "0" * 64)

    def read(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[LedgerEvent]:
        for record in self.read_records(org_id, from_sequence, to_sequence):
            yield LedgerEvent.from_record(record)

    def read_records(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Stored events as plain dicts; a malformed one is a :class:`LedgerDamagedError`."""
        rows = self._select(
            "CAST(body AS BLOB), org_id, sequence", org_id, from_sequence, to_sequence
        )
        for body, org, sequence in rows:
            yield read_event(body or b"", org, sequence)

    def read_stored(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[StoredBytes]:
        """Each row's body bytes exactly as stored, with its indexed columns."""
        for rows in self.stored_rows(org_id, from_sequence, to_sequence):
            yield from map(StoredBytes.from_row, rows)

    def stored_rows(
        self, org_id: str | None = None, from_sequence: int = 1, to_sequence: int | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """What :meth:`read_stored` gives, as plain rows in chunks: each the body (bytes, or
        None) followed by the :data:`~events.stored.STORED_COLUMNS` (``verify``'s fast path:
        ``ChainVerifier.add_rows``)."""
        cursor = self._cursor(
            f"CAST(body AS BLOB), {', '.join(STORED_COLUMNS)}", org_id, from_sequence, to_sequence
        )
        while rows := cursor.fetchmany(_CHUNK):
            yield rows

    def verify(
        self,
        org_id: str | None = None,
        *,
        processes: int | None = None,
        range_events: int | None = None,
    ) -> list[ChainReport]:
        """Every org's chain (or ``org_id``'s), its rows checked as plain tuples: the fast
        path of :meth:`ChainVerifier.add_rows`. With ``processes`` > 1 (default: the
        ``verify_processes`` it was opened with), a ledger of at least ten ranges of
        ``range_events`` events is verified by that many processes,
        each org's chain cut into sequence ranges, with the same reports
        (:func:`events.verify_ranges.verify_in_ranges`)."""
        processes = processes or self.verify_processes
        if processes > 1:
            from events.verify_ranges import verify_in_ranges  # it imports this module

            range_events = range_events or self.verify_range_events
            reports = verify_in_ranges(self, org_id, processes, range_events)
            if reports is not None:
                return reports
        verifier = ChainVerifier()
        if org_id is None:
            verifier.add_rows(self.org_rows(None, None))
        else:
            verifier.add_rows(self.sequence_rows(org_id, 1, None))
        return verifier.reports()

    def chain_lengths(self, org_id: str | None = None) -> dict[str, int] | None:
        """Each org's number of stored events (from sequence 1 on), by org id (``org_id``'s
        alone if given): how ``verify`` cuts chains into ranges. Counted, not taken from the
        newest sequence, which an altered row may make anything (one index scan: ~40 ms for
        1,000,000 events). None when an ``org_id`` column holds anything but text, whose rows
        only the serial ``verify`` reads in order (the first and last ones in the index's
        order say: NULL and numbers sort before text, BLOBs after it)."""
        kinds = self._db.execute(
            "SELECT (SELECT typeof(org_id) FROM events ORDER BY org_id LIMIT 1), "
            "(SELECT typeof(org_id) FROM events ORDER BY org_id DESC LIMIT 1)"
        ).fetchone()
        if any(kind not in ("text", None) for kind in kinds):
            return None
        where, params = ("", ()) if org_id is None else (" AND org_id = ?", (org_id,))
        rows = self._db.execute(
            f"SELECT org_id, count(*) FROM events WHERE sequence >= 1{where} "
            "GROUP BY org_id ORDER BY org_id",
            params,
        )
        return dict(rows.fetchall())

    def org_rows(self, after: str | None, upto: str | None) -> Iterator[list[tuple[Any, ...]]]:
        """:meth:`stored_rows` of the orgs after ``after`` up to ``upto`` (inclusive; None:
        no bound), in the same order; rows of equal sequence (the file altered: no ``UNIQUE``)
        in the order they were stored, whatever the query (the serial ``verify`` and its
        ranges read them alike)."""
        clauses, params = ["sequence >= 1"], []
        if after is not None:
            clauses.append("org_id > ?")
            params.append(after)
        if upto is not None:
            clauses.append("org_id <= ?")
            params.append(upto)
        where = " AND ".join(clauses)
        yield from self._chunks(f"{where} ORDER BY org_id, sequence, position", params)

    def sequence_rows(
        self, org_id: str, low: int, high: int | None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """:meth:`stored_rows` of ``org_id``'s events from sequence ``low`` to before ``high``
        (None: to the end, with any sequence that is not a number, as SQLite orders them)."""
        where, params = "org_id = ? AND sequence >= ?", [org_id, low]
        if high is not None:
            where, params = where + " AND sequence < ?", [*params, high]
        yield from self._chunks(where + " ORDER BY sequence, position", params)

    def hash_before(self, org_id: str, sequence: int) -> Any:
        """The stored ``hash`` column of ``org_id``'s event before ``sequence`` (the newest
        from 1 on), else None."""
        row = self._db.execute(
            "SELECT hash FROM events WHERE org_id = ? AND sequence >= 1 AND sequence < ? "
            "ORDER BY sequence DESC LIMIT 1",
            (org_id, sequence),
        ).fetchone()
        return row[0] if row else None

    def _chunks(self, where: str, params: Sequence[Any]) -> Iterator[list[tuple[Any, ...]]]:
        cursor = self._db.execute(
            f"SELECT CAST(body AS BLOB), {', '.join(STORED_COLUMNS)} FROM events WHERE {where}",
            params,
        )
        while rows := cursor.fetchmany(_CHUNK):
            yield rows

    def _select(
        self, columns: str, org_id: str | None, from_sequence: int, to_sequence: int | None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of events in (org, sequence) order, fetched in batches."""
        cursor = self._cursor(columns, org_id, from_sequence, to_sequence)
        while rows := cursor.fetchmany(2000):
            yield from rows

    def _cursor(
        self, columns: str, org_id: str | None, from_sequence: int, to_sequence: int | None
    ) -> sqlite3.Cursor:
        clauses, params = ["sequence >= ?"], [from_sequence]
        if to_sequence is not None:
            clauses.append("sequence <= ?")
            params.append(to_sequence)
        query = f"SELECT {columns} FROM events WHERE {' AND '.join(clauses)}"
        cursor: sqlite3.Cursor
        if org_id is None:
            cursor = self._db.execute(query + " ORDER BY org_id, sequence", params)
        else:
            cursor = self._db.execute(
                query + " AND org_id = ? ORDER BY sequence", [*params, org_id]
            )
        return cursor

    def heads(self) -> dict[str, ChainHead]:
        # Each org found by one seek on the (org_id, sequence) index, from the last one found
        # (a skip scan), and its head by another: the cost grows with the orgs, not the events.
        rows = self._db.execute(
            "WITH RECURSIVE orgs(org_id) AS (SELECT MIN(org_id) FROM events UNION ALL "
            "SELECT (SELECT MIN(org_id) FROM events WHERE org_id > orgs.org_id) FROM orgs "
            "WHERE orgs.org_id IS NOT NULL) "
            "SELECT e.org_id, e.sequence, e.hash FROM orgs o JOIN events e ON e.org_id = o.org_id "
            "AND e.sequence = (SELECT MAX(sequence) FROM events WHERE org_id = o.org_id) "
            "ORDER BY e.org_id"
        ).fetchall()
        return {org: ChainHead(seq, hash_) for org, seq, hash_ in rows}

    def rejections(self) -> Iterator[Rejection]:
        position = 0
        while page := self.rejections_after(position, _PAGE, lane=LANE):
            yield from (rejection for _, rejection in page)
            position = page[-1][0]

    def rejection_lanes(self) -> list[str]:
        return [LANE]

    def rejections_after(
        self, position: int, limit: int, *, lane: str
    ) -> list[tuple[int, Rejection]]:
        if lane != LANE:
            raise ValueError(f"the SQLite rejection log has one lane ({LANE!r}), not {lane!r}")
        # ``id`` is the position: AUTOINCREMENT numbers rows from 1, and a rolled-back insert
        # gives its numbers back (the counter is part of the transaction); nothing is deleted.
        # A file opened without its upgrade (read-only) may lack the version 2 columns.
        whole = "raw_length, raw_sha256" if self._schema_version() >= 2 else "NULL, NULL"
        rows = self._db.execute(
            "SELECT id, recorded_at, reason_code, message, details, org_id, event_id, type,"
            f" source, line, raw, {whole} FROM rejections WHERE id > ? ORDER BY id LIMIT ?",
            (position, limit),
        ).fetchall()
        return [
            (
                row[0],
                Rejection(
                    reason=ReasonCode(row[2]),
                    message=row[3],
                    raw=bytes(row[10]),
                    recorded_at=row[1],
                    details=orjson.loads(row[4]),
                    org_id=row[5],
                    event_id=row[6],
                    type=row[7],
                    source=row[8],
                    line=row[9],
                    raw_length=row[11],
                    raw_sha256=row[12],
                ),
            )
            for row in rows
        ]

    def close(self) -> None:
        self._db.close()
