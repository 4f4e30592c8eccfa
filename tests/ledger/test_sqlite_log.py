"""The event-log contract on SQLite, plus what only SQLite promises."""

import sqlite3
from pathlib import Path

import pytest

from events.chain import event_hash
from events.log import EventLog
from events.sqlite_log import SqliteEventLog, path_from_url
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


def test_a_path_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LedgerUnavailableError, match="cannot open ledger"):
        SqliteEventLog(tmp_path / "file" / "ledger.db")


def test_sqlite_urls_name_relative_and_absolute_paths() -> None:
    assert path_from_url("sqlite:///data/ledger.db") == Path("data/ledger.db")
    assert path_from_url("sqlite:////var/lib/okr/ledger.db") == Path("/var/lib/okr/ledger.db")
    with pytest.raises(LedgerUnavailableError):
        path_from_url("postgres://x")
