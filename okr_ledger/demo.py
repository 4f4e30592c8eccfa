"""The demo organisation, built from the seeds: strategy, cascade, key results, check-ins.

Every submission has a fixed ``source_event_id``, so loading it twice changes nothing in
the ledger: the second run reports duplicates. A few submissions are wrong on purpose, to
show rejections (those are recorded again on every run: the rejection log is an audit of
attempts, not part of the ledger).
"""

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import orjson

from events.ledger import Line
from schemas.envelope import derive_event_id

DEMO_ORG = "northwind"
SOURCE = "demo"
PERIOD = "2026-Q4"
PERIOD_START = date(2026, 10, 1)
DEMO_TREND = "nps"
"""The key result whose trend ``demo`` ends with."""


class _Script:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(
        self,
        key: str,
        type_name: str,
        data: dict[str, Any],
        *,
        on: date = PERIOD_START - timedelta(days=14),
        hour: int = 9,
        actor: str = "ceo@northwind.example",
        source: str = SOURCE,
    ) -> str:
        """Append a submission; returns its event id (for corrections and retractions)."""
        self.lines.append(
            orjson.dumps(
                {
                    "type": type_name,
                    "org_id": DEMO_ORG,
                    "occurred_at": f"{on.isoformat()}T{hour:02d}:00:00+01:00",
                    "actor": actor,
                    "source": source,
                    "source_event_id": key,
                    "data": data,
                }
            )
        )
        return str(derive_event_id(DEMO_ORG, source, key))

    def raw(self, line: bytes) -> None:
        self.lines.append(line)


def _strategy(s: _Script) -> None:
    s.add(
        "strategy",
        "StrategyDefined",
        {
            "mission": "Help every team connect its daily work to the company's strategy.",
            "vision": "The most trusted platform for strategy execution in Europe by 2030.",
        },
    )
    for quadrant, key, text in [
        ("strength", "swot-s1", "Fast, well-liked customer support"),
        ("weakness", "swot-w1", "Onboarding takes three weeks"),
        ("opportunity", "swot-o1", "Mid-market firms are adopting OKRs"),
        ("threat", "swot-t1", "Suites bundle goal-setting for free"),
    ]:
        s.add(key, "SwotItemAdded", {"swot_id": key, "quadrant": quadrant, "text": text})
    s.add(
        "comp-suiteco",
        "CompetitorNoted",
        {
            "competitor_id": "suiteco",
            "name": "SuiteCo",
            "strengths": "Bundled with the office suite",
            "weaknesses": "Shallow cascade, no audit trail",
            "differentiation": "An immutable ledger and real alignment analytics",
        },
    )
    themes = [
        ("customer-satisfaction", "Improve customer satisfaction"),
        ("retention", "Grow retention"),
        ("operational-excellence", "Operational excellence"),
        ("new-markets", "Enter new markets"),
    ]
    for theme_id, name in themes:
        s.add(f"theme-{theme_id}", "ThemeAdded", {"theme_id": theme_id, "name": name})
    s.add(
        "review-1",
        "StrategyReviewed",
        {
            "verdict": "sound",
            "notes": "Themes are clear enough to set OKRs on.",
            "reviewer": "board",
        },
    )


def _organisation(s: _Script) -> None:
    units = [
        ("company", "Northwind", "company", None),
        ("sales", "Sales", "department", "company"),
        ("product", "Product", "department", "company"),
        ("support", "Customer Support", "department", "company"),
        ("team-onboarding", "Onboarding team", "team", "product"),
        ("team-helpdesk", "Helpdesk team", "team", "support"),
    ]
    for unit_id, name, kind, parent in units:
        data = {"unit_id": unit_id, "name": name, "kind": kind}
        if parent:
            data["parent_unit_id"] = parent
        s.add(f"unit-{unit_id}", "OrgUnitAdded", data)
    s.add(
        "period-q4",
        "PeriodDefined",
        {
            "period_id": PERIOD,
            "name": "Q4 2026",
            "starts_on": "2026-10-01",
            "ends_on": "2026-12-31",
        },
    )


