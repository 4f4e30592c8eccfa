"""Projector snapshots: a data format, never code; named by digest; unusable ones ignored."""

import dataclasses
import gzip
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args
from uuid import uuid4

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from okr_ledger.projection_compare import fingerprint
from processors.projector import Projector, StoredEvent
from processors.runner import EmbeddedRunner
from processors.snapshot_codec import (
    CHECK_IN_FIELDS,
    SNAPSHOT_FORMAT,
    CheckInRow,
    KeyResultWire,
    ObjectiveWire,
    ReviewWire,
    StateWire,
    StrategyWire,
    decode,
    encode,
)
from processors.snapshots import DirectorySnapshots, Snapshot, file_name
from processors.state import (
    CheckIn,
    KeyResult,
    Objective,
    OrgProjection,
    ProjectorState,
    Review,
    Strategy,
)
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import ORG, LedgerBuilder, day
from tests.projections.test_properties import PROPERTY_SETTINGS, Script, build, scripts
from tests.projections.test_runner import small

Document = dict[str, Any]


def read_document(path: Path) -> Document:
    document: Document = orjson.loads(gzip.decompress(path.read_bytes()))
    return document


def write_document(path: Path, document: Document) -> None:
    path.write_bytes(gzip.compress(orjson.dumps(document)))


# --- the format ------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(script=scripts, split=st.floats(0, 1))
def test_a_decoded_snapshot_projects_exactly_as_the_state_it_was_taken_of(
    tmp_path: Path, script: Script, split: float
) -> None:
    builder = LedgerBuilder(tmp_path / f"ledger-{uuid4().hex}.db")
    try:
        build(builder, script)
        events = [StoredEvent.from_record(r) for r in builder.log.read_records(ORG)]
    finally:
        builder.close()
    cut = max(1, int(split * len(events)))
    original = Projector()
    original.project(events[:cut])
    state = original.state.orgs[ORG]
    data = encode(ORG, state.last_sequence, events[cut - 1].hash, state)

    org_id, position, event_hash, restored = decode(data)
    assert (org_id, position, event_hash) == (ORG, cut, events[cut - 1].hash)
    assert encode(org_id, position, event_hash, restored) == data
    resumed = Projector(ProjectorState({ORG: restored}))
    assert resumed.project(events[cut:]) == original.project(events[cut:])


def test_file_names_are_digests_whatever_the_org_id() -> None:
    for org_id in ("acme", "a" + "@" * 127, "../../etc/passwd", "A/B:c@d"):
        name = file_name(org_id)
        assert len(name) == 64 + len(f".v{SNAPSHOT_FORMAT}.json.gz")
        assert set(name[:64]) <= set("0123456789abcdef")
    assert file_name("acme") != file_name("Acme")


# --- the runner with unusable snapshots -------------------------------------------------------


