"""Saved projector states: a data format, never code; org ids are values; unusable ones are
ignored (or, found unusable while projecting, make the runner replay the ledger)."""

import dataclasses
import pickle
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from okr_ledger.projection_compare import fingerprint
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
from processors.state import KeyResult, Objective, OrgProjection, ProjectorState, Review, Strategy
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import ORG, LedgerBuilder, day
from tests.projections.test_properties import PROPERTY_SETTINGS, Script, build, scripts
from tests.projections.test_runner import small


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


@PROPERTY_SETTINGS
@given(script=scripts, split=st.floats(0, 1))
def test_a_saved_state_projects_exactly_as_the_state_it_was_taken_of(
    tmp_path: Path, script: Script, split: float
) -> None:
    builder = LedgerBuilder(tmp_path / f"ledger-{uuid4().hex}.db")
    try:
        build(builder, script)
        records = list(builder.log.read_records(ORG))
    finally:
        builder.close()
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
    before = dict(_rows(saved.path, "SELECT key_result_id, record FROM check_ins"))
    builder.check_in("k2", 5, day(5))
    projector.project_records(builder.log.read_records(ORG, state.last_sequence + 1))
    _change(saved.path, "UPDATE check_ins SET record = X'00' WHERE key_result_id = 'k'")
    saved.save(Snapshot(ORG, state.last_sequence, "h", state))
    after = dict(_rows(saved.path, "SELECT key_result_id, record FROM check_ins"))
    assert after["k"] == b"\x00"  # not rewritten: unchanged since the last save
    assert after["k2"] != before["k2"]


# --- the runner with unusable saved states ----------------------------------------------------


class Exploit:
    """Unpickled, it would write ``marker``: what a planted pickle could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('owned')",)


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
    "check-ins truncated": _check_ins("UPDATE check_ins SET record = substr(record, 1, 70)"),
    "check-ins with a flipped bit": _check_ins(
        "UPDATE check_ins SET record = X'01' || substr(record, 2)"
    ),
    "check-ins missing": _check_ins("DELETE FROM check_ins"),
    "check-ins of another save": _check_ins("UPDATE check_ins SET generation = 'other'"),
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
    clean = open_store("clean")
    project(builder, clean)
    assert fingerprint(store) == fingerprint(clean)


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
        (KeyResult, KeyResultWire, {"mark"}, {"crc"}),
        (Objective, ObjectiveWire, {"members", "chain", "structure", "stale", "mark"}, set()),
        (Strategy, StrategyWire, set(), set()),
        (Review, ReviewWire, set(), set()),
        (
            OrgProjection,
            OrgWire,
            {"last_sequence", "origin_index", "loader", "saved", "changed"},
            {"format", "byte_order", "position", "event_hash"},
        ),
    ):
        assert _fields(state) - set(wire.model_fields) == state_only, state
        assert set(wire.model_fields) - _fields(state) == wire_only, state
