"""Objectives and the cascade: their handlers, their roll-up, and the versions they emit.

An objective's row has two parts. Its *structure* (cascade, themes reached, links, flags, how
many key results and children count) changes only with structural events: each new version
goes to ``objective_versions``. Its *numbers* (progress, confidence) move with its key results'
check-ins: each event that changes them is noted in ``objective_updates`` (the numbers
themselves are rolled up again from the key results when asked as of a past moment, as
``--at`` does). Both are emitted only on a change, so either table is a function of the
ledger prefix; the current-state row (``objectives_now``) carries both parts.

A check-in moves its key result, which moves its objective, whose progress moves its parent's,
and so on. Rolling all of them up again on every check-in is most of the projector's work, so
the common case is decided from the change alone: an objective's progress moves by the member's
change times its weight over the total weight; when that is clearly not zero (beyond
:data:`CERTAIN`, far above float rounding), the objective changed, and its exact progress is
computed once, when its row is next needed (``stale``). Only a change too small to be sure of
is rolled up exactly there and then.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from processors import tables as t
from processors.batch import Batch
from processors.state import KeyResult, Members, Objective, ObjectiveIndex, OrgProjection
from processors.tables import Row

Data = dict[str, Any]
Record = Mapping[str, Any]
Stamp = tuple[int, int]

SCOPED = True
"""A structural event recomputes only the objectives it can change (off: every objective, as
:func:`all_objectives_changed` does; only the tests turn it off, to compare the two)."""


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
    objective.confidence = confidence_of(org, objective)


def confidence_of(org: OrgProjection, objective: Objective) -> float | None:
    """As :func:`processors.scoring.rollup_confidence`: the weakest confidence among the members
    its rollup counts (key results not retired, children not abandoned, with theirs)."""
    group = members(org, objective)
    confidence: float | None = None
    if objective.rollup != "children":
        for kr in group.key_results:
            known = kr.confidence
            if known is not None and (confidence is None or known < confidence):
                confidence = known
    if objective.rollup != "key_results":
        for child in group.children:
            known = child.confidence
            if known is not None and (confidence is None or known < confidence):
                confidence = known
    return confidence


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


def _updated(b: Batch, org: OrgProjection, objective: Objective, stamp: Stamp) -> None:
    """The objective's numbers changed at ``stamp``."""
    b.objective_updates.append((org.org_id, objective.objective_id, *stamp))
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
        _updated(b, org, objective, stamp)


def fresh(org: OrgProjection, objective: Objective) -> Objective:
    """``objective`` with exact numbers (rolled up again if a member moved since)."""
    if objective.stale:
        for child in members(org, objective).children:
            fresh(org, child)
        refresh(org, objective)
        objective.stale = False
    return objective


def fresh_all(org: OrgProjection) -> None:
    for objective in org.objectives.values():
        fresh(org, objective)


CERTAIN = 1e-9
"""A progress (between 0 and 1) computed to move by more than this has certainly changed: the
rounding of a sum of a few thousand terms is below 1e-12."""


def key_result_moved(
    b: Batch,
    org: OrgProjection,
    key_result: KeyResult,
    before: tuple[float, float | None],
    stamp: Stamp,
) -> None:
    """``key_result``'s progress or confidence was ``before`` the event: note each objective up
    its chain whose numbers the event changed."""
    if key_result.retired:
        return  # not counted
    objective = org.objectives[key_result.objective_id]
    confident = _confidence_moved(org, objective) if key_result.confidence != before[1] else []
    weight = key_result.weight if objective.rollup != "children" else 0.0
    delta = key_result.progress - before[0]
    moved: list[Objective] = []
    for current in chain(org, objective):
        if moved:  # how the parent counts the child below it
            child = moved[-1]
            counted = current.rollup != "key_results" and not child.abandoned
            weight = child.weight if counted else 0.0
        total = members(org, current).total_weight
        change = weight * delta / total if weight and delta and total > 0 else 0.0
        if not change:
            break
        if -CERTAIN <= change <= CERTAIN:  # too small to be sure: roll up exactly
            done = _moved_exactly(b, org, key_result, before[0], confident)
            for other in confident:
                if not any(other is d for d in done):
                    _updated(b, org, other, stamp)
            return
        moved.append(current)
        delta = change
    for current in moved:
        current.stale = True
        _updated(b, org, current, stamp)
    for current in confident:
        if not any(current is m for m in moved):
            _updated(b, org, current, stamp)


