"""Objectives and the cascade: their handlers, their roll-up, and the versions they emit.

An objective's row has two parts, versioned apart: its *structure* (cascade, themes reached,
links, flags, how many key results and children count) in ``objective_versions``, changed only
by structural events; and its *numbers* (progress, confidence) in
``objective_progress_versions``, changed by its key results' check-ins. Each is emitted only
when it differs from the last one emitted, so either table is a function of the ledger prefix.
"""

from collections.abc import Mapping
from typing import Any

from processors import tables as t
from processors.batch import Batch
from processors.state import KeyResult, Members, Objective, OrgProjection
from processors.tables import Row

Data = dict[str, Any]
Record = Mapping[str, Any]
Stamp = tuple[int, int]


# --- the roll-up ------------------------------------------------------------------------------


def members(org: OrgProjection, objective: Objective) -> Members:
    if objective.members is None:
        key_results = sorted(
            (org.key_results[k] for k in objective.key_result_ids),
            key=lambda kr: kr.key_result_id,
        )
        children = sorted(
            (org.objectives[o] for o in objective.child_ids), key=lambda o: o.objective_id
        )
        live_key_results = [kr for kr in key_results if not kr.retired]
        live_children = [child for child in children if not child.abandoned]
        terms: list[tuple[float, KeyResult | Objective]] = []
        if objective.rollup != "children":
            terms.extend((kr.weight, kr) for kr in live_key_results)
        if objective.rollup != "key_results":
            terms.extend((child.weight, child) for child in live_children)
        total_weight = 0.0
        for weight, _member in terms:
            total_weight += weight
        objective.members = Members(live_key_results, live_children, terms, total_weight)
    return objective.members


def refresh(org: OrgProjection, objective: Objective) -> None:
    """Progress and confidence, as :func:`processors.scoring.rollup_progress` and
    :func:`processors.scoring.weakest` compute them (same members, same order, same float
    operations): inlined, because it runs for an objective and its ancestors on each check-in.
    """
    group = members(org, objective)
    total = 0.0
    for weight, member in group.terms:
        total += weight * member.progress
    total_weight = group.total_weight
    objective.progress = total / total_weight if total_weight > 0 else 0.0
    confidence: float | None = None
    for kr in group.key_results:
        known = kr.confidence
        if known is not None and (confidence is None or known < confidence):
            confidence = known
    objective.confidence = confidence


def chain(org: OrgProjection, objective: Objective) -> list[Objective]:
    """The objective, then its parent, grandparent... (cached until the cascade changes)."""
    if objective.chain is None:
        ids = org.ancestors(objective.objective_id)
        objective.chain = [objective, *(org.objectives[i] for i in ids)]
    return objective.chain


# --- emitting versions ------------------------------------------------------------------------


def structure(org: OrgProjection, objective: Objective) -> Row:
    """The structure columns of an objective's row: cascade, themes, links, flags, counts."""
    if objective.structure is not None:
        return objective.structure
    ancestors = org.ancestors(objective.objective_id)
    reached = sorted(
        {
            theme_id
            for member in (objective.objective_id, *ancestors)
            for theme_id in org.objectives[member].theme_ids
            if theme_id in org.themes and org.themes[theme_id].active
        }
    )
    parent = org.objectives.get(objective.parent_id) if objective.parent_id else None
    live = not objective.abandoned
    parent_inactive = (
        live
        and parent is not None
        and (parent.abandoned or parent.period_id != objective.period_id)
    )
    period = org.periods[objective.period_id]
    group = members(org, objective)
    objective.structure = (
        objective.title,
        objective.description,
        objective.owner_unit_id,
        objective.period_id,
        period.starts_on,
        period.ends_on,
        objective.lifecycle,
        objective.rollup,
        objective.weight,
        objective.parent_id,
        ancestors,
        len(ancestors),
        list(objective.theme_ids),
        reached,
        sorted(o for relation, o in objective.links if relation == "contributes_to"),
        sorted(o for relation, o in objective.links if relation == "depends_on"),
        live and not reached,
        parent_inactive,
        org.focus.get((objective.owner_unit_id, objective.period_id), 0),
        len(group.key_results),
        len(group.children),
    )
    return objective.structure


def _emit_numbers(b: Batch, org: OrgProjection, objective: Objective, stamp: Stamp) -> None:
    b.objective_progress.append(
        (org.org_id, objective.objective_id, *stamp, objective.progress, objective.confidence)
    )
    b.objective_changed(org, objective, stamp)


