"""``verify --file`` checks an export as ``verify`` checks the ledger, and the two stdlib
verifiers (examples/verify_ledger.py, tests/ledger/independent_verifier.py) agree with both
on every tampering of the stored bytes."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.ledger import independent_verifier as iv
from tests.ledger.byte_tampering import (
    MALFORMED,
    SAME_VALUE,
    data_dir_with,
    edit_body,
    ledger_template,
    overwrite,
    same_value,
    stored_body,
)
from tests.ledger.support import ALTERATIONS, run_cli, tamper

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verify_ledger.py"
LENGTH = 12
POSITIONS = (6, LENGTH)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ledger_template(tmp_path_factory.mktemp("template"), check_in_count=5)


@pytest.fixture
def data_dir(tmp_path: Path, template: Path) -> Path:
    return data_dir_with(template, tmp_path)


def export_file(data_dir: Path, *args: str) -> Path:
    path = data_dir.parent / "export.ndjson"
    result = run_cli(data_dir, "export", "-o", str(path), *args)
    assert result.exit_code == 0, result.output
    return path


def verdict(data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(data_dir, "verify", "--json", *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, orjson.loads(result.stdout)


def file_verdict(path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """``verify --file``, with no ledger anywhere (OKR_DATA_DIR points at nothing)."""
    return verdict(path.parent / "no-ledger-here", "--file", str(path), *args)


def named(report: dict[str, Any]) -> dict[str | None, int | None]:
    return {o["org_id"]: o["first_bad_sequence"] for o in report["orgs"] if not o["ok"]}


def example(path: Path) -> "subprocess.CompletedProcess[str]":
    """examples/verify_ledger.py in an isolated interpreter (nothing of the project)."""
    return subprocess.run(
        [sys.executable, "-I", str(EXAMPLE), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def independent(path: Path) -> dict[str, tuple[bool, int | None]] | None:
    """tests/ledger/independent_verifier.py's verdicts; None when it refuses the export."""
    try:
        with path.open("rb") as stream:  # lines as the script reads them: split at \n only
            verdicts = iv.verify_lines(stream)
    except iv.MalformedExportError:
        return None
    return {org: (v.ok, v.first_bad_sequence) for org, v in verdicts.items()}


# --- verify --file ------------------------------------------------------------------------


def test_an_intact_export_verifies_with_every_verifier(data_dir: Path) -> None:
    path = export_file(data_dir)
    code, report = file_verdict(path)
    assert code == 0
    assert verdict(data_dir) == (0, report)
    assert independent(path) == {"acme": (True, None), "globex": (True, None)}
    done = example(path)
    assert done.returncode == 0, done.stdout + done.stderr
    heads = {o["org_id"]: o["head_hash"] for o in report["orgs"]}
    assert done.stdout.splitlines() == [
        f"OK {org}: {LENGTH} events, head {head}" for org, head in sorted(heads.items())
    ]


def test_interleaved_orgs_verify_and_a_reordered_org_is_named(data_dir: Path) -> None:
    acme = export_file(data_dir, "--org", "acme").read_bytes().splitlines()
    globex = export_file(data_dir, "--org", "globex").read_bytes().splitlines()
    path = data_dir.parent / "interleaved.ndjson"
    path.write_bytes(b"".join(a + b"\n" + g + b"\n" for a, g in zip(acme, globex, strict=True)))
    assert file_verdict(path)[0] == 0
    acme[2], acme[3] = acme[3], acme[2]
    path.write_bytes(b"".join(a + b"\n" + g + b"\n" for a, g in zip(acme, globex, strict=True)))
    code, report = file_verdict(path)
    assert (code, named(report)) == (4, {"acme": 3})
    assert report["location"] == "line 5"
    assert independent(path) == {"acme": (False, 3), "globex": (True, None)}


def test_verify_file_of_one_org(data_dir: Path) -> None:
    edit_body(data_dir / "ledger.db", "acme", 4, SAME_VALUE["whitespace"])
    path = export_file(data_dir)
    assert file_verdict(path, "--org", "globex")[0] == 0
    code, report = file_verdict(path, "--org", "acme")
    assert (code, named(report)) == (4, {"acme": 4})


def test_a_blank_line_and_crlf_line_ends_are_not_an_export(data_dir: Path) -> None:
    lines = export_file(data_dir).read_bytes().splitlines(keepends=True)
    path = data_dir.parent / "edited.ndjson"
    path.write_bytes(b"".join(lines[:5]) + b"\n" + b"".join(lines[5:]))
    code, report = file_verdict(path)
    assert code == 4
    assert [(o["org_id"], o["location"]) for o in report["orgs"] if not o["ok"]] == [
        (None, "line 6")
    ]
    assert independent(path) is None
    assert example(path).returncode == 4
    path.write_bytes(b"".join(line.replace(b"\n", b"\r\n") for line in lines))
    code, report = file_verdict(path)
    assert (code, named(report)) == (4, {"acme": 1, "globex": 1})
    assert independent(path) == {"acme": (False, 1), "globex": (False, 1)}
    assert example(path).returncode == 4


