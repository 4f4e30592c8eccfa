"""``verify`` on several processes (events/verify_ranges.py) gives the serial verifier's reports
whatever was done to the stored rows, wherever it is: at, just before and just after a boundary
between two ranges of a chain, in the first or last row of a range, across a boundary (a row
filed under another range's sequence), in a group of whole orgs.

Most cases run the parts in this process (:func:`in_ranges`: the workers' function, the
parent's merge, no pool), the rest on real worker processes (``verify(processes=2)``)."""

import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from events.chain import ChainReport
from events.sqlite_log import SqliteEventLog
from events.verify_ranges import Part, merge, plan, verify_part
from okr_ledger.cli import app
from tests.builders import chained_events
from tests.ledger.byte_tampering import MALFORMED, SAME_VALUE, resealed
from tests.ledger.support import store

T = TypeVar("T")

SIZES = {"acme": 15, "bravo": 7, "globex": 15, "zeta": 7}
"""The template's orgs and their events: two long chains, two short ones between and after."""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ranges") / "ledger.db"
    events = chained_events("acme", "globex", check_in_count=8)
    events += chained_events("bravo", "zeta", check_in_count=0)
    store(path, events)
    assert SqliteEventLog(path, read_only=True).chain_lengths() == SIZES
    return path


# --- damage, done to the file behind the ledger's back ------------------------------------


def _row(db: sqlite3.Connection, org: str, sequence: int) -> tuple[Any, ...]:
    row: tuple[Any, ...] = db.execute(
        "SELECT CAST(body AS BLOB), hash FROM events WHERE org_id = ? AND sequence = ?",
        (org, sequence),
    ).fetchone()
    return row


def _set(db: sqlite3.Connection, org: str, sequence: int, /, **columns: Any) -> None:
    assignments = ", ".join(
        f"{name} = CAST(? AS TEXT)" if name == "body" else f"{name} = ?" for name in columns
    )
    db.execute(
        f"UPDATE events SET {assignments} WHERE org_id = ? AND sequence = ?",
        (*columns.values(), org, sequence),
    )


def _relinked(db: sqlite3.Connection, org: str, sequence: int) -> None:
    """Its link pointed elsewhere and its hash recomputed to match: only the link is wrong."""
    body = resealed({**orjson.loads(_row(db, org, sequence)[0]), "prev_hash": "f" * 64})
    _set(db, org, sequence, body=body, hash=orjson.loads(body)["hash"])


def _content(db: sqlite3.Connection, org: str, sequence: int) -> None:
    """Its content changed, canonically, its hash kept."""
    record = orjson.loads(_row(db, org, sequence)[0])
    record["actor"] += "x"
    _set(db, org, sequence, body=orjson.dumps(record, option=orjson.OPT_SORT_KEYS))


def _edit(edit: Callable[[bytes], bytes]) -> Callable[[sqlite3.Connection, str, int], object]:
    def damage(db: sqlite3.Connection, org: str, sequence: int) -> None:
        _set(db, org, sequence, body=edit(_row(db, org, sequence)[0]))

    return damage


def _swapped(db: sqlite3.Connection, org: str, sequence: int) -> None:
    """Its sequence column and the one of the event before it exchanged."""
    _set(db, org, sequence - 1, sequence=-1)
    _set(db, org, sequence, sequence=sequence - 1)
    db.execute("UPDATE events SET sequence = ? WHERE org_id = ? AND sequence = -1", (sequence, org))


DAMAGE: dict[str, Callable[[sqlite3.Connection, str, int], object]] = {
    "gap": lambda db, org, seq: db.execute(
        "DELETE FROM events WHERE org_id = ? AND sequence = ?", (org, seq)
    ),
    "broken_link": _relinked,
    "bad_hash": _content,
    "hash_column": lambda db, org, seq: _set(db, org, seq, hash="F" * 64),
    "wrong_column": lambda db, org, seq: _set(db, org, seq, type="Other"),
    "non_canonical": _edit(SAME_VALUE["whitespace"]),
    "duplicated_key": _edit(SAME_VALUE["duplicated_key"]),
    "malformed": _edit(MALFORMED["not_json"]),
    "malformed_empty": _edit(MALFORMED["empty"]),
    "swapped_with_previous": _swapped,
    # Text unique to the row: two of them in one org must not break UNIQUE (org_id, sequence).
    "sequence_text": lambda db, org, seq: _set(db, org, seq, sequence=f"x{seq}"),
    "sequence_between": lambda db, org, seq: _set(db, org, seq, sequence=seq - 0.5),
    # Ranges are cut by the number of rows, not by the newest sequence: one huge sequence
    # does not make 10**11 ranges.
    "sequence_huge": lambda db, org, seq: _set(db, org, seq, sequence=10**15 + seq),
    # Without UNIQUE (org_id, sequence): a file rebuilt by hand.
    "duplicate": lambda db, org, seq: db.execute(
        "INSERT INTO events (org_id, sequence, event_id, type, occurred_at, recorded_at, hash,"
        " body) SELECT org_id, sequence, event_id, type, occurred_at, recorded_at, hash, body"
        " FROM events WHERE org_id = ? AND sequence = ?",
        (org, seq),
    ),
    "filed_as_previous": lambda db, org, seq: _set(db, org, seq, sequence=seq - 1),
    "filed_as_next": lambda db, org, seq: _set(db, org, seq, sequence=seq + 1),
}
UNCONSTRAINED = {"duplicate", "filed_as_previous", "filed_as_next"}


