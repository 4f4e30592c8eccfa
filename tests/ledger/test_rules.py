"""Every domain rule of ``events.rules``, for every event type: one case each.

Each case starts from :func:`tests.ledger.support.base_setup` (strategy, themes t1 t2, units co
and team, open period q4, objectives o1 and its child o2, key results kr1 (increase 10 -> 50,
on o1) and kr2 (decrease 30 -> 10, on o2), and check-in CHECK_IN_ID on kr1), applies a few
preparation steps that must be accepted, and then submits one event.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from events.outcomes import Accepted, Rejection
from events.reasons import ReasonCode
from events.rules import RULES
from schemas.registry import EVENT_TYPES
from tests.builders import raw
from tests.ledger.support import CHECK_IN_ID, Org, describe, key_result, objective

OTHER_CHECK_IN_ID = "00000000-0000-4000-8000-0000000000c2"
CORRECTION_ID = "00000000-0000-4000-8000-0000000000c3"
R = ReasonCode


@dataclass(frozen=True)
class Step:
    type: str
    data: dict[str, Any]
    envelope: dict[str, Any] = field(default_factory=dict)


def step(type_name: str, data: dict[str, Any], **envelope: Any) -> Step:
    return Step(type_name, data, envelope)


def case(
    case_id: str, then: Step, expected: ReasonCode | None, *prep: Step
) -> Any:  # a pytest ParameterSet
    return pytest.param(list(prep), then, expected, id=case_id)


# --- preparation steps used by several cases -------------------------------------------------

RETIRE_T1 = step("ThemeRetired", {"theme_id": "t1", "reason": "done"})
RETIRE_TEAM = step("OrgUnitRetired", {"unit_id": "team", "reason": "merged"})
CLOSE_Q4 = step("PeriodClosed", {"period_id": "q4"})
REOPEN_Q4 = step("PeriodReopened", {"period_id": "q4", "reason": "late numbers"})
SOURCED_CHECK_IN = step(
    "CheckInRecorded",
    {"key_result_id": "kr1", "value": 25, "confidence": 0.5},
    source="sheets",
    source_event_id="row-7",
)
ABANDON_O1 = step("ObjectiveStatusChanged", {"objective_id": "o1", "status": "abandoned"})
ABANDON_O2 = step("ObjectiveStatusChanged", {"objective_id": "o2", "status": "abandoned"})
ACHIEVE_O1 = step("ObjectiveStatusChanged", {"objective_id": "o1", "status": "achieved"})
RETIRE_KR1 = step("KeyResultRetired", {"key_result_id": "kr1", "reason": "dropped"})
ADD_SWOT = step("SwotItemAdded", {"swot_id": "s1", "quadrant": "strength", "text": "Support"})
REMOVE_SWOT = step("SwotItemRemoved", {"swot_id": "s1", "reason": "outdated"})
CREATE_O3 = step("ObjectiveCreated", objective("o3"))
CREATE_O3_UNDER_O2 = step("ObjectiveCreated", objective("o3", parent_objective_id="o2"))
LINK = step(
    "ObjectiveLinked", {"objective_id": "o1", "linked_objective_id": "o2", "relation": "depends_on"}
)
UNLINK = step(
    "ObjectiveUnlinked",
    {"objective_id": "o1", "linked_objective_id": "o2", "relation": "depends_on"},
)
RETRACT = step(
    "CheckInRetracted", {"key_result_id": "kr1", "retracts_event_id": CHECK_IN_ID, "reason": "typo"}
)
CORRECT = step(
    "CheckInCorrected",
    {"key_result_id": "kr1", "corrects_event_id": CHECK_IN_ID, "value": 21, "reason": "typo"},
    event_id=CORRECTION_ID,
)
CHECK_IN_KR2 = step(
    "CheckInRecorded",
    {"key_result_id": "kr2", "value": 25, "confidence": 0.5},
    event_id=OTHER_CHECK_IN_ID,
)
DEFINE_Q3 = step(
    "PeriodDefined",
    {"period_id": "q3", "name": "Q3", "starts_on": "2026-07-01", "ends_on": "2026-09-30"},
)
MILESTONE = step("KeyResultDefined", key_result("kr3", "o1", "milestone", 0, 1))


def check_in(kr: str = "kr1", value: float = 30, **envelope: str) -> Step:
    return step(
        "CheckInRecorded", {"key_result_id": kr, "value": value, "confidence": 0.7}, **envelope
    )


def correction(kr: str = "kr1", of: str = CHECK_IN_ID) -> Step:
    return step(
        "CheckInCorrected",
        {"key_result_id": kr, "corrects_event_id": of, "value": 22, "reason": "misread"},
    )


def retraction(kr: str = "kr1", of: str = CHECK_IN_ID) -> Step:
    return step("CheckInRetracted", {"key_result_id": kr, "retracts_event_id": of, "reason": "x"})


def status(objective_id: str, new_status: str) -> Step:
    return step("ObjectiveStatusChanged", {"objective_id": objective_id, "status": new_status})


def aligned(objective_id: str, parent: str) -> Step:
    return step("ObjectiveAligned", {"objective_id": objective_id, "parent_objective_id": parent})


def linked(a: str, b: str, relation: str = "depends_on", unlink: bool = False) -> Step:
    data = {"objective_id": a, "linked_objective_id": b, "relation": relation}
    return step("ObjectiveUnlinked" if unlink else "ObjectiveLinked", data)


def target(kr: str, value: float) -> Step:
    return step("KeyResultTargetRevised", {"key_result_id": kr, "target": value, "reason": "new"})


def kr_defined(kind: str, start: float, goal: float, objective_id: str = "o1", **f: Any) -> Step:
    return step("KeyResultDefined", key_result("kr9", objective_id, kind, start, goal, **f))


def owner(kind: str, subject: str, who: str | None, **more: Any) -> Step:
    name = "ObjectiveOwnerChanged" if kind == "objective" else "KeyResultOwnerChanged"
    return step(name, {f"{kind}_id": subject, "owner": who, **more})


FRESH: dict[str, Any] = {"org_id": "fresh"}

CASES = [
    # --- strategy ---
    case(
        "the first strategy of an org is accepted",
        step("StrategyDefined", {"mission": "m", "vision": "v"}, **FRESH),
        None,
    ),
    case(
        "a second strategy already exists",
        step("StrategyDefined", {"mission": "m2", "vision": "v2"}),
        R.ALREADY_EXISTS,
    ),
    case(
        "a strategy revision after the definition is accepted",
        step("StrategyRevised", {"vision": "v2", "reason": "board"}),
        None,
    ),
    case(
        "a strategy revision before any definition is invalid_state",
        step("StrategyRevised", {"mission": "m2", "reason": "board"}, **FRESH),
        R.INVALID_STATE,
    ),
    case(
        "a strategy review after the definition is accepted",
        step("StrategyReviewed", {"verdict": "sound", "notes": "ok", "reviewer": "board"}),
        None,
    ),
    case(
        "a strategy review before any definition is invalid_state",
        step("StrategyReviewed", {"verdict": "needs_work", "notes": "", "reviewer": "b"}, **FRESH),
        R.INVALID_STATE,
    ),
    # --- SWOT ---
    case("a new SWOT item is accepted", ADD_SWOT, None),
    case("a SWOT item id taken already exists", ADD_SWOT, R.ALREADY_EXISTS, ADD_SWOT),
    case(
        "a removed SWOT item id cannot be added again",
        ADD_SWOT,
        R.ALREADY_EXISTS,
        ADD_SWOT,
        REMOVE_SWOT,
    ),
    case("removing a present SWOT item is accepted", REMOVE_SWOT, None, ADD_SWOT),
    case("removing an unknown SWOT item is unknown_reference", REMOVE_SWOT, R.UNKNOWN_REFERENCE),
    case(
        "removing a SWOT item twice is invalid_state",
        REMOVE_SWOT,
        R.INVALID_STATE,
        ADD_SWOT,
        REMOVE_SWOT,
    ),
    # --- competitors ---
    case(
        "a competitor is accepted",
        step("CompetitorNoted", {"competitor_id": "c1", "name": "SuiteCo"}),
        None,
    ),
    case(
        "noting a competitor again is accepted",
        step("CompetitorNoted", {"competitor_id": "c1", "name": "SuiteCo 2"}),
        None,
        step("CompetitorNoted", {"competitor_id": "c1", "name": "SuiteCo"}),
    ),
    # --- themes ---
    case("a new theme is accepted", step("ThemeAdded", {"theme_id": "t3", "name": "Ops"}), None),
    case(
        "a theme id taken already exists",
        step("ThemeAdded", {"theme_id": "t1", "name": "Again"}),
        R.ALREADY_EXISTS,
    ),
    case(
        "a retired theme id cannot be added again",
        step("ThemeAdded", {"theme_id": "t1", "name": "Again"}),
        R.ALREADY_EXISTS,
        RETIRE_T1,
    ),
    case(
        "revising an active theme is accepted",
        step("ThemeRevised", {"theme_id": "t1", "name": "Clients"}),
        None,
    ),
    case(
        "revising an unknown theme is unknown_reference",
        step("ThemeRevised", {"theme_id": "t9", "name": "X"}),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "revising a retired theme is invalid_state",
        step("ThemeRevised", {"theme_id": "t1", "name": "X"}),
        R.INVALID_STATE,
        RETIRE_T1,
    ),
    case("retiring an active theme is accepted", RETIRE_T1, None),
    case(
        "retiring an unknown theme is unknown_reference",
        step("ThemeRetired", {"theme_id": "t9", "reason": "x"}),
        R.UNKNOWN_REFERENCE,
    ),
    case("retiring a theme twice is invalid_state", RETIRE_T1, R.INVALID_STATE, RETIRE_T1),
    # --- org units ---
    case(
        "a new root unit is accepted",
        step("OrgUnitAdded", {"unit_id": "co2", "name": "Co 2", "kind": "company"}),
        None,
    ),
    case(
        "a unit under an active parent is accepted",
        step(
            "OrgUnitAdded",
            {"unit_id": "p1", "name": "P", "kind": "person", "parent_unit_id": "team"},
        ),
        None,
    ),
    case(
        "a unit id taken already exists",
        step("OrgUnitAdded", {"unit_id": "team", "name": "T", "kind": "team"}),
        R.ALREADY_EXISTS,
    ),
    case(
        "a unit under an unknown parent is unknown_reference",
        step(
            "OrgUnitAdded",
            {"unit_id": "p1", "name": "P", "kind": "person", "parent_unit_id": "nope"},
        ),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "a unit under a retired parent is invalid_state",
        step(
            "OrgUnitAdded",
            {"unit_id": "p1", "name": "P", "kind": "person", "parent_unit_id": "team"},
        ),
        R.INVALID_STATE,
        RETIRE_TEAM,
    ),
    case("retiring an active unit is accepted", RETIRE_TEAM, None),
    case(
        "retiring an unknown unit is unknown_reference",
        step("OrgUnitRetired", {"unit_id": "nope", "reason": "x"}),
        R.UNKNOWN_REFERENCE,
    ),
    case("retiring a unit twice is invalid_state", RETIRE_TEAM, R.INVALID_STATE, RETIRE_TEAM),
    # --- periods ---
    case("a new period is accepted", DEFINE_Q3, None),
    case(
        "a one-day period is accepted",
        step(
            "PeriodDefined",
            {"period_id": "d", "name": "D", "starts_on": "2027-01-01", "ends_on": "2027-01-01"},
        ),
        None,
    ),
    case(
        "a period that ends before it starts is invalid_definition",
        step(
            "PeriodDefined",
            {"period_id": "bad", "name": "B", "starts_on": "2027-03-31", "ends_on": "2027-01-01"},
        ),
        R.INVALID_DEFINITION,
    ),
    case(
        "a period id taken already exists",
        step(
            "PeriodDefined",
            {"period_id": "q4", "name": "Q4", "starts_on": "2026-10-01", "ends_on": "2026-12-31"},
        ),
        R.ALREADY_EXISTS,
    ),
    case("closing an open period is accepted", CLOSE_Q4, None),
    case(
        "closing an unknown period is unknown_reference",
        step("PeriodClosed", {"period_id": "q9"}),
        R.UNKNOWN_REFERENCE,
    ),
    case("closing a period twice is invalid_state", CLOSE_Q4, R.INVALID_STATE, CLOSE_Q4),
    case("closing a reopened period is accepted", CLOSE_Q4, None, CLOSE_Q4, REOPEN_Q4),
    case("reopening a closed period is accepted", REOPEN_Q4, None, CLOSE_Q4),
    case("reopening an open period is invalid_state", REOPEN_Q4, R.INVALID_STATE),
    case(
        "reopening an unknown period is unknown_reference",
        step("PeriodReopened", {"period_id": "q9", "reason": "x"}),
        R.UNKNOWN_REFERENCE,
    ),
    # --- objectives ---
    case(
        "an objective with themes and a parent is accepted",
        step(
            "ObjectiveCreated",
            objective(
                "o3",
                theme_ids=["t1", "t2"],
                parent_objective_id="o2",
                owner_unit_id="team",
                weight=2.5,
            ),
        ),
        None,
    ),
    case(
        "an objective under an achieved parent is accepted",
        CREATE_O3_UNDER_O2,
        None,
        status("o2", "achieved"),
    ),
    case(
        "an objective id taken already exists",
        step("ObjectiveCreated", objective("o1")),
        R.ALREADY_EXISTS,
    ),
    case(
        "an objective of an unknown unit is unknown_reference",
        step("ObjectiveCreated", objective("o3", owner_unit_id="nope")),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "an objective of a retired unit is invalid_state",
        step("ObjectiveCreated", objective("o3", owner_unit_id="team")),
        R.INVALID_STATE,
        RETIRE_TEAM,
    ),
    case(
        "an objective in an unknown period is unknown_reference",
        step("ObjectiveCreated", objective("o3", period_id="q9")),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "a new objective in a closed period is invalid_state", CREATE_O3, R.INVALID_STATE, CLOSE_Q4
    ),
    case(
        "an objective on an unknown theme is unknown_reference",
        step("ObjectiveCreated", objective("o3", theme_ids=["t1", "t9"])),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "an objective on a retired theme is invalid_state",
        step("ObjectiveCreated", objective("o3", theme_ids=["t1"])),
        R.INVALID_STATE,
        RETIRE_T1,
    ),
    case(
        "an objective under an unknown parent is unknown_reference",
        step("ObjectiveCreated", objective("o3", parent_objective_id="o9")),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "an objective under an abandoned parent is invalid_state",
        CREATE_O3_UNDER_O2,
        R.INVALID_STATE,
        ABANDON_O2,
    ),
    case(
        "an objective of weight zero is invalid_definition",
        step("ObjectiveCreated", objective("o3", weight=0)),
        R.INVALID_DEFINITION,
    ),
    case(
        "an objective of negative weight is invalid_definition",
        step("ObjectiveCreated", objective("o3", weight=-1)),
        R.INVALID_DEFINITION,
    ),
    case(
        "revising an objective is accepted",
        step(
            "ObjectiveRevised",
            {"objective_id": "o1", "title": "New", "theme_ids": ["t2"], "weight": 3},
        ),
        None,
    ),
    case(
        "revising an objective of a closed period is invalid_state",
        step("ObjectiveRevised", {"objective_id": "o1", "title": "New"}),
        R.INVALID_STATE,
        CLOSE_Q4,
    ),
    case(
        "revising an objective of a reopened period is accepted",
        step("ObjectiveRevised", {"objective_id": "o1", "title": "New"}),
        None,
        CLOSE_Q4,
        REOPEN_Q4,
    ),
    case(
        "a status change of an objective of a closed period is invalid_state",
        ACHIEVE_O1,
        R.INVALID_STATE,
        CLOSE_Q4,
    ),
    case(
        "aligning an objective of a closed period is invalid_state",
        aligned("o3", "o2"),
        R.INVALID_STATE,
        CREATE_O3,
        CLOSE_Q4,
    ),
    case(
        "revising a target of a key result of a closed period is invalid_state",
        target("kr1", 60),
        R.INVALID_STATE,
        CLOSE_Q4,
    ),
    case(
        "retiring a key result of a closed period is invalid_state",
        RETIRE_KR1,
        R.INVALID_STATE,
        CLOSE_Q4,
    ),
    case(
        "a new owner of an objective of a closed period is accepted (people move on)",
        owner("objective", "o1", "ann@acme.example", reason="Ann leads it now"),
        None,
        CLOSE_Q4,
    ),
    case(
        "revising an unknown objective is unknown_reference",
        step("ObjectiveRevised", {"objective_id": "o9", "title": "X"}),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "revising an abandoned objective is invalid_state",
        step("ObjectiveRevised", {"objective_id": "o1", "title": "X"}),
        R.INVALID_STATE,
        ABANDON_O1,
    ),
    case(
        "revising an objective onto an unknown theme is unknown_reference",
        step("ObjectiveRevised", {"objective_id": "o1", "theme_ids": ["t9"]}),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "revising an objective onto a retired theme is invalid_state",
        step("ObjectiveRevised", {"objective_id": "o2", "theme_ids": ["t1"]}),
        R.INVALID_STATE,
        RETIRE_T1,
    ),
    case(
        "revising an objective to weight zero is invalid_definition",
        step("ObjectiveRevised", {"objective_id": "o1", "weight": 0}),
        R.INVALID_DEFINITION,
    ),
    # --- vertical alignment ---
    case(
        "aligning a root objective under another is accepted", aligned("o3", "o2"), None, CREATE_O3
    ),
    case(
        "realigning an objective under another parent is accepted",
        aligned("o2", "o3"),
        None,
        CREATE_O3,
    ),
    case(
        "aligning an unknown objective is unknown_reference",
        aligned("o9", "o1"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "aligning under an unknown parent is unknown_reference",
        aligned("o2", "o9"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "aligning an abandoned objective is invalid_state",
        aligned("o2", "o3"),
        R.INVALID_STATE,
        CREATE_O3,
        ABANDON_O2,
    ),
    case(
        "aligning under an abandoned parent is invalid_state",
        aligned("o3", "o1"),
        R.INVALID_STATE,
        CREATE_O3,
        ABANDON_O1,
    ),
    case("aligning an objective under itself is a cycle", aligned("o1", "o1"), R.CYCLE),
    case("aligning a parent under its child is a cycle", aligned("o1", "o2"), R.CYCLE),
    case(
        "aligning an objective under its grandchild is a cycle",
        aligned("o1", "o3"),
        R.CYCLE,
        CREATE_O3_UNDER_O2,
    ),
    case(
        "a realignment that removed the old path is no cycle",
        aligned("o1", "o2"),
        None,
        CREATE_O3,
        aligned("o2", "o3"),
    ),
    # --- horizontal links ---
    case("linking two live objectives is accepted", LINK, None),
    case(
        "linking the same pair by another relation is accepted",
        linked("o1", "o2", "contributes_to"),
        None,
        LINK,
    ),
    case("linking the same pair the other way round is accepted", linked("o2", "o1"), None, LINK),
    case(
        "linking from an unknown objective is unknown_reference",
        linked("o9", "o1"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "linking to an unknown objective is unknown_reference",
        linked("o1", "o9"),
        R.UNKNOWN_REFERENCE,
    ),
    case("linking to an abandoned objective is invalid_state", LINK, R.INVALID_STATE, ABANDON_O2),
    case(
        "linking an objective to itself is invalid_definition",
        linked("o1", "o1"),
        R.INVALID_DEFINITION,
    ),
    case("linking a pair twice the same way is invalid_state", LINK, R.INVALID_STATE, LINK),
    case("relinking after an unlink is accepted", LINK, None, LINK, UNLINK),
    case("unlinking a link is accepted", UNLINK, None, LINK),
    case("unlinking what was never linked is unknown_reference", UNLINK, R.UNKNOWN_REFERENCE),
    case("unlinking twice is unknown_reference", UNLINK, R.UNKNOWN_REFERENCE, LINK, UNLINK),
    case(
        "unlinking another relation than the linked one is unknown_reference",
        linked("o1", "o2", "contributes_to", unlink=True),
        R.UNKNOWN_REFERENCE,
        LINK,
    ),
    # --- objective status ---
    case("achieving an active objective is accepted", ACHIEVE_O1, None),
    case("reopening an achieved objective is accepted", status("o1", "active"), None, ACHIEVE_O1),
    case("abandoning an active objective is accepted", ABANDON_O1, None),
    case(
        "a status change to the current status is invalid_state",
        status("o1", "active"),
        R.INVALID_STATE,
    ),
    case(
        "an abandoned objective cannot change status again",
        status("o1", "active"),
        R.INVALID_STATE,
        ABANDON_O1,
    ),
    case(
        "a status change of an unknown objective is unknown_reference",
        status("o9", "achieved"),
        R.UNKNOWN_REFERENCE,
    ),
    # --- key results ---
    case(
        "an increasing key result with target above start is accepted",
        kr_defined("increase", 1, 2),
        None,
    ),
    case(
        "an increasing key result with target equal to start is invalid_definition",
        kr_defined("increase", 5, 5),
        R.INVALID_DEFINITION,
    ),
    case(
        "an increasing key result with target below start is invalid_definition",
        kr_defined("increase", 5, 4),
        R.INVALID_DEFINITION,
    ),
    case(
        "a decreasing key result with target below start is accepted",
        kr_defined("decrease", 5, -4),
        None,
    ),
    case(
        "a decreasing key result with target equal to start is invalid_definition",
        kr_defined("decrease", 5, 5),
        R.INVALID_DEFINITION,
    ),
    case(
        "a decreasing key result with target above start is invalid_definition",
        kr_defined("decrease", 5, 6),
        R.INVALID_DEFINITION,
    ),
    case("a milestone from 0 to 1 is accepted", kr_defined("milestone", 0, 1), None),
    case(
        "a milestone to another target than 1 is invalid_definition",
        kr_defined("milestone", 0, 2),
        R.INVALID_DEFINITION,
    ),
    case(
        "a milestone from another start than 0 is invalid_definition",
        kr_defined("milestone", 0.5, 1),
        R.INVALID_DEFINITION,
    ),
    case("a stay-above key result may have any target", kr_defined("stay_above", 90, 80), None),
    case("a stay-below key result may have any target", kr_defined("stay_below", 5, 5), None),
    case(
        "a key result of weight zero is invalid_definition",
        kr_defined("increase", 1, 2, weight=0),
        R.INVALID_DEFINITION,
    ),
    case(
        "a key result of negative weight is invalid_definition",
        kr_defined("increase", 1, 2, weight=-0.5),
        R.INVALID_DEFINITION,
    ),
    case(
        "a key result id taken already exists",
        step("KeyResultDefined", key_result("kr1", "o2", "increase", 0, 1)),
        R.ALREADY_EXISTS,
    ),
    case(
        "a key result of an unknown objective is unknown_reference",
        kr_defined("increase", 1, 2, objective_id="o9"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "a key result of an abandoned objective is invalid_state",
        kr_defined("increase", 1, 2),
        R.INVALID_STATE,
        ABANDON_O1,
    ),
    case("raising an increasing key result's target is accepted", target("kr1", 60), None),
    case("lowering a decreasing key result's target is accepted", target("kr2", 5), None),
    case(
        "an increasing target revised to the start is invalid_definition",
        target("kr1", 10),
        R.INVALID_DEFINITION,
    ),
    case(
        "a decreasing target revised above the start is invalid_definition",
        target("kr2", 31),
        R.INVALID_DEFINITION,
    ),
    case(
        "a milestone target revised away from 1 is invalid_definition",
        target("kr3", 2),
        R.INVALID_DEFINITION,
        MILESTONE,
    ),
    case(
        "revising the target of an unknown key result is unknown_reference",
        target("kr9", 60),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "revising the target of a retired key result is invalid_state",
        target("kr1", 60),
        R.INVALID_STATE,
        RETIRE_KR1,
    ),
    case(
        "revising a target under an abandoned objective is invalid_state",
        target("kr1", 60),
        R.INVALID_STATE,
        ABANDON_O1,
    ),
    case("retiring a key result is accepted", RETIRE_KR1, None),
    case(
        "retiring an unknown key result is unknown_reference",
        step("KeyResultRetired", {"key_result_id": "kr9", "reason": "x"}),
        R.UNKNOWN_REFERENCE,
    ),
    case("retiring a key result twice is invalid_state", RETIRE_KR1, R.INVALID_STATE, RETIRE_KR1),
    case(
        "retiring a key result of an abandoned objective is invalid_state",
        RETIRE_KR1,
        R.INVALID_STATE,
        ABANDON_O1,
    ),
    # --- check-ins ---
    case("a check-in is accepted", check_in(), None),
    case(
        "a check-in measured before an earlier one is accepted",
        check_in(occurred_at="2026-10-02T08:00:00Z"),
        None,
    ),
    case(
        "a check-in measured after its period ended is accepted",
        check_in("kr5", occurred_at="2026-11-20T10:00:00Z"),
        None,
        DEFINE_Q3,
        step("ObjectiveCreated", objective("o5", period_id="q3")),
        step("KeyResultDefined", key_result("kr5", "o5", "increase", 0, 10)),
    ),
    case(
        "a check-in on a key result of a closed period is invalid_state",
        check_in(),
        R.INVALID_STATE,
        CLOSE_Q4,
    ),
    case(
        "a check-in on a key result of a reopened period is accepted",
        check_in(),
        None,
        CLOSE_Q4,
        REOPEN_Q4,
    ),
    case(
        "correcting a check-in of a closed period is invalid_state",
        correction(),
        R.INVALID_STATE,
        CLOSE_Q4,
    ),
    case(
        "retracting a check-in of a closed period is invalid_state",
        retraction(),
        R.INVALID_STATE,
        CLOSE_Q4,
    ),
    case(
        "a new key result in a closed period is invalid_state",
        step("KeyResultDefined", key_result("kr7", "o1", "increase", 0, 10)),
        R.INVALID_STATE,
        CLOSE_Q4,
    ),
    case(
        "a new key result in a reopened period is accepted",
        step("KeyResultDefined", key_result("kr7", "o1", "increase", 0, 10)),
        None,
        CLOSE_Q4,
        REOPEN_Q4,
    ),
    case(
        "correcting a check-in by its source_event_id is accepted",
        step(
            "CheckInCorrected",
            {
                "key_result_id": "kr1",
                "corrects_source_event_id": "row-7",
                "value": 26,
                "reason": "misread",
            },
            source="sheets",
        ),
        None,
        SOURCED_CHECK_IN,
    ),
    case(
        "retracting a check-in by its source_event_id is accepted",
        step(
            "CheckInRetracted",
            {"key_result_id": "kr1", "retracts_source_event_id": "row-7", "reason": "x"},
            source="sheets",
        ),
        None,
        SOURCED_CHECK_IN,
    ),
    case(
        "correcting by a source_event_id of another source is unknown_reference",
        step(
            "CheckInCorrected",
            {
                "key_result_id": "kr1",
                "corrects_source_event_id": "row-7",
                "value": 26,
                "reason": "misread",
            },
            source="crm",
        ),
        R.UNKNOWN_REFERENCE,
        SOURCED_CHECK_IN,
    ),
    case(
        "retracting by an unknown source_event_id is unknown_reference",
        step(
            "CheckInRetracted",
            {"key_result_id": "kr1", "retracts_source_event_id": "row-8", "reason": "x"},
            source="sheets",
        ),
        R.UNKNOWN_REFERENCE,
        SOURCED_CHECK_IN,
    ),
    case("a check-in under an achieved objective is accepted", check_in(), None, ACHIEVE_O1),
    case(
        "a check-in on an unknown key result is unknown_reference",
        check_in("kr9"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "a check-in on another org's key result is unknown_reference",
        check_in(**FRESH),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "a check-in on a retired key result is invalid_state",
        check_in(),
        R.INVALID_STATE,
        RETIRE_KR1,
    ),
    case(
        "a check-in under an abandoned objective is invalid_state",
        check_in(),
        R.INVALID_STATE,
        ABANDON_O1,
    ),
    case("correcting a check-in is accepted", correction(), None),
    case("correcting a check-in twice is accepted", correction(), None, CORRECT),
    case(
        "correcting a check-in of an unknown key result is unknown_reference",
        correction("kr9"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "correcting an unknown check-in is unknown_reference",
        correction(of=OTHER_CHECK_IN_ID),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "correcting another key result's check-in is unknown_reference",
        correction("kr2"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "correcting a correction is unknown_reference",
        correction(of=CORRECTION_ID),
        R.UNKNOWN_REFERENCE,
        CORRECT,
    ),
    case(
        "correcting a retracted check-in is invalid_state", correction(), R.INVALID_STATE, RETRACT
    ),
    case(
        "correcting a check-in of a retired key result is invalid_state",
        correction(),
        R.INVALID_STATE,
        RETIRE_KR1,
    ),
    case("retracting a check-in is accepted", retraction(), None),
    case(
        "retracting a check-in of another key result is accepted",
        retraction("kr2", OTHER_CHECK_IN_ID),
        None,
        CHECK_IN_KR2,
    ),
    case("retracting a check-in twice is invalid_state", retraction(), R.INVALID_STATE, RETRACT),
    case(
        "retracting an unknown check-in is unknown_reference",
        retraction(of=OTHER_CHECK_IN_ID),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "retracting a check-in under another key result is unknown_reference",
        retraction("kr2"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "retracting a check-in of an unknown key result is unknown_reference",
        retraction("kr9"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "retracting a check-in of a retired key result is invalid_state",
        retraction(),
        R.INVALID_STATE,
        RETIRE_KR1,
    ),
    # --- owners (issue 11) ---
    case(
        "an objective's owner changes",
        owner("objective", "o1", "ann@acme.example", reason="Ann leads it now"),
        None,
    ),
    case("an objective's owner is removed", owner("objective", "o1", None), None),
    case(
        "an objective named at creation with an owner",
        step("ObjectiveCreated", objective("o3", owner="ann@acme.example")),
        None,
    ),
    case(
        "a key result named at definition with an owner",
        kr_defined("increase", 0, 10, owner="bob@acme.example"),
        None,
    ),
    case(
        "the owner of an objective that does not exist",
        owner("objective", "o9", "ann@acme.example"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "the owner of an abandoned objective",
        owner("objective", "o1", "ann@acme.example"),
        R.INVALID_STATE,
        ABANDON_O1,
    ),
    case(
        "an achieved objective's owner may still change",
        owner("objective", "o1", "ann@acme.example"),
        None,
        ACHIEVE_O1,
    ),
    case("a key result's owner changes", owner("key_result", "kr1", "bob@acme.example"), None),
    case(
        "the owner of a key result that does not exist",
        owner("key_result", "kr9", "bob@acme.example"),
        R.UNKNOWN_REFERENCE,
    ),
    case(
        "the owner of a retired key result",
        owner("key_result", "kr1", "bob@acme.example"),
        R.INVALID_STATE,
        RETIRE_KR1,
    ),
    case(
        "the owner of a key result of an abandoned objective",
        owner("key_result", "kr2", "bob@acme.example"),
        R.INVALID_STATE,
        ABANDON_O2,
    ),
]


@pytest.mark.parametrize(("prep", "then", "expected"), CASES)
def test_rule(prep: list[Step], then: Step, expected: ReasonCode | None) -> None:
    org = Org()
    for earlier in prep:
        org.accept(earlier.type, earlier.data, **earlier.envelope)
    heads_before = {o: s.last_sequence for o, s in org.sequencer.state.orgs.items()}
    outcome = org.submit(then.type, then.data, **then.envelope)
    target_org = then.envelope.get("org_id", "acme")
    if expected is None:
        assert isinstance(outcome, Accepted), describe(outcome)
        assert outcome.event.type == then.type
        assert outcome.event.sequence == heads_before.get(target_org, 0) + 1
    else:
        assert isinstance(outcome, Rejection), describe(outcome)
        assert outcome.reason is expected, describe(outcome)
        assert outcome.details == []
        assert outcome.message
        after = {o: s.last_sequence for o, s in org.sequencer.state.orgs.items()}
        assert after == heads_before


def _cases_of(type_name: str) -> list[ReasonCode | None]:
    return [c.values[2] for c in CASES if c.values[1].type == type_name]


def test_every_event_type_of_the_contract_has_a_rule() -> None:
    assert set(RULES) == set(EVENT_TYPES)


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_event_type_has_an_accepted_case(type_name: str) -> None:
    assert None in _cases_of(type_name)


@pytest.mark.parametrize("type_name", sorted(set(EVENT_TYPES) - {"CompetitorNoted"}))
def test_every_event_type_whose_rule_can_refuse_has_a_rejected_case(type_name: str) -> None:
    assert any(reason is not None for reason in _cases_of(type_name))


def test_every_reason_code_of_the_rules_is_exercised() -> None:
    exercised = {c.values[2] for c in CASES}
    assert {
        R.UNKNOWN_REFERENCE,
        R.ALREADY_EXISTS,
        R.INVALID_STATE,
        R.INVALID_DEFINITION,
        R.CYCLE,
    } <= exercised


def test_a_rule_violation_names_the_offending_id() -> None:
    org = Org()
    rejection = org.reject(
        "CheckInRecorded", {"key_result_id": "kr-x", "value": 1, "confidence": 1}
    )
    assert "kr-x" in rejection.message
    assert rejection.org_id == "acme"
    assert rejection.type == "CheckInRecorded"


@pytest.mark.parametrize(
    "then",
    [
        check_in(),
        correction(),
        retraction(),
        step("KeyResultDefined", key_result("kr7", "o1", "increase", 0, 10)),
        step("ObjectiveCreated", objective("o7")),
        target("kr1", 60),
        RETIRE_KR1,
        ACHIEVE_O1,
        step("ObjectiveRevised", {"objective_id": "o1", "title": "New"}),
    ],
    ids=[
        "check-in",
        "correction",
        "retraction",
        "key result",
        "objective",
        "target",
        "retirement",
        "status",
        "revision",
    ],
)
def test_a_closed_period_refusal_names_the_period(then: Step) -> None:
    org = Org()
    org.accept(CLOSE_Q4.type, CLOSE_Q4.data)
    rejection = org.reject(then.type, then.data, **then.envelope)
    assert rejection.reason is R.INVALID_STATE
    assert "period 'q4' is closed" in rejection.message


def test_a_late_check_in_measured_inside_the_period_before_the_close_is_accepted() -> None:
    """Measured on 2026-12-30 (inside q4), arriving after the period ended but before the
    close: accepted, as before; the same after the close is refused."""
    org = Org()
    january = datetime(2027, 1, 5, tzinfo=UTC)
    late = {"key_result_id": "kr1", "value": 40, "confidence": 0.8}
    line = raw("CheckInRecorded", late, org_id="acme", occurred_at="2026-12-30T12:00:00Z")
    outcome = org.submit_raw(line, now=january)
    assert isinstance(outcome, Accepted), describe(outcome)
    closed = org.submit_raw(raw("PeriodClosed", {"period_id": "q4"}, org_id="acme"), now=january)
    assert isinstance(closed, Accepted), describe(closed)
    again = raw("CheckInRecorded", late, org_id="acme", occurred_at="2026-12-30T13:00:00Z")
    rejection = org.submit_raw(again, now=january)
    assert isinstance(rejection, Rejection)
    assert rejection.reason is R.INVALID_STATE


def test_a_correction_names_its_original_by_one_id_only() -> None:
    org = Org()
    both = {"key_result_id": "kr1", "corrects_event_id": CHECK_IN_ID,
            "corrects_source_event_id": "row-7", "value": 1, "reason": "x"}  # fmt: skip
    assert org.reject("CheckInCorrected", both).reason is R.SCHEMA_VIOLATION
    neither = {"key_result_id": "kr1", "reason": "x"}
    assert org.reject("CheckInRetracted", neither).reason is R.SCHEMA_VIOLATION


def test_a_key_result_may_leave_out_its_unit() -> None:
    org = Org()
    data = key_result("kr7", "o1", "milestone", 0, 1)
    data.pop("unit", None)
    assert isinstance(org.submit("KeyResultDefined", data), Accepted)
    assert isinstance(
        org.submit("KeyResultDefined", {**key_result("kr8", "o1", "increase", 0, 5), "unit": ""}),
        Accepted,
    )