CLOSED_PERIOD = "2026-Q3"


def _closed_quarter(s: _Script) -> None:
    """Last quarter, closed on 2 October with its grades: a help centre launched (a milestone
    due on 31 August, with no unit) and 34 of 40 articles written."""
    s.add(
        "period-q3",
        "PeriodDefined",
        {"period_id": CLOSED_PERIOD, "name": "Q3 2026", "starts_on": "2026-07-01",
         "ends_on": "2026-09-30"},
        on=date(2026, 6, 20),
    )  # fmt: skip
    s.add(
        "obj-help-center",
        "ObjectiveCreated",
        {"objective_id": "help-center", "title": "Customers help themselves",
         "owner_unit_id": "support", "period_id": CLOSED_PERIOD,
         "theme_ids": ["customer-satisfaction"], "rollup": "key_results"},
        on=date(2026, 7, 1),
    )  # fmt: skip
    s.add(
        "kr-help-articles",
        "KeyResultDefined",
        {"key_result_id": "help-articles", "objective_id": "help-center",
         "title": "Write 40 help articles", "kind": "increase", "start": 0, "target": 40,
         "unit": "articles"},
        on=date(2026, 7, 1),
    )  # fmt: skip
    s.add(
        "kr-help-center-live",
        "KeyResultDefined",
        {"key_result_id": "help-center-live", "objective_id": "help-center",
         "title": "Help centre live", "kind": "milestone", "start": 0, "target": 1,
         "due_on": "2026-08-31"},
        on=date(2026, 7, 1),
    )  # fmt: skip
    for key, kr_id, on, value, confidence in (
        ("ci-articles-jul", "help-articles", date(2026, 7, 15), 12, 0.6),
        ("ci-articles-aug", "help-articles", date(2026, 8, 15), 26, 0.7),
        ("ci-live-aug", "help-center-live", date(2026, 8, 28), 1, 0.9),
        ("ci-articles-sep", "help-articles", date(2026, 9, 29), 34, 0.8),
    ):
        data = {"key_result_id": kr_id, "value": value, "confidence": confidence}
        s.add(key, "CheckInRecorded", data, on=on)
    s.add("close-q3", "PeriodClosed", {"period_id": CLOSED_PERIOD}, on=date(2026, 10, 2))


def _objective(s: _Script, objective_id: str, title: str, unit: str, **extra: Any) -> None:
    data = {
        "objective_id": objective_id,
        "title": title,
        "owner_unit_id": unit,
        "period_id": PERIOD,
        "theme_ids": extra.pop("theme_ids", []),
        "rollup": extra.pop("rollup", "key_results"),
        **extra,
    }
    s.add(f"obj-{objective_id}", "ObjectiveCreated", data, on=PERIOD_START)


def _key_result(s: _Script, kr_id: str, objective_id: str, title: str, **spec: Any) -> None:
    data = {"key_result_id": kr_id, "objective_id": objective_id, "title": title, **spec}
    s.add(f"kr-{kr_id}", "KeyResultDefined", data, on=PERIOD_START)


