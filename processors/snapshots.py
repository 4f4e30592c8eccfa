"""Saved projector states, so that a command need not replay the ledger to project what is new.

One SQLite file holds every org's state: a JSON document per org (:mod:`processors.snapshot_codec`)
and one record of typed arrays per key result's check-ins. Saving writes the org's document and
only the key results whose check-ins changed since the last save; loading reads the document,
and each key result's check-ins only when an event needs them. So the cost of a command that
projects a few events does not grow with the ledger.

A saved state is one org's state after ``position``, with the hash of the ledger event at that
position: the runner uses it only if the ledger still has that event there (same ledger) and
the store's checkpoint is at or beyond it. Everything read is validated: a state that is
unreadable, of another format or org, inconsistent, or whose checksums do not match is
ignored (or, for a key result's check-ins found bad later, makes the runner replay the ledger).
Org ids are values in the file, never file names.
"""

import logging
import sqlite3
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from events.sqlite_connection import connect_wal
from processors.objectives import fresh_all
from processors.snapshot_codec import (
    SNAPSHOT_FORMAT,
    decode_check_ins,
    decode_org,
    encode_check_ins,
    encode_org,
)
from processors.state import CheckInLoader, CheckInLog, OrgProjection, Saved
from schemas.errors import UnusableSnapshotError

log = logging.getLogger(__name__)

FILE_NAME = "projector-state.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orgs (org_id TEXT PRIMARY KEY, format INTEGER NOT NULL, "
    "generation TEXT NOT NULL, document BLOB NOT NULL, crc INTEGER NOT NULL)",
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

    def load(self, org_id: str) -> Snapshot | None:
        if not self.path.exists():
            return None
        try:
            row = (
                self._connection()
                .execute(
                    "SELECT format, generation, document, crc FROM orgs WHERE org_id = ?",
                    (org_id,),
                )
                .fetchone()
            )
        except sqlite3.Error as error:
            log.warning("cannot read the saved state in %s (%s): replaying", self.path, error)
            return None
        if row is None:
            return None
        try:
            format_, generation, document, crc = row
            if format_ != SNAPSHOT_FORMAT:
                raise UnusableSnapshotError(f"it is of format {format_!r}")
            if not isinstance(document, bytes) or zlib.crc32(document) != crc:
                raise UnusableSnapshotError("its document does not match its checksum")
            wire, state = decode_org(document)
            if wire.org_id != org_id:
                raise UnusableSnapshotError(f"it is of another org ({wire.org_id!r})")
        except UnusableSnapshotError as error:
            log.warning("ignoring the saved state of %r: %s; replaying", org_id, error)
            return None
        except Exception:  # a cache: whatever goes wrong reading it, replaying is correct
            log.exception("cannot decode the saved state of %r: replaying", org_id)
            return None
        records = {kr.key_result_id: (kr.check_ins, kr.crc) for kr in wire.key_results}
        state.saved = Saved(str(generation), records)
        state.loader = self._loader(org_id, str(generation), records, len(state.origins))
        return Snapshot(org_id, wire.position, wire.event_hash, state)

    def _loader(
        self, org_id: str, generation: str, records: dict[str, tuple[int, int]], origins: int
    ) -> CheckInLoader:
        def load(key_result_id: str) -> CheckInLog:
            count, crc = records.get(key_result_id, (0, 0))
            if count == 0 and crc == 0:
                return CheckInLog()
            try:
                row = (
                    self._connection()
                    .execute(
                        "SELECT generation, record FROM check_ins "
                        "WHERE org_id = ? AND key_result_id = ?",
                        (org_id, key_result_id),
                    )
                    .fetchone()
                )
            except sqlite3.Error as error:
                raise UnusableSnapshotError(f"cannot read it: {error}") from None
            if row is None or row[0] != generation or not isinstance(row[1], bytes):
                raise UnusableSnapshotError(f"the check-ins of {key_result_id!r} are missing")
            return decode_check_ins(row[1], count, crc, origins)

        return load

    def save(self, snapshot: Snapshot) -> None:
        state = snapshot.state
        fresh_all(state)  # the numbers saved are exact
        saved = state.saved
        try:
            with self._transaction() as db:
                current = db.execute(
                    "SELECT generation FROM orgs WHERE org_id = ?", (snapshot.org_id,)
                ).fetchone()
                if saved is None or current is None or current[0] != saved.generation:
                    saved = Saved(uuid.uuid4().hex)  # not from this file: everything anew
                    db.execute("DELETE FROM check_ins WHERE org_id = ?", (snapshot.org_id,))
                    changed = list(state.key_results)
                else:
                    changed = sorted(state.changed)
                for key_result_id in changed:
                    key_result = state.key_results[key_result_id]
                    log_ = state.check_ins_of(key_result)
                    record = encode_check_ins(log_)
                    saved.records[key_result_id] = (len(log_), zlib.crc32(record))
                    db.execute(
                        "INSERT OR REPLACE INTO check_ins VALUES (?, ?, ?, ?)",
                        (snapshot.org_id, key_result_id, saved.generation, record),
                    )
                document = encode_org(state, snapshot.event_hash, saved.records)
                db.execute(
                    "INSERT OR REPLACE INTO orgs VALUES (?, ?, ?, ?, ?)",
                    (snapshot.org_id, SNAPSHOT_FORMAT, saved.generation, document,
                     zlib.crc32(document)),
                )  # fmt: skip
        except (sqlite3.Error, OSError, UnusableSnapshotError) as error:
            log.warning("cannot save the projector's state in %s: %s", self.path, error)
            state.saved = None
            return
        state.changed.clear()
        state.saved = saved

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
