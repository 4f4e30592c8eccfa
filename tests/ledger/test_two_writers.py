"""Two writers on one SQLite ledger (events/state_store.py, events/sqlite_log.py): a batch read
before the write lock while the other writer appends is decided under the lock on the fold of
the ledger as stored there, as the state in memory decides it, whatever the other writer
changed (what the first kept of its last batch included); the log folds nothing into its own
state store. In process, and with two real processes."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.ledger import Ledger
from events.log import Batch, ChainHead, Mark
from events.outcomes import Accepted, Outcome, Rejection
from events.reasons import ReasonCode
from events.sequencer import Probe, decide_batch, probe
from events.sqlite_log import SqliteEventLog
from events.state import LedgerState, OrgState
from events.state_store import SqliteStateStore
from schemas.envelope import GENESIS_HASH, LedgerEvent
from tests.builders import NOW, check_ins, org_setup, raw
from tests.ledger.state_checks import (
    COMPETITORS,
    KEY_RESULTS,
    OBJECTIVES,
    ORGS,
    PERIODS,
    SWOT,
    THEMES,
    UNITS,
    check_file,
    fold_of,
    histories,
    in_memory,
    key_result,
    submit,
)
from tests.ledger.support import ledger_file

SETTINGS = settings(max_examples=40, deadline=None)
POOLS = {
    "swot": SWOT,
    "themes": THEMES,
    "units": UNITS,
    "periods": PERIODS,
    "objectives": OBJECTIVES,
    "key_results": (*KEY_RESULTS, "kr1", "kr2", "kr3"),
}


def assert_view_is_the_fold(
    view: LedgerState, fold: LedgerState, probes: list[Probe | None]
) -> None:
    """Whatever a batch of ``probes`` may look up in ``view`` (what they name, every entity of
    the small pools, and whatever the view holds) is what ``fold`` holds, absence included."""
    named = [p for p in probes if p is not None and p.org_id is not None]
    for org_id in {*ORGS, *fold.orgs, *(p.org_id for p in named)}:
        assert org_id is not None
        mine, theirs = view.orgs[org_id], fold.orgs.get(org_id) or OrgState()
        assert (mine.last_sequence, mine.last_hash, mine.strategy_defined) == (
            theirs.last_sequence,
            theirs.last_hash,
            theirs.strategy_defined,
        ), org_id
        for name, pool in POOLS.items():
            table, expected = getattr(mine, name), getattr(theirs, name)
            for key in {*pool, *expected, *dict.keys(table)}:
                assert table.get(key) == expected.get(key), (org_id, name, key)
        for key in {*theirs.check_ins, *dict.keys(mine.check_ins)}:
            assert mine.check_ins.get(key) == theirs.check_ins.get(key), (org_id, key)
        links = {*theirs.links, *set.__iter__(mine.links)}
        links |= {(a, b, "depends_on") for a in OBJECTIVES for b in OBJECTIVES}
        for link in links:
            assert (link in mine.links) == (link in theirs.links), (org_id, link)
        for competitor in {*COMPETITORS, *theirs.competitors}:
            assert (competitor in mine.competitors) == (competitor in theirs.competitors)
    ids = {
        (org_id, key)
        for p in named
        if (org_id := p.org_id)
        for key in (p.event_key, p.derived_key)
        if key
    }
    for key in {*ids, *fold.known}:
        assert view.known.get(key) == fold.known.get(key), key
    sources = {p.source for p in named if p.source is not None}
    for source_key in {*sources, *fold.sources}:
        assert view.sources.get(source_key) == fold.sources.get(source_key), source_key


def decide_after_another_writer(
    path: Path,
    stored: list[bytes],
    *,
    first: list[bytes],
    other: list[bytes],
    batch: list[bytes],
    meanwhile: list[bytes],
) -> list[Outcome]:
    """Writer A stores ``first`` (and keeps what it read), writer B ``other``, A reads what
    ``batch`` names, B stores ``meanwhile``, and A takes the lock: the view A decides on (the
    one read before the lock if B appended nothing meanwhile, else one read again) holds
    exactly the fold of the ledger, as a view read afresh in the same transaction does, and
    both decide ``batch`` as memory does. The outcomes (nothing is stored: the transaction is
    rolled back)."""
    submit(path, stored)
    logs = [SqliteEventLog(path) for _ in range(2)]
    mine, theirs = (Ledger(log, clock=lambda: NOW) for log in logs)
    try:
        list(mine.submit_many((line, None) for line in first))
        list(theirs.submit_many((line, None) for line in other))
        store = logs[0].state
        probes = [probe(line) for line in batch]
        store.prepare(probes)
        prepared = store._prepared
        assert prepared is not None
        list(theirs.submit_many((line, None) for line in meanwhile))
        db = logs[0]._db
        db.execute("BEGIN IMMEDIATE")
        try:
            view = store.view(probes)
            # the view read before the lock only while nothing was appended since
            assert (view is prepared[2]) is (store._events.end() == prepared[1])
            fresh_probes = [probe(line) for line in batch]
            fresh = SqliteStateStore.embedded(db).view(fresh_probes)
            fold = fold_of(logs[0])
            assert_view_is_the_fold(view, fold, probes)
            assert_view_is_the_fold(fresh, fold, fresh_probes)
            for key, digest in fresh.submitted_digests.items():
                assert view.submitted_digests.get(key) == digest, key
            expected = in_memory([*stored, *first, *other, *meanwhile, *batch])
            expected = expected[len(expected) - len(batch) :]
            numbered = [(line, None) for line in batch]
            outcomes = decide_batch(view, numbered, now=NOW, probes=probes)
            assert outcomes == expected
            assert decide_batch(fresh, numbered, now=NOW, probes=fresh_probes) == expected
            return outcomes
        finally:
            db.execute("ROLLBACK")
            store.end()
            store.rolled_back()
    finally:
        mine.log.close()
        theirs.log.close()


@SETTINGS
@given(histories(), st.data())
def test_a_batch_read_while_another_writer_appends_is_decided_on_the_fold(
    lines: list[bytes], data: st.DataObject
) -> None:
    """:func:`decide_after_another_writer` on any history cut in four (B's appends meanwhile
    sometimes lines of A's batch: stored by B first)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(lines)), min_size=3, max_size=3)))
    stored, first = lines[: cuts[0]], lines[cuts[0] : cuts[1]]
    other, batch = lines[cuts[1] : cuts[2]], lines[cuts[2] :]
    meanwhile = data.draw(st.lists(st.sampled_from(batch), max_size=4)) if batch else []
    meanwhile += data.draw(st.lists(st.sampled_from(lines), max_size=4))
    with ledger_file() as path:
        decide_after_another_writer(
            path, stored, first=first, other=other, batch=batch, meanwhile=meanwhile
        )


GLOBEX_THEME = raw("ThemeAdded", {"theme_id": "t1", "name": "Customers"}, org_id="globex")
CHANGED = {
    "retired": (
        raw("KeyResultRetired", {"key_result_id": "kr1", "reason": "dropped"}),
        next(check_ins(1)),
        ReasonCode.INVALID_STATE,
    ),
    "abandoned": (
        raw("ObjectiveStatusChanged", {"objective_id": "o1", "status": "abandoned", "reason": "x"}),
        next(check_ins(1)),
        ReasonCode.INVALID_STATE,
    ),
    "defined": (key_result("kr9"), next(check_ins(1, key_result_id="kr9")), None),
    "strategy": (
        raw("StrategyDefined", {"mission": "m", "vision": "v"}, org_id="globex"),
        b"\n".join(  # the check-in names a key result: the org is read before the lock
            [
                next(check_ins(1, org_id="globex")),
                raw("StrategyDefined", {"mission": "m2", "vision": "v"}, org_id="globex"),
            ]
        ),
        ReasonCode.ALREADY_EXISTS,
    ),
    "new_org": (
        b"\n".join(org_setup("initech")),
        next(check_ins(1, org_id="initech")),
        None,
    ),
}
"""What the other writer appends (lines), lines of the batch on what it changes, and the last
one's refusal (None: accepted)."""


@pytest.mark.parametrize("when", ["before_the_read", "meanwhile"])
@pytest.mark.parametrize("change", sorted(CHANGED))
def test_each_kind_of_change_by_another_writer_is_seen(
    tmp_path: Path, change: str, when: str
) -> None:
    """The other writer retires a key result the writer kept, abandons its objective, defines
    the key result a check-in names (read as missing), defines the strategy of an org read
    without one, or sets up an org read as new: before the batch is read (what the writer kept
    no longer stands) or after (neither does its view read before the lock): the line on it is
    decided as memory does."""
    appended, lines, refusal = CHANGED[change]
    other, changed = appended.split(b"\n"), lines.split(b"\n")
    stored = [*org_setup(), GLOBEX_THEME]
    first = [next(check_ins(1))]  # kept: kr1 and o1
    batch = [next(check_ins(1)), *changed, next(check_ins(1))]
    before, meanwhile = (other, []) if when == "before_the_read" else ([], other)
    outcomes = decide_after_another_writer(
        tmp_path / "ledger.db", stored, first=first, other=before, batch=batch, meanwhile=meanwhile
    )
    decided = outcomes[len(changed)]
    if refusal is None:
        assert isinstance(decided, Accepted), decided
    else:
        assert isinstance(decided, Rejection), decided
        assert decided.reason is refusal


@SETTINGS
@given(histories(), st.data())
def test_two_interleaved_writers_store_what_memory_decides(
    lines: list[bytes], data: st.DataObject
) -> None:
    """Two writers on one file, each of A's batches read before the lock while B then appends a
    chunk (some of it lines of A's batch, or earlier lines): every outcome of both is what memory
    decides in the order of the commits, and the stored state is the fold of the ledger."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(lines)), max_size=6)))
    chunks = [lines[a:b] for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    mine_chunks, their_chunks = chunks[0::2], chunks[1::2]
    their_chunks = [
        chunk + data.draw(st.lists(st.sampled_from(lines), max_size=3)) for chunk in their_chunks
    ]
    with ledger_file() as path:
        mine, theirs = (Ledger(SqliteEventLog(path), clock=lambda: NOW) for _ in range(2))
        order: list[bytes] = []
        outcomes: list[Outcome] = []
        real = mine._append_batch
        pending = list(their_chunks)

        def interleaved(batch: list[Any], probes: list[Probe | None]) -> list[Outcome]:
            if pending:  # commits between this batch's read and its lock
                chunk = pending.pop(0)
                outcomes.extend(theirs.submit_many((line, None) for line in chunk))
                order.extend(chunk)
            order.extend(line for line, _ in batch)
            return real(batch, probes)

        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(mine, "_append_batch", interleaved)
                for chunk in mine_chunks:
                    before = len(order)
                    found = list(mine.submit_many((line, None) for line in chunk))
                    if len(order) == before:  # byte-identical repeats: decided before the lock
                        order.extend(chunk)
                    outcomes.extend(found)
            for chunk in pending:
                outcomes.extend(theirs.submit_many((line, None) for line in chunk))
                order.extend(chunk)
        finally:
            mine.log.close()
            theirs.log.close()
        assert outcomes == in_memory(order)
        check_file(path)


WRITER = """
import sys
import orjson
from events.ledger import Ledger
from events.sqlite_log import SqliteEventLog
from tests.builders import NOW

path, lines_file, out = sys.argv[1:4]
written = orjson.loads(open(lines_file, "rb").read())
batches = [[line.encode() for line in batch] for batch in written]
ledger = Ledger(SqliteEventLog(path), clock=lambda: NOW)
real_append = ledger._append_batch
def handshake(lines, probes):
    print("read", flush=True)  # the batch's view is read: the other process may append now
    assert sys.stdin.readline() == "go\\n"
    return real_append(lines, probes)
outcomes = []
for n, batch in enumerate(batches):
    if n == len(batches) - 1:
        ledger._append_batch = handshake
    outcomes.append(list(ledger.submit_many((line, None) for line in batch)))
ledger.log.close()
open(out, "wb").write(orjson.dumps([[o.to_json() for o in batch] for batch in outcomes]))
"""


def run_writer(path: Path, batches: list[list[bytes]], out: Path) -> "subprocess.Popen[str]":
    lines_file = out.with_suffix(".in")
    lines_file.write_bytes(orjson.dumps([[line.decode() for line in batch] for batch in batches]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKR_")}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(lines_file), str(out)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


Written = list[list[dict[str, Any]]]
"""A writer process's outcomes, by batch, as their JSON (``to_json``: data, not code, crosses
the processes; an accepted event's hash stands for its bytes)."""


def outcomes_of(writer: "subprocess.Popen[str]", out: Path) -> Written:
    writer.wait(timeout=120)
    assert writer.returncode == 0
    found: Written = orjson.loads(out.read_bytes())
    return found


def test_two_processes_interleaved_on_the_same_key_results_and_sources(tmp_path: Path) -> None:
    """Process A stores check-ins (keeping their key results), then reads its next batch; process
    B meanwhile retires a key result A kept, defines one A's batch names, and stores some of
    A's batch itself (the same bytes, the same source's id under other content, a new check-in
    on the same source's id); A decides each line as memory does in the order of the commits,
    and the ledger's state is its fold."""
    path = tmp_path / "ledger.db"
    stored = [*org_setup(), key_result("kr2"), key_result("kr3")]
    submit(path, stored)
    kr1, kr2, kr4 = (list(check_ins(4, key_result_id=k)) for k in ("kr1", "kr2", "kr4"))
    first = [kr1[0], kr2[0], kr1[1]]
    retire = raw("KeyResultRetired", {"key_result_id": "kr2", "reason": "dropped"})
    conflicting = raw(
        "CheckInRecorded",
        {"key_result_id": "kr1", "value": 99, "confidence": 0.5},
        source_event_id="ci-shared",
    )
    shared = raw(
        "CheckInRecorded",
        {"key_result_id": "kr1", "value": 1, "confidence": 0.5},
        source_event_id="ci-shared",
    )
    batch = [kr1[2], kr2[1], kr4[0], shared, kr1[3], kr2[2], kr4[1], kr1[2]]
    theirs = [retire, key_result("kr4"), kr1[3], conflicting, kr4[1]]
    a_out = tmp_path / "a.pickle"
    a = run_writer(path, [first, batch], a_out)
    assert a.stdout is not None
    assert a.stdin is not None
    assert a.stdout.readline() == "read\n"  # A's last batch is read, not yet decided
    b_out = tmp_path / "b.pickle"
    b = run_writer(path, [theirs[:2], theirs[2:]], b_out)
    assert b.stdout is not None
    assert b.stdout.readline() == "read\n"
    assert b.stdin is not None
    b.stdin.write("go\n")
    b.stdin.close()
    b_first, b_second = outcomes_of(b, b_out)
    a.stdin.write("go\n")
    a.stdin.close()
    a_first, a_second = outcomes_of(a, a_out)
    expected = in_memory([*stored, *first, *theirs, *batch])[len(stored) :]
    assert [*a_first, *b_first, *b_second, *a_second] == [o.to_json() for o in expected]
    assert all(o["status"] == "accepted" for o in [*a_first, *b_first, *b_second])
    by_line = dict(zip(range(len(batch)), a_second, strict=True))
    assert by_line[0]["status"] == "accepted"  # on kr1, kept from A's first batch
    assert by_line[1]["status"] == "rejected"  # kr2, kept, then retired by B
    assert by_line[1]["reason_code"] == ReasonCode.INVALID_STATE.value
    assert by_line[2]["status"] == "accepted"  # kr4, which B defined
    assert by_line[3]["status"] == "rejected"  # the source's id B stored with other content
    assert by_line[4]["status"] == "duplicate"  # the same bytes B stored
    assert by_line[6]["status"] == "duplicate"
    assert by_line[7]["status"] == "duplicate"  # repeated within the batch
    check_file(path)


class _Folds:
    """A decider that needs other writers' events folded into it (as a state in memory does):
    notes them, and decides an empty batch."""

    folds = True

    def __init__(self) -> None:
        self.folded: list[LedgerEvent] = []

    def head(self, org_id: str) -> ChainHead:
        mine = [e for e in self.folded if e.org_id == org_id]
        return ChainHead(mine[-1].sequence, mine[-1].hash) if mine else ChainHead(0, GENESIS_HASH)

    def fold(self, event: LedgerEvent) -> None:
        self.folded.append(event)

    def decide(self) -> Batch:
        return [], []


def test_the_log_folds_nothing_into_its_own_state_store_but_does_into_a_decider_that_folds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers on one file, each deciding on the log's own state store, B appending after
    A took its mark and before A's lock: the log folds none of B's events into A's store (its
    tables are current under the lock), and every batch is decided as memory does. A decider
    that says it ``folds`` is still given, on the same log, every event appended since its
    mark, in order."""

    def refused(self: SqliteStateStore, event: LedgerEvent) -> None:
        raise AssertionError(f"{event.event_id} folded into the log's own state store")

    monkeypatch.setattr(SqliteStateStore, "fold", refused)
    path = tmp_path / "ledger.db"
    setup, ours, yours = org_setup(), list(check_ins(3)), list(check_ins(4, key_result_id="kr1"))
    mine, theirs = (Ledger(SqliteEventLog(path), clock=lambda: NOW) for _ in range(2))
    log = mine.log
    assert isinstance(log, SqliteEventLog)
    real = log.append_decided
    pending = [yours]
    outcomes: list[Outcome] = []

    def interleaved(decider: Any, mark: Mark) -> Mark:
        if pending:  # B commits after A's mark, before A's lock
            outcomes.extend(theirs.submit_many((line, None) for line in pending.pop()))
        return real(decider, mark)

    try:
        outcomes += mine.submit_many((line, None) for line in setup)
        mark = log.state.mark()
        known = {e.event_id for e in log.read()}
        monkeypatch.setattr(log, "append_decided", interleaved)
        found = list(mine.submit_many((line, None) for line in ours))
        outcomes += found
        outcomes += theirs.submit_many((line, None) for line in yours[:1])  # a repeat
        assert not pending
        assert outcomes == in_memory([*setup, *yours, *ours, *yours[:1]])
        decider = _Folds()
        assert real(decider, mark) == log.state.mark()
        appended = [e for e in log.read("acme") if e.event_id not in known]
        assert len(appended) == len(yours) + len(ours)
        assert decider.folded == appended
    finally:
        mine.log.close()
        theirs.log.close()
    check_file(path)
