"""The domain rules: may this (valid) event follow the org's current state?

Each rule gets the org's state and the payload at its latest version, and returns a
:class:`Violation` or None. Pure: no I/O, no clock.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from events.reasons import ReasonCode
from events.state import OrgState
from schemas import payloads as p
from schemas.envelope import event_id_text, original_check_in_key
from schemas.registry import dispatch_table


@dataclass(frozen=True, slots=True)
class Violation:
    reason: ReasonCode
    message: str


def _missing(kind: str, ident: str) -> Violation:
    return Violation(ReasonCode.UNKNOWN_REFERENCE, f"{kind} {ident!r} does not exist")


def _taken(kind: str, ident: str) -> Violation:
    return Violation(ReasonCode.ALREADY_EXISTS, f"{kind} {ident!r} already exists")


def _state(message: str) -> Violation:
    return Violation(ReasonCode.INVALID_STATE, message)


def _definition(message: str) -> Violation:
    return Violation(ReasonCode.INVALID_DEFINITION, message)


def _positive_weight(weight: float | None) -> Violation | None:
    if weight is not None and weight <= 0:
        return _definition(f"weight must be > 0, got {weight}")
    return None


def _active_theme(org: OrgState, theme_id: str) -> Violation | None:
    active = org.themes.get(theme_id)
    if active is None:
        return _missing("theme", theme_id)
    return None if active else _state(f"theme {theme_id!r} is retired")


def _live_objective(org: OrgState, objective_id: str) -> Violation | None:
    objective = org.objectives.get(objective_id)
    if objective is None:
        return _missing("objective", objective_id)
    if objective.status == "abandoned":
        return _state(f"objective {objective_id!r} is abandoned")
    return None


def _live_key_result(org: OrgState, key_result_id: str) -> Violation | None:
    key_result = org.key_results.get(key_result_id)
    if key_result is None:
        return _missing("key result", key_result_id)
    if not key_result.active:
        return _state(f"key result {key_result_id!r} is retired")
    return _live_objective(org, key_result.objective_id)


def _open_period(org: OrgState, period_id: str, what: str) -> Violation | None:
    """While a period is closed, nothing is added to it, checked in against it, or changed in
    what its grades measured (targets, weights, themes, status, retirements, alignment)."""
    if org.periods.get(period_id) is False:
        return _closed(period_id, what)
    return None


def _closed(period_id: str, what: str) -> Violation:
    return _state(f"period {period_id!r} is closed: {what} (reopen it with PeriodReopened)")


def _objective_period_open(org: OrgState, objective_id: str, what: str) -> Violation | None:
    objective = org.objectives[objective_id]
    return _open_period(org, objective.period_id, f"{what} of objective {objective_id!r}")


def _key_result_period_open(org: OrgState, key_result_id: str, what: str) -> Violation | None:
    key_result = org.key_results[key_result_id]
    objective = org.objectives.get(key_result.objective_id)
    if objective is None or org.periods.get(objective.period_id) is not False:
        return None  # (the message is written only for a violation: this runs per check-in)
    return _closed(objective.period_id, f"{what} of key result {key_result_id!r}")


def target_violation(kind: str, start: float, target: float) -> Violation | None:
    """Is ``target`` a sensible goal for a key result of ``kind`` starting at ``start``?"""
    if kind == "increase" and not target > start:
        return _definition(f"an increase needs target > start ({target} <= {start})")
    if kind == "decrease" and not target < start:
        return _definition(f"a decrease needs target < start ({target} >= {start})")
    if kind == "milestone" and (start != 0 or target != 1):
        return _definition("a milestone has start 0 and target 1")
    return None


def _first(*checks: Violation | None) -> Violation | None:
    return next((c for c in checks if c is not None), None)


# --- one rule per event type ---------------------------------------------------------


def _strategy_defined(org: OrgState, d: p.StrategyDefined) -> Violation | None:
    if org.strategy_defined:
        return _taken("strategy", "of this org")
    return None


def _strategy_exists(org: OrgState, d: p.StrategyRevised | p.StrategyReviewed) -> Violation | None:
    if not org.strategy_defined:
        return _state("the strategy has not been defined yet (StrategyDefined)")
    return None


def _swot_added(org: OrgState, d: p.SwotItemAdded) -> Violation | None:
    return _taken("SWOT item", d.swot_id) if d.swot_id in org.swot else None


def _swot_removed(org: OrgState, d: p.SwotItemRemoved) -> Violation | None:
    present = org.swot.get(d.swot_id)
    if present is None:
        return _missing("SWOT item", d.swot_id)
    return None if present else _state(f"SWOT item {d.swot_id!r} is already removed")


def _theme_added(org: OrgState, d: p.ThemeAdded) -> Violation | None:
    return _taken("theme", d.theme_id) if d.theme_id in org.themes else None


def _theme_changed(org: OrgState, d: p.ThemeRevised | p.ThemeRetired) -> Violation | None:
    return _active_theme(org, d.theme_id)


def _unit_added(org: OrgState, d: p.OrgUnitAdded) -> Violation | None:
    if d.unit_id in org.units:
        return _taken("org unit", d.unit_id)
    if d.parent_unit_id is not None:
        active = org.units.get(d.parent_unit_id)
        if active is None:
            return _missing("org unit", d.parent_unit_id)
        if not active:
            return _state(f"org unit {d.parent_unit_id!r} is retired")
    return None


def _unit_retired(org: OrgState, d: p.OrgUnitRetired) -> Violation | None:
    active = org.units.get(d.unit_id)
    if active is None:
        return _missing("org unit", d.unit_id)
    return None if active else _state(f"org unit {d.unit_id!r} is already retired")


def _period_defined(org: OrgState, d: p.PeriodDefined) -> Violation | None:
    if d.period_id in org.periods:
        return _taken("period", d.period_id)
    if d.ends_on < d.starts_on:
        return _definition(f"period ends ({d.ends_on}) before it starts ({d.starts_on})")
    return None


def _period_closed(org: OrgState, d: p.PeriodClosed) -> Violation | None:
    is_open = org.periods.get(d.period_id)
    if is_open is None:
        return _missing("period", d.period_id)
    return None if is_open else _state(f"period {d.period_id!r} is already closed")


def _period_reopened(org: OrgState, d: p.PeriodReopened) -> Violation | None:
    is_open = org.periods.get(d.period_id)
    if is_open is None:
        return _missing("period", d.period_id)
    return _state(f"period {d.period_id!r} is not closed") if is_open else None


def _objective_created(org: OrgState, d: p.ObjectiveCreated) -> Violation | None:
    if d.objective_id in org.objectives:
        return _taken("objective", d.objective_id)
    unit = org.units.get(d.owner_unit_id)
    if unit is None:
        return _missing("org unit", d.owner_unit_id)
    if not unit:
        return _state(f"org unit {d.owner_unit_id!r} is retired")
    is_open = org.periods.get(d.period_id)
    if is_open is None:
        return _missing("period", d.period_id)
    if not is_open:
        return _state(
            f"period {d.period_id!r} is closed: no new objectives in it "
            "(reopen it with PeriodReopened)"
        )
    return _first(
        *(_active_theme(org, t) for t in d.theme_ids),
        _live_objective(org, d.parent_objective_id) if d.parent_objective_id else None,
        _positive_weight(d.weight),
    )


def _objective_revised(org: OrgState, d: p.ObjectiveRevised) -> Violation | None:
    return _first(
        _live_objective(org, d.objective_id)
        or _objective_period_open(org, d.objective_id, "no revisions"),
        *(_active_theme(org, t) for t in d.theme_ids or ()),
        _positive_weight(d.weight),
    )


def _objective_aligned(org: OrgState, d: p.ObjectiveAligned) -> Violation | None:
    problem = _first(
        _live_objective(org, d.objective_id), _live_objective(org, d.parent_objective_id)
    )
    if problem:
        return problem
    closed = _objective_period_open(org, d.objective_id, "no new alignment")
    if closed:
        return closed
    if d.parent_objective_id == d.objective_id or d.objective_id in org.ancestors(
        d.parent_objective_id
    ):
        return Violation(
            ReasonCode.CYCLE,
            f"aligning {d.objective_id!r} under {d.parent_objective_id!r} would make it "
            "its own ancestor",
        )
    return None


def _objective_linked(org: OrgState, d: p.ObjectiveLinked) -> Violation | None:
    problem = _first(
        _live_objective(org, d.objective_id), _live_objective(org, d.linked_objective_id)
    )
    if problem:
        return problem
    if d.objective_id == d.linked_objective_id:
        return _definition("an objective cannot be linked to itself")
    if (d.objective_id, d.linked_objective_id, d.relation.value) in org.links:
        return _state("these objectives are already linked this way")
    return None


def _objective_unlinked(org: OrgState, d: p.ObjectiveUnlinked) -> Violation | None:
    if (d.objective_id, d.linked_objective_id, d.relation.value) not in org.links:
        return _missing("link", f"{d.objective_id} {d.relation.value} {d.linked_objective_id}")
    return None


def _objective_status(org: OrgState, d: p.ObjectiveStatusChanged) -> Violation | None:
    problem = _live_objective(org, d.objective_id) or _objective_period_open(
        org, d.objective_id, "no status changes"
    )
    if problem:
        return problem
    if org.objectives[d.objective_id].status == d.status.value:
        return _state(f"objective {d.objective_id!r} is already {d.status.value}")
    return None


def _key_result_defined(org: OrgState, d: p.KeyResultDefined) -> Violation | None:
    if d.key_result_id in org.key_results:
        return _taken("key result", d.key_result_id)
    objective = org.objectives.get(d.objective_id)
    return _first(
        _live_objective(org, d.objective_id),
        _open_period(org, objective.period_id, "no new key results in it") if objective else None,
        target_violation(d.kind.value, d.start, d.target),
        _positive_weight(d.weight),
    )


def _key_result_target(org: OrgState, d: p.KeyResultTargetRevised) -> Violation | None:
    problem = _live_key_result(org, d.key_result_id) or _key_result_period_open(
        org, d.key_result_id, "no target revisions"
    )
    if problem:
        return problem
    key_result = org.key_results[d.key_result_id]
    return target_violation(key_result.kind, key_result.start, d.target)


def _key_result_retired(org: OrgState, d: p.KeyResultRetired) -> Violation | None:
    return _live_key_result(org, d.key_result_id) or _key_result_period_open(
        org, d.key_result_id, "no retirements"
    )


def _check_in(org: OrgState, d: p.CheckInRecorded) -> Violation | None:
    return _live_key_result(org, d.key_result_id) or _key_result_period_open(
        org, d.key_result_id, "no check-ins"
    )


class Origin(NamedTuple):
    """Who submits the event being decided: the org and the source (a correction may name its
    original by the ``source_event_id`` this source gave it). A named tuple: one is made per
    submission, and a frozen dataclass costs twice as much to make."""

    org_id: str
    source: str


def _earlier_check_in(
    org: OrgState, d: p.CheckInCorrected | p.CheckInRetracted, origin: Origin
) -> Violation | None:
    data = d.model_dump(mode="json", exclude_none=True)
    key = original_check_in_key(origin.org_id, origin.source, data)
    check_in = org.check_ins.get(key)
    by_source = getattr(d, "corrects_source_event_id", None) or getattr(
        d, "retracts_source_event_id", None
    )
    named = (
        f"with source_event_id {by_source!r} from source {origin.source!r}"
        if by_source is not None
        else event_id_text(key)
    )
    if check_in is None or check_in.key_result_id != d.key_result_id:
        return _missing(f"check-in of key result {d.key_result_id!r}", named)
    if check_in.retracted:
        return _state(f"check-in {named} is retracted")
    return None


def _check_in_corrected(org: OrgState, d: p.CheckInCorrected) -> Violation | None:
    return _live_key_result(org, d.key_result_id) or _key_result_period_open(
        org, d.key_result_id, "no corrections"
    )


def _check_in_retracted(org: OrgState, d: p.CheckInRetracted) -> Violation | None:
    return _live_key_result(org, d.key_result_id) or _key_result_period_open(
        org, d.key_result_id, "no retractions"
    )


def _objective_owner(org: OrgState, d: p.ObjectiveOwnerChanged) -> Violation | None:
    return _live_objective(org, d.objective_id)


def _key_result_owner(org: OrgState, d: p.KeyResultOwnerChanged) -> Violation | None:
    return _live_key_result(org, d.key_result_id)


def _always(org: OrgState, d: p.Payload) -> Violation | None:
    return None


Rule = Callable[[OrgState, Any], Violation | None]

_RULES: dict[str, Rule] = {
    "StrategyDefined": _strategy_defined,
    "StrategyRevised": _strategy_exists,
    "StrategyReviewed": _strategy_exists,
    "SwotItemAdded": _swot_added,
    "SwotItemRemoved": _swot_removed,
    "CompetitorNoted": _always,
    "ThemeAdded": _theme_added,
    "ThemeRevised": _theme_changed,
    "ThemeRetired": _theme_changed,
    "OrgUnitAdded": _unit_added,
    "OrgUnitRetired": _unit_retired,
    "PeriodDefined": _period_defined,
    "PeriodClosed": _period_closed,
    "PeriodReopened": _period_reopened,
    "ObjectiveCreated": _objective_created,
    "ObjectiveRevised": _objective_revised,
    "ObjectiveAligned": _objective_aligned,
    "ObjectiveLinked": _objective_linked,
    "ObjectiveUnlinked": _objective_unlinked,
    "ObjectiveStatusChanged": _objective_status,
    "KeyResultDefined": _key_result_defined,
    "KeyResultTargetRevised": _key_result_target,
    "KeyResultRetired": _key_result_retired,
    "CheckInRecorded": _check_in,
    "CheckInCorrected": _check_in_corrected,
    "CheckInRetracted": _check_in_retracted,
    "ObjectiveOwnerChanged": _objective_owner,
    "KeyResultOwnerChanged": _key_result_owner,
}
RULES = dispatch_table("sequencing rules", _RULES)
_AMENDING = (p.CheckInCorrected, p.CheckInRetracted)
AMENDING = _AMENDING
"""The payloads whose rule needs the :class:`Origin` of the submission (the others get None)."""


def check(org: OrgState, payload: p.Payload, origin: Origin | None = None) -> Violation | None:
    """Apply the rule of ``payload``'s event type (``origin``: who submits it, which a
    correction or retraction needs to find the check-in it names)."""
    violation = RULES[payload.type_name](org, payload)
    if violation is None and isinstance(payload, _AMENDING):
        violation = _earlier_check_in(org, payload, origin or Origin("", ""))
    return violation
