"""Helpers of the ledger-core tests: an org driven through a live sequencer, ledgers on disk,
and tampering with a stored SQLite ledger."""

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner, Result

from events.canonical import canonical_json
from events.chain import event_hash
from events.ledger import Ledger
from events.outcomes import Accepted, Duplicate, Outcome, Rejection
from events.reasons import ReasonCode
from events.sequencer import DEFAULT_POLICY, Policy, Sequencer
from events.sqlite_log import SqliteEventLog
from okr_ledger.cli import app
from schemas.envelope import LedgerEvent
from tests.builders import NOW, raw

CHECK_IN_ID = "00000000-0000-4000-8000-0000000000c1"
"""The event id of the check-in that :func:`base_setup` records on ``kr1``."""


def base_setup(org_id: str = "acme") -> list[bytes]:
    """A small but complete org: strategy, two themes, two units, an open period, a parent and a
    child objective, an increasing and a decreasing key result, and one check-in."""
    return [
        raw("StrategyDefined", {"mission": "m", "vision": "v"}, org_id=org_id),
        raw("ThemeAdded", {"theme_id": "t1", "name": "Customers"}, org_id=org_id),
        raw("ThemeAdded", {"theme_id": "t2", "name": "Growth"}, org_id=org_id),
        raw("OrgUnitAdded", {"unit_id": "co", "name": "Co", "kind": "company"}, org_id=org_id),
        raw(
            "OrgUnitAdded",
            {"unit_id": "team", "name": "Team", "kind": "team", "parent_unit_id": "co"},
            org_id=org_id,
        ),
        raw(
            "PeriodDefined",
            {"period_id": "q4", "name": "Q4", "starts_on": "2026-10-01", "ends_on": "2026-12-31"},
            org_id=org_id,
        ),
        raw("ObjectiveCreated", objective("o1", theme_ids=["t1"]), org_id=org_id),
        raw(
            "ObjectiveCreated",
            objective("o2", owner_unit_id="team", parent_objective_id="o1"),
            org_id=org_id,
        ),
        raw("KeyResultDefined", key_result("kr1", "o1", "increase", 10, 50), org_id=org_id),
        raw("KeyResultDefined", key_result("kr2", "o2", "decrease", 30, 10), org_id=org_id),
        raw(
            "CheckInRecorded",
            {"key_result_id": "kr1", "value": 20, "confidence": 0.6},
            org_id=org_id,
            event_id=CHECK_IN_ID,
        ),
    ]


def objective(objective_id: str, **fields: Any) -> dict[str, Any]:
    """ObjectiveCreated data owned by ``co`` in period ``q4``; ``fields`` override."""
    return {
        "objective_id": objective_id,
        "title": f"Objective {objective_id}",
        "owner_unit_id": "co",
        "period_id": "q4",
        "theme_ids": [],
        "rollup": "key_results",
        **fields,
    }


def key_result(
    key_result_id: str, objective_id: str, kind: str, start: float, target: float, **fields: Any
) -> dict[str, Any]:
    return {
        "key_result_id": key_result_id,
        "objective_id": objective_id,
        "title": f"Key result {key_result_id}",
        "kind": kind,
        "start": start,
        "target": target,
        "unit": "points",
        **fields,
    }


class Org:
    """One org driven through a live :class:`Sequencer` at the fixed test clock."""

    def __init__(
        self, org_id: str = "acme", policy: Policy = DEFAULT_POLICY, *, setup: bool = True
    ) -> None:
        self.org_id = org_id
        self.sequencer = Sequencer(policy=policy)
        if setup:
            for line in base_setup(org_id):
                self.expect_accepted_raw(line)

    def submit_raw(self, line: bytes, now: datetime = NOW) -> Outcome:
        return self.sequencer.submit(line, now=now)

    def submit(self, type_name: str, data: dict[str, Any], **envelope: Any) -> Outcome:
        envelope.setdefault("org_id", self.org_id)
        return self.submit_raw(raw(type_name, data, **envelope))

    def expect_accepted_raw(self, line: bytes) -> LedgerEvent:
        outcome = self.submit_raw(line)
        assert isinstance(outcome, Accepted), describe(outcome)
        return outcome.event

    def accept(self, type_name: str, data: dict[str, Any], **envelope: Any) -> LedgerEvent:
        outcome = self.submit(type_name, data, **envelope)
        assert isinstance(outcome, Accepted), describe(outcome)
        return outcome.event

    def reject(self, type_name: str, data: dict[str, Any], **envelope: Any) -> Rejection:
        outcome = self.submit(type_name, data, **envelope)
        assert isinstance(outcome, Rejection), describe(outcome)
        return outcome