def _confidence_moved(org: OrgProjection, objective: Objective) -> list[Objective]:
    """A key result of ``objective`` changed its confidence: roll the confidence up its chain
    (each level the weakest of what its rollup counts) while it changes; those that changed."""
    changed: list[Objective] = []
    for current in chain(org, objective):
        confidence = confidence_of(org, current)
        if confidence == current.confidence:
            break
        current.confidence = confidence
        changed.append(current)
    return changed


def _moved_exactly(
    b: Batch,
    org: OrgProjection,
    key_result: KeyResult,
    before: float,
    confident: list[Objective],
) -> list[Objective]:
    """:func:`key_result_moved` rolled up exactly: each objective of the chain before the
    event (its moved member as it was) and after; those it noted as updated."""
    objective, stamp = org.objectives[key_result.objective_id], b.stamp
    member: KeyResult | Objective = key_result
    done: list[Objective] = []
    for current in chain(org, objective):
        current.stale = True
        after = fresh(org, current).progress
        old = _rolled_up(org, current, member, before)
        if after != old or any(current is c for c in confident):
            _updated(b, org, current, stamp)
            done.append(current)
        if after == old:
            return done
        member, before = current, old
    return done


def _rolled_up(org: OrgProjection, objective: Objective, member: object, progress: float) -> float:
    """The objective's progress with ``member``'s taken as ``progress`` (as :func:`refresh`)."""
    group = members(org, objective)
    total = 0.0
    for weight, term in group.terms:
        total += weight * (progress if term is member else term.progress)
    return total / group.total_weight if group.total_weight > 0 else 0.0


def _numbers(objective: Objective) -> tuple[float, float | None]:
    return objective.progress, objective.confidence


def membership_changed(b: Batch, org: OrgProjection, objective: Objective, stamp: Stamp) -> None:
    """A key result of ``objective`` was defined or retired (its cached members are those of
    before): emit its structure if it changed, and note the numbers that changed up its chain."""
    ancestors = chain(org, objective)
    before = [_numbers(fresh(org, current)) for current in ancestors]
    objective.members = objective.structure = None
    _emit_structure(b, org, objective, stamp)
    for current, numbers in zip(ancestors, before, strict=True):
        refresh(org, current)
        if _numbers(current) == numbers:
            return
        _updated(b, org, current, stamp)


def all_objectives_changed(b: Batch, org: OrgProjection, stamp: Stamp) -> None:
    """After a structural event that may change any objective (a theme's): every objective
    recomputed."""
    _recompute(b, org, stamp, list(org.objectives.values()))


def objectives_changed(
    b: Batch, org: OrgProjection, stamp: Stamp, scope: Iterable[Objective]
) -> None:
    """After a structural event: the objectives it can change (``scope``, repeats allowed)
    recomputed, with exactly the rows :func:`all_objectives_changed` would emit (the others
    would emit none), in the same order."""
    if not SCOPED:
        all_objectives_changed(b, org, stamp)
        return
    place = index(org).place
    unique = {objective.objective_id: objective for objective in scope}
    _recompute(b, org, stamp, sorted(unique.values(), key=lambda o: place[o.objective_id]))


def _recompute(b: Batch, org: OrgProjection, stamp: Stamp, scope: list[Objective]) -> None:
    """Recompute ``scope`` (in the objectives' order), children before parents; emit what
    changed."""
    for objective in scope:
        fresh(org, objective)
    before = [_numbers(o) for o in scope]
    for objective in scope:
        objective.members = objective.structure = objective.chain = None
    depth = [-len(org.ancestors(o.objective_id)) for o in scope]
    ordered = sorted(range(len(scope)), key=depth.__getitem__)  # stable: same depth, same order
    for n in ordered:
        objective = scope[n]
        for child in members(org, objective).children:
            # A child outside the scope may be stale: its key result moved while this parent
            # did not count children (a rollup revised since), so its progress is not yet
            # rolled up.
            fresh(org, child)
        refresh(org, objective)
    for n in ordered:
        objective = scope[n]
        new = objective.emitted is None
        _emit_structure(b, org, objective, stamp)  # with its first numbers, if it is new
        if not new and before[n] != _numbers(objective):
            _updated(b, org, objective, stamp)


