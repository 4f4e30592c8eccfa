"""The sequencer's state kept in SQLite (events/state_store.py): it always equals a fold of the
ledger and decides every submission as the state in memory does; through concurrent writers, a
failed batch, a writer that did not update it, and the upgrade of a file made before it."""

import gc
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import patch

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import sequencer as sequencer_module
from events import state_store as state_store_module
from events.canonical import canonical_bytes, canonical_json
from events.ledger import Ledger
from events.outcomes import Accepted, Duplicate, Outcome, Rejection
from events.reasons import ReasonCode
from events.sequencer import (
    Sequencer,
    decide_batch,
    probe,
    record_digest,
    submission_digest,
)
from events.sqlite_log import _MIGRATIONS, SCHEMA_VERSION, SqliteEventLog
from events.state_store import SqliteStateStore
from schemas.envelope import LedgerEvent
from schemas.errors import LedgerDamagedError
from tests.builders import NOW, chained_events, check_ins, org_setup, raw
from tests.ledger.state_checks import (
    assert_store_is_the_fold,
    check_file,
    fold_of,
    histories,
    in_memory,
    key_result,
    submit,
)
from tests.ledger.support import ledger_file, sqlite_log

SETTINGS = settings(max_examples=40, deadline=None)
CLI = Path(sys.executable).parent / "okr-ledger"


def insert_rows(db: sqlite3.Connection, events: list[LedgerEvent]) -> None:
    """Rows of ``events`` written by hand, as OKR Ledger before schema 3 wrote them."""
    db.executemany(
        "INSERT INTO events (org_id, sequence, event_id, type, occurred_at, recorded_at, hash,"
        " body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.org_id, e.sequence, e.event_id, e.type, e.occurred_at, e.recorded_at, e.hash,
             canonical_json(e.to_record()))
            for e in events
        ],
    )  # fmt: skip


