"""Files in the data directory, through the command line on real chDB: a long org id, and
code planted where the projector's saved state lives."""

import pickle
import sqlite3
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from typer.testing import CliRunner

from okr_ledger.cli import app
from processors.snapshots import FILE_NAME
from tests.builders import submission
from tests.projections.exploits import Exploit

runner = CliRunner()
SAVED = 500
"""Check-ins projected (and saved) before the next submission."""
LONG_ORG = "a" + "@" * 127
"""A valid org id (128 characters) whose percent-encoding is far beyond a file name's 255."""


def okr(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def progress_by_id(*args: str) -> dict[str, Any]:
    lines = okr("progress", "--json", *args).stdout.splitlines()
    return {line["id"]: line for line in map(orjson.loads, lines)}


def check_ins(org: str, first: int, count: int) -> list[bytes]:
    return [
        orjson.dumps(
            submission(
                "CheckInRecorded",
                {"key_result_id": f"kr{i % 10}", "value": i % 100, "confidence": 0.5},
                org_id=org,
                key=f"ci{i}",
                occurred_at=f"{date(2026, 10, 1) + timedelta(days=i % 50)}T10:00:00+00:00",
            )
        )
        for i in range(first, first + count)
    ]


def setup(org: str) -> list[bytes]:
    period = {"period_id": "q4", "name": "Q4", "starts_on": "2026-10-01", "ends_on": "2026-12-31"}
    objective = {"objective_id": "o1", "title": "O", "owner_unit_id": "co", "period_id": "q4",
                 "theme_ids": ["t1"], "rollup": "key_results"}  # fmt: skip
    documents = [
        submission("StrategyDefined", {"mission": "m", "vision": "v"}, org_id=org),
        submission("ThemeAdded", {"theme_id": "t1", "name": "Customers"}, org_id=org),
        submission("OrgUnitAdded", {"unit_id": "co", "name": "Co", "kind": "company"}, org_id=org),
        submission("PeriodDefined", period, org_id=org),
        submission("ObjectiveCreated", objective, org_id=org),
    ]
    key_result = {"objective_id": "o1", "kind": "increase", "start": 0, "target": 100, "unit": "%"}
    documents += [
        submission(
            "KeyResultDefined",
            {"key_result_id": f"kr{n}", "title": f"KR {n}", **key_result},
            org_id=org,
        )
        for n in range(10)
    ]
    return [orjson.dumps(d) for d in documents]


def submit(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / f"submit-{len(lines)}.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    okr("submit", str(path))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("OKR_LEDGER_URL", "OKR_CLICKHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


def test_a_128_character_org_id_through_submit_progress_and_rebuild(
    tmp_path: Path, data_dir: Path
) -> None:
    submit(tmp_path, setup(LONG_ORG) + check_ins(LONG_ORG, 0, SAVED))
    assert len(progress_by_id("--org", LONG_ORG)) == 11
    db = sqlite3.connect(data_dir / FILE_NAME)  # the org's saved state: the org id is a value
    try:
        assert db.execute("SELECT org_id FROM orgs").fetchall() == [(LONG_ORG,)]
    finally:
        db.close()

    submit(tmp_path, check_ins(LONG_ORG, SAVED, 3))  # the next starts from it
    after = progress_by_id()
    assert after["kr0"]["check_in_count"] == SAVED // 10 + 1
    rebuilt = okr("rebuild")
    assert "identical" in rebuilt.stdout
    assert okr("verify", "--org", LONG_ORG).exit_code == 0


def test_a_pickle_planted_where_the_state_is_saved_is_never_run(
    tmp_path: Path, data_dir: Path
) -> None:
    submit(tmp_path, setup("acme") + check_ins("acme", 0, 5))
    okr("progress")
    marker = tmp_path / "owned"
    planted = pickle.dumps((2, Exploit(marker)))
    (data_dir / FILE_NAME).write_bytes(planted)
    directory = data_dir / "projector-snapshots"  # where older versions kept their snapshots
    directory.mkdir(exist_ok=True)
    for name in (f"{quote('acme', safe='')}.snapshot", "acme.v3.json.gz", "acme.partial"):
        (directory / name).write_bytes(planted)

    submit(tmp_path, check_ins("acme", 5, 2))  # the next query restores the org's state
    found = progress_by_id()
    assert found["kr5"]["check_in_count"] == 1
    assert found["kr6"]["check_in_count"] == 1
    assert not marker.exists()
