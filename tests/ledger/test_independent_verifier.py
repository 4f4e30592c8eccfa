"""The independent verifier (stdlib only, written from the format) agrees with ``okr-ledger``."""

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.canonical import canonical_json
from events.chain import event_hash
from tests.builders import chained_events
from tests.ledger import independent_verifier as iv
from tests.ledger.jcs_vectors import NUMBERS, RFC_8785_NUMBERS, from_bits
from tests.ledger.strategies import JSON_VALUES, Mix, mixes
from tests.ledger.support import ALTERATIONS, run_cli, run_ledger, scratch_dir, store, tamper

VERIFIER = Path(iv.__file__)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            names.add((node.module or "").partition(".")[0])
    return names


def test_the_verifier_imports_the_standard_library_only() -> None:
    modules = imported_modules(VERIFIER)
    assert modules
    assert modules <= sys.stdlib_module_names, modules - sys.stdlib_module_names


# --- its JCS is JCS --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), NUMBERS)
def test_its_numbers_match_the_issue_vectors(value: float, text: str) -> None:
    assert iv.es_number(value) == text


@pytest.mark.parametrize(("bits", "text"), RFC_8785_NUMBERS)
def test_its_numbers_match_the_rfc_vectors(bits: int, text: str) -> None:
    assert iv.es_number(from_bits(bits)) == text


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_its_jcs_equals_the_ledgers_canonical_json(value: Any) -> None:
    assert iv.jcs(value) == canonical_json(value)


# --- verdicts on exports ------------------------------------------------------------------


def export(data_dir: Path, *args: str) -> list[bytes]:
    result = run_cli(data_dir, "export", *args)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.splitlines()


def cli_orgs(data_dir: Path) -> dict[str, tuple[bool, int, int | None]]:
    report = orjson.loads(run_cli(data_dir, "verify", "--json").stdout)
    return {o["org_id"]: (o["ok"], o["events"], o["first_bad_sequence"]) for o in report["orgs"]}


def verifier_orgs(lines: Iterable[bytes | str]) -> dict[str, tuple[bool, int, int | None]]:
    return {
        org: (v.ok, v.events, v.first_bad_sequence) for org, v in iv.verify_lines(lines).items()
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    store(directory / "ledger.db", chained_events("acme", "globex", check_in_count=4))
    return directory


def test_it_accepts_an_intact_export_and_recomputes_every_hash(data_dir: Path) -> None:
    lines = export(data_dir)
    assert verifier_orgs(lines) == {"acme": (True, 11, None), "globex": (True, 11, None)}
    for line in lines:
        event = iv.parse_line(line)
        assert iv.event_hash(event) == event["hash"] == event_hash(orjson.loads(line))
        assert iv.jcs(event).encode() == line  # the export is canonical, by its own reckoning


@pytest.mark.parametrize("how", ALTERATIONS)
def test_it_names_the_same_event_as_okr_ledger_verify(data_dir: Path, how: str) -> None:
    tamper(data_dir / "ledger.db", "acme", 7, how)
    assert verifier_orgs(export(data_dir)) == cli_orgs(data_dir)
    assert verifier_orgs(export(data_dir))["acme"] == (False, 6, 7)


def test_it_verifies_one_org_exported_alone(data_dir: Path) -> None:
    assert verifier_orgs(export(data_dir, "--org", "globex")) == {"globex": (True, 11, None)}


def test_it_accepts_interleaved_orgs_but_not_reordered_events(data_dir: Path) -> None:
    acme, globex = export(data_dir, "--org", "acme"), export(data_dir, "--org", "globex")
    interleaved = [line for pair in zip(acme, globex, strict=True) for line in pair]
    assert all(v.ok for v in iv.verify_lines(interleaved).values())
    acme[2], acme[3] = acme[3], acme[2]
    assert iv.verify_lines(acme)["acme"].first_bad_sequence == 3


def test_it_refuses_an_event_with_an_unexpected_key(data_dir: Path) -> None:
    lines = export(data_dir, "--org", "acme")
    event = orjson.loads(lines[4])
    event["note"] = "added later"
    event["hash"] = iv.event_hash(event)
    lines[4] = iv.jcs(event).encode()  # canonical: only the keys are wrong
    verdict = iv.verify_lines(lines)["acme"]
    assert (verdict.ok, verdict.first_bad_sequence) == (False, 5)
    assert "note" in (verdict.problem or "")


def test_a_truncated_export_is_a_partial_chain_not_a_broken_one(data_dir: Path) -> None:
    assert verifier_orgs(export(data_dir, "--org", "acme")[:5]) == {"acme": (True, 5, None)}


@pytest.mark.parametrize("line", [b"{", b"[]", b'{"sequence": 1}', b'{"org_id": NaN}'])
def test_a_line_that_is_not_an_event_object_is_malformed(line: bytes) -> None:
    with pytest.raises(iv.MalformedExportError):
        iv.verify_lines([line])


def test_it_runs_as_a_script_in_an_isolated_interpreter(data_dir: Path) -> None:
    intact = b"\n".join(export(data_dir)) + b"\n"
    ok = subprocess.run(
        [sys.executable, "-I", str(VERIFIER)], input=intact, capture_output=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert [orjson.loads(line)["ok"] for line in ok.stdout.splitlines()] == [True, True]
    tamper(data_dir / "ledger.db", "globex", 2, "content")
    broken = b"\n".join(export(data_dir)) + b"\n"
    bad = subprocess.run(
        [sys.executable, "-I", str(VERIFIER)], input=broken, capture_output=True, check=False
    )
    assert bad.returncode == 4
    assert orjson.loads(bad.stdout.splitlines()[1])["first_bad_sequence"] == 2


@settings(max_examples=40, deadline=None)
@given(mixes(max_extras=4), st.data())
def test_it_agrees_with_okr_ledger_verify_on_generated_ledgers(mix: Mix, data: Any) -> None:
    with scratch_dir() as data_dir:
        run_ledger(data_dir / "ledger.db", mix.raws, batch_size=7)
        lines = export(data_dir)
        assert all(v.ok for v in iv.verify_lines(lines).values())
        orgs = sorted({orjson.loads(line)["org_id"] for line in lines})
        if data.draw(st.booleans(), label="tamper"):
            org = data.draw(st.sampled_from(orgs))
            length = sum(orjson.loads(line)["org_id"] == org for line in lines)
            sequence = data.draw(st.integers(1, length))
            tamper(data_dir / "ledger.db", org, sequence, data.draw(st.sampled_from(ALTERATIONS)))
            lines = export(data_dir)
            assert iv.verify_lines(lines)[org].first_bad_sequence == sequence
        assert verifier_orgs(lines) == cli_orgs(data_dir)


def test_it_reproduces_the_worked_example_of_the_ledger_format() -> None:
    spec = (Path(__file__).resolve().parents[2] / "docs" / "ledger-format.md").read_text()
    example = spec[spec.index("## 7. Worked example") :]
    lines = [line for line in example.splitlines() if line.startswith('{"actor"')][:3]
    assert len(lines) == 3
    events = [iv.parse_line(line) for line in lines]
    for line, event in zip(lines, events, strict=True):
        assert iv.event_hash(event) == event["hash"] == event_hash(orjson.loads(line))
        assert iv.jcs(event) == line
    assert events[0]["hash"] == "e7ec500d3d96b8080a5ae301f607984f9b5b461f28b8e794df775acf6c3936f7"
    assert events[1]["prev_hash"] == events[0]["hash"]
    assert verifier_orgs(lines[:2]) == {"northwind": (True, 2, None)}