def _drop_unique(db: sqlite3.Connection) -> None:
    """The events table rebuilt without its UNIQUE constraints (an index on the same order)."""
    columns = "position, org_id, sequence, event_id, type, occurred_at, recorded_at, hash, body"
    db.executescript(
        "CREATE TABLE loose (position INTEGER PRIMARY KEY AUTOINCREMENT, org_id TEXT, "
        "sequence INTEGER, event_id TEXT, type TEXT, occurred_at TEXT, recorded_at TEXT, "
        f"hash TEXT, body TEXT); INSERT INTO loose ({columns}) SELECT {columns} FROM events; "
        "DROP TABLE events; ALTER TABLE loose RENAME TO events; "
        "CREATE INDEX events_order ON events (org_id, sequence);"
    )


@contextmanager
def damaged(
    template: Path, directory: Path, damage: list[tuple[str, str, int]]
) -> Iterator[SqliteEventLog]:
    """A copy of the ledger with each ``(kind, org, sequence)`` of ``damage`` done, in order
    (to the row filed under that sequence, if there still is one)."""
    path = directory / "damaged.db"
    shutil.copyfile(template, path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("DROP TRIGGER events_are_immutable")
        db.execute("DROP TRIGGER events_are_permanent")
        if any(kind in UNCONSTRAINED for kind, _, _ in damage):
            _drop_unique(db)
        for kind, org, sequence in damage:
            there = "SELECT 1 FROM events WHERE org_id = ? AND sequence = ?"
            if db.execute(there, (org, sequence)).fetchone():  # not moved by earlier damage
                DAMAGE[kind](db, org, sequence)
    finally:
        db.close()
    log = SqliteEventLog(path, read_only=True)
    try:
        yield log
    finally:
        log.close()


def in_ranges(log: SqliteEventLog, range_events: int, org: str | None = None) -> list[ChainReport]:
    """What ``log.verify(org, processes=N, range_events=range_events)`` does, its parts
    verified in this process."""
    lengths = log.chain_lengths(org)
    assert lengths is not None
    parts = plan(lengths, org, range_events)
    assert len(parts) >= 2
    return merge(log, parts, map(verify_part, repeat(str(log.path)), parts))


@pytest.fixture
def slow_here(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """This process's reads of a range slowed down (50 ms each) and noted, so that a worker
    has started before it is done (a worker, a fresh interpreter, is not slowed down)."""
    calls: list[tuple[Any, ...]] = []
    read = SqliteEventLog.sequence_rows

    def slow(self: SqliteEventLog, *args: Any) -> Iterator[list[tuple[Any, ...]]]:
        calls.append(args)
        time.sleep(0.05)
        return read(self, *args)

    monkeypatch.setattr(SqliteEventLog, "sequence_rows", slow)
    return calls


# --- the cases ------------------------------------------------------------------------------

BOUNDARY_ROWS = [1, 4, 5, 6, 8, 9, 10, 13, 15]
"""acme's sequences at, just before and just after the boundaries of ranges of 4 (5, 9, 13)
and of 8 (9), its first and its last."""


def test_the_plan_cuts_long_chains_and_groups_short_ones() -> None:
    assert plan(SIZES, None, 8) == [
        Part("acme", low=1, high=9),
        Part("acme", low=9, high=None),
        Part(None, "acme", "bravo"),
        Part("globex", low=1, high=9),
        Part("globex", low=9, high=None),
        Part(None, "globex", None),
    ]
    assert plan(SIZES, None, 100) == [Part(None, None, None)]
    assert plan({"a": 3, "b": 3, "c": 3}, None, 5) == [Part(None, None, "b"), Part(None, "b")]
    assert plan({"acme": 15}, "acme", 8) == [Part("acme", low=1, high=9), Part("acme", low=9)]
    assert plan({"acme": 15}, "acme", 20) == [Part("acme")]


def test_an_intact_ledger_gives_the_same_reports(template: Path, tmp_path: Path) -> None:
    with damaged(template, tmp_path, []) as log:
        serial = log.verify()
        assert [report.events for report in serial] == list(SIZES.values())
        assert all(report.ok for report in serial)
        for range_events in (1, 2, 4, 7, 8, 14):
            assert in_ranges(log, range_events) == serial
        assert log.verify(processes=2, range_events=4) == serial
        assert log.verify(processes=2, range_events=5) == serial  # under 10 ranges: serial


@pytest.mark.parametrize("kind", sorted(DAMAGE))
@pytest.mark.parametrize("sequence", BOUNDARY_ROWS)
@pytest.mark.parametrize("range_events", [4, 8])
def test_damage_around_a_boundary_gives_the_same_reports(
    template: Path, tmp_path: Path, kind: str, sequence: int, range_events: int
) -> None:
    with damaged(template, tmp_path, [(kind, "acme", sequence)]) as log:
        serial = log.verify()
        assert not serial[0].ok or (kind, sequence) == ("gap", 15)  # a cut chain: its head
        assert in_ranges(log, range_events) == serial
        assert in_ranges(log, range_events, "acme") == log.verify("acme")


@pytest.mark.parametrize("kind", sorted(DAMAGE))
@pytest.mark.parametrize(("org", "sequence"), [("bravo", 1), ("bravo", 7), ("zeta", 4)])
def test_damage_in_a_group_of_whole_orgs_gives_the_same_reports(
    template: Path, tmp_path: Path, kind: str, org: str, sequence: int
) -> None:
    with damaged(template, tmp_path, [(kind, org, sequence)]) as log:
        serial = log.verify()
        assert any(not r.ok for r in serial) or (kind, sequence) == ("gap", SIZES[org])
        assert in_ranges(log, 8) == serial


def test_a_worker_takes_the_parts_this_process_has_not_reached(
    template: Path, tmp_path: Path, slow_here: list[tuple[Any, ...]]
) -> None:
    with damaged(template, tmp_path, []) as log:
        serial = log.verify()
        assert log.verify(processes=2, range_events=1) == serial
    assert 0 < len(slow_here) < sum(SIZES.values())  # this process read some, a worker the rest


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_worker_processes_give_the_same_reports(
    template: Path, tmp_path: Path, kind: str, slow_here: list[tuple[Any, ...]]
) -> None:
    """Damage in the first row of a range and in the last row of the range before it, on
    real worker processes (this process slowed down: a worker takes the first ranges)."""
    with damaged(template, tmp_path, [(kind, "acme", 9), (kind, "globex", 4)]) as log:
        serial = log.verify()
        assert log.verify(processes=2, range_events=4) == serial
        assert log.verify("globex", processes=2, range_events=1) == log.verify("globex")


def test_an_org_column_that_is_not_text_leaves_it_to_the_serial_verifier(
    template: Path, tmp_path: Path
) -> None:
    with damaged(template, tmp_path, []) as log:
        db = sqlite3.connect(log.path)  # its triggers dropped by damaged()
        db.execute(  # a BLOB: the TEXT column keeps it as it is (a number becomes text)
            "UPDATE events SET org_id = CAST(org_id AS BLOB) "
            "WHERE org_id = 'globex' AND sequence = 3"
        )
        db.commit()
        db.close()
        assert log.chain_lengths() is None
        serial = log.verify()
        assert [report.org_id for report in serial if not report.ok] == ["globex"]
        assert log.verify(processes=2, range_events=4) == serial


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(DAMAGE)),
            st.sampled_from(sorted(SIZES)),
            st.integers(2, 15),
        ),
        max_size=3,
        unique_by=lambda damage: damage[1:],
    ),
    st.integers(1, 16),
)
@example([("sequence_text", "acme", 2), ("sequence_text", "acme", 3)], 1)
def test_any_damage_and_range_size_give_the_same_reports(
    template: Path, tmp_path_factory: pytest.TempPathFactory, damage: list[Any], range_events: int
) -> None:
    rows: dict[tuple[str, int], tuple[str, str, int]] = {}
    for kind, org, sequence in damage:  # one damage a row: clamped, two may name one row
        row = (org, min(sequence, SIZES[org]))
        rows.setdefault(row, (kind, *row))
    damage = list(rows.values())
    with damaged(template, tmp_path_factory.mktemp("any"), damage) as log:
        serial = log.verify()
        lengths = log.chain_lengths()
        assert lengths is not None
        if len(plan(lengths, None, range_events)) >= 2:
            assert in_ranges(log, range_events) == serial


def test_the_cli_gives_the_same_answer_on_processes(template: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with damaged(template, data, [("broken_link", "acme", 9), ("gap", "globex", 5)]) as log:
        log.path.rename(data / "ledger.db")
    env = {"OKR_DATA_DIR": str(data), "OKR_VERIFY_RANGE_EVENTS": "4"}
    results = [
        CliRunner().invoke(app, ["verify", "--json"], env={**env, "OKR_VERIFY_PROCESSES": "1"}),
        CliRunner().invoke(app, ["verify", "--json"], env={**env, "OKR_VERIFY_PROCESSES": "2"}),
    ]  # fmt: skip
    assert [result.exit_code for result in results] == [4, 4], results[0].output
    answers = [orjson.loads(result.stdout) for result in results]
    assert answers[0] == answers[1]
    assert answers[0]["first_bad_sequence"] == 9
    assert [org["first_bad_sequence"] for org in answers[0]["orgs"]] == [9, None, 5, None]
