"""Saved projector states, so that a command need not replay the ledger to project what is new.

One SQLite file holds every org's state: a JSON document per org (:mod:`processors.snapshot_codec`)
and each key result's check-ins in chunks of :data:`~processors.state.CHUNK` (typed arrays).
Saving writes the org's document and, of the key results whose check-ins changed since the last
save, only the chunks that changed (the new check-ins: the last chunk, and those after); it
then drops the saved check-ins from memory (:meth:`~processors.state.OrgProjection.evict`).
Loading reads the document; a key result's last chunk when an event records a check-in of it,
and its other chunks only when an event looks further back (a correction, a retraction, a
target revision). So neither the cost of a command that projects a few events nor the memory
of a long catch-up (which saves every :data:`processors.runner.DEFAULT_SAVE_EVERY` events)
grows with the ledger.

A state saved in format 5 (one record of every check-in per key result, in the table
``check_ins``) is read too, and the next save writes it anew in chunks (and deletes it).

A saved state is one org's state after ``position``, with the hash of the ledger event at that
position: the runner uses it only if the ledger still has that event there (same ledger) and
the store's checkpoint is at or beyond it. Everything read is validated: a state that is
unreadable, of another format or org, inconsistent, or whose checksums do not match is
ignored (or, for a key result's check-ins found bad later, makes the runner replay the ledger).
Org ids are values in the file, never file names.

The Kafka worker keeps a file of the same tables per ledger partition
(:class:`PartitionSnapshots`), with each org's chain head and the partition's mark (the offset
it reflects), all saved in one transaction (:meth:`SqliteSnapshots.save_many`).
"""

import fcntl
import logging
import sqlite3
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from events.sqlite_connection import connect_wal
from processors.objectives import fresh_all
from processors.snapshot_codec import (
    LEGACY_FORMAT,
    READ_FORMATS,
    SNAPSHOT_FORMAT,
    chunks_of,
    decode_check_ins,
    decode_chunks,
    decode_org,
    encode_chunk,
    encode_org,
)
from processors.state import CHUNK, CheckInLoader, CheckInLog, OrgProjection, Saved
from schemas.errors import UnusableSnapshotError

log = logging.getLogger(__name__)

FILE_NAME = "projector-state.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orgs (org_id TEXT PRIMARY KEY, format INTEGER NOT NULL, "
    "generation TEXT NOT NULL, document BLOB NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS check_in_chunks (org_id TEXT NOT NULL, "
    "key_result_id TEXT NOT NULL, chunk INTEGER NOT NULL, generation TEXT NOT NULL, "
    "record BLOB NOT NULL, PRIMARY KEY (org_id, key_result_id, chunk))",
    # Format 5's check-ins (one record per key result): read once, deleted by the next save.
    "CREATE TABLE IF NOT EXISTS check_ins (org_id TEXT NOT NULL, key_result_id TEXT NOT NULL, "
    "generation TEXT NOT NULL, record BLOB NOT NULL, PRIMARY KEY (org_id, key_result_id))",
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    org_id: str
    position: int
    event_hash: str
    """The ``hash`` of the org's ledger event at ``position``."""
    state: OrgProjection


class SnapshotStore(Protocol):
    def load(self, org_id: str) -> Snapshot | None: ...

    def save(self, snapshot: Snapshot) -> None: ...