def test_a_line_over_the_limit_is_named_and_the_next_lines_still_read(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("events.stored.MAX_EVENT_BYTES", 1000)
    lines = export_file(data_dir).read_bytes().splitlines(keepends=True)
    assert all(len(line) < 1000 for line in lines)
    path = data_dir.parent / "long.ndjson"
    path.write_bytes(b"".join(lines[:3]) + b"x" * 5000 + b"\n" + b"".join(lines[3:]))
    code, report = file_verdict(path)
    assert code == 4
    broken = [o for o in report["orgs"] if not o["ok"]]
    assert [(o["org_id"], o["location"]) for o in broken] == [(None, "line 4")]
    assert "over the limit of 1000" in broken[0]["problem"]
    assert {o["org_id"]: o["events"] for o in report["orgs"] if o["ok"]} == {
        "acme": LENGTH,
        "globex": LENGTH,
    }


def test_verify_file_refuses_a_missing_file(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "verify", "--file", str(tmp_path / "absent.ndjson"))
    assert result.exit_code == 2


# --- every verifier agrees on every tampering -----------------------------------------------


def assert_all_name(data_dir: Path, sequence: int) -> None:
    """verify, verify --file, the independent verifier and the example all name globex's
    ``sequence`` and nothing else."""
    code, report = verdict(data_dir)
    assert (code, named(report)) == (4, {"globex": sequence})
    path = export_file(data_dir)
    code, report = file_verdict(path)
    assert (code, named(report)) == (4, {"globex": sequence})
    assert report["location"] == f"line {LENGTH + sequence}"
    assert independent(path) == {"acme": (True, None), "globex": (False, sequence)}
    done = example(path)
    assert done.returncode == 4
    assert f"BROKEN globex: sequence {sequence}: " in done.stdout
    assert f"OK acme: {LENGTH} events" in done.stdout


@pytest.mark.parametrize("edit", SAME_VALUE)
@pytest.mark.parametrize("sequence", POSITIONS)
def test_they_agree_on_edits_that_keep_the_value(data_dir: Path, edit: str, sequence: int) -> None:
    path = data_dir / "ledger.db"
    overwrite(
        path, "globex", sequence, body=same_value(stored_body(path, "globex", sequence), edit)
    )
    assert_all_name(data_dir, sequence)


@pytest.mark.parametrize("how", ALTERATIONS)
@pytest.mark.parametrize("sequence", POSITIONS)
def test_they_agree_on_changed_values(data_dir: Path, how: str, sequence: int) -> None:
    tamper(data_dir / "ledger.db", "globex", sequence, how)
    assert_all_name(data_dir, sequence)


@pytest.mark.parametrize("kind", MALFORMED)
@pytest.mark.parametrize("sequence", POSITIONS)
def test_they_agree_that_a_malformed_event_breaks_the_export(
    data_dir: Path, kind: str, sequence: int
) -> None:
    """A malformed line may not say which org it belongs to: then each verifier names the
    line (the independent verifier refuses the whole export) where it cannot name the event."""
    edit_body(data_dir / "ledger.db", "globex", sequence, MALFORMED[kind])
    code, report = verdict(data_dir)
    assert (code, named(report)) == (4, {"globex": sequence})
    line = LENGTH + sequence
    path = export_file(data_dir)
    code, report = file_verdict(path)
    assert code == 4
    by_line = {(o["org_id"], o["first_bad_sequence"], o["location"]) for o in report["orgs"]}
    assert ("globex", sequence, f"line {line}") in by_line or (
        None,
        None,
        f"line {line}",
    ) in by_line
    assert ("acme", None, None) in by_line
    assert independent(path) in (None, {"acme": (True, None), "globex": (False, sequence)})
    done = example(path)
    assert done.returncode == 4
    assert (
        f"BROKEN globex: sequence {sequence}: " in done.stdout
        or f"BROKEN line {line}: " in done.stdout
    )


def test_a_changed_column_is_seen_in_the_ledger_not_in_its_export(data_dir: Path) -> None:
    """The export carries each event's stored body; a column beside it is the ledger's index."""
    overwrite(data_dir / "ledger.db", "globex", LENGTH, hash="0" * 64)
    assert verdict(data_dir)[0] == 4
    path = export_file(data_dir)
    assert file_verdict(path)[0] == 0
    assert example(path).returncode == 0
