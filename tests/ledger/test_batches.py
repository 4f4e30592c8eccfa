"""How ``Ledger.submit_many`` cuts submissions into transactions: ``batch_size`` submissions,
fewer once they hold ``batch_bytes``; the outcomes do not depend on the cut."""

import sqlite3
from pathlib import Path

import pytest

from events.ledger import _STEP, Ledger, ReadLine, _batches
from events.outcomes import Oversized
from events.sqlite_log import PAGE_SIZE, WAL_AUTOCHECKPOINT, SqliteEventLog
from tests.builders import NOW, check_ins, org_setup


def sizes(lines: list[bytes], size: int, max_bytes: int) -> list[int]:
    return [len(batch) for batch in _batches(((line, None) for line in lines), size, max_bytes)]


def test_a_batch_holds_batch_size_submissions() -> None:
    assert sizes([b"x"] * 1000, 300, 10**9) == [300, 300, 300, 100]
    assert sizes([b"x"] * 3, 1, 10**9) == [1, 1, 1]
    assert sizes([], 10, 10) == []


def test_a_batch_ends_early_once_its_bytes_reach_the_bound() -> None:
    line = b"x" * 100
    # looked at every _STEP lines: the bound is crossed within the first step of each batch
    assert sizes([line] * 1000, 4096, 1) == [_STEP] * (1000 // _STEP) + [1000 % _STEP]
    assert sizes([line] * 1000, 4096, 100 * 2 * _STEP) == [2 * _STEP] * 7 + [1000 - 14 * _STEP]
    assert sizes([line] * 1000, 100, 100 * 2 * _STEP) == [100] * 10


def test_an_oversized_submission_counts_only_as_a_line() -> None:
    lines = [(Oversized(b"x" * 100, 10**9, "0" * 64), None)] * 10
    assert [len(batch) for batch in _batches(lines, 4, 1000)] == [4, 4, 2]
    # with a byte bound any counted byte would reach, only the count ends the batch
    many = [(Oversized(b"x" * 100, 10**9, "0" * 64), None)] * 200
    assert [len(batch) for batch in _batches(many, 1000, 1)] == [200]
    mixed: list[ReadLine] = [(b"y" * 10, None), *many[:100]]
    assert [len(batch) for batch in _batches(mixed, 1000, 11)] == [101]


@pytest.mark.parametrize(("batch_size", "batch_bytes"), [(1000, 1), (7, 10**9), (1000, 5000)])
def test_the_outcomes_do_not_depend_on_the_cut(
    tmp_path: Path, batch_size: int, batch_bytes: int
) -> None:
    lines = [*org_setup(), *check_ins(150)]
    one = Ledger(SqliteEventLog(tmp_path / "one.db"), clock=lambda: NOW, batch_size=10**6)
    cut = Ledger(
        SqliteEventLog(tmp_path / "cut.db"),
        clock=lambda: NOW,
        batch_size=batch_size,
        batch_bytes=batch_bytes,
    )
    numbered = [(line, n) for n, line in enumerate(lines, start=1)]
    assert list(cut.submit_many(numbered)) == list(one.submit_many(numbered))
    assert list(cut.log.read_stored()) == list(one.log.read_stored())


def test_the_writer_checkpoints_less_often_and_its_close_leaves_no_wal(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    log = SqliteEventLog(path)
    pragma = log._db.execute
    # about 40 MiB, in pages of the file's size
    assert pragma("PRAGMA wal_autocheckpoint").fetchone() == (WAL_AUTOCHECKPOINT // 2,)
    assert pragma("PRAGMA synchronous").fetchone() == (2,)  # FULL: every commit still syncs
    lines = [(line, n) for n, line in enumerate([*org_setup(), *check_ins(300)], start=1)]
    outcomes = list(Ledger(log, clock=lambda: NOW, batch_size=50).submit_many(lines))
    log.close()
    assert not path.with_name("ledger.db-wal").exists()  # the last close checkpointed it
    reopened = SqliteEventLog(path, read_only=True)
    assert len(list(reopened.read_stored())) == len(outcomes)
    reopened.close()


def test_a_new_ledger_has_larger_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    new = SqliteEventLog(tmp_path / "new.db")
    assert new._db.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,) == (8192,)
    new.close()
    old_path = tmp_path / "old.db"
    old = sqlite3.connect(old_path)  # a file made before: SQLite's default page size, in WAL
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE before (x)")
    old.close()
    old_log = SqliteEventLog(old_path)
    assert old_log._db.execute("PRAGMA page_size").fetchone() == (4096,)
    assert old_log._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (WAL_AUTOCHECKPOINT,)
    lines = [(line, n) for n, line in enumerate([*org_setup(), *check_ins(20)], start=1)]
    assert len(list(Ledger(old_log, clock=lambda: NOW).submit_many(lines))) == len(lines)
    old_log.close()
    reopened = SqliteEventLog(old_path)
    assert reopened._db.execute("PRAGMA page_size").fetchone() == (4096,)
    assert len(list(reopened.read_stored())) == len(lines)
    reopened.close()


def test_submit_batches_gives_each_stored_batchs_outcomes_as_submit_many_does(
    tmp_path: Path,
) -> None:
    """``submit_batches`` (what the CLI's submitter maps) is ``submit_many`` cut by batch: a
    list per transaction, the same outcomes in the same order, the same stored bytes."""
    lines = [(line, n) for n, line in enumerate([*org_setup(), *check_ins(120)], start=1)]
    by_batch = Ledger(SqliteEventLog(tmp_path / "a.db"), clock=lambda: NOW, batch_size=50)
    one_by_one = Ledger(SqliteEventLog(tmp_path / "b.db"), clock=lambda: NOW, batch_size=50)
    batches = list(by_batch.submit_batches(lines))
    assert [len(batch) for batch in batches] == [50, 50, len(lines) - 100]
    assert [o for batch in batches for o in batch] == list(one_by_one.submit_many(lines))
    assert list(by_batch.log.read_stored()) == list(one_by_one.log.read_stored())
    again = [o for batch in by_batch.submit_batches(lines) for o in batch]  # all repeats
    assert [o.status for o in again] == ["duplicate"] * len(lines)