def _cascade(s: _Script) -> None:
    _objective(
        s,
        "delight-customers",
        "Customers love working with us",
        "company",
        theme_ids=["customer-satisfaction", "retention"],
        rollup="both",
    )
    _objective(
        s,
        "faster-support",
        "Answer every customer fast",
        "support",
        parent_objective_id="delight-customers",
        rollup="both",
    )
    _objective(
        s,
        "helpdesk-sla",
        "Helpdesk meets its SLA every week",
        "team-helpdesk",
        parent_objective_id="faster-support",
    )
    _objective(
        s,
        "smooth-onboarding",
        "Onboarding in days, not weeks",
        "product",
        parent_objective_id="delight-customers",
        weight=2,
    )
    _objective(
        s,
        "grow-midmarket",
        "Win the mid-market",
        "sales",
        theme_ids=["new-markets"],
    )
    # Nobody aligned this one to a theme: the cascade view flags it as an orphan.
    _objective(s, "office-move", "Move to the new office", "company")
    s.add(
        "link-onboarding-sales",
        "ObjectiveLinked",
        {
            "objective_id": "grow-midmarket",
            "linked_objective_id": "smooth-onboarding",
            "relation": "depends_on",
        },
        on=PERIOD_START,
    )
    _key_result(
        s,
        "nps",
        "delight-customers",
        "Raise NPS from 31 to 45",
        kind="increase",
        start=31,
        target=45,
        unit="points",
        weight=2,
    )
    _key_result(
        s,
        "first-response",
        "faster-support",
        "Cut first response time to 2h",
        kind="decrease",
        start=8,
        target=2,
        unit="hours",
    )
    _key_result(
        s,
        "sla",
        "helpdesk-sla",
        "Keep SLA attainment above 95%",
        kind="stay_above",
        start=90,
        target=95,
        unit="%",
    )
    _key_result(
        s,
        "backlog",
        "helpdesk-sla",
        "Keep the ticket backlog below 50",
        kind="stay_below",
        start=80,
        target=50,
        unit="tickets",
    )
    _key_result(
        s,
        "onboarding-days",
        "smooth-onboarding",
        "Onboarding takes 5 days",
        kind="decrease",
        start=21,
        target=5,
        unit="days",
        checkin_every_days=14,
    )
    _key_result(
        s,
        "self-serve",
        "smooth-onboarding",
        "Self-serve onboarding launched",
        kind="milestone",
        start=0,
        target=1,
        unit="launch",
    )
    _key_result(
        s,
        "midmarket-deals",
        "grow-midmarket",
        "Close 20 mid-market deals",
        kind="increase",
        start=0,
        target=20,
        unit="deals",
    )


def _check_ins(s: _Script) -> None:
    weekly: dict[str, list[float]] = {
        "nps": [33, 35, 36, 38, 39, 41, 42],
        "first-response": [7.5, 6.0, 5.5, 4.0, 3.5, 3.0, 2.5],
        "sla": [93, 96, 97, 94, 96, 97, 98],
        "backlog": [70, 62, 55, 49, 45, 47, 44],
        "midmarket-deals": [1, 2, 4, 5, 7, 8, 10],
    }
    for week in range(7):
        on = PERIOD_START + timedelta(days=4 + 7 * week)
        for kr_id, values in weekly.items():
            confidence = 0.5 + 0.05 * week if kr_id != "midmarket-deals" else 0.4
            s.add(
                f"ci-{kr_id}-w{week + 1}",
                "CheckInRecorded",
                {"key_result_id": kr_id, "value": values[week], "confidence": round(confidence, 2)},
                on=on,
                actor=f"{kr_id}-owner@northwind.example",
                source="jira" if kr_id != "midmarket-deals" else "crm",
            )
    # Onboarding reports every two weeks; one check-in arrives late (measured on week 3,
    # submitted after week 5's) and the projections still sort it by business time.
    s.add(
        "ci-onb-1",
        "CheckInRecorded",
        {"key_result_id": "onboarding-days", "value": 19, "confidence": 0.6},
        on=date(2026, 10, 5),
    )
    s.add(
        "ci-onb-5",
        "CheckInRecorded",
        {"key_result_id": "onboarding-days", "value": 12, "confidence": 0.7},
        on=date(2026, 11, 2),
    )
    s.add(
        "ci-onb-3-late",
        "CheckInRecorded",
        {
            "key_result_id": "onboarding-days",
            "value": 15,
            "confidence": 0.6,
            "comment": "Late entry from the team's spreadsheet",
        },
        on=date(2026, 10, 19),
    )
    s.add(
        "ci-onb-7",
        "CheckInRecorded",
        {"key_result_id": "onboarding-days", "value": 90, "confidence": 0.8},
        on=date(2026, 11, 16),
    )
    s.add(
        "fix-onb-7",
        "CheckInCorrected",
        {
            "key_result_id": "onboarding-days",
            "corrects_source_event_id": "ci-onb-7",  # by the id its source gave it
            "value": 9,
            "reason": "Typo: 90 for 9",
        },
        on=date(2026, 11, 17),
    )
    wrong = s.add(
        "ci-nps-bad",
        "CheckInRecorded",
        {
            "key_result_id": "nps",
            "value": 12,
            "confidence": 0.2,
            "comment": "Survey from the wrong segment",
        },
        on=date(2026, 11, 18),
    )
    s.add(
        "retract-nps-bad",
        "CheckInRetracted",
        {"key_result_id": "nps", "retracts_event_id": wrong, "reason": "Wrong survey segment"},
        on=date(2026, 11, 18),
        hour=15,
    )
    s.add(
        "ci-self-serve",
        "CheckInRecorded",
        {"key_result_id": "self-serve", "value": 0, "confidence": 0.7},
        on=date(2026, 11, 9),
    )
    s.add(
        "revise-deals",
        "KeyResultTargetRevised",
        {
            "key_result_id": "midmarket-deals",
            "target": 15,
            "reason": "Two enterprise deals moved to Q1",
        },
        on=date(2026, 11, 1),
    )