def index(org: OrgProjection) -> ObjectiveIndex:
    """The org's :class:`~processors.state.ObjectiveIndex` (built if need be)."""
    found = org.objective_index
    if found is None:
        found = org.objective_index = ObjectiveIndex()
        for objective in org.objectives.values():
            found.add(org.objectives, objective)
    return found


def lineage(org: OrgProjection, objective_id: str | None) -> list[Objective]:
    """The objective (if any) and its ancestors: those whose numbers and counts roll up."""
    if objective_id not in org.objectives:
        return []
    return [org.objectives[i] for i in (objective_id, *org.ancestors(objective_id))]


def descendants(org: OrgProjection, objective: Objective) -> list[Objective]:
    """Its children, their children... (each once)."""
    found: dict[str, Objective] = {}
    pending = list(objective.child_ids)
    while pending:
        child_id = pending.pop()
        if child_id not in found and child_id != objective.objective_id:
            found[child_id] = child = org.objectives[child_id]
            pending.extend(child.child_ids)
    return list(found.values())


def _group(org: OrgProjection, objective: Objective) -> list[Objective]:
    """The objectives of its (unit, period): their count is in each one's row."""
    ids = index(org).groups[(objective.owner_unit_id, objective.period_id)]
    return [org.objectives[i] for i in ids]


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
    known = index(org)
    everything = (
        objective.objective_id in org.objectives or objective.objective_id in known.dangling
    )
    org.objectives[objective.objective_id] = objective
    if objective.parent_id in org.objectives:
        org.objectives[objective.parent_id].child_ids.append(objective.objective_id)
    group = (objective.owner_unit_id, objective.period_id)
    org.focus[group] = org.focus.get(group, 0) + 1
    if everything:  # its place, or others' ancestors, changed (the rules forbid both)
        org.objective_index = None  # built anew when next needed
        all_objectives_changed(b, org, stamp)
        return
    known.add(org.objectives, objective)
    objectives_changed(
        b, org, stamp, [*lineage(org, objective.objective_id), *_group(org, objective)]
    )


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
    below = descendants(org, objective) if "theme_ids" in d else []  # the themes they reach
    objectives_changed(b, org, stamp, [*lineage(org, objective.objective_id), *below])


def objective_aligned(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    objectives = org.objectives
    objective = objectives[d["objective_id"]]
    old = objective.parent_id
    if old in objectives:
        objectives[old].child_ids.remove(objective.objective_id)
    objective.parent_id = d["parent_objective_id"]
    objectives[objective.parent_id].child_ids.append(objective.objective_id)
    scope = [*lineage(org, objective.objective_id), *descendants(org, objective)]
    objectives_changed(b, org, stamp, [*scope, *lineage(org, old)])


def objective_linked(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    objective = org.objectives[d["objective_id"]]
    objective.links.add((d["relation"], d["linked_objective_id"]))
    objectives_changed(b, org, stamp, [objective])  # links are its own columns only


def objective_unlinked(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    objective = org.objectives[d["objective_id"]]
    objective.links.discard((d["relation"], d["linked_objective_id"]))
    objectives_changed(b, org, stamp, [objective])


def objective_status(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    objective = org.objectives[d["objective_id"]]
    status = d["status"]
    counted = status == "abandoned" and not objective.abandoned
    if counted:
        org.focus[(objective.owner_unit_id, objective.period_id)] -= 1
    objective.lifecycle = status
    children = [org.objectives[i] for i in objective.child_ids]  # whether their parent is live
    group = _group(org, objective) if counted else []
    objectives_changed(b, org, stamp, [*lineage(org, objective.objective_id), *children, *group])


HANDLERS = {
    "ObjectiveCreated": objective_created,
    "ObjectiveRevised": objective_revised,
    "ObjectiveAligned": objective_aligned,
    "ObjectiveLinked": objective_linked,
    "ObjectiveUnlinked": objective_unlinked,
    "ObjectiveStatusChanged": objective_status,
}