class Exploit:
    """Unpickled, it would write ``marker``: what a planted pickle could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('owned')",)


def _truncated(path: Path, _marker: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path, _marker: Path) -> None:
    path.write_bytes(b"\x00not a snapshot\xff" * 100)


def _not_json(path: Path, _marker: Path) -> None:
    path.write_bytes(gzip.compress(b'{"format": 3, "org_id": '))


def _pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps((SNAPSHOT_FORMAT, Exploit(marker))))


def _bomb(path: Path, _marker: Path) -> None:
    path.write_bytes(gzip.compress(b" " * (64 << 20), 9))


def _edit(change: Callable[[Document], None]) -> Callable[[Path, Path], None]:
    def edit(path: Path, _marker: Path) -> None:
        document = read_document(path)
        change(document)
        write_document(path, document)

    return edit


def _other_format(document: Document) -> None:
    document["format"] = SNAPSHOT_FORMAT + 1


def _other_org(document: Document) -> None:
    document["org_id"] = "globex"


def _moved_position(document: Document) -> None:
    document["position"] -= 1
    document["event_hash"] = "0" * 64


def _lost_objective(document: Document) -> None:
    document["state"]["objectives"] = []


def _stray_check_in(document: Document) -> None:
    document["state"]["key_results"][0]["check_in_ids"].pop()


def _wrong_type(document: Document) -> None:
    document["state"]["check_ins"][0][3] = "1"  # a sequence as a string


def _extra_field(document: Document) -> None:
    document["state"]["themes"]["growth"]["__class__"] = "os.system"


UNUSABLE = {
    "truncated": _truncated,
    "garbage": _garbage,
    "gzip of broken JSON": _not_json,
    "a pickle": _pickle,
    "a gzip bomb": _bomb,
    "another format": _edit(_other_format),
    "another org": _edit(_other_org),
    "position not the state's": _edit(_moved_position),
    "a key result without its objective": _edit(_lost_objective),
    "a check-in no key result lists": _edit(_stray_check_in),
    "a wrong type": _edit(_wrong_type),
    "an unknown field": _edit(_extra_field),
}


@pytest.mark.parametrize("spoil", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_snapshot_is_ignored_and_the_ledger_replayed(
    tmp_path: Path,
    builder: LedgerBuilder,
    open_store: StoreFactory,
    spoil: Callable[[Path, Path], None],
) -> None:
    store = open_store("resumed")
    snapshots = DirectorySnapshots(tmp_path / "snapshots")
    small(builder, 3)
    EmbeddedRunner(
        builder.log, store, Projector(), snapshots=snapshots, snapshot_after=1
    ).catch_up()
    path = snapshots.path(ORG)
    assert snapshots.load(ORG) is not None
    marker = tmp_path / "owned"
    spoil(path, marker)
    builder.check_in("k", 7, day(7))

    assert snapshots.load(ORG) is None
    done = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots).catch_up()
    assert (done.events, done.replayed) == (1, 9)
    assert not marker.exists()
    clean = open_store("clean")
    project(builder, clean)
    assert fingerprint(store) == fingerprint(clean)


def test_a_snapshot_that_cannot_be_written_costs_only_a_replay(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    blocked = tmp_path / "snapshots"
    blocked.write_text("a file where the directory should be")
    store = open_store("store")
    small(builder, 3)
    runner = EmbeddedRunner(
        builder.log, store, Projector(), snapshots=DirectorySnapshots(blocked), snapshot_after=1
    )
    assert runner.catch_up().events == 9
    assert blocked.read_text() == "a file where the directory should be"


def test_a_snapshot_of_another_org_under_its_name_is_ignored(tmp_path: Path) -> None:
    snapshots = DirectorySnapshots(tmp_path)
    builder = LedgerBuilder(tmp_path / "ledger.db", org="globex")
    try:
        small(builder, 2)
        events = [StoredEvent.from_record(r) for r in builder.log.read_records("globex")]
    finally:
        builder.close()
    projector = Projector()
    projector.project(events)
    state = projector.state.orgs["globex"]
    snapshots.save(Snapshot("globex", state.last_sequence, events[-1].hash, state))
    snapshots.path("globex").rename(snapshots.path(ORG))
    assert snapshots.load("globex") is None
    assert snapshots.load(ORG) is None


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_the_wire_models_cover_every_field_of_the_state() -> None:
    """A field added to the state without its place in the format fails here, not silently."""
    assert tuple(f.name for f in dataclasses.fields(CheckIn)) == CHECK_IN_FIELDS
    assert len(get_args(CheckInRow)) == len(CHECK_IN_FIELDS)
    for state, wire, state_only, wire_only in (
        (KeyResult, KeyResultWire, {"check_ins", "last"}, {"check_in_ids", "last_check_in_id"}),
        (Objective, ObjectiveWire, {"members", "chain", "structure"}, set()),
        (Strategy, StrategyWire, set(), set()),
        (Review, ReviewWire, set(), set()),
        (OrgProjection, StateWire, {"org_id"}, set()),
    ):
        assert _fields(state) - set(wire.model_fields) == state_only, state
        assert set(wire.model_fields) - _fields(state) == wire_only, state