def _mistakes(s: _Script) -> None:
    """What real sources send: a resend, broken lines and events the rules refuse."""
    s.raw(s.lines[-1])  # a retry of the last submission: a duplicate
    s.raw(b'{"type": "CheckInRecorded", "org_id": "northwind", ')  # cut off: invalid_json
    s.add(
        "ci-unknown-kr",
        "CheckInRecorded",
        {"key_result_id": "churn", "value": 3, "confidence": 0.5},
        on=date(2026, 11, 16),
    )  # unknown_reference
    s.add(
        "kr-bad-direction",
        "KeyResultDefined",
        {
            "key_result_id": "bad-kr",
            "objective_id": "grow-midmarket",
            "title": "More churn?",
            "kind": "increase",
            "start": 10,
            "target": 5,
            "unit": "%",
        },
        on=date(2026, 11, 2),
    )  # invalid_definition
    s.add(
        "ci-confidence",
        "CheckInRecorded",
        {"key_result_id": "nps", "value": 40, "confidence": 7},
        on=date(2026, 11, 16),
    )  # schema_violation
    s.add(
        "ci-future",
        "CheckInRecorded",
        {"key_result_id": "nps", "value": 50, "confidence": 0.9},
        on=date(2099, 1, 1),
    )  # clock_skew


OWNERS = {
    "delight-customers": "ceo@northwind.example",
    "faster-support": "anna@northwind.example",
    "helpdesk-sla": "ben@northwind.example",
    "smooth-onboarding": "carla@northwind.example",
    "grow-midmarket": "dan@northwind.example",
}
"""Who owns each objective (its key results too, unless they name their own)."""


def _owners(s: _Script) -> None:
    """Owners of objectives and key results, and one handover (issue 11)."""
    for objective_id, owner in OWNERS.items():
        s.add(
            f"owner-{objective_id}",
            "ObjectiveOwnerChanged",
            {"objective_id": objective_id, "owner": owner},
            on=PERIOD_START,
        )
    s.add(
        "owner-backlog",
        "KeyResultOwnerChanged",
        {"key_result_id": "backlog", "owner": "eve@northwind.example"},
        on=PERIOD_START,
    )
    s.add(
        "owner-midmarket-deals",
        "KeyResultOwnerChanged",
        {
            "key_result_id": "midmarket-deals",
            "owner": "fay@northwind.example",
            "reason": "Dan moves to partnerships; Fay takes the mid-market pipeline",
        },
        on=date(2026, 11, 2),
        actor="dan@northwind.example",
    )


def demo_submissions() -> list[bytes]:
    script = _Script()
    _strategy(script)
    _organisation(script)
    _closed_quarter(script)
    _cascade(script)
    _owners(script)
    _check_ins(script)
    _mistakes(script)
    return script.lines


def demo_lines() -> Iterator[Line]:
    """The demo submissions with their line numbers, as if read from a file."""
    for number, line in enumerate(demo_submissions(), start=1):
        yield line, number
