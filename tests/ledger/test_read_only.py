"""``verify``, ``export`` and ``rejections`` on a read-only copy of the data directory (an
auditor's copy): they work, and nothing in the directory is created or changed.

Root ignores permission bits, and tests may run as root: so every test compares the directory
before and after (the commands honour the bits, whoever runs them), and one checks that SQLite
itself refuses writes through the read-only connection, which holds for root too.
"""

import hashlib
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from events.sqlite_log import SqliteEventLog
from schemas.errors import LedgerUnavailableError
from tests.builders import chained_events, raw
from tests.ledger.support import run_cli, store

READERS = (("verify", "--json"), ("export",), ("rejections", "--json"))


def snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every file: mode, modification time and content digest."""
    return {
        path.name: (path.stat().st_mode, path.stat().st_mtime_ns, digest(path))
        for path in sorted(directory.iterdir())
    }


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_read_only(directory: Path) -> None:
    for path in [*directory.iterdir(), directory]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(directory: Path) -> None:
    for path in [directory, *directory.iterdir()]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def original(tmp_path: Path) -> Path:
    """A data directory with two orgs' events and one rejection, written and closed."""
    directory = tmp_path / "original"
    store(directory / "ledger.db", chained_events("acme", "globex", check_in_count=2))
    bad = raw("CheckInRecorded", {"key_result_id": "nope", "value": 1}, org_id="acme")
    assert run_cli(directory, "submit", "-", stdin=bad + b"\n").exit_code == 3
    return directory


@pytest.fixture
def copy_dir() -> Iterator[Path]:
    """An empty directory every user can read (the auditor's copy goes in it)."""
    with tempfile.TemporaryDirectory(prefix="okr-read-only-") as parent:
        Path(parent).chmod(0o755)
        directory = Path(parent) / "copy"
        yield directory
        if directory.exists():
            make_writable(directory)


def outputs(directory: Path) -> dict[str, tuple[int, bytes]]:
    results = {args[0]: run_cli(directory, *args) for args in READERS}
    return {name: (r.exit_code, r.stdout_bytes) for name, r in results.items()}


def test_the_readers_work_on_a_read_only_copy_and_change_nothing(
    original: Path, copy_dir: Path
) -> None:
    shutil.copytree(original, copy_dir)
    assert sorted(p.name for p in copy_dir.iterdir()) == ["ledger.db"]  # closed: no -wal
    expected = outputs(original)
    assert [code for code, _ in expected.values()] == [0, 0, 0]
    make_read_only(copy_dir)
    before = snapshot(copy_dir)
    assert outputs(copy_dir) == expected
    assert snapshot(copy_dir) == before


def test_a_copy_taken_while_a_writer_was_open_reads_its_write_ahead_log(
    original: Path, copy_dir: Path
) -> None:
    """The -wal and -shm files of a live ledger hold events not yet in the main file."""
    late = chained_events("initech")
    writer = SqliteEventLog(original / "ledger.db")
    try:
        writer.append(late)
        shutil.copytree(original, copy_dir)
    finally:
        writer.close()
    assert (copy_dir / "ledger.db-wal").stat().st_size > 0
    make_read_only(copy_dir)
    before = snapshot(copy_dir)
    result = run_cli(copy_dir, "verify", "--json")
    assert result.exit_code == 0
    report = orjson.loads(result.stdout)
    assert {o["org_id"]: o["events"] for o in report["orgs"]} == {
        "acme": 9,
        "globex": 9,
        "initech": len(late),
    }
    assert outputs(copy_dir) == outputs(original)
    assert snapshot(copy_dir) == before


def test_verify_on_several_processes_reads_a_read_only_copy_and_its_write_ahead_log(
    original: Path, copy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker opens the read-only copy itself (events/verify_ranges.py)."""
    writer = SqliteEventLog(original / "ledger.db")
    try:
        writer.append(chained_events("initech"))
        shutil.copytree(original, copy_dir)
    finally:
        writer.close()
    make_read_only(copy_dir)
    before = snapshot(copy_dir)
    serial = run_cli(copy_dir, "verify", "--json")
    monkeypatch.setenv("OKR_VERIFY_PROCESSES", "2")
    monkeypatch.setenv("OKR_VERIFY_RANGE_EVENTS", "2")
    parallel = run_cli(copy_dir, "verify", "--json")
    assert (parallel.exit_code, parallel.stdout) == (serial.exit_code, serial.stdout)
    assert serial.exit_code == 0
    assert snapshot(copy_dir) == before


def test_a_copy_with_a_write_ahead_log_but_no_index_is_a_clear_error(
    original: Path, copy_dir: Path
) -> None:
    writer = SqliteEventLog(original / "ledger.db")
    try:
        writer.append(chained_events("initech"))
        shutil.copytree(original, copy_dir, ignore=shutil.ignore_patterns("*-shm"))
    finally:
        writer.close()
    make_read_only(copy_dir)
    before = snapshot(copy_dir)
    for args in READERS:
        result = run_cli(copy_dir, *args)
        assert result.exit_code == 1
        assert isinstance(result.exception, LedgerUnavailableError)
        assert "ledger.db-wal holds events but there is no ledger.db-shm" in str(result.exception)
    assert snapshot(copy_dir) == before


def test_sqlite_refuses_writes_through_the_read_only_connection(original: Path) -> None:
    """Enforced by the engine, not by our discipline: this holds for root too."""
    log = SqliteEventLog(original / "ledger.db", read_only=True)
    try:
        for statement in (
            "DELETE FROM rejections",
            "INSERT INTO rejections (recorded_at, reason_code, message, details, raw) "
            "VALUES ('', '', '', '', x'')",
            "DROP TRIGGER events_are_immutable",
        ):
            with pytest.raises(sqlite3.OperationalError, match="readonly database"):
                log._db.execute(statement)
    finally:
        log.close()


def test_opening_read_only_creates_no_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerUnavailableError, match="no ledger at"):
        SqliteEventLog(tmp_path / "absent" / "ledger.db", read_only=True)
    assert not (tmp_path / "absent").exists()
