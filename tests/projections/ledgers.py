"""Building small ledgers for projection tests: submissions through the real sequencer."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson

from events.ledger import Ledger
from events.outcomes import Accepted, Outcome
from events.sqlite_log import SqliteEventLog
from processors import tables as t
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections.store import ProjectionStore
from schemas.envelope import LedgerEvent

ORG = "acme"
PERIOD = "2026-Q4"
PERIOD_START = date(2026, 10, 1)
PERIOD_END = date(2026, 12, 31)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def day(n: int, hour: int = 12) -> datetime:
    """Day ``n`` of the period (day 0 is 1 October), at ``hour`` UTC."""
    return utc(2026, 10, 1, hour) + timedelta(days=n)


class LedgerBuilder:
    """Submits events with chosen business and recorded times; asserts they are accepted."""

    def __init__(self, path: Path, org: str = ORG) -> None:
        self.log = SqliteEventLog(path)
        self.now = utc(2026, 9, 1)
        self.ledger = Ledger(self.log, clock=lambda: self.now)
        self.org = org
        self.count = 0

    def close(self) -> None:
        self.log.close()

    def submit(
        self,
        type_name: str,
        data: dict[str, Any],
        occurred: datetime,
        recorded: datetime | None = None,
    ) -> Outcome:
        """Submit one event; it is recorded at ``recorded`` (default: just after it occurred)."""
        self.count += 1
        step = self.now + timedelta(seconds=1)
        self.now = recorded if recorded is not None else max(step, occurred + timedelta(minutes=1))
        submission = {
            "type": type_name,
            "org_id": self.org,
            "occurred_at": occurred.isoformat(),
            "actor": "tester@acme.example",
            "source": "test",
            "source_event_id": f"e{self.count}",
            "data": data,
        }
        return self.ledger.submit(orjson.dumps(submission))

    def add(
        self,
        type_name: str,
        data: dict[str, Any],
        occurred: datetime,
        recorded: datetime | None = None,
    ) -> str:
        outcome = self.submit(type_name, data, occurred, recorded)
        assert isinstance(outcome, Accepted), outcome
        return outcome.event.event_id

    # --- the usual building blocks ---------------------------------------------------------

    def skeleton(
        self, themes: tuple[str, ...] = ("growth",), units: tuple[str, ...] = ("co",)
    ) -> None:
        setup = utc(2026, 9, 1)
        self.add("StrategyDefined", {"mission": "M", "vision": "V"}, setup)
        for theme in themes:
            self.add("ThemeAdded", {"theme_id": theme, "name": theme.title()}, setup)
        for unit in units:
            self.add("OrgUnitAdded", {"unit_id": unit, "name": unit, "kind": "team"}, setup)
        self.add(
            "PeriodDefined",
            {
                "period_id": PERIOD,
                "name": "Q4",
                "starts_on": PERIOD_START.isoformat(),
                "ends_on": PERIOD_END.isoformat(),
            },
            setup,
        )

    def objective(self, objective_id: str, **fields: Any) -> str:
        data = {
            "objective_id": objective_id,
            "title": objective_id,
            "owner_unit_id": "co",
            "period_id": PERIOD,
            "theme_ids": [],
            "rollup": "key_results",
            **fields,
        }
        return self.add("ObjectiveCreated", data, utc(2026, 9, 2))

    def key_result(self, key_result_id: str, objective_id: str, **fields: Any) -> str:
        data = {
            "key_result_id": key_result_id,
            "objective_id": objective_id,
            "title": key_result_id,
            "kind": "increase",
            "start": 0,
            "target": 100,
            "unit": "points",
            **fields,
        }
        return self.add("KeyResultDefined", data, utc(2026, 9, 2))

    def check_in(
        self,
        key_result_id: str,
        value: float,
        occurred: datetime,
        confidence: float = 0.5,
        recorded: datetime | None = None,
    ) -> str:
        data = {"key_result_id": key_result_id, "value": value, "confidence": confidence}
        return self.add("CheckInRecorded", data, occurred, recorded)

    def events(self) -> list[LedgerEvent]:
        return list(self.log.read(self.org))


def copy_prefix(events: list[LedgerEvent], path: Path) -> SqliteEventLog:
    """A ledger holding only ``events`` (a prefix of another ledger)."""
    log = SqliteEventLog(path)
    log.append(events)
    return log


def reset(store: ProjectionStore) -> None:
    """Empty every table of the projector and the check-ins' days its view fills (cheaper than
    a new database between hypothesis examples)."""
    for table in (*t.COLUMNS, t.CHECK_IN_DAYS):
        store.client.command(f"TRUNCATE TABLE IF EXISTS {store.database}.{table}")


def emptied(store: ProjectionStore) -> None:
    """``store`` as :meth:`ProjectionStore.drop_all` then :meth:`ProjectionStore.migrate`
    leave it, for a tenth of their statements (a new baseline is ~60 DDL statements, ~0.7 s of
    CPU in chDB): every table of the projector emptied (:func:`reset`), the views, settings and
    migrations kept as they were (a migrated store's), and the ``ledger-begun`` marks this
    object inserted forgotten, as ``drop_all`` forgets them. The store contract proves the two
    leave the same store (``test_emptied_is_what_drop_all_and_migrate_leave``)."""
    reset(store)
    store._marked = {}


def project_prefix(events: list[LedgerEvent], store: ProjectionStore, tmp_path: Path) -> None:
    """``store`` emptied, then projected from a ledger of only ``events``."""
    reset(store)
    log = copy_prefix(events, tmp_path / f"prefix-{uuid4().hex}.db")
    try:
        EmbeddedRunner(log, store, Projector()).catch_up()
    finally:
        log.close()


def small_ledger(builder: LedgerBuilder) -> None:
    builder.skeleton()
    builder.objective("o", theme_ids=["growth"])
    builder.key_result("k", "o")
    for n in range(5):
        builder.check_in("k", 10 * n, day(n))


def small(builder: LedgerBuilder, check_ins: int, theme: str = "growth") -> None:
    builder.skeleton(themes=(theme,))
    builder.objective("o", theme_ids=[theme])
    builder.key_result("k", "o")
    for n in range(check_ins):
        builder.check_in("k", n, day(n))
