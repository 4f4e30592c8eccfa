"""The event-log contract on SQLite, plus what only SQLite promises."""

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from events.canonical import canonical_json
from events.chain import event_hash
from events.log import EventLog
from events.outcomes import RAW_LIMIT, Rejection
from events.reasons import ReasonCode
from events.sqlite_log import SCHEMA_VERSION, SqliteEventLog, path_from_url
from schemas.envelope import LedgerEvent
from schemas.errors import LedgerUnavailableError, SequenceConflictError
from tests.builders import chained_events
from tests.contract.event_log import EventLogContract


class TestSqliteEventLog(EventLogContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.path = tmp_path / "ledger.db"

    def open_log(self) -> EventLog:
        return SqliteEventLog(self.path)


class TestSqliteEventLogVerifiedOnProcesses(TestSqliteEventLog):
    """The contract again, ``verify`` on two processes in ranges of one event
    (events/verify_ranges.py; ``OKR_VERIFY_PROCESSES``, ``OKR_VERIFY_RANGE_EVENTS``)."""

    def open_log(self) -> EventLog:
        return SqliteEventLog(self.path, verify_processes=2, verify_range_events=1)


def test_an_event_id_is_stored_once_per_org(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "l.db")
    acme = chained_events("acme")
    log.append(acme)
    head = acme[-1]
    again = {**acme[0].to_record(), "sequence": head.sequence + 1, "prev_hash": head.hash}
    again["hash"] = event_hash(again)
    with pytest.raises(SequenceConflictError):
        log.append([LedgerEvent.from_record(again)])
    other = {**acme[0].to_record(), "org_id": "other"}
    other["hash"] = event_hash(other)
    log.append([LedgerEvent.from_record(other)])  # another org may use the same id
    assert [e.event_id for e in log.read("other")] == [acme[0].event_id]


def test_stored_events_cannot_be_updated_or_deleted(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "l.db")
    log.append(chained_events("acme"))
    db = sqlite3.connect(tmp_path / "l.db")
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        db.execute("UPDATE events SET body = '{}' WHERE sequence = 1")
    with pytest.raises(sqlite3.DatabaseError, match="permanent"):
        db.execute("DELETE FROM events")


def test_the_log_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "l.db")
    db = log._db
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


def test_an_open_waits_out_a_lock_held_longer_than_sqlites_default_wait(tmp_path: Path) -> None:
    """Another process's last-close checkpoint holds the file exclusively; on a loaded machine
    that can outlast Python's default five seconds, which the first statement of an open used
    to get (CI failed a concurrent submit with "database is locked")."""
    path = tmp_path / "ledger.db"
    SqliteEventLog(path)._db.close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("COMMIT")  # the exclusive lock stays until the connection closes
    release = threading.Timer(6.0, holder.close)
    release.start()
    started = time.monotonic()
    try:
        log = SqliteEventLog(path)
    finally:
        release.join()
    assert time.monotonic() - started >= 5.5  # it waited for the lock, and then opened
    assert log.heads() == {}


def test_a_write_lock_held_past_the_busy_timeout_is_the_ledger_unavailable(
    tmp_path: Path,
) -> None:
    """Another writer holding the lock past ``busy_timeout`` is no submission's fault: the
    append says the ledger is unavailable (a retry is worth it; HTTP answers 503), appends
    nothing, and the next append after the lock is freed succeeds."""
    path = tmp_path / "ledger.db"
    log = SqliteEventLog(path)
    log._db.execute("PRAGMA busy_timeout=50")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    events = chained_events("acme")
    with pytest.raises(LedgerUnavailableError, match="locked"):
        log.append(events[:1])
    holder.execute("ROLLBACK")
    holder.close()
    assert log.heads() == {}
    log.append(events[:1])
    assert log.heads()[events[0].org_id].sequence == 1


def test_a_path_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LedgerUnavailableError, match="cannot open ledger"):
        SqliteEventLog(tmp_path / "file" / "ledger.db")


def test_sqlite_urls_name_relative_and_absolute_paths() -> None:
    assert path_from_url("sqlite:///data/ledger.db") == Path("data/ledger.db")
    assert path_from_url("sqlite:////var/lib/okr/ledger.db") == Path("/var/lib/okr/ledger.db")
    with pytest.raises(LedgerUnavailableError):
        path_from_url("postgres://x")


LEDGER_FILE_OF_0_1 = """
CREATE TABLE events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      TEXT    NOT NULL,
    sequence    INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    occurred_at TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    UNIQUE (org_id, sequence),
    UNIQUE (org_id, event_id)
);
CREATE TABLE rejections (
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
CREATE TRIGGER events_are_immutable BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are immutable'); END;
CREATE TRIGGER events_are_permanent BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are permanent'); END;
"""
"""The schema every ledger file written by OKR Ledger 0.1 has (``user_version`` 0)."""


def test_a_ledger_file_of_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    events = chained_events("acme")
    old = sqlite3.connect(path)
    old.executescript(LEDGER_FILE_OF_0_1)
    old.executemany(
        "INSERT INTO events (org_id, sequence, event_id, type, occurred_at, recorded_at, hash,"
        " body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.org_id, e.sequence, e.event_id, e.type, e.occurred_at, e.recorded_at, e.hash,
             canonical_json(e.to_record()))
            for e in events[:3]
        ],
    )  # fmt: skip
    old.execute(
        "INSERT INTO rejections (recorded_at, reason_code, message, details, raw) "
        "VALUES ('2026-11-23T12:00:00Z', 'invalid_json', 'not JSON', '[]', X'7b')"
    )
    old.commit()
    old.close()

    log = SqliteEventLog(path)
    try:
        assert log._db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        columns = {row[1] for row in log._db.execute("PRAGMA table_info(rejections)")}
        assert {"raw_length", "raw_sha256"} <= columns
        (kept,) = log.rejections()
        assert (kept.reason, kept.raw, kept.raw_length, kept.raw_sha256) == (
            ReasonCode.INVALID_JSON, b"{", None, None,
        )  # fmt: skip
        assert list(log.read("acme")) == events[:3]
        big = b"x" * (RAW_LIMIT + 1)
        log.append(
            events[3:],
            [Rejection(ReasonCode.TOO_LARGE, "too large", big, "2026-11-23T12:00:01Z")],
        )
        assert [r.raw_length for r in log.rejections()] == [None, len(big)]
        assert list(log.read("acme")) == events
    finally:
        log.close()
    again = SqliteEventLog(path)  # opening an upgraded file changes nothing
    try:
        assert again._db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert len(list(again.rejections())) == 2
    finally:
        again.close()


def test_a_ledger_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqliteEventLog(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(LedgerUnavailableError, match="newer version"):
        SqliteEventLog(path)
