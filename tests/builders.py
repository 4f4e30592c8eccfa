"""Building valid submissions and chained ledger events for tests (pure code, no I/O)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count
from typing import Any

import orjson

from events.outcomes import Accepted, Outcome
from events.sequencer import Sequencer
from schemas.envelope import LedgerEvent

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
"""The ledger clock of the tests: fixed, so outcomes are reproducible."""

_keys = count(1)


def submission(
    type_name: str,
    data: dict[str, Any],
    *,
    org_id: str = "acme",
    occurred_at: str = "2026-11-02T09:00:00+01:00",
    key: str | None = None,
    **envelope: Any,
) -> dict[str, Any]:
    """A submission as a dict; ``key`` becomes its source_event_id (unique when omitted)."""
    document: dict[str, Any] = {
        "type": type_name,
        "org_id": org_id,
        "occurred_at": occurred_at,
        "actor": "ann@acme.example",
        "source": "tests",
        "data": data,
    }
    if "event_id" not in envelope:
        document["source_event_id"] = key or f"k{next(_keys)}"
    document.update(envelope)
    return document


def raw(type_name: str, data: dict[str, Any], **kwargs: Any) -> bytes:
    return orjson.dumps(submission(type_name, data, **kwargs))


def org_setup(org_id: str = "acme") -> list[bytes]:
    """Strategy, a theme, a unit tree, an open period, an objective and a key result."""
    return [
        raw("StrategyDefined", {"mission": "m", "vision": "v"}, org_id=org_id),
        raw("ThemeAdded", {"theme_id": "t1", "name": "Customers"}, org_id=org_id),
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
        raw(
            "ObjectiveCreated",
            {
                "objective_id": "o1",
                "title": "Happy customers",
                "owner_unit_id": "co",
                "period_id": "q4",
                "theme_ids": ["t1"],
                "rollup": "key_results",
            },
            org_id=org_id,
        ),
        raw(
            "KeyResultDefined",
            {
                "key_result_id": "kr1",
                "objective_id": "o1",
                "title": "NPS to 50",
                "kind": "increase",
                "start": 10,
                "target": 50,
                "unit": "points",
            },
            org_id=org_id,
        ),
    ]


def check_ins(n: int, org_id: str = "acme", key_result_id: str = "kr1") -> Iterator[bytes]:
    for i in range(n):
        yield raw(
            "CheckInRecorded",
            {"key_result_id": key_result_id, "value": 10 + i, "confidence": 0.5},
            org_id=org_id,
        )


def sequence_all(raws: list[bytes], sequencer: Sequencer | None = None) -> list[Outcome]:
    sequencer = sequencer or Sequencer()
    return [sequencer.submit(r, now=NOW) for r in raws]


def chained_events(*org_ids: str, check_in_count: int = 3) -> list[LedgerEvent]:
    """Valid, chained ledger events for each org (setup plus some check-ins)."""
    raws: list[bytes] = []
    for org_id in org_ids:
        raws += org_setup(org_id) + list(check_ins(check_in_count, org_id))
    events = [o.event for o in sequence_all(raws) if isinstance(o, Accepted)]
    assert len(events) == len(raws), "the builders must produce only valid submissions"
    return events
