"""A query command catches the store up through a read-only ledger connection: SQLite itself
refuses writes through it (which holds for root too, who ignores permission bits), and a
ledger file nobody may write is read and projected, and left exactly as it was."""

import hashlib
import sqlite3
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from events.log import EventLog
from okr_ledger import embedded_runtime
from okr_ledger.cli import app
from schemas.errors import LedgerUnavailableError
from tests.builders import chained_events
from tests.projections.cli_support import lines

runner = CliRunner()

CHECK_IN = {
    "type": "CheckInRecorded",
    "org_id": "northwind",
    "occurred_at": "2026-11-20T09:00:00Z",
    "actor": "nps-owner@northwind.example",
    "source": "cli",
    "source_event_id": "nps-read-only",
    "data": {"key_result_id": "nps", "value": 44, "confidence": 0.9},
}


def _submit_one() -> None:
    submitted = runner.invoke(app, ["submit", "-"], input=orjson.dumps(CHECK_IN).decode())
    assert submitted.exit_code == 0, submitted.output


def _state(path: Path) -> tuple[int, int, str]:
    status = path.stat()
    return status.st_mode, status.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_catch_up_of_a_query_cannot_write_the_ledger(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _submit_one()  # something new, so the query's catch-up reads the ledger
    refused: list[BaseException] = []
    real_catch_up = embedded_runtime.catch_up

    def trying_to_write(store: Any, log: EventLog, *args: Any, **kwargs: Any) -> int:
        with pytest.raises(LedgerUnavailableError, match="open read-only") as caught:
            log.append(chained_events("intruder"))
        refused.append(caught.value)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # SQLite's own refusal
            log._db.execute("CREATE TABLE intruder (x)")  # type: ignore[attr-defined]
        return real_catch_up(store, log, *args, **kwargs)

    monkeypatch.setattr(embedded_runtime, "catch_up", trying_to_write)
    found = {line["id"]: line for line in lines("progress", "--org", "northwind")}
    assert found["nps"]["value"] == 44  # projected through the read-only connection
    assert len(refused) == 1
    assert "intruder" not in {line["org_id"] for line in lines("progress")}


def test_a_query_projects_from_a_ledger_file_nobody_may_write_and_leaves_it_unchanged(
    demo_dir: Path,
) -> None:
    """For a user who may not write the file. Root ignores permission bits, and a connection
    that may write but does not leaves the file as it was too: what proves the connection
    read-only is the test above (SQLite's own refusal); this one, that nothing on the query's
    path writes the ledger (a migration, a state table) and that it works without the right."""
    _submit_one()
    ledger = demo_dir / "data" / "ledger.db"
    assert not Path(f"{ledger}-wal").exists()  # the writer closed: all of it in the file
    ledger.chmod(ledger.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        before = _state(ledger)
        found = {line["id"]: line for line in lines("progress", "--org", "northwind")}
        assert found["nps"]["value"] == 44
        assert _state(ledger) == before
    finally:
        ledger.chmod(ledger.stat().st_mode | stat.S_IWUSR)
