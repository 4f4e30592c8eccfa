"""``verify`` checks the stored bytes of every event, and ``export`` writes them: a campaign of
byte-level tamperings of a SQLite ledger, each named by org and sequence with exit 4."""

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.chain import event_hash
from tests.builders import raw
from tests.ledger.byte_tampering import (
    MALFORMED,
    ORGS,
    SAME_VALUE,
    data_dir_with,
    edit_body,
    ledger_template,
    overwrite,
    same_value,
    stored_bodies,
    stored_body,
)
from tests.ledger.support import run, run_cli, scratch_dir

LENGTH = 12
"""Events per org in the ledger under test (org setup and 5 check-ins)."""
POSITIONS = (1, 6, LENGTH)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ledger_template(tmp_path_factory.mktemp("template"), check_in_count=5)


@pytest.fixture
def data_dir(tmp_path: Path, template: Path) -> Path:
    return data_dir_with(template, tmp_path)


def verdict(data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(data_dir, "verify", "--json", *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, orjson.loads(result.stdout)


def assert_named(data_dir: Path, org: str, sequence: int) -> dict[str, Any]:
    """verify exits 4 and names exactly this event, in JSON and in text; the other org is intact."""
    code, report = verdict(data_dir)
    assert code == 4, report
    assert (report["ok"], report["org_id"], report["first_bad_sequence"]) == (False, org, sequence)
    others = {o["org_id"]: o["ok"] for o in report["orgs"] if o["org_id"] != org}
    assert others == dict.fromkeys(set(ORGS) - {org}, True)
    text = run_cli(data_dir, "verify")
    assert text.exit_code == 4
    assert f"BROKEN {org}: sequence {sequence}: " in text.stdout
    return report


def exported(data_dir: Path) -> bytes:
    result = run_cli(data_dir, "export")
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def assert_export_is_the_stored_bytes(data_dir: Path) -> None:
    assert exported(data_dir) == b"".join(b + b"\n" for b in stored_bodies(data_dir / "ledger.db"))


# --- the campaign -------------------------------------------------------------------------


def test_an_intact_ledger_verifies_and_exports_its_stored_bytes(data_dir: Path) -> None:
    code, report = verdict(data_dir)
    assert code == 0
    assert {o["org_id"]: (o["ok"], o["events"]) for o in report["orgs"]} == {
        "acme": (True, LENGTH),
        "globex": (True, LENGTH),
    }
    assert_export_is_the_stored_bytes(data_dir)


@pytest.mark.parametrize("edit", SAME_VALUE)
@pytest.mark.parametrize("sequence", POSITIONS)
def test_an_edit_that_keeps_the_json_value_is_named(
    data_dir: Path, edit: str, sequence: int
) -> None:
    path = data_dir / "ledger.db"
    body = same_value(stored_body(path, "globex", sequence), edit)
    overwrite(path, "globex", sequence, body=body)
    report = assert_named(data_dir, "globex", sequence)
    expected = "appears twice" if edit.startswith("duplicated_key") else "canonical form"
    assert expected in report["problem"]
    assert body + b"\n" in exported(data_dir)
    assert_export_is_the_stored_bytes(data_dir)


def test_the_duplicated_actor_is_named_as_such(data_dir: Path) -> None:
    """The issue's case: Python reads "ceo", SQLite's json_extract reads "mallory"."""
    path = data_dir / "ledger.db"
    edit_body(path, "acme", 3, lambda body: b'{"actor":"mallory",' + body[1:])
    _, report = verdict(data_dir)
    assert report["problem"] == "the key 'actor' appears twice in one object"


@pytest.mark.parametrize("kind", MALFORMED)
@pytest.mark.parametrize("sequence", POSITIONS)
def test_a_malformed_stored_event_is_named_with_exit_4(
    data_dir: Path, kind: str, sequence: int
) -> None:
    body = edit_body(data_dir / "ledger.db", "globex", sequence, MALFORMED[kind])
    report = assert_named(data_dir, "globex", sequence)
    assert report["problem"].startswith("malformed: "), report["problem"]
    assert_export_is_the_stored_bytes(data_dir)
    assert body + b"\n" in exported(data_dir)


@pytest.mark.parametrize("sequence", [6, LENGTH])
def test_a_changed_hash_column_is_named(data_dir: Path, sequence: int) -> None:
    overwrite(data_dir / "ledger.db", "acme", sequence, hash="0" * 64)
    report = assert_named(data_dir, "acme", sequence)
    assert "hash column" in report["problem"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("event_id", "00000000-0000-4000-8000-000000000000"),
        ("type", "CheckInRetracted"),
        ("recorded_at", "1999-01-01T00:00:00Z"),
        ("occurred_at", "1999-01-01T00:00:00Z"),
    ],
)
def test_any_changed_column_is_named(data_dir: Path, column: str, value: str) -> None:
    overwrite(data_dir / "ledger.db", "acme", 9, **{column: value})
    report = assert_named(data_dir, "acme", 9)
    assert f"{column} column" in report["problem"]


def test_an_event_moved_to_another_org_is_named_where_it_is_missing(data_dir: Path) -> None:
    overwrite(data_dir / "ledger.db", "acme", 4, org_id="mallory")
    code, report = verdict(data_dir)
    assert code == 4
    named = {o["org_id"]: o["first_bad_sequence"] for o in report["orgs"]}
    assert named == {"acme": 4, "globex": None, "mallory": 1}


def test_verify_of_one_org_names_a_tampered_first_event(data_dir: Path) -> None:
    edit_body(data_dir / "ledger.db", "acme", 1, SAME_VALUE["whitespace"])
    code, report = verdict(data_dir, "--org", "acme")
    assert (code, report["org_id"], report["first_bad_sequence"]) == (4, "acme", 1)


def test_a_rehashed_event_with_an_added_key_is_named(data_dir: Path) -> None:
    """The stdlib verifiers refuse keys outside the format; so does verify."""
    path = data_dir / "ledger.db"
    record = orjson.loads(stored_body(path, "acme", LENGTH))
    record["note"] = "added later"
    record["hash"] = event_hash(record)
    overwrite(path, "acme", LENGTH, body=orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    overwrite(path, "acme", LENGTH, hash=record["hash"])
    report = assert_named(data_dir, "acme", LENGTH)
    assert "note" in report["problem"]


# --- the damaged head and the submit path -------------------------------------------------


def submit_one(
    data_dir: Path, org_id: str = "acme", **envelope: Any
) -> "subprocess.CompletedProcess[str]":
    """``okr-ledger submit`` of one valid check-in, by the real executable."""
    path = data_dir.parent / "one.ndjson"
    check_in = {"key_result_id": "kr1", "value": 1, "confidence": 0.5}
    path.write_bytes(raw("CheckInRecorded", check_in, org_id=org_id, **envelope) + b"\n")
    return run(data_dir, "submit", str(path))


def test_submit_after_a_changed_head_hash_says_the_ledger_is_damaged(data_dir: Path) -> None:
    overwrite(data_dir / "ledger.db", "acme", LENGTH, hash="0" * 64)
    result = submit_one(data_dir)
    assert result.returncode == 1
    assert "another writer" not in result.stderr
    assert "the ledger is damaged: org 'acme''s newest event (sequence 12)" in result.stderr
    assert "okr-ledger verify" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(stored_bodies(data_dir / "ledger.db")) == 2 * LENGTH  # nothing appended
    assert_named(data_dir, "acme", LENGTH)


@pytest.mark.parametrize("kind", ["not_json", "invalid_utf8", "deep_nesting", "array"])
def test_submit_on_a_malformed_ledger_names_the_event_and_verify(data_dir: Path, kind: str) -> None:
    """A submit reads the stored events its submissions need (the sequencer's state is kept in
    the file, not folded from the whole ledger): the one a repeat names, and its org's newest.
    A malformed one stops it with its name and ``verify``; checking all of them is verify's."""
    path = data_dir / "ledger.db"
    db = sqlite3.connect(path)
    (event_id,) = db.execute(
        "SELECT event_id FROM events WHERE org_id = 'globex' AND sequence = 6"
    ).fetchone()
    db.close()
    repeat = {"event_id": event_id}  # its stored content is compared with the submission's
    for sequence, envelope in ((6, repeat), (LENGTH, {})):  # LENGTH: the chain continues from it
        edit_body(path, "globex", sequence, MALFORMED[kind])
        done = submit_one(data_dir, "globex", **envelope)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        named = f"the stored event of org 'globex' at sequence {sequence} is malformed"
        assert named in done.stderr
        assert "okr-ledger verify" in done.stderr
    assert len(stored_bodies(path)) == 2 * LENGTH  # nothing appended


# --- random byte edits --------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ledger_template(tmp_path_factory.mktemp("random"), check_in_count=1)


@st.composite
def byte_edits(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` with a few random replacements, insertions and deletions of bytes."""
    edited = bytearray(body)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(edited)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        if kind == "replace" and at < len(edited):
            edited[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            edited[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del edited[at : at + draw(st.integers(1, 8))]
    return bytes(edited)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_random_byte_edit_of_a_stored_event_passes_verify(
    random_template: Path, data: Any
) -> None:
    with scratch_dir() as data_dir:
        path = data_dir / "ledger.db"
        shutil.copy(random_template, path)
        org = data.draw(st.sampled_from(ORGS), label="org")
        sequence = data.draw(st.integers(1, 8), label="sequence")
        body = stored_body(path, org, sequence)
        edited = data.draw(byte_edits(body), label="edited")
        overwrite(path, org, sequence, body=edited)
        code, report = verdict(data_dir)
        if edited == body:
            assert code == 0
            return
        assert code == 4, report
        assert (report["org_id"], report["first_bad_sequence"]) == (org, sequence)
        assert exported(data_dir) == b"".join(b + b"\n" for b in stored_bodies(path))
