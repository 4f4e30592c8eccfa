"""``verify`` on every core (events/verification.py) names exactly what it names on one."""

import multiprocessing
from pathlib import Path

import pytest

from events import verification
from events.chain import ChainReport
from events.sqlite_log import SqliteEventLog
from events.verification import verify_stored
from tests.builders import chained_events
from tests.ledger.support import ALTERATIONS, sqlite_log, store, tamper


def reports(path: Path, workers: int) -> list[ChainReport]:
    with sqlite_log(path) as log:
        return verify_stored(log.read_stored(), workers).reports()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(verification, "CHUNK", 7)  # many chunks, in flight at once
    path = tmp_path / "ledger.db"
    store(path, chained_events("acme", "globex", "initech", check_in_count=40))
    return path


def test_an_intact_ledger_verifies_the_same_on_several_processes(ledger: Path) -> None:
    serial = reports(ledger, 1)
    assert all(report.ok for report in serial)
    assert reports(ledger, 2) == serial


@pytest.mark.parametrize("how", ALTERATIONS)
def test_a_tampered_event_is_named_the_same_on_several_processes(ledger: Path, how: str) -> None:
    tamper(ledger, "globex", 30, how)
    tamper(ledger, "initech", 3, how)
    serial = reports(ledger, 1)
    assert [r.first_bad_sequence for r in serial] == [None, 30, 3]
    assert reports(ledger, 2) == serial


def test_a_ledger_too_small_for_a_pool_is_verified_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pool(*args: object) -> None:
        raise AssertionError("a pool was started")

    monkeypatch.setattr(multiprocessing, "get_context", no_pool)
    path = tmp_path / "ledger.db"
    store(path, chained_events("acme"))
    log = SqliteEventLog(path)
    try:
        assert verify_stored(log.read_stored(), workers=2).reports()[0].ok
    finally:
        log.close()