def counted_validations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many submissions are validated from now on (``[n]``, counted as they are): in two
    steps (``Submission``'s validator first) or whole, as ``_parse`` calls either."""
    validated = [0]
    for name in ("_validate_submission", "_validate_whole"):
        real = getattr(sequencer_module, name)

        def counted(*args: Any, real: Any = real, **kwargs: Any) -> Any:
            validated[0] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(sequencer_module, name, counted)
    return validated


def accepted_events(outcomes: list[Outcome]) -> list[LedgerEvent]:
    return [o.event for o in outcomes if isinstance(o, Accepted)]


# --- the property: the state in SQLite is the fold, and decides as the state in memory ---------


@SETTINGS
@given(histories(), st.integers(1, 7), st.booleans())
def test_the_stored_state_is_the_fold_of_the_ledger_and_decides_as_memory(
    lines: list[bytes], batch_size: int, two_writers: bool
) -> None:
    expected = in_memory(lines)
    with ledger_file() as path:
        if two_writers:  # two processes' ledgers taking turns on the file, each its own batches
            writers = [
                Ledger(SqliteEventLog(path), clock=lambda: NOW, batch_size=batch_size)
                for _ in range(2)
            ]
            outcomes: list[Outcome] = []
            for n, start in enumerate(range(0, len(lines), batch_size)):
                chunk = lines[start : start + batch_size]
                outcomes += writers[n % 2].submit_many((line, None) for line in chunk)
            for writer in writers:
                writer.log.close()
        else:
            outcomes = submit(path, lines, batch_size)
        assert outcomes == expected
        check_file(path)
        further = in_memory([*lines, *lines[: len(lines) // 2]])[len(lines) :]
        assert submit(path, lines[: len(lines) // 2], batch_size) == further
        check_file(path)


@SETTINGS
@given(histories(), st.integers(1, 5), st.data())
def test_a_batch_that_fails_anywhere_leaves_the_state_the_fold_of_what_was_stored(
    lines: list[bytes], batch_size: int, data: st.DataObject
) -> None:
    """A crash inside the append's transaction, at a random batch and at a random step of it
    (deciding, storing the events, saving the state): nothing of that batch remains, in the
    events or in the state, and the next run decides as if it had never been tried."""
    cut = data.draw(st.integers(0, len(lines) - 1))
    where = data.draw(st.sampled_from(["view", "record", "_save"]))
    with ledger_file() as path:
        submit(path, lines[:cut], batch_size)
        crashed: list[str] = []

        def crash(self: SqliteStateStore, *args: Any) -> Any:
            crashed.append(where)
            raise RuntimeError("the process dies here")

        with patch.object(SqliteStateStore, where, crash):
            try:
                submit(path, lines[cut:], batch_size)
            except RuntimeError:
                assert crashed == [where]
            else:
                assert not crashed  # no batch got that far (none had an event to save)
        check_file(path)
        assert submit(path, lines[cut:], batch_size) == in_memory(lines)[cut:]
        check_file(path)


@SETTINGS
@given(histories(), st.integers(1, 7))
def test_a_standalone_store_decides_as_memory_and_keeps_the_fold_across_a_reopen(
    lines: list[bytes], batch_size: int
) -> None:
    expected = in_memory(lines)
    with ledger_file() as path:
        outcomes: list[Outcome] = []
        for start in range(0, len(lines), batch_size):
            store = SqliteStateStore.open(path)  # reopened for every batch, as after a restart
            chunk = [(line, None) for line in lines[start : start + batch_size]]
            probes = [probe(line) for line, _ in chunk]
            with store.transaction():
                decided = decide_batch(store.view(probes), chunk, now=NOW, probes=probes)
                store.record([o for o in decided if isinstance(o, Accepted)], {0: start + 1})
            assert store.mark() == {0: start + 1}
            store.close()
            outcomes += decided
        assert outcomes == expected
        store = SqliteStateStore.open(path)
        try:
            fold = Sequencer.from_ledger(accepted_events(outcomes)).state
            assert_store_is_the_fold(store, path, fold)
        finally:
            store.close()


@SETTINGS
@given(histories())
def test_an_accepted_event_is_stored_as_its_canonical_form_and_digest(lines: list[bytes]) -> None:
    for outcome in in_memory(lines):
        if isinstance(outcome, Accepted):
            assert outcome.body == canonical_bytes(outcome.record)
            assert outcome.digest == record_digest(outcome.record)
            assert outcome.event == LedgerEvent.model_validate(outcome.record)


def every_change() -> list[bytes]:
    """A history that changes every kind of entry of the state at least once, in place too."""
    reason = {"reason": "r"}
    setup = org_setup()
    lines = [
        *setup,
        raw("ObjectiveCreated", {**orjson.loads(setup[5])["data"], "objective_id": "o2"}),
        raw(
            "ObjectiveLinked",
            {"objective_id": "o1", "linked_objective_id": "o2", "relation": "contributes_to"},
        ),
        raw("ObjectiveAligned", {"objective_id": "o2", "parent_objective_id": "o1"}),
        raw(
            "ObjectiveUnlinked",
            {"objective_id": "o1", "linked_objective_id": "o2", "relation": "contributes_to"},
        ),
        raw("SwotItemAdded", {"swot_id": "s1", "quadrant": "strength", "text": "x"}),
        raw("SwotItemRemoved", {"swot_id": "s1", **reason}),
        raw("CompetitorNoted", {"competitor_id": "c1", "name": "Rival"}),
        *check_ins(2),
    ]
    first_check_in = in_memory(lines)[-2]
    assert isinstance(first_check_in, Accepted)
    retracted = first_check_in.record["event_id"]
    return [
        *lines,
        raw("CheckInRetracted", {"key_result_id": "kr1", "retracts_event_id": retracted, **reason}),
        raw(
            "CheckInCorrected",
            {"key_result_id": "kr1", "corrects_event_id": retracted, "value": 1, **reason},
        ),  # refused: retracted
        raw("KeyResultTargetRevised", {"key_result_id": "kr1", "target": 60, **reason}),
        raw("KeyResultRetired", {"key_result_id": "kr1", **reason}),
        raw("ObjectiveStatusChanged", {"objective_id": "o2", "status": "abandoned"}),
        raw("ThemeRetired", {"theme_id": "t1", **reason}),
        raw("OrgUnitRetired", {"unit_id": "team", **reason}),
        raw("PeriodClosed", {"period_id": "q4"}),
        raw("StrategyRevised", {"vision": "v2", **reason}),
    ]


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_every_kind_of_change_is_stored_as_the_fold_has_it(tmp_path: Path, batch_size: int) -> None:
    lines = every_change()
    expected = in_memory(lines)
    assert sum(isinstance(o, Accepted) for o in expected) == len(lines) - 1
    path = tmp_path / "ledger.db"
    assert submit(path, lines, batch_size) == expected
    check_file(path)
    with sqlite_log(path) as log:
        db = sqlite3.connect(path)
        assert db.execute("SELECT count(*) FROM sequencer_links").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM sequencer_retracted").fetchone()[0] == 1
        db.close()
        assert fold_of(log).orgs["acme"].objectives["o2"].parent_id == "o1"


# --- failures and other writers ---------------------------------------------------------------


def test_a_batch_that_fails_before_its_commit_leaves_neither_events_nor_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    setup, more = org_setup(), list(check_ins(6))
    retraction = raw(
        "CheckInRetracted",
        {"key_result_id": "kr1", "retracts_event_id": "", "reason": "wrong"},
    )
    submit(path, setup)
    first = submit(path, more[:3])
    document = orjson.loads(retraction)
    document["data"]["retracts_event_id"] = first[0].event.event_id  # type: ignore[union-attr]  # an Accepted
    retraction = orjson.dumps(document)

    def crash(self: SqliteStateStore, events: Any, mark: Any) -> None:
        raise RuntimeError("the process dies here")

    monkeypatch.setattr(SqliteStateStore, "record", crash)
    with pytest.raises(RuntimeError, match="dies"):
        submit(path, [*more[3:], retraction])
    monkeypatch.undo()
    check_file(path)
    with sqlite_log(path) as log:
        assert len(list(log.read("acme"))) == len(setup) + 3
    again = submit(path, [*more, retraction])
    assert again == in_memory([*setup, *more[:3], *more, retraction])[len(setup) + 3 :]
    check_file(path)


def test_an_append_retried_after_a_failed_one_on_the_same_log_stores_the_whole_state(
    tmp_path: Path,
) -> None:
    """What a failed transaction read and applied is dropped with it, not kept for the next."""
    path = tmp_path / "ledger.db"
    events = chained_events("acme", check_in_count=3)
    with sqlite_log(path) as log:
        with (
            patch.object(SqliteStateStore, "_save", side_effect=OSError("disk full")),
            pytest.raises(OSError, match="disk full"),
        ):
            log.append(events)
        log.append(events)
    check_file(path)


def test_what_a_writer_read_before_the_lock_is_read_again_if_another_appended_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    setup = org_setup()
    submit(path, setup[:-1])
    first, second = (Ledger(SqliteEventLog(path), clock=lambda: NOW) for _ in range(2))
    real = first._append_batch

    def interleaved(*args: Any) -> list[Outcome]:
        (other,) = second.submit_many([(setup[-1], None)])  # commits between read and lock
        assert isinstance(other, Accepted)
        return real(*args)

    monkeypatch.setattr(first, "_append_batch", interleaved)
    kept, check_in = first.submit_many([(setup[-1], None), (next(check_ins(1)), None)])
    assert isinstance(kept, Duplicate)
    assert isinstance(check_in, Accepted), check_in  # on the key result the other one made
    for ledger in (first, second):
        ledger.log.close()
    check_file(path)


def test_a_store_left_behind_by_a_writer_that_did_not_update_it_catches_up(
    tmp_path: Path,
) -> None:
    """A writer that appends rows only (an older OKR Ledger during an upgrade, or a hand-made
    row): the next transaction folds what the store lacks before deciding."""
    path = tmp_path / "ledger.db"
    events = chained_events("acme", check_in_count=2)
    submit(path, org_setup("globex"))
    db = sqlite3.connect(path)
    insert_rows(db, events)
    db.commit()
    db.close()
    check_in = next(check_ins(1, key_result_id="kr1"))  # on a key result only those rows made
    (outcome,) = submit(path, [check_in])
    assert isinstance(outcome, Accepted), outcome
    assert outcome.event.sequence == len(events) + 1
    check_file(path)


def test_a_one_line_submit_reads_the_same_whatever_the_size_of_the_ledger(
    tmp_path: Path,
) -> None:
    """Cost independent of size, counted rather than timed: the statements a submit runs, and
    the rows SQLite steps through, do not grow with the number of events stored."""

    def cost(check_in_count: int) -> tuple[int, int]:
        path = tmp_path / f"ledger{check_in_count}.db"
        setup = org_setup()
        submit(path, setup + list(check_ins(check_in_count)), batch_size=500)
        log = SqliteEventLog(path)
        statements: list[str] = []
        steps = [0]

        def step() -> int:
            steps[0] += 1
            return 0

        log._db.set_trace_callback(statements.append)
        log._db.set_progress_handler(step, 100)
        ledger = Ledger(log, clock=lambda: NOW)
        (accepted,) = ledger.submit_many([(next(check_ins(1)), None)])
        (duplicate,) = ledger.submit_many([(setup[0], None)])
        log.close()
        assert isinstance(accepted, Accepted)
        assert isinstance(duplicate, Duplicate)
        return len(statements), steps[0]

    small, large = cost(10), cost(3000)
    assert small[0] == large[0]
    assert large[1] <= small[1] + 20  # a deeper B-tree costs a few steps per lookup, no more


# --- upgrading a file of schema 2 ---------------------------------------------------------------


def schema_2_file(path: Path, events: list[LedgerEvent]) -> None:
    """A ledger as OKR Ledger wrote it before the state was kept (its migrations 1 and 2)."""
    db = sqlite3.connect(path, isolation_level=None)
    for statements in _MIGRATIONS[:2]:
        for statement in statements:
            db.execute(statement)
    insert_rows(db, events)
    db.execute("PRAGMA user_version = 2")
    db.close()


@settings(max_examples=25, deadline=None)
@given(histories(), histories(max_size=12))
def test_a_file_of_schema_2_is_upgraded_by_folding_its_events_once(
    before: list[bytes], after: list[bytes]
) -> None:
    with ledger_file() as path:
        schema_2_file(path, accepted_events(in_memory(before)))
        with sqlite_log(path) as log:
            assert log._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        check_file(path)
        assert submit(path, after, batch_size=3) == in_memory([*before, *after])[len(before) :]
        check_file(path)


def test_an_upgrade_that_meets_a_malformed_event_stops_with_a_clear_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    schema_2_file(path, chained_events("acme"))
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER events_are_immutable")
    db.execute("UPDATE events SET body = '{not json' WHERE sequence = 4")
    db.commit()
    db.close()
    with pytest.raises(LedgerDamagedError, match=r"org 'acme' at sequence 4 is malformed"):
        SqliteEventLog(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2  # nothing of the upgrade kept
    db.close()


# --- byte-identical resubmissions -----------------------------------------------------------------


def test_a_byte_identical_resubmission_is_a_duplicate_without_being_validated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    lines = org_setup() + list(check_ins(20))
    first = submit(path, lines)
    validated = counted_validations(monkeypatch)
    again = submit(path, lines)
    assert again == [Duplicate(o.event.event_id, "acme") for o in first]  # type: ignore[union-attr]  # all Accepted
    assert validated[0] == 0
    reordered = [orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS) for line in lines]
    assert submit(path, reordered) == again  # the same content in other bytes: validated
    assert validated[0] == len(lines)


def test_each_submission_digest_is_stored_as_the_blob_of_its_bytes(tmp_path: Path) -> None:
    """The store binds the digests as bytearrays (cheaper to bind): the same BLOB as bytes."""
    path = tmp_path / "ledger.db"
    lines = org_setup() + list(check_ins(20))
    first = submit(path, lines)
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT e.event_id, typeof(s.digest), s.digest FROM sequencer_submitted s"
            " JOIN events e ON e.position = s.position ORDER BY s.position"
        ).fetchall()
    finally:
        db.close()
    assert rows == [
        (o.event.event_id, "blob", submission_digest(line))  # type: ignore[union-attr]  # all Accepted
        for o, line in zip(first, lines, strict=True)
    ]
    assert all(type(digest) is bytes for _, _, digest in rows)


def test_a_submission_digest_taken_under_another_contract_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the latest version of a type to change, the same bytes could mean other content:
    digests taken under the old contract no longer match, and the full decision is made."""
    path = tmp_path / "ledger.db"
    lines = org_setup()
    first = submit(path, lines)
    monkeypatch.setattr(sequencer_module, "SUBMISSION_DIGEST_DOMAIN", b"another contract")
    validated = counted_validations(monkeypatch)
    assert submit(path, lines) == [Duplicate(o.event.event_id, "acme") for o in first]  # type: ignore[union-attr]  # all Accepted
    assert validated[0] == len(lines)


def test_a_closed_period_and_its_reopening_are_kept_across_restarts(tmp_path: Path) -> None:
    """The embedded store keeps each period's open flag: a new process (a new log on the same
    file) refuses a check-in of a closed period and accepts one after the reopening, as the
    in-memory fold does; a correction by ``source_event_id`` is found there too."""
    path = tmp_path / "ledger.db"
    sourced = raw(
        "CheckInRecorded",
        {"key_result_id": "kr1", "value": 20, "confidence": 0.5},
        source="sheets",
        source_event_id="row-1",
    )
    correct = raw(
        "CheckInCorrected",
        {"key_result_id": "kr1", "corrects_source_event_id": "row-1", "value": 21,
         "reason": "typo"},
        source="sheets",
    )  # fmt: skip
    steps = [
        [*org_setup(), sourced, raw("PeriodClosed", {"period_id": "q4"})],
        [next(check_ins(1)), correct],  # both refused: q4 is closed
        [raw("PeriodReopened", {"period_id": "q4", "reason": "late"})],
        [next(check_ins(1)), correct],  # accepted
    ]
    expected = in_memory([line for batch in steps for line in batch])
    found: list[Outcome] = []
    for batch in steps:
        found.extend(submit(path, batch))  # each batch in a new process
    assert found == expected
    kinds = [type(o).__name__ for o in found[-5:]]
    assert kinds == ["Rejection", "Rejection", "Accepted", "Accepted", "Accepted"]
    check_file(path)


# --- what a batch names is read in bulk -----------------------------------------------------------


def test_the_key_results_a_batch_names_are_read_in_one_query_and_decide_as_memory(
    tmp_path: Path,
) -> None:
    """A batch of check-ins over many key results reads them (and their objectives) with one
    query each, not one per key result; what its lines name is only a hint: a key result
    that does not exist, one retired, and one defined in the same batch are decided as the
    state in memory decides them."""
    path = tmp_path / "ledger.db"
    stored = [*org_setup(), *(key_result(f"kr{i}") for i in range(2, 40))]
    stored.append(raw("KeyResultRetired", {"key_result_id": "kr39", "reason": "dropped"}))
    submit(path, stored)
    batch = [
        *(next(check_ins(1, key_result_id=f"kr{i}")) for i in range(1, 40)),
        next(check_ins(1, key_result_id="nope")),
        key_result("kr40"),
        next(check_ins(1, key_result_id="kr40")),
        raw("CheckInRecorded", {"key_result_id": 7, "value": 1, "confidence": 0.5}),
    ]
    log = SqliteEventLog(path)
    statements: list[str] = []
    log._db.set_trace_callback(statements.append)
    ledger = Ledger(log, clock=lambda: NOW)
    found = list(ledger.submit_many((line, None) for line in batch))
    log.close()
    assert found == in_memory(stored + batch)[len(stored) :]
    kinds = [type(o).__name__ for o in found]
    assert kinds == ["Accepted"] * 38 + ["Rejection"] * 2 + ["Accepted"] * 2 + ["Rejection"]
    reads = [s for s in statements if "FROM sequencer_key_results" in s]
    assert len(reads) == 1, reads
    assert len([s for s in statements if "FROM sequencer_objectives" in s]) == 1
    check_file(path)


def test_a_batch_of_byte_identical_repeats_reads_no_key_result(tmp_path: Path) -> None:
    """Repeats are decided by their submission digests, without the rules: nothing the rules
    would look at is read for them."""
    path = tmp_path / "ledger.db"
    lines = [*org_setup(), *(key_result(f"kr{i}") for i in range(2, 10))]
    lines += [next(check_ins(1, key_result_id=f"kr{i}")) for i in range(1, 10)]
    submit(path, lines)
    log = SqliteEventLog(path)
    statements: list[str] = []
    log._db.set_trace_callback(statements.append)
    again = list(Ledger(log, clock=lambda: NOW).submit_many((line, None) for line in lines))
    log.close()
    assert all(isinstance(outcome, Duplicate) for outcome in again)
    assert not [s for s in statements if "sequencer_key_results" in s or "sequencer_obj" in s]


def test_a_batch_leaves_no_garbage_for_the_cyclic_collector(tmp_path: Path) -> None:
    """What a batch read (its view of the state) is freed when the batch ends, not left in a
    reference cycle for Python's cyclic collector to traverse after every batch."""
    path = tmp_path / "ledger.db"
    submit(path, org_setup())
    log = SqliteEventLog(path)
    ledger = Ledger(log, clock=lambda: NOW)
    lines = [(line, None) for line in check_ins(300)]
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        outcomes = list(ledger.submit_many(lines))
        found = gc.collect()
        left = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        log.close()
    assert [type(o).__name__ for o in outcomes] == ["Accepted"] * 300
    assert found == 0, sorted(left)


# --- what a writer's last commit left, kept between its batches ----------------------------------


def traced(log: SqliteEventLog) -> list[str]:
    """The SQL statements ``log`` runs from now on."""
    statements: list[str] = []
    log._db.set_trace_callback(statements.append)
    return statements


def entity_reads(statements: list[str]) -> list[str]:
    return [
        s
        for s in statements
        if "FROM sequencer_key_results" in s or "FROM sequencer_objectives" in s
    ]


def test_a_writers_next_batch_takes_the_key_results_its_last_commit_left(tmp_path: Path) -> None:
    """The key results and objectives a writer's batch read or wrote are its next batch's
    without a read (nothing was appended meanwhile), and it decides as memory does."""
    path = tmp_path / "ledger.db"
    stored = [*org_setup(), *(key_result(f"kr{i}") for i in range(2, 6))]
    submit(path, stored)
    log = SqliteEventLog(path)
    ledger = Ledger(log, clock=lambda: NOW)
    first = [*(next(check_ins(1, key_result_id=f"kr{i}")) for i in range(1, 6)), key_result("kr6")]
    second = [next(check_ins(1, key_result_id=f"kr{i}")) for i in range(1, 7)]
    statements = traced(log)
    found = list(ledger.submit_many((line, None) for line in first))
    assert entity_reads(statements)  # what the first batch named: read
    statements.clear()
    found += ledger.submit_many((line, None) for line in second)
    log.close()
    assert found == in_memory(stored + first + second)[len(stored) :]
    assert all(isinstance(outcome, Accepted) for outcome in found)
    assert entity_reads(statements) == []
    check_file(path)


CHANGES = {
    "retired": raw("KeyResultRetired", {"key_result_id": "kr1", "reason": "dropped"}),
    "abandoned": raw(
        "ObjectiveStatusChanged", {"objective_id": "o1", "status": "abandoned", "reason": "x"}
    ),
}


def _after_one_batch(
    path: Path, stored: list[bytes], first: list[bytes]
) -> tuple[SqliteEventLog, Ledger, list[Outcome]]:
    """A ledger of ``stored`` at ``path``, open, with the outcomes of the batch ``first`` that
    one writer submitted to it (and so keeps what that batch read)."""
    submit(path, stored)
    log = SqliteEventLog(path)
    ledger = Ledger(log, clock=lambda: NOW)
    return log, ledger, list(ledger.submit_many((line, None) for line in first))


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_what_a_writer_kept_is_read_again_once_another_process_appended(
    tmp_path: Path, change: str
) -> None:
    """Another ``okr-ledger submit`` process retires the key result (or abandons the objective)
    that this writer's last batch kept: its next check-in on it is refused, as memory decides,
    because the log's end moved and what was kept is read again."""
    data_dir = tmp_path / "data"
    path = data_dir / "ledger.db"
    stored, first, later = org_setup(), [next(check_ins(1))], [next(check_ins(1))]
    log, ledger, found = _after_one_batch(path, stored, first)
    other = tmp_path / "other.ndjson"
    other.write_bytes(CHANGES[change] + b"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKR_")}
    done = subprocess.run(
        [str(CLI), "submit", str(other), "--json"],
        env={**env, "OKR_DATA_DIR": str(data_dir)},
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert orjson.loads(done.stdout)["accepted"] == 1
    statements = traced(log)
    found += ledger.submit_many((line, None) for line in later)
    log.close()
    expected = in_memory([*stored, *first, CHANGES[change], *later])
    assert found == [*expected[len(stored) : len(stored) + 1], expected[-1]]
    assert isinstance(found[-1], Rejection)
    assert found[-1].reason is ReasonCode.INVALID_STATE
    assert entity_reads(statements)  # read again, not taken from what was kept
    check_file(path)


def test_what_a_failed_batch_changed_in_what_was_kept_is_not_kept(tmp_path: Path) -> None:
    """A batch retires a key result the writer kept, then fails before its commit: the writer's
    next batch reads the key result again (still active in the ledger) and accepts a check-in
    on it, as memory does without the failed batch."""
    path = tmp_path / "ledger.db"
    stored, first, later = org_setup(), [next(check_ins(1))], [next(check_ins(1))]
    log, ledger, found = _after_one_batch(path, stored, first)
    with (
        patch.object(SqliteStateStore, "_save", side_effect=OSError("disk full")),
        pytest.raises(OSError, match="disk full"),
    ):
        list(ledger.submit_many([(CHANGES["retired"], None)]))
    found += ledger.submit_many((line, None) for line in later)
    log.close()
    assert found == in_memory([*stored, *first, *later])[len(stored) :]
    assert all(isinstance(outcome, Accepted) for outcome in found)
    check_file(path)


def test_what_a_writer_keeps_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``KEPT_MAX`` entries a writer keeps only what its last batch held: its memory does
    not grow with the number of key results it has met."""
    monkeypatch.setattr(state_store_module, "KEPT_MAX", 5)
    path = tmp_path / "ledger.db"
    stored = [*org_setup(), *(key_result(f"kr{i}") for i in range(2, 21))]
    submit(path, stored)
    log = SqliteEventLog(path)
    ledger = Ledger(log, clock=lambda: NOW)
    sizes = []
    for first in range(1, 21, 4):
        batch = [next(check_ins(1, key_result_id=f"kr{i}")) for i in range(first, first + 4)]
        assert all(isinstance(o, Accepted) for o in ledger.submit_many((b, None) for b in batch))
        kept = log.state._kept
        assert kept is not None
        sizes.append(len(kept))
    log.close()
    assert max(sizes) <= 5 + 4 + 1  # the bound, then one batch's key results and objective
    check_file(path)


def test_a_batch_of_byte_identical_repeats_is_decided_without_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every line a byte-identical repeat of a stored event: nothing to store, so the batch is
    decided on the committed rows read before the lock, without a transaction, while another
    writer holds the lock (it would otherwise wait up to the busy timeout, 30 s). A batch with
    one line that is not such a repeat still goes through the lock and the append."""
    path = tmp_path / "ledger.db"
    lines = [*org_setup(), *check_ins(30)]
    first = submit(path, lines, batch_size=7)
    expected = [Duplicate(o.event.event_id, "acme") for o in first]  # type: ignore[union-attr]  # all Accepted
    ledger = Ledger(SqliteEventLog(path), clock=lambda: NOW, batch_size=7)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        assert list(ledger.submit_many((line, None) for line in lines)) == expected
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    appended: list[int] = []
    real = ledger.log.append_decided

    def counted(*args: Any) -> Any:
        appended.append(1)
        return real(*args)

    monkeypatch.setattr(ledger.log, "append_decided", counted)
    assert list(ledger.submit_many((line, None) for line in lines)) == expected
    assert appended == []
    reordered = orjson.dumps(orjson.loads(lines[-1]), option=orjson.OPT_SORT_KEYS)
    mixed = list(ledger.submit_many((line, None) for line in [*lines[-3:-1], reordered]))
    assert mixed == expected[-3:]  # the same content in other bytes: decided under the lock
    assert appended == [1]
    ledger.log.close()
    check_file(path)
