"""Saved projector states: a data format, never code; org ids are values; unusable ones are
ignored (or, found unusable while projecting, make the runner replay the ledger)."""

import dataclasses
import pickle
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors import snapshot_codec
from processors import snapshots as snapshots_module
from processors import state as state_module
from processors import tables as t
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from processors.snapshot_codec import (
    SNAPSHOT_FORMAT,
    KeyResultWire,
    ObjectiveWire,
    OrgWire,
    ReviewWire,
    StrategyWire,
)
from processors.snapshots import Snapshot, SqliteSnapshots
from processors.state import (
    CHUNK,
    RECORD,
    KeyResult,
    Objective,
    OrgProjection,
    ProjectorState,
    Review,
    Strategy,
)
from tests.projections.conftest import StoreFactory, assert_as_projected_afresh
from tests.projections.exploits import Exploit
from tests.projections.ledgers import ORG, LedgerBuilder, day, small
from tests.projections.old_store_ledger import write_ledger
from tests.projections.properties import PROPERTY_SETTINGS, Script, build, scripts


@pytest.fixture
def saved(tmp_path: Path) -> Iterator[SqliteSnapshots]:
    snapshots = SqliteSnapshots(tmp_path / "state.sqlite")
    yield snapshots
    snapshots.close()


def _rows(path: Path, query: str, *parameters: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(query, parameters).fetchall()
    finally:
        db.close()


def _change(path: Path, statement: str, *parameters: Any) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(statement, parameters)
        db.commit()
    finally:
        db.close()


# --- the format ------------------------------------------------------------------------------


def _records(tmp_path: Path, script: Script) -> list[dict[str, Any]]:
    """The stored records of a ledger built by ``script`` (a file of its own per example)."""
    builder = LedgerBuilder(tmp_path / f"ledger-{uuid4().hex}.db")
    try:
        build(builder, script)
        return list(builder.log.read_records(ORG))
    finally:
        builder.close()


@PROPERTY_SETTINGS
@given(script=scripts, split=st.floats(0, 1))
def test_a_saved_state_projects_exactly_as_the_state_it_was_taken_of(
    tmp_path: Path, script: Script, split: float
) -> None:
    records = _records(tmp_path, script)
    cut = max(1, int(split * len(records)))
    original = Projector()
    original.project_records(records[:cut])
    state = original.state.orgs[ORG]
    snapshots = SqliteSnapshots(tmp_path / f"state-{uuid4().hex}.sqlite")
    try:
        snapshots.save(Snapshot(ORG, cut, records[cut - 1]["hash"], state))
        again = SqliteSnapshots(snapshots.path)
        loaded = again.load(ORG)
        assert loaded is not None
        assert (loaded.org_id, loaded.position, loaded.event_hash) == (
            ORG,
            cut,
            records[cut - 1]["hash"],
        )
        resumed = Projector(ProjectorState({ORG: loaded.state}))
        assert resumed.project_records(records[cut:]) == original.project_records(records[cut:])
        again.close()
    finally:
        snapshots.close()


def test_any_org_id_is_a_value_in_one_file(tmp_path: Path, saved: SqliteSnapshots) -> None:
    long_org = "a" + "@" * 127
    for org_id in (long_org, "a/../../etc/passwd", "A/B:c@d"):
        builder = LedgerBuilder(tmp_path / f"{uuid4().hex}.db", org=org_id)
        try:
            small(builder, 2)
            records = list(builder.log.read_records(org_id))
        finally:
            builder.close()
        projector = Projector()
        projector.project_records(records)
        saved.save(
            Snapshot(org_id, len(records), records[-1]["hash"], projector.state.orgs[org_id])
        )
        loaded = saved.load(org_id)
        assert loaded is not None
        assert loaded.position == len(records)
    names = {p.name for p in tmp_path.iterdir() if not p.name.endswith(".db")}
    assert names <= {"state.sqlite", "state.sqlite-wal", "state.sqlite-shm"}
    assert saved.load("acme") is None


def test_a_save_writes_only_the_key_results_whose_check_ins_changed(
    builder: LedgerBuilder, saved: SqliteSnapshots
) -> None:
    small(builder, 3)
    builder.key_result("k2", "o")
    projector = Projector()
    projector.project_records(builder.log.read_records(ORG))
    state = projector.state.orgs[ORG]
    saved.save(Snapshot(ORG, state.last_sequence, "h", state))
    chunks = "SELECT key_result_id, record FROM check_in_chunks"
    before = dict(_rows(saved.path, chunks))
    builder.check_in("k2", 5, day(5))
    projector.project_records(builder.log.read_records(ORG, state.last_sequence + 1))
    _change(saved.path, "UPDATE check_in_chunks SET record = X'00' WHERE key_result_id = 'k'")
    saved.save(Snapshot(ORG, state.last_sequence, "h", state))
    after = dict(_rows(saved.path, chunks))
    assert after["k"] == b"\x00"  # not rewritten: unchanged since the last save
    assert "k2" not in before  # no check-in: no chunk
    assert "k2" in after


# --- chunks, and the check-ins saved leave memory ---------------------------------------------


def _many(builder: LedgerBuilder, count: int) -> list[str]:
    """Key result k with ``count`` check-ins, one every hour; their ids."""
    small(builder, 0)
    return [builder.check_in("k", n % 90, day(0, 0) + timedelta(hours=n)) for n in range(count)]


def test_a_save_writes_only_the_new_chunks_and_keeps_in_memory_only_the_last(
    builder: LedgerBuilder, saved: SqliteSnapshots
) -> None:
    _many(builder, 2 * CHUNK + 44)
    projector = Projector()
    projector.project_records(builder.log.read_records(ORG))
    state = projector.state.orgs[ORG]
    saved.save(Snapshot(ORG, state.last_sequence, "h", state))
    log = state.key_results["k"].check_ins
    assert log is not None
    assert (log.base, len(log.data) // RECORD.size, len(log)) == (2 * CHUNK, 44, 2 * CHUNK + 44)
    chunks = "SELECT chunk, record FROM check_in_chunks WHERE key_result_id = 'k' ORDER BY chunk"
    assert [chunk for chunk, _ in _rows(saved.path, chunks)] == [0, 1, 2]
    _change(saved.path, "UPDATE check_in_chunks SET record = X'00' WHERE chunk < 2")

    builder.check_in("k", 1, day(20))  # recorded from the last chunk alone
    projector.project_records(builder.log.read_records(ORG, state.last_sequence + 1))
    saved.save(Snapshot(ORG, state.last_sequence, "h", state))
    after = dict(_rows(saved.path, chunks))
    assert after[0] == after[1] == b"\x00"  # not read, not rewritten
    assert len(after[2]) > 45 * RECORD.size


def test_a_correction_of_a_check_in_saved_long_ago_reads_it_back_and_rewrites_its_chunk(
    builder: LedgerBuilder, saved: SqliteSnapshots, open_store: StoreFactory
) -> None:
    ids = _many(builder, 3 * CHUNK)
    projector = Projector()
    projector.project_records(builder.log.read_records(ORG))
    state = projector.state.orgs[ORG]
    saved.save(Snapshot(ORG, state.last_sequence, "h", state))
    log = state.key_results["k"].check_ins
    assert log is not None
    assert (log.base, len(log.data)) == (3 * CHUNK, 0)
    chunks = "SELECT chunk, record FROM check_in_chunks WHERE key_result_id = 'k' ORDER BY chunk"
    before = dict(_rows(saved.path, chunks))
    fix = {"key_result_id": "k", "corrects_event_id": ids[5], "value": 3, "reason": "typo"}
    builder.add("CheckInCorrected", fix, day(30))
    rows = projector.project_records(builder.log.read_records(ORG, state.last_sequence + 1))
    [row] = rows[t.CHECK_INS]
    assert (row[2], row[12], row[13]) == (ids[5], 3.0, 5.0)  # its id, value now, value first
    saved.save(Snapshot(ORG, state.last_sequence, "h", state))
    after = dict(_rows(saved.path, chunks))
    assert after[0] != before[0]
    assert (after[1], after[2]) == (before[1], before[2])  # only the chunk corrected
    assert log is not state.key_results["k"].check_ins  # read back whole, then dropped again
    again = state.key_results["k"].check_ins
    assert again is not None
    assert (again.base, len(again.data)) == (3 * CHUNK, 0)


@contextmanager
def _chunks_of(size: int) -> Iterator[None]:
    """Chunks of ``size`` check-ins, so that small ledgers are saved (and evicted) in many."""
    with pytest.MonkeyPatch.context() as patch:
        for module in (state_module, snapshot_codec, snapshots_module):
            patch.setattr(module, "CHUNK", size)
        yield


@PROPERTY_SETTINGS
@given(
    script=scripts,
    cuts=st.lists(st.floats(0, 1), min_size=1, max_size=4),
    size=st.sampled_from([1, 2, 3]),
)
def test_check_ins_saved_dropped_and_read_back_project_exactly_as_those_kept_in_memory(
    tmp_path: Path, script: Script, cuts: list[float], size: int
) -> None:
    """Saving (and so evicting) at any points, in chunks of any size, changes no row."""
    records = _records(tmp_path, script)
    kept = Projector().project_records(records, current=False)
    points = sorted({max(1, int(cut * len(records))) for cut in cuts} | {len(records)})
    with _chunks_of(size):
        projector = Projector()
        snapshots = SqliteSnapshots(tmp_path / f"state-{uuid4().hex}.sqlite")
        try:
            rows: dict[str, list[Any]] = {}
            start = 0
            for point in points:
                for table, batch in projector.project_records(
                    records[start:point], current=False
                ).items():
                    if table != "checkpoints":
                        rows.setdefault(table, []).extend(batch)
                state = projector.state.orgs[ORG]
                snapshots.save(Snapshot(ORG, point, records[point - 1]["hash"], state))
                assert state.saved is not None  # saved, and its check-ins dropped
                start = point
        finally:
            snapshots.close()
    for table, batch in kept.items():
        if table != "checkpoints":
            assert rows.get(table, []) == batch, table


def test_a_long_catch_up_saves_as_it_goes_and_projects_the_same_rows(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    write_ledger(builder)
    ids = [builder.check_in(f"k{1 + n % 3}", n, day(10 + n)) for n in range(12)]
    store = open_store("saving")
    snapshots = SqliteSnapshots(tmp_path / "state.sqlite")
    saves: list[int] = []
    save = snapshots.save

    def counted(snapshot: Snapshot) -> None:
        saves.append(snapshot.position)
        save(snapshot)

    snapshots.save = counted  # type: ignore[method-assign]
    with _chunks_of(2):
        runner = EmbeddedRunner(
            builder.log, store, Projector(), snapshots=snapshots, batch_size=3, commit_bytes=0,
            save_every=5,
        )  # fmt: skip
        assert runner.catch_up().events == builder.count
        assert saves[:3] == [6, 12, 18]  # at the commits after every 5 events or more
        assert saves[-1] == builder.count
        fix = {"key_result_id": "k1", "corrects_event_id": ids[0], "value": 1, "reason": "typo"}
        builder.add("CheckInCorrected", fix, day(40))
        done = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots).catch_up()
        assert (done.events, done.replayed) == (1, 0)
    snapshots.close()
    assert_as_projected_afresh(store, builder, open_store)


def test_a_state_saved_ahead_of_a_commit_cut_short_is_replayed_not_used(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    """A long catch-up saves its state while the commit of the same events runs; if that commit
    fails (the process dies there), the saved state is ahead of the store's checkpoint. The next
    catch-up does not use it: it replays up to the checkpoint and projects the rest, and the
    rows equal a clean projection's (invariant 5)."""
    write_ledger(builder)
    for n in range(12):
        builder.check_in(f"k{1 + n % 3}", n, day(10 + n))
    store = open_store("cut")
    snapshots = SqliteSnapshots(tmp_path / "state.sqlite")
    saved: list[int] = []
    save, commit = snapshots.save, store.commit
    commits = 0

    def recorded(snapshot: Snapshot) -> None:
        saved.append(snapshot.position)
        save(snapshot)

    def failing_second(*args: Any, **kwargs: Any) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:
            raise OSError("the process died here")
        commit(*args, **kwargs)

    snapshots.save = recorded  # type: ignore[method-assign]
    store.commit = failing_second  # type: ignore[method-assign]
    with _chunks_of(2):
        runner = EmbeddedRunner(
            builder.log, store, Projector(), snapshots=snapshots, batch_size=3, commit_bytes=0,
            save_every=5,
        )  # fmt: skip
        with pytest.raises(OSError, match="died"):
            runner.catch_up()
        checkpoint = store.positions()[ORG]
        assert saved
        assert saved[-1] > checkpoint  # the state saved ahead of the store
        store.commit = commit  # type: ignore[method-assign]
        done = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots).catch_up()
        assert done.events == builder.count - checkpoint
        assert done.replayed == checkpoint  # the saved state was not used
    snapshots.close()
    assert_as_projected_afresh(store, builder, open_store)


# --- a state saved by the version before (format 5) --------------------------------------------

FORMAT_5 = Path(__file__).parent / "fixtures" / "state-format-5.json"
"""The state that OKR Ledger saved (format 5, before issue 9's chunks) of the ledger of
:func:`tests.projections.old_store_ledger.write_ledger`, dumped row by row."""


def _format_5_state(path: Path) -> dict[str, Any]:
    dump: dict[str, Any] = orjson.loads(FORMAT_5.read_bytes())
    for table in (  # the tables of that version
        "orgs (org_id TEXT PRIMARY KEY, format INTEGER NOT NULL, generation TEXT NOT NULL, "
        "document BLOB NOT NULL, crc INTEGER NOT NULL)",
        "check_ins (org_id TEXT NOT NULL, key_result_id TEXT NOT NULL, generation TEXT NOT "
        "NULL, record BLOB NOT NULL, PRIMARY KEY (org_id, key_result_id))",
    ):
        _change(path, f"CREATE TABLE {table}")
    for org_id, format_, generation, document, crc in dump["orgs"]:
        _change(path, "INSERT INTO orgs VALUES (?, ?, ?, ?, ?)", org_id, format_, generation,
                document.encode(), crc)  # fmt: skip
    for org_id, key_result_id, generation, record in dump["check_ins"]:
        _change(path, "INSERT INTO check_ins VALUES (?, ?, ?, ?)", org_id, key_result_id,
                generation, bytes.fromhex(record))  # fmt: skip
    return dump


def test_a_state_saved_in_format_5_is_used_then_saved_anew_in_chunks(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    write_ledger(builder)
    store = open_store("upgraded")
    EmbeddedRunner(builder.log, store, Projector()).catch_up()  # no saved state
    path = tmp_path / "state.sqlite"
    dump = _format_5_state(path)
    assert builder.events()[-1].hash == dump["event_hash"]  # of this very ledger
    first = next(  # k1's first check-in: read back from format 5
        e.event_id for e in builder.events() if e.type == "CheckInRecorded"
    )
    builder.check_in("k2", 61, day(11))
    fix = {"key_result_id": "k1", "corrects_event_id": first, "value": 13, "reason": "again"}
    builder.add("CheckInCorrected", fix, day(12))

    snapshots = SqliteSnapshots(path)
    try:
        done = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots).catch_up()
        assert (done.events, done.replayed) == (2, 0)  # from the saved state, not a replay
        assert _rows(path, "SELECT format FROM orgs") == [(SNAPSHOT_FORMAT,)]
        assert _rows(path, "SELECT count() FROM check_ins") == [(0,)]
        assert {k for (k,) in _rows(path, "SELECT key_result_id FROM check_in_chunks")} == {
            "k1",
            "k2",
            "k3",
        }
        builder.check_in("k3", 50, day(13))
        done = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots).catch_up()
        assert (done.events, done.replayed) == (1, 0)  # and from format 6 after
    finally:
        snapshots.close()
    assert_as_projected_afresh(store, builder, open_store)


# --- the runner with unusable saved states ----------------------------------------------------


Spoil = Callable[[Path, Path], None]


def _document(change: Callable[[dict[str, Any]], None]) -> Spoil:
    """Edit the org's document (keeping its checksum right, so the content is what fails)."""

    def edit(path: Path, _marker: Path) -> None:
        [(document,)] = _rows(path, "SELECT document FROM orgs WHERE org_id = ?", ORG)
        parsed = orjson.loads(document)
        change(parsed)
        _set_document(path, orjson.dumps(parsed))

    return edit


def _set_document(path: Path, document: bytes) -> None:
    import zlib

    _change(path, "UPDATE orgs SET document = ?, crc = ?", document, zlib.crc32(document))


def _truncated(path: Path, _marker: Path) -> None:
    [(document,)] = _rows(path, "SELECT document FROM orgs")
    _set_document(path, document[: len(document) // 2])


def _bit_flip(path: Path, _marker: Path) -> None:
    [(document,)] = _rows(path, "SELECT document FROM orgs")
    flipped = document.replace(b'"position":9', b'"position":8')
    assert flipped != document
    _change(path, "UPDATE orgs SET document = ?", flipped)  # the checksum no longer matches


def _garbage(path: Path, _marker: Path) -> None:
    _set_document(path, b"\x00not a saved state\xff" * 100)


def _pickle(path: Path, marker: Path) -> None:
    _set_document(path, pickle.dumps((SNAPSHOT_FORMAT, Exploit(marker))))


def _not_a_database(path: Path, _marker: Path) -> None:
    for stale in path.parent.glob(path.name + "-*"):
        stale.unlink()
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)


def _other_format(path: Path, _marker: Path) -> None:
    _change(path, "UPDATE orgs SET format = ?", SNAPSHOT_FORMAT + 1)


def _other_org(document: dict[str, Any]) -> None:
    document["org_id"] = "globex"


def _moved_position(document: dict[str, Any]) -> None:
    document["position"] -= 1
    document["event_hash"] = "0" * 64


def _lost_objective(document: dict[str, Any]) -> None:
    document["objectives"] = []


def _wrong_type(document: dict[str, Any]) -> None:
    document["key_results"][0]["live"] = "1"


def _extra_field(document: dict[str, Any]) -> None:
    document["themes"]["growth"]["__class__"] = "os.system"


def _extra_chunk(document: dict[str, Any]) -> None:
    document["key_results"][0]["chunks"].append(0)


def _check_ins(statement: str) -> Spoil:
    """Spoil the key result's check-ins (found only when an event needs them)."""

    def spoil(path: Path, _marker: Path) -> None:
        _change(path, statement)

    return spoil


UNUSABLE: dict[str, Spoil] = {
    "truncated": _truncated,
    "a flipped bit": _bit_flip,
    "garbage": _garbage,
    "a pickle": _pickle,
    "not a database": _not_a_database,
    "another format": _other_format,
    "another org": _document(_other_org),
    "position not the state's": _document(_moved_position),
    "a key result without its objective": _document(_lost_objective),
    "a wrong type": _document(_wrong_type),
    "an unknown field": _document(_extra_field),
    "check-ins truncated": _check_ins("UPDATE check_in_chunks SET record = substr(record, 1, 70)"),
    "check-ins with a flipped bit": _check_ins(
        "UPDATE check_in_chunks SET record = X'01' || substr(record, 2)"
    ),
    "check-ins missing": _check_ins("DELETE FROM check_in_chunks"),
    "check-ins of another save": _check_ins("UPDATE check_in_chunks SET generation = 'other'"),
    "a chunk not listed": _document(_extra_chunk),
}


@pytest.mark.parametrize("spoil", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_saved_state_is_ignored_and_the_ledger_replayed(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory, spoil: Spoil
) -> None:
    store = open_store("resumed")
    path = tmp_path / "state.sqlite"
    small(builder, 3)
    first = SqliteSnapshots(path)
    EmbeddedRunner(builder.log, store, Projector(), snapshots=first).catch_up()
    first.close()
    marker = tmp_path / "owned"
    spoil(path, marker)
    builder.check_in("k", 7, day(7))

    snapshots = SqliteSnapshots(path)
    try:
        done = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots).catch_up()
    finally:
        snapshots.close()
    assert (done.events, done.replayed) == (1, 9)
    assert not marker.exists()
    assert_as_projected_afresh(store, builder, open_store)


def test_a_state_that_cannot_be_saved_costs_only_a_replay(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    store = open_store("store")
    small(builder, 3)
    snapshots = SqliteSnapshots(blocked / "state.sqlite")
    runner = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots)
    assert runner.catch_up().events == 9
    assert blocked.read_text() == "a file where the directory should be"
    assert snapshots.load(ORG) is None


def test_a_state_saved_under_another_org_is_ignored(tmp_path: Path) -> None:
    builder = LedgerBuilder(tmp_path / "ledger.db", org="globex")
    try:
        small(builder, 2)
        records = list(builder.log.read_records("globex"))
    finally:
        builder.close()
    projector = Projector()
    projector.project_records(records)
    snapshots = SqliteSnapshots(tmp_path / "state.sqlite")
    try:
        state = projector.state.orgs["globex"]
        snapshots.save(Snapshot("globex", state.last_sequence, records[-1]["hash"], state))
        _change(snapshots.path, "UPDATE orgs SET org_id = ?", ORG)
        _change(snapshots.path, "UPDATE check_ins SET org_id = ?", ORG)
        assert snapshots.load("globex") is None
        assert snapshots.load(ORG) is None
    finally:
        snapshots.close()


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_the_wire_models_cover_every_field_of_the_state() -> None:
    """A field added to the state without its place in the format fails here, not silently."""
    for state, wire, state_only, wire_only in (
        (KeyResult, KeyResultWire, {"mark"}, {"chunks", "crc"}),
        (Objective, ObjectiveWire, {"members", "chain", "structure", "stale", "mark"}, set()),
        (Strategy, StrategyWire, set(), set()),
        (Review, ReviewWire, set(), set()),
        (
            OrgProjection,
            OrgWire,
            {"last_sequence", "origin_index", "loader", "saved", "changed", "objective_index"},
            {"format", "byte_order", "position", "event_hash"},
        ),
    ):
        assert _fields(state) - set(wire.model_fields) == state_only, state
        assert set(wire.model_fields) - _fields(state) == wire_only, state