class SqliteSnapshots:
    """Every org's saved state in one SQLite file. Best effort both ways: a state that cannot be
    read or written is only a longer replay."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as error:  # not a database: a cache, so start anew
                log.warning("discarding %s (%s): the state will be saved anew", self.path, error)
                for path in (self.path, *self.path.parent.glob(self.path.name + "-*")):
                    path.unlink(missing_ok=True)
                self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        db = connect_wal(self.path, durable=False)  # a lost save is only a replay
        try:
            for statement in _SCHEMA:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    def _row(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        """The first row ``sql`` selects; ``None`` when there is none, no file (not made),
        or the file cannot be read (logged)."""
        if not self.path.exists():
            return None
        try:
            row: tuple[Any, ...] | None = self._connection().execute(sql, params).fetchone()
        except sqlite3.Error as error:
            log.warning("cannot read the saved state in %s (%s): replaying", self.path, error)
            return None
        return row

    def load(self, org_id: str) -> Snapshot | None:
        row = self._row(
            "SELECT format, generation, document, crc FROM orgs WHERE org_id = ?", (org_id,)
        )
        if row is None:
            return None
        try:
            format_, generation, document, crc = row
            if format_ not in READ_FORMATS:
                raise UnusableSnapshotError(f"it is of format {format_!r}")
            if not isinstance(document, bytes) or zlib.crc32(document) != crc:
                raise UnusableSnapshotError("its document does not match its checksum")
            wire, state = decode_org(document)
            if wire.org_id != org_id:
                raise UnusableSnapshotError(f"it is of another org ({wire.org_id!r})")
            if wire.format != format_:
                raise UnusableSnapshotError(f"its document is of format {wire.format}")
        except UnusableSnapshotError as error:
            log.warning("ignoring the saved state of %r: %s; replaying", org_id, error)
            return None
        except Exception:  # a cache: whatever goes wrong reading it, replaying is correct
            log.exception("cannot decode the saved state of %r: replaying", org_id)
            return None
        if format_ == LEGACY_FORMAT:  # read as it is; the next save writes it anew
            legacy = {kr.key_result_id: (kr.check_ins, kr.crc or 0) for kr in wire.key_results}
            state.loader = self._legacy_loader(state, str(generation), legacy)
        else:
            records = {kr.key_result_id: (kr.check_ins, kr.chunks or []) for kr in wire.key_results}
            state.saved = Saved(str(generation), records)
            state.loader = self._loader(state)
        return Snapshot(org_id, wire.position, wire.event_hash, state)

    def _loader(self, state: OrgProjection) -> CheckInLoader:
        """Reads a key result's chunks as :attr:`OrgProjection.saved` lists them now."""

        def load(key_result_id: str, recent: bool) -> CheckInLog:
            saved = state.saved
            if saved is None:  # the last save failed: what it had saved may be gone
                raise UnusableSnapshotError("the saved state could not be written")
            count, crcs = saved.records.get(key_result_id, (0, []))
            if count == 0:
                return CheckInLog()
            first = count // CHUNK if recent else 0
            try:
                rows = (
                    self._connection()
                    .execute(
                        "SELECT chunk, generation, record FROM check_in_chunks WHERE org_id = ? "
                        "AND key_result_id = ? AND chunk >= ? AND chunk < ? ORDER BY chunk",
                        (state.org_id, key_result_id, first, chunks_of(count)),
                    )
                    .fetchall()
                )
            except sqlite3.Error as error:
                raise UnusableSnapshotError(f"cannot read it: {error}") from None
            expected = list(range(first, chunks_of(count)))
            if [row[0] for row in rows] != expected or any(
                row[1] != saved.generation or not isinstance(row[2], bytes) for row in rows
            ):
                raise UnusableSnapshotError(f"the check-ins of {key_result_id!r} are missing")
            return decode_chunks([row[2] for row in rows], crcs, first, count, len(state.origins))

        return load

    def _legacy_loader(
        self, state: OrgProjection, generation: str, records: dict[str, tuple[int, int]]
    ) -> CheckInLoader:
        """Format 5: a key result's check-ins, all of them, from its one record."""

        def load(key_result_id: str, _recent: bool) -> CheckInLog:
            count, crc = records.get(key_result_id, (0, 0))
            if count == 0 and crc == 0:
                return CheckInLog()
            try:
                row = (
                    self._connection()
                    .execute(
                        "SELECT generation, record FROM check_ins "
                        "WHERE org_id = ? AND key_result_id = ?",
                        (state.org_id, key_result_id),
                    )
                    .fetchone()
                )
            except sqlite3.Error as error:
                raise UnusableSnapshotError(f"cannot read it: {error}") from None
            if row is None or row[0] != generation or not isinstance(row[1], bytes):
                raise UnusableSnapshotError(f"the check-ins of {key_result_id!r} are missing")
            return decode_check_ins(row[1], count, crc, len(state.origins))

        return load

    def save(self, snapshot: Snapshot) -> None:
        """Save the state (what changed since it was last saved here, or all of it), then drop
        from memory the check-ins saved."""
        self.save_many([snapshot])

    def save_many(
        self,
        snapshots: Sequence[Snapshot],
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> bool:
        """:meth:`save` each of ``snapshots`` and run ``also`` in one transaction: all of it is
        saved, or (logged) none of it; whether it was."""
        done: list[tuple[OrgProjection, Saved, list[str]]] = []
        try:
            with self._transaction() as db:
                for snapshot in snapshots:
                    done.append((snapshot.state, *self._write(db, snapshot)))
                if also is not None:
                    also(db)
        except (sqlite3.Error, OSError, UnusableSnapshotError) as error:
            # Rolled back: the file holds what ``saved`` says (or another process's save).
            log.warning("cannot save the projector's state in %s: %s", self.path, error)
            return False
        for state, fresh, changed in done:
            for key_result_id in changed:
                check_ins = state.key_results[key_result_id].check_ins
                if check_ins is not None:
                    check_ins.clean = len(check_ins)
            state.changed.clear()
            state.saved = fresh
            state.loader = self._loader(state)
            state.evict()
        return True

    def _write(self, db: sqlite3.Connection, snapshot: Snapshot) -> tuple[Saved, list[str]]:
        """Write one org's state in the transaction; what it saved, and the key results whose
        check-ins it wrote (the state itself changes only once the transaction commits)."""
        state = snapshot.state
        fresh_all(state)  # the numbers saved are exact
        saved = state.saved
        org_id = snapshot.org_id
        current = db.execute("SELECT generation FROM orgs WHERE org_id = ?", (org_id,)).fetchone()
        anew = saved is None or current is None or current[0] != saved.generation
        if saved is None or anew:
            fresh = Saved(uuid.uuid4().hex)  # not from this file: everything anew
            changed = list(state.key_results)
        else:
            fresh = Saved(saved.generation, dict(saved.records))
            changed = sorted(state.changed)
        for key_result_id in changed:
            self._save_check_ins(db, state, key_result_id, fresh, anew)
        if anew:  # what an earlier save left (of another generation or format)
            db.execute(
                "DELETE FROM check_in_chunks WHERE org_id = ? AND generation != ?",
                (org_id, fresh.generation),
            )
            db.execute("DELETE FROM check_ins WHERE org_id = ?", (org_id,))
        document = encode_org(state, snapshot.event_hash, fresh.records)
        db.execute(
            "INSERT OR REPLACE INTO orgs VALUES (?, ?, ?, ?, ?)",
            (org_id, SNAPSHOT_FORMAT, fresh.generation, document, zlib.crc32(document)),
        )
        return fresh, changed

    def _save_check_ins(
        self, db: sqlite3.Connection, state: OrgProjection, key_result_id: str, saved: Saved,
        anew: bool,
    ) -> None:  # fmt: skip
        """Write the key result's chunks that changed since the last save (all if ``anew``),
        and note them in ``saved``."""
        key_result = state.key_results[key_result_id]
        log_ = state.check_ins_of(key_result) if anew else state.recent(key_result)
        count = len(log_)
        first = 0 if anew else min(log_.clean, count) // CHUNK
        if first * CHUNK < log_.base:  # not in memory (never so: changes load the whole log)
            log_ = state.check_ins_of(key_result)
        crcs = [] if anew else saved.records.get(key_result_id, (0, []))[1][:first]
        if anew:
            db.execute(
                "DELETE FROM check_in_chunks WHERE org_id = ? AND key_result_id = ?",
                (state.org_id, key_result_id),
            )
        for chunk in range(first, chunks_of(count)):
            record = encode_chunk(log_, chunk)
            crcs.append(zlib.crc32(record))
            db.execute(
                "INSERT OR REPLACE INTO check_in_chunks VALUES (?, ?, ?, ?, ?)",
                (state.org_id, key_result_id, chunk, saved.generation, record),
            )
        saved.records[key_result_id] = (count, crcs)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


PARTITION_STATES = "projector-state"
"""The directory, in the worker's data directory, of the projector's partition state files."""
PARTITION_FORMAT = 1
"""Of a partition state file's ``mark``: a file of another is not used (it is written anew)."""
_PARTITION_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS heads (org_id TEXT PRIMARY KEY, sequence INTEGER NOT NULL, "
    "hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mark (id INTEGER PRIMARY KEY CHECK (id = 0), "
    "format INTEGER NOT NULL, partition INTEGER NOT NULL, partitions INTEGER NOT NULL, "
    "next_offset INTEGER NOT NULL, record_sha256 TEXT NOT NULL, newest TEXT NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class PartitionMark:
    """What a partition state file reflects: the ledger partition (of a topic of
    ``partitions``) read up to ``next_offset`` (the next offset to read), whose record at
    ``next_offset`` - 1 has a value of SHA-256 ``record_sha256``; ``newest``: the
    ``recorded_at`` of the newest event read."""

    partition: int
    partitions: int
    next_offset: int
    record_sha256: str
    newest: str = ""


@dataclass(frozen=True, slots=True)
class PartitionSaved:
    """A partition state file as read: its mark, each org's chain head (sequence, hash) and
    each org's saved state (:class:`Snapshot`, at that head)."""

    mark: PartitionMark
    heads: dict[str, tuple[int, str]]
    snapshots: dict[str, Snapshot]


class PartitionSnapshots(SqliteSnapshots):
    """The projector's state of one ledger partition of a Kafka worker: every org's saved
    state (as :class:`SqliteSnapshots` keeps it), their chain heads and the mark
    (:class:`PartitionMark`), all saved in one transaction. Locked (``flock`` of a ``.lock``
    file beside it) while a worker of this machine uses it: a paused earlier owner cannot
    write it under the next one, whose saved check-ins are read from it lazily."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._lock: IO[bytes] | None = None

    def lock(self) -> bool:
        """Hold the file (its lock file); ``False`` when another process holds it, or when
        the lock file cannot be made (logged)."""
        if self._lock is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = self.path.with_name(self.path.name + ".lock").open("ab")
        except OSError as error:
            log.warning("cannot lock %s (%s): not using it", self.path, error)
            return False
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            return False
        self._lock = lock
        return True

    def close(self) -> None:
        """Close the file and let go of its lock."""
        super().close()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _open(self) -> sqlite3.Connection:
        db = super()._open()
        try:
            for statement in _PARTITION_SCHEMA:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    def read(self) -> PartitionSaved | None:
        """The file's mark, heads and states, if it holds a whole and consistent state: every
        org with a head has a readable state at that head (same sequence and hash), and no
        other. ``None`` (logged) otherwise, or when there is no file or no mark."""
        mark = self.mark()
        if mark is None:
            return None
        try:
            db = self._connection()
            heads: dict[str, tuple[int, str]] = {
                org_id: (sequence, hash_)
                for org_id, sequence, hash_ in db.execute(
                    "SELECT org_id, sequence, hash FROM heads"
                )
            }
            orgs = {org_id for (org_id,) in db.execute("SELECT org_id FROM orgs")}
        except sqlite3.Error as error:
            log.warning("cannot read %s (%s): replaying the partition", self.path, error)
            return None
        if orgs != set(heads):
            log.warning("%s: its heads and its states disagree: replaying", self.path)
            return None
        snapshots: dict[str, Snapshot] = {}
        for org_id, (sequence, hash_) in heads.items():
            snapshot = self.load(org_id)
            if snapshot is None or (snapshot.position, snapshot.event_hash) != (sequence, hash_):
                log.warning("%s: the state of %r is not at its head: replaying", self.path, org_id)
                return None
            snapshots[org_id] = snapshot
        return PartitionSaved(mark, heads, snapshots)

    def mark(self) -> PartitionMark | None:
        """The file's mark alone (``None``: none, no file, or unreadable)."""
        row = self._row(
            "SELECT format, partition, partitions, next_offset, record_sha256, newest "
            "FROM mark WHERE id = 0"
        )
        if row is None or row[0] != PARTITION_FORMAT:
            return None
        return PartitionMark(*row[1:])

    def save_partition(self, snapshots: Sequence[Snapshot], mark: PartitionMark) -> bool:
        """Save the states of the orgs that changed since the last save (each at its head:
        :attr:`Snapshot.position` and :attr:`Snapshot.event_hash`) and the new mark, in one
        transaction; whether it was saved (see :meth:`SqliteSnapshots.save_many`)."""

        def heads_and_mark(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR REPLACE INTO heads VALUES (?, ?, ?)",
                [(s.org_id, s.position, s.event_hash) for s in snapshots],
            )
            db.execute(
                "INSERT OR REPLACE INTO mark VALUES (0, ?, ?, ?, ?, ?, ?)",
                (
                    PARTITION_FORMAT,
                    mark.partition,
                    mark.partitions,
                    mark.next_offset,
                    mark.record_sha256,
                    mark.newest,
                ),
            )

        return self.save_many(snapshots, heads_and_mark)

    def remove(self) -> None:
        """Delete the file (not its lock): it is not a state to use, and is written anew."""
        super().close()
        for path in (self.path, *self.path.parent.glob(self.path.name + "-*")):
            path.unlink(missing_ok=True)


def partition_state_file(directory: Path, partition: int) -> Path:
    """The projector's state file of ledger ``partition`` in the worker's data directory:
    named by the partition number only, never by a setting or an input."""
    if type(partition) is not int or partition < 0:
        raise ValueError(f"a partition number is an int >= 0, not {partition!r}")
    return directory / PARTITION_STATES / f"partition-{partition}.sqlite"
