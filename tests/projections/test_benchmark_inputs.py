"""The inputs ``make bench`` builds once and its scripts start from a copy of
(``benchmarks/inputs.py``, ``benchmarks/suite.py``): a copied store opens and holds the same
projections, and the suite names only steps it knows."""

import subprocess
import sys
from pathlib import Path

from benchmarks.inputs import copy_store, takeover_ledger_name, takeover_store_name
from benchmarks.suite import STEPS
from okr_ledger.projection_compare import fingerprint
from projections.store import ProjectionStore

ROOT = Path(__file__).resolve().parents[2]


def test_a_copied_store_opens_with_the_same_projections(tmp_path: Path) -> None:
    sizes = ("2", "3", "40")  # orgs, key results, check-ins
    built = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inputs.py"), str(tmp_path), "takeover", *sizes],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / takeover_ledger_name(2, 3, 40)).is_file()
    original = tmp_path / takeover_store_name(2, 3, 40)
    copy_store(original, tmp_path / "copy")

    prints = []
    for path in (tmp_path / "copy", original):  # one chDB directory open at a time
        store = ProjectionStore.open(f"chdb://{path}")
        try:
            prints.append((fingerprint(store), store.positions()))
        finally:
            store.close()
    assert prints[0] == prints[1]
    assert sorted(prints[0][1]) == ["org00", "org01"]


def test_the_suite_lists_its_steps_and_refuses_an_unknown_one() -> None:
    suite = [sys.executable, str(ROOT / "benchmarks" / "suite.py")]
    listed = subprocess.run([*suite, "--list"], capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [s.name for s in STEPS]
    assert "not in the suite" in listed.stderr
    for step in STEPS:
        assert (ROOT / "benchmarks" / step.script).is_file()
    refused = subprocess.run(
        [*suite, "--only", "nope"], capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0
    assert "unknown step nope" in refused.stderr
