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
from pathlib import Path
from typing import Any

import orjson

from events.canonical import canonical_json
from events.log import ChainHead
from events.outcomes import Rejection
from events.reasons import ReasonCode
from events.stored import StoredBytes, read_event
from schemas.envelope import LedgerEvent
from schemas.errors import LedgerUnavailableError, SequenceConflictError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
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
);
CREATE TABLE IF NOT EXISTS rejections (
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
    raw         BLOB    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_are_immutable BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are immutable'); END;
CREATE TRIGGER IF NOT EXISTS events_are_permanent BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are permanent'); END;
"""


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/or/absolute/path.db`` -> a path (``sqlite:////abs`` also works)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise LedgerUnavailableError(f"not a sqlite URL: {url!r} (expected sqlite:///path)")
    return Path(url[len(prefix) :])


_STORED_COLUMNS = ("org_id", "sequence", "event_id", "type", "occurred_at", "recorded_at", "hash")
"""The columns kept beside each body (indexed, or read without parsing it): copies of its fields."""


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


class SqliteEventLog:
    """:class:`~events.log.EventLog` on a SQLite file."""

    def __init__(self, path: Path | str, *, create: bool = True, read_only: bool = False) -> None:
        self.path = Path(path)
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
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise LedgerUnavailableError(f"cannot open ledger {self.path}: {error}") from error

    @classmethod
    def from_url(
        cls, url: str, *, create: bool = True, read_only: bool = False
    ) -> "SqliteEventLog":
        return cls(path_from_url(url), create=create, read_only=read_only)

    def append(self, events: Sequence[LedgerEvent], rejections: Sequence[Rejection] = ()) -> None:
        if not events and not rejections:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._check_continuity(events)
            db.executemany(
                "INSERT INTO events (org_id, sequence, event_id, type, occurred_at, recorded_at,"
                " hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.org_id,
                        e.sequence,
                        e.event_id,
                        e.type,
                        e.occurred_at,
                        e.recorded_at,
                        e.hash,
                        canonical_json(e.to_record()),
                    )
                    for e in events
                ],
            )
            db.executemany(
                "INSERT INTO rejections (recorded_at, reason_code, message, details, org_id,"
                " event_id, type, source, line, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    )
                    for r in rejections
                ],
            )
        except sqlite3.IntegrityError as error:
            db.execute("ROLLBACK")
            raise SequenceConflictError(f"append refused by the ledger: {error}") from error
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _check_continuity(self, events: Sequence[LedgerEvent]) -> None:
        heads: dict[str, ChainHead] = {}
        for event in events:
            head = heads.get(event.org_id) or self._head(event.org_id)
            if event.sequence != head.sequence + 1 or event.prev_hash != head.hash:
                raise SequenceConflictError(
                    f"org {event.org_id!r}: event {event.sequence} does not continue the chain "
                    f"at {head.sequence}"
                )
            heads[event.org_id] = ChainHead(event.sequence, event.hash)

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
        rows = self._select(
            f"CAST(body AS BLOB), {', '.join(_STORED_COLUMNS)}", org_id, from_sequence, to_sequence
        )
        for body, *columns in rows:
            yield StoredBytes(body or b"", dict(zip(_STORED_COLUMNS, columns, strict=True)))

    def _select(
        self, columns: str, org_id: str | None, from_sequence: int, to_sequence: int | None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of events in (org, sequence) order, fetched in batches."""
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
        while rows := cursor.fetchmany(2000):
            yield from rows

    def heads(self) -> dict[str, ChainHead]:
        rows = self._db.execute(
            "SELECT e.org_id, e.sequence, e.hash FROM events e JOIN "
            "(SELECT org_id, MAX(sequence) AS s FROM events GROUP BY org_id) m "
            "ON e.org_id = m.org_id AND e.sequence = m.s ORDER BY e.org_id"
        ).fetchall()
        return {org: ChainHead(seq, hash_) for org, seq, hash_ in rows}

    def rejections(self) -> Iterator[Rejection]:
        cursor = self._db.execute(
            "SELECT recorded_at, reason_code, message, details, org_id, event_id, type, source,"
            " line, raw FROM rejections ORDER BY id"
        )
        for row in cursor:
            yield Rejection(
                reason=ReasonCode(row[1]),
                message=row[2],
                raw=bytes(row[9]),
                recorded_at=row[0],
                details=orjson.loads(row[3]),
                org_id=row[4],
                event_id=row[5],
                type=row[6],
                source=row[7],
                line=row[8],
            )

    def close(self) -> None:
        self._db.close()
