"""The ledger service on a real SQLite log: atomic batches, restarts, and concurrent writers."""

import sqlite3
from pathlib import Path
from uuid import uuid4

import pytest

from events.chain import verify_chain
from events.ledger import Ledger
from events.outcomes import Accepted, Duplicate, Outcome, Rejection
from events.reasons import ReasonCode
from events.sqlite_log import SqliteEventLog
from schemas.errors import LedgerDamagedError
from tests.builders import NOW, check_ins, org_setup, raw
from tests.ledger.support import describe, key_result, reason_of


def open_ledger(path: Path, batch_size: int = 1000) -> Ledger:
    return Ledger(SqliteEventLog(path), clock=lambda: NOW, batch_size=batch_size)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


def submit_all(ledger: Ledger, lines: list[bytes]) -> list[Outcome]:
    return list(ledger.submit_many((line, n) for n, line in enumerate(lines, start=1)))


def test_submit_stores_the_event_and_returns_its_outcome(path: Path) -> None:
    ledger = open_ledger(path)
    outcome = ledger.submit(org_setup()[0])
    assert isinstance(outcome, Accepted)
    assert list(ledger.log.read()) == [outcome.event]


def test_every_rejection_is_recorded_with_its_line(path: Path) -> None:
    ledger = open_ledger(path, batch_size=2)
    outcomes = submit_all(ledger, [*org_setup()[:2], b"{", raw("Bogus", {})])
    stored = list(ledger.log.rejections())
    assert [(r.reason, r.line) for r in stored] == [
        (ReasonCode.INVALID_JSON, 3),
        (ReasonCode.UNKNOWN_TYPE, 4),
    ]
    assert stored == [o for o in outcomes if isinstance(o, Rejection)]


def test_a_restarted_ledger_knows_what_was_accepted(path: Path) -> None:
    lines = org_setup() + list(check_ins(3))
    submit_all(open_ledger(path), lines)
    again = submit_all(open_ledger(path), lines)
    assert all(isinstance(o, Duplicate) for o in again)
    follow_up = open_ledger(path).submit(next(check_ins(1)))
    assert isinstance(follow_up, Accepted)
    assert follow_up.event.sequence == 11


def test_a_large_number_does_not_break_the_ledger_after_a_restart(path: Path) -> None:
    """1e16 is stored as the integer-looking 10000000000000000 and read back as an int."""
    setup = org_setup()[:-1]
    cents = raw("KeyResultDefined", key_result("kr1", "o1", "increase", 0, 1e16, unit="cents"))
    assert all(isinstance(o, Accepted) for o in submit_all(open_ledger(path), [*setup, cents]))
    restarted = open_ledger(path)
    assert isinstance(restarted.submit(cents), Duplicate)
    records = list(restarted.log.read_records("acme"))
    assert records[-1]["data"]["target"] == 10**16
    assert verify_chain("acme", records).ok


def test_a_stale_writer_redecides_instead_of_forking_the_chain(path: Path) -> None:
    first, second = open_ledger(path), open_ledger(path)  # both see an empty ledger
    setup = org_setup()
    submit_all(first, [setup[0], setup[2]])
    outcome = second.submit(setup[1])  # a theme: first decided as sequence 1, stored as 3
    assert isinstance(outcome, Accepted), describe(outcome)
    assert outcome.event.sequence == 3
    assert verify_chain("acme", second.log.read_records("acme")).ok


def test_a_stale_writer_sees_the_other_writers_events_as_duplicates(path: Path) -> None:
    first, second = open_ledger(path), open_ledger(path)
    setup = org_setup()
    submit_all(first, setup)
    assert [type(o) for o in submit_all(second, setup)] == [Duplicate] * len(setup)


def test_a_stale_writer_does_not_reject_what_the_other_writer_made_valid(path: Path) -> None:
    first, second = open_ledger(path), open_ledger(path)
    setup = org_setup()
    submit_all(first, setup)
    check_in = next(check_ins(1))
    outcome = second.submit(check_in)  # its own state has no key result kr1
    assert isinstance(outcome, Accepted), describe(outcome)
    assert outcome.event.sequence == len(setup) + 1
    duplicate_of_first = second.submit(setup[-1])
    assert isinstance(duplicate_of_first, Duplicate)
    assert list(second.log.rejections()) == []


def test_a_stale_writer_still_records_true_rejections(path: Path) -> None:
    first, second = open_ledger(path), open_ledger(path)
    submit_all(first, org_setup())
    outcome = second.submit(next(check_ins(1, key_result_id="nope")))
    assert reason_of(outcome) is ReasonCode.UNKNOWN_REFERENCE
    assert len(list(first.log.rejections())) == 1


def test_a_sources_retry_with_a_new_event_id_stays_a_duplicate_after_a_restart(
    path: Path,
) -> None:
    check_in = {"key_result_id": "kr1", "value": 12, "confidence": 0.5}
    first = raw("CheckInRecorded", check_in, event_id=str(uuid4()), source_event_id="jira-1")
    stored = submit_all(open_ledger(path), [*org_setup(), first])
    assert isinstance(stored[-1], Accepted)
    retry = raw("CheckInRecorded", check_in, event_id=str(uuid4()), source_event_id="jira-1")
    changed = raw(
        "CheckInRecorded",
        {**check_in, "value": 13},
        event_id=str(uuid4()),
        source_event_id="jira-1",
    )
    again = submit_all(open_ledger(path), [retry, changed])
    assert again[0] == Duplicate(stored[-1].event.event_id, "acme")
    assert reason_of(again[1]) is ReasonCode.CONFLICT
    assert len(list(open_ledger(path).log.read("acme"))) == len(org_setup()) + 1


def test_a_stored_head_that_contradicts_its_event_is_reported_not_retried(path: Path) -> None:
    """The ``hash`` column of the newest event altered behind the ledger's back: a submit
    cannot continue that chain, and says so at once instead of blaming another writer."""
    submit_all(open_ledger(path), org_setup())
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER events_are_immutable")
    db.execute("UPDATE events SET hash = ? WHERE sequence = ?", ("f" * 64, len(org_setup())))
    db.commit()
    db.close()
    ledger = open_ledger(path)
    with pytest.raises(LedgerDamagedError, match="okr-ledger verify"):
        ledger.submit(next(check_ins(1)))
    assert len(list(ledger.log.read("acme"))) == len(org_setup())
