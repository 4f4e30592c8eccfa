"""The benchmarks' workload: one org with a strategy, one objective and N key results, then
check-ins spread over them and over 50 days of the period."""

from datetime import date, timedelta

import orjson

from tests.builders import submission


def setup(org: str, key_results: int) -> list[bytes]:
    """Strategy, a theme, a unit, a period, one objective and ``key_results`` key results."""
    documents = [
        submission("StrategyDefined", {"mission": "m", "vision": "v"}, org_id=org, key="s"),
        submission("ThemeAdded", {"theme_id": "t1", "name": "Customers"}, org_id=org, key="t"),
        submission(
            "OrgUnitAdded",
            {"unit_id": "co", "name": "Co", "kind": "company"},
            org_id=org,
            key="u",
        ),
        submission(
            "PeriodDefined",
            {"period_id": "q4", "name": "Q4", "starts_on": "2026-10-01", "ends_on": "2026-12-31"},
            org_id=org,
            key="p",
        ),
        submission(
            "ObjectiveCreated",
            {
                "objective_id": "o1",
                "title": "Objective",
                "owner_unit_id": "co",
                "period_id": "q4",
                "theme_ids": ["t1"],
                "rollup": "key_results",
            },
            org_id=org,
            key="o",
        ),
    ]
    documents += [
        submission(
            "KeyResultDefined",
            {
                "key_result_id": f"kr{i}",
                "objective_id": "o1",
                "title": f"Key result {i}",
                "kind": "increase",
                "start": 0,
                "target": 100,
                "unit": "%",
            },
            org_id=org,
            key=f"kr{i}",
        )
        for i in range(key_results)
    ]
    return [orjson.dumps(d) for d in documents]


def check_in(org: str, i: int, key_results: int) -> bytes:
    day = date(2026, 10, 1) + timedelta(days=i % 50)
    document = submission(
        "CheckInRecorded",
        {"key_result_id": f"kr{i % key_results}", "value": i % 100, "confidence": 0.7},
        org_id=org,
        key=f"ci{i}",
        occurred_at=f"{day.isoformat()}T10:00:00+00:00",
    )
    return orjson.dumps(document)