def describe(outcome: Outcome) -> str:
    if isinstance(outcome, Rejection):
        return f"rejected {outcome.reason.value}: {outcome.message} {outcome.details}"
    if isinstance(outcome, Duplicate):
        return f"duplicate {outcome.event_id}"
    return f"accepted {outcome.event.type} #{outcome.event.sequence}"


def reason_of(outcome: Outcome) -> ReasonCode | None:
    """The reason code of a rejection; None for an accepted event or a duplicate."""
    return outcome.reason if isinstance(outcome, Rejection) else None


def by_org(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record["org_id"], []).append(record)
    return grouped


# --- a ledger on disk, and tampering with it -----------------------------------------------


@contextmanager
def sqlite_log(path: Path) -> Iterator[SqliteEventLog]:
    log = SqliteEventLog(path)
    try:
        yield log
    finally:
        log.close()


def store(path: Path, events: Sequence[LedgerEvent]) -> None:
    with sqlite_log(path) as log:
        log.append(events)


ALTERATIONS = ("content", "actor", "recorded_at", "prev_hash", "forged_link", "hash", "sequence")
"""Ways to alter one stored event:

- ``content``, ``actor``, ``recorded_at``: change a field, keep the stored hash;
- ``prev_hash``: point the link elsewhere, keep the stored hash;
- ``forged_link``: point the link elsewhere and recompute the event's own hash to match;
- ``hash``: change the stored hash itself;
- ``sequence``: change the sequence number inside the event.
"""


def altered(record: dict[str, Any], how: str) -> dict[str, Any]:
    """A copy of ``record`` altered in one way (see :data:`ALTERATIONS`)."""
    changed = dict(record)
    if how == "content":
        changed["data"] = {**record["data"], "tampered": True}
    elif how == "actor":
        changed["actor"] = record["actor"] + " (forged)"
    elif how == "recorded_at":
        changed["recorded_at"] = "1999-01-01T00:00:00Z"
    elif how == "prev_hash":
        changed["prev_hash"] = "f" * 64
    elif how == "forged_link":
        changed["prev_hash"] = "e" * 64
        changed["hash"] = event_hash(changed)
    elif how == "hash":
        changed["hash"] = "0" * 64 if record["hash"] != "0" * 64 else "1" * 64
    elif how == "sequence":
        changed["sequence"] = record["sequence"] + 1000
    else:
        raise ValueError(how)
    return changed


def tamper(path: Path, org_id: str, sequence: int, how: str) -> None:
    """Alter one stored event's body behind the ledger's back (the triggers are dropped)."""
    db = sqlite3.connect(path)
    try:
        db.execute("DROP TRIGGER IF EXISTS events_are_immutable")
        (body,) = db.execute(
            "SELECT body FROM events WHERE org_id = ? AND sequence = ?", (org_id, sequence)
        ).fetchone()
        record = altered(orjson.loads(body), how)
        db.execute(
            "UPDATE events SET body = ? WHERE org_id = ? AND sequence = ?",
            (canonical_json(record), org_id, sequence),
        )
        db.commit()
    finally:
        db.close()


_SCRATCH = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
"""Where the many small ledgers of property tests go: memory when the machine has a tmpfs (a
real SQLite file, only without the cost of fsync on every commit)."""


@contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="okr-ledger-test-", dir=_SCRATCH) as directory:
        yield Path(directory)


@contextmanager
def ledger_file() -> Iterator[Path]:
    with scratch_dir() as directory:
        yield directory / "ledger.db"


def run_ledger(path: Path, lines: list[bytes], batch_size: int) -> list[Outcome]:
    ledger = Ledger(SqliteEventLog(path), clock=lambda: NOW, batch_size=batch_size)
    try:
        return list(ledger.submit_many((line, None) for line in lines))
    finally:
        ledger.log.close()


# --- the command line, in process ----------------------------------------------------------

_CLEAN_ENV = ("OKR_LEDGER_URL", "OKR_CLICKHOUSE_URL", "OKR_SUBMIT_BATCH_SIZE")

Cli = Callable[..., Result]
"""The ``cli`` fixture: ``cli("submit", "-", stdin=b"...")``."""


def run_cli(data_dir: Path, *args: str, stdin: bytes | None = None) -> Result:
    """``okr-ledger ARGS`` on the ledger under ``data_dir`` (the embedded SQLite default)."""
    env: dict[str, str | None] = dict.fromkeys(_CLEAN_ENV)
    env["OKR_DATA_DIR"] = str(data_dir)
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def ndjson(result: Result) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in result.stdout_bytes.splitlines() if line.strip()]


OKR_LEDGER = Path(sys.executable).parent / "okr-ledger"


def run(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("OKR_") and k != "COLUMNS"
    }
    environment.update(OKR_DATA_DIR=str(data_dir), COLUMNS="80", **env)
    return subprocess.run(
        [str(OKR_LEDGER), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=data_dir.parent,
        timeout=120,
        check=False,
    )