def _emit_structure(b: Batch, org: OrgProjection, objective: Objective, stamp: Stamp) -> None:
    """Emit the structure version if it differs from the last one."""
    row = structure(org, objective)
    emitted = objective.emitted
    if emitted is row or emitted == row:
        return
    objective.emitted = row
    b.rows[t.OBJECTIVES].append((org.org_id, objective.objective_id, *stamp, *row))
    b.objective_changed(org, objective, stamp)
    if emitted is None:  # a new objective: its first numbers too
        _emit_numbers(b, org, objective, stamp)


def numbers_changed(b: Batch, org: OrgProjection, objective: Objective, stamp: Stamp) -> None:
    """After a key result of ``objective`` changed its progress or confidence: roll up the
    objective and its ancestors, emitting the numbers of each that changed."""
    for member in chain(org, objective):
        progress, confidence = member.progress, member.confidence
        refresh(org, member)
        moved = member.progress != progress
        if moved or member.confidence != confidence:
            _emit_numbers(b, org, member, stamp)
        if not moved:  # a parent counts only its children's progress
            return


def membership_changed(b: Batch, org: OrgProjection, objective: Objective, stamp: Stamp) -> None:
    """A key result of ``objective`` was defined or retired."""
    objective.members = objective.structure = None
    _emit_structure(b, org, objective, stamp)
    numbers_changed(b, org, objective, stamp)


def all_objectives_changed(b: Batch, org: OrgProjection, stamp: Stamp) -> None:
    """After a structural event: everything is recomputed, children before parents."""
    for objective in org.objectives.values():
        objective.members = objective.structure = objective.chain = None
    ordered = sorted(org.objectives.values(), key=lambda o: -len(org.ancestors(o.objective_id)))
    before = {o.objective_id: (o.progress, o.confidence) for o in ordered}
    for objective in ordered:
        refresh(org, objective)
    for objective in ordered:
        new = objective.emitted is None
        _emit_structure(b, org, objective, stamp)  # with its first numbers, if it is new
        numbers = (objective.progress, objective.confidence)
        if not new and before[objective.objective_id] != numbers:
            _emit_numbers(b, org, objective, stamp)


# --- handlers ---------------------------------------------------------------------------------


def objective_created(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    objective = Objective(
        objective_id=d["objective_id"],
        title=d["title"],
        description=d.get("description"),
        owner_unit_id=d["owner_unit_id"],
        period_id=d["period_id"],
        theme_ids=list(d["theme_ids"]),
        parent_id=d.get("parent_objective_id"),
        rollup=d["rollup"],
        weight=float(d.get("weight", 1.0)),
    )
    org.objectives[objective.objective_id] = objective
    if objective.parent_id in org.objectives:
        org.objectives[objective.parent_id].child_ids.append(objective.objective_id)
    group = (objective.owner_unit_id, objective.period_id)
    org.focus[group] = org.focus.get(group, 0) + 1
    all_objectives_changed(b, org, stamp)


def objective_revised(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    objective = org.objectives[d["objective_id"]]
    for name in ("title", "description", "rollup"):
        if name in d:
            setattr(objective, name, d[name])
    if "theme_ids" in d:
        objective.theme_ids = list(d["theme_ids"])
    if "weight" in d:
        objective.weight = float(d["weight"])
    all_objectives_changed(b, org, stamp)


def objective_aligned(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    objectives = org.objectives
    objective = objectives[d["objective_id"]]
    if objective.parent_id in objectives:
        objectives[objective.parent_id].child_ids.remove(objective.objective_id)
    objective.parent_id = d["parent_objective_id"]
    objectives[objective.parent_id].child_ids.append(objective.objective_id)
    all_objectives_changed(b, org, stamp)


def objective_linked(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.objectives[d["objective_id"]].links.add((d["relation"], d["linked_objective_id"]))
    all_objectives_changed(b, org, stamp)


def objective_unlinked(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    org.objectives[d["objective_id"]].links.discard((d["relation"], d["linked_objective_id"]))
    all_objectives_changed(b, org, stamp)


def objective_status(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    objective = org.objectives[d["objective_id"]]
    status = d["status"]
    if status == "abandoned" and not objective.abandoned:
        org.focus[(objective.owner_unit_id, objective.period_id)] -= 1
    objective.lifecycle = status
    all_objectives_changed(b, org, stamp)


HANDLERS = {
    "ObjectiveCreated": objective_created,
    "ObjectiveRevised": objective_revised,
    "ObjectiveAligned": objective_aligned,
    "ObjectiveLinked": objective_linked,
    "ObjectiveUnlinked": objective_unlinked,
    "ObjectiveStatusChanged": objective_status,
}
