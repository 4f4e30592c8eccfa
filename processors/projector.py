"""The projector: a batch of ledger events in, rows for every projection table out.

One code path for every runtime: the embedded runner and the Kafka agents both call
:meth:`Projector.project`. It does no I/O. Each event that changes an entity's computed state
yields a new *version* row of that entity, stamped with the event's ``sequence`` and
``recorded_at``; so the rows are a function of the ledger prefix alone, whatever the batch
boundaries, and re-inserting them (after a crash) is harmless: the store collapses rows with
the same key and sequence.
"""

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Protocol

import orjson

from events.outcomes import Rejection
from processors import tables as t
from processors.scoring import score
from processors.state import (
    CheckIn,
    Competitor,
    KeyResult,
    Members,
    Objective,
    OrgProjection,
    Period,
    ProjectorState,
    Review,
    Theme,
    Unit,
)
from processors.tables import Row, RowBatch
from schemas.errors import ProjectionError, UnknownEventTypeError
from schemas.registry import payload_model, upcast

Data = dict[str, Any]


class LedgerRecord(Protocol):
    """What the projector reads of a ledger event (a :class:`~schemas.LedgerEvent` will do)."""

    @property
    def sequence(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def org_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def occurred_at(self) -> str: ...
    @property
    def recorded_at(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def source_event_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def causation_id(self) -> str | None: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@dataclass(slots=True)
class StoredEvent:
    """A ledger event read as stored: the fields of :class:`~schemas.LedgerEvent`, built
    without pydantic, because the projector reads every event of the ledger.

    Not frozen: a frozen dataclass is built field by field through ``object.__setattr__``,
    which cost more than half of reading an event. Treat it as read-only all the same.
    """

    sequence: int
    event_id: str
    org_id: str
    type: str
    schema_version: int
    occurred_at: str
    recorded_at: str
    actor: str
    source: str
    data: dict[str, Any]
    prev_hash: str
    hash: str
    source_event_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "StoredEvent":
        return cls(**record)


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp from the ledger, as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(slots=True)
class _Event:
    """What the handlers need of the event being applied, and what it changed."""

    org: OrgProjection
    event: LedgerRecord
    data: Data
    occurred_at: datetime
    recorded_at: datetime
    rows: RowBatch
    key_results: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    """Objectives whose progress may have moved (their ancestors follow)."""
    all_objectives: bool = False
    themes: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    periods: list[str] = field(default_factory=list)
    strategy: bool = False

    def stamp(self) -> tuple[int, datetime]:
        return self.event.sequence, self.recorded_at

    def emit(self, table: str, row: Row) -> None:
        self.rows[table].append(row)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (if it runs) for the block.

    A batch allocates many objects that live on (state, rows) and makes no garbage cycles,
    yet each allocation burst triggers collections that rescan the whole state: a third of
    the projector's time. Garbage is still collected once the block ends.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Projector:
    """Holds the state and turns ledger events into rows."""

    def __init__(self, state: ProjectorState | None = None) -> None:
        self.state = state or ProjectorState()

    def project(self, events: Iterable[LedgerRecord]) -> RowBatch:
        """Apply ``events`` (each org's in sequence order) and return the rows they produce.

        Events at or below an org's position were applied before and are skipped, so a batch
        delivered twice yields nothing the second time. A gap in an org's sequence is an error:
        the projection would silently miss an event.
        """
        rows = t.empty_batch()
        touched: dict[str, OrgProjection] = {}
        with collector_paused():
            self._project(events, rows, touched)
        for org in touched.values():
            rows[t.CHECKPOINTS].append(
                (t.LEDGER_STREAM, org.org_id, org.last_sequence, org.last_recorded_at)
            )
        return rows

    def _project(
        self, events: Iterable[LedgerRecord], rows: RowBatch, touched: dict[str, OrgProjection]
    ) -> None:
        for event in events:
            org = self.state.org(event.org_id)
            if event.sequence <= org.last_sequence:
                continue
            if event.sequence != org.last_sequence + 1:
                raise ProjectionError(
                    f"org {event.org_id!r}: event {event.sequence} follows {org.last_sequence}; "
                    "the projector needs every event in order"
                )
            self._apply(org, event, rows)
            touched[org.org_id] = org

    def _apply(self, org: OrgProjection, event: LedgerRecord, rows: RowBatch) -> None:
        data = upcast(event.type, event.schema_version, event.data)
        change = _Event(
            org, event, data, parse_time(event.occurred_at), parse_time(event.recorded_at), rows
        )
        change.emit(t.AUDIT, _audit_row(event, change))
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(change)
        _emit_changes(change)
        org.last_sequence = event.sequence
        org.last_recorded_at = change.recorded_at


# --- audit ----------------------------------------------------------------------------


@cache
def _subject_field(event_type: str) -> str | None:
    try:
        return payload_model(event_type).subject_field
    except UnknownEventTypeError:  # every ledger type is in the registry; be lenient anyway
        return None


def _subject(event_type: str, data: Data) -> tuple[str, str]:
    field_name = _subject_field(event_type)
    if field_name is None:
        return "strategy" if event_type.startswith("Strategy") else "org", ""
    return field_name.removesuffix("_id"), str(data.get(field_name, ""))


def _related_ids(data: Data) -> list[str]:
    found: set[str] = set()
    for key, value in data.items():
        if key.endswith("_id") and isinstance(value, str):
            found.add(value)
        elif key.endswith("_ids") and isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return sorted(found)


def _audit_row(event: LedgerRecord, change: _Event) -> Row:
    kind, subject = _subject(event.type, change.data)
    return (
        event.org_id,
        event.sequence,
        event.event_id,
        event.type,
        event.schema_version,
        change.occurred_at,
        change.recorded_at,
        event.actor,
        event.source,
        event.source_event_id,
        event.correlation_id,
        event.causation_id,
        kind,
        subject,
        _related_ids(change.data),
        orjson.dumps(event.data, option=orjson.OPT_SORT_KEYS).decode(),
        event.prev_hash,
        event.hash,
    )


# --- handlers: fold one event into the state and note what changed ------------------------


def _strategy_defined(c: _Event) -> None:
    c.org.strategy.mission = c.data["mission"]
    c.org.strategy.vision = c.data["vision"]
    c.strategy = True


def _strategy_revised(c: _Event) -> None:
    strategy = c.org.strategy
    strategy.mission = c.data.get("mission", strategy.mission)
    strategy.vision = c.data.get("vision", strategy.vision)
    c.strategy = True


def _strategy_reviewed(c: _Event) -> None:
    c.org.strategy.review = Review(
        c.data["verdict"], c.data["notes"], c.data["reviewer"], c.occurred_at
    )
    c.strategy = True


def _swot_added(c: _Event) -> None:
    c.org.strategy.swot[c.data["swot_id"]] = (c.data["quadrant"], c.data["text"])
    c.strategy = True


def _swot_removed(c: _Event) -> None:
    c.org.strategy.swot.pop(c.data["swot_id"], None)
    c.strategy = True


def _competitor(c: _Event) -> None:
    c.org.strategy.competitors[c.data["competitor_id"]] = Competitor(
        c.data["name"],
        c.data.get("strengths", ""),
        c.data.get("weaknesses", ""),
        c.data.get("differentiation", ""),
    )
    c.strategy = True


def _theme_changed(c: _Event) -> None:
    theme_id = c.data["theme_id"]
    theme = c.org.themes.get(theme_id)
    if c.event.type == "ThemeAdded" or theme is None:
        c.org.themes[theme_id] = Theme(c.data["name"], c.data.get("description"))
    elif c.event.type == "ThemeRevised":
        theme.name = c.data.get("name", theme.name)
        theme.description = c.data.get("description", theme.description)
    else:
        theme.active = False
    c.themes.append(theme_id)
    c.strategy = True
    c.all_objectives = True


def _unit_added(c: _Event) -> None:
    unit_id = c.data["unit_id"]
    c.org.units[unit_id] = Unit(c.data["name"], c.data["kind"], c.data.get("parent_unit_id"))
    c.units.append(unit_id)


def _unit_retired(c: _Event) -> None:
    c.org.units[c.data["unit_id"]].active = False
    c.units.append(c.data["unit_id"])


def _period_defined(c: _Event) -> None:
    period_id = c.data["period_id"]
    c.org.periods[period_id] = Period(
        c.data["name"],
        date.fromisoformat(c.data["starts_on"]),
        date.fromisoformat(c.data["ends_on"]),
    )
    c.periods.append(period_id)


def _period_closed(c: _Event) -> None:
    c.org.periods[c.data["period_id"]].closed = True
    c.periods.append(c.data["period_id"])


def _objective_created(c: _Event) -> None:
    d = c.data
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
    c.org.objectives[objective.objective_id] = objective
    if objective.parent_id in c.org.objectives:
        c.org.objectives[objective.parent_id].child_ids.append(objective.objective_id)
    group = (objective.owner_unit_id, objective.period_id)
    c.org.focus[group] = c.org.focus.get(group, 0) + 1
    c.all_objectives = True


def _objective_revised(c: _Event) -> None:
    objective = c.org.objectives[c.data["objective_id"]]
    for name in ("title", "description", "rollup"):
        if name in c.data:
            setattr(objective, name, c.data[name])
    if "theme_ids" in c.data:
        objective.theme_ids = list(c.data["theme_ids"])
    if "weight" in c.data:
        objective.weight = float(c.data["weight"])
    c.all_objectives = True


def _objective_aligned(c: _Event) -> None:
    objectives = c.org.objectives
    objective = objectives[c.data["objective_id"]]
    if objective.parent_id in objectives:
        objectives[objective.parent_id].child_ids.remove(objective.objective_id)
    objective.parent_id = c.data["parent_objective_id"]
    objectives[objective.parent_id].child_ids.append(objective.objective_id)
    c.all_objectives = True


def _objective_linked(c: _Event) -> None:
    objective = c.org.objectives[c.data["objective_id"]]
    link = (c.data["relation"], c.data["linked_objective_id"])
    if c.event.type == "ObjectiveLinked":
        objective.links.add(link)
    else:
        objective.links.discard(link)
    c.all_objectives = True


def _objective_status(c: _Event) -> None:
    objective = c.org.objectives[c.data["objective_id"]]
    status = c.data["status"]
    if status == "abandoned" and not objective.abandoned:
        group = (objective.owner_unit_id, objective.period_id)
        c.org.focus[group] -= 1
    objective.lifecycle = status
    c.all_objectives = True


def _key_result_defined(c: _Event) -> None:
    d = c.data
    objective = c.org.objectives[d["objective_id"]]
    period = c.org.periods[objective.period_id]
    due_on = d.get("due_on")
    key_result = KeyResult(
        key_result_id=d["key_result_id"],
        objective_id=objective.objective_id,
        title=d["title"],
        kind=d["kind"],
        start=float(d["start"]),
        defined_target=float(d["target"]),
        unit=d["unit"],
        weight=float(d.get("weight", 1.0)),
        due_on=date.fromisoformat(due_on) if due_on else None,
        cadence_days=int(d.get("checkin_every_days", 7)),
        period_id=objective.period_id,
        owner_unit_id=objective.owner_unit_id,
        starts_on=period.starts_on,
        ends_on=period.ends_on,
    )
    c.org.key_results[key_result.key_result_id] = key_result
    objective.key_result_ids.append(key_result.key_result_id)
    objective.members = None
    c.emit(t.TARGETS, (c.org.org_id, key_result.key_result_id, *c.stamp(), c.occurred_at,
                       key_result.defined_target, None))  # fmt: skip
    c.key_results.append(key_result.key_result_id)


def _target_revised(c: _Event) -> None:
    key_result = c.org.key_results[c.data["key_result_id"]]
    revision = (c.occurred_at, c.event.sequence, float(c.data["target"]))
    key_result.revisions.append(revision)
    key_result.revisions.sort()
    c.emit(t.TARGETS, (c.org.org_id, key_result.key_result_id, *c.stamp(), c.occurred_at,
                       revision[2], c.data["reason"]))  # fmt: skip
    for occurred_at, _sequence, check_in in key_result.check_ins:
        if occurred_at < c.occurred_at:
            continue
        target = key_result.target_at(occurred_at)
        if target != check_in.target:
            check_in.target = target
            _emit_check_in(c, key_result, check_in, "rescored")
    c.key_results.append(key_result.key_result_id)


def _key_result_retired(c: _Event) -> None:
    key_result = c.org.key_results[c.data["key_result_id"]]
    key_result.retired = True
    c.org.objectives[key_result.objective_id].members = None
    c.key_results.append(key_result.key_result_id)


def _check_in_recorded(c: _Event) -> None:
    d = c.data
    key_result = c.org.key_results[d["key_result_id"]]
    value = float(d["value"])
    check_in = CheckIn(
        check_in_id=c.event.event_id,
        key_result_id=key_result.key_result_id,
        occurred_at=c.occurred_at,
        sequence=c.event.sequence,
        recorded_at=c.recorded_at,
        original_value=value,
        value=value,
        confidence=d.get("confidence"),
        comment=d.get("comment"),
        actor=c.event.actor,
        source=c.event.source,
        target=key_result.target_at(c.occurred_at),
    )
    c.org.check_ins[check_in.check_in_id] = check_in
    key_result.add_check_in(check_in)
    _emit_check_in(c, key_result, check_in, "recorded")
    c.key_results.append(key_result.key_result_id)


def _check_in_corrected(c: _Event) -> None:
    check_in = c.org.check_ins[str(c.data["corrects_event_id"])]
    check_in.value = float(c.data["value"])
    if c.data.get("confidence") is not None:
        check_in.confidence = c.data["confidence"]
    check_in.corrected = True
    check_in.reason = c.data["reason"]
    key_result = c.org.key_results[check_in.key_result_id]
    _emit_check_in(c, key_result, check_in, "corrected")
    c.key_results.append(key_result.key_result_id)


def _check_in_retracted(c: _Event) -> None:
    check_in = c.org.check_ins[str(c.data["retracts_event_id"])]
    check_in.retracted = True
    check_in.reason = c.data["reason"]
    key_result = c.org.key_results[check_in.key_result_id]
    key_result.live_check_ins -= 1
    _emit_check_in(c, key_result, check_in, "retracted")
    c.key_results.append(key_result.key_result_id)


_HANDLERS: dict[str, Callable[[_Event], None]] = {
    "StrategyDefined": _strategy_defined,
    "StrategyRevised": _strategy_revised,
    "StrategyReviewed": _strategy_reviewed,
    "SwotItemAdded": _swot_added,
    "SwotItemRemoved": _swot_removed,
    "CompetitorNoted": _competitor,
    "ThemeAdded": _theme_changed,
    "ThemeRevised": _theme_changed,
    "ThemeRetired": _theme_changed,
    "OrgUnitAdded": _unit_added,
    "OrgUnitRetired": _unit_retired,
    "PeriodDefined": _period_defined,
    "PeriodClosed": _period_closed,
    "ObjectiveCreated": _objective_created,
    "ObjectiveRevised": _objective_revised,
    "ObjectiveAligned": _objective_aligned,
    "ObjectiveLinked": _objective_linked,
    "ObjectiveUnlinked": _objective_linked,
    "ObjectiveStatusChanged": _objective_status,
    "KeyResultDefined": _key_result_defined,
    "KeyResultTargetRevised": _target_revised,
    "KeyResultRetired": _key_result_retired,
    "CheckInRecorded": _check_in_recorded,
    "CheckInCorrected": _check_in_corrected,
    "CheckInRetracted": _check_in_retracted,
}


# --- computing and emitting versions ------------------------------------------------------


def _emit_check_in(c: _Event, key_result: KeyResult, check_in: CheckIn, change: str) -> None:
    progress, attainment = score(key_result.kind, key_result.start, check_in.target, check_in.value)
    c.emit(
        t.CHECK_INS,
        (
            c.org.org_id,
            key_result.key_result_id,
            check_in.check_in_id,
            *c.stamp(),
            change,
            check_in.sequence,
            check_in.recorded_at,
            check_in.occurred_at,
            key_result.kind,
            key_result.start,
            check_in.target,
            check_in.value,
            check_in.original_value,
            progress,
            attainment,
            check_in.confidence,
            check_in.comment,
            check_in.actor,
            check_in.source,
            check_in.corrected,
            check_in.retracted,
            check_in.reason,
        ),
    )


def refresh_key_result(key_result: KeyResult) -> None:
    """Recompute the current value and its score from the check-ins."""
    current = key_result.current()
    key_result.last = current
    if current is None:
        key_result.target = key_result.current_target
        key_result.value = key_result.start
    else:
        key_result.target = current.target
        key_result.value = current.value
    key_result.progress, key_result.attainment = score(
        key_result.kind, key_result.start, key_result.target, key_result.value
    )


def _key_result_row(c: _Event, kr: KeyResult) -> Row:
    last = kr.last
    return (
        c.org.org_id, kr.key_result_id, *c.stamp(), kr.objective_id, kr.owner_unit_id,
        kr.period_id, kr.starts_on, kr.ends_on, kr.title, kr.kind, kr.unit, kr.start,
        kr.current_target, kr.target, kr.value, kr.progress, kr.attainment,
        last.confidence if last else None, last.occurred_at if last else None,
        last.check_in_id if last else None, kr.live_check_ins, kr.weight, kr.due_on,
        kr.cadence_days, kr.retired,
    )  # fmt: skip


def _members(org: OrgProjection, objective: Objective) -> Members:
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


def _refresh_objective(org: OrgProjection, objective: Objective) -> None:
    """Progress and confidence, as :func:`processors.scoring.rollup_progress` computes them.

    Inlined (same members, same order, same float operations) because it runs for the
    objective and every ancestor of each check-in.
    """
    members = _members(org, objective)
    total = 0.0
    for weight, member in members.terms:
        total += weight * member.progress
    total_weight = members.total_weight
    objective.progress = total / total_weight if total_weight > 0 else 0.0
    confidence: float | None = None
    for kr in members.key_results:
        last = kr.last
        if last is not None:
            known = last.confidence
            if known is not None and (confidence is None or known < confidence):
                confidence = known
    objective.confidence = confidence


def _structure(org: OrgProjection, objective: Objective) -> Row:
    """The cascade columns of an objective's row: parents, themes, links, flags."""
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
    return (
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
    )


def _objectives_to_emit(c: _Event) -> list[Objective]:
    """The objectives whose computed state may have changed, children before parents."""
    org = c.org
    if c.all_objectives:
        for objective in org.objectives.values():
            objective.members = objective.structure = objective.chain = None
        ordered = sorted(org.objectives.values(), key=lambda o: -len(org.ancestors(o.objective_id)))
        for objective in ordered:
            _refresh_objective(org, objective)
        return ordered
    if len(c.chains) == 1:  # the usual case: one key result's objective and its ancestors
        chain = _chain(org, org.objectives[c.chains[0]])
        for objective in chain:
            _refresh_objective(org, objective)
        return chain
    merged: dict[str, Objective] = {}
    for start in c.chains:
        for objective in _chain(org, org.objectives[start]):
            if objective.objective_id not in merged:
                merged[objective.objective_id] = objective
                _refresh_objective(org, objective)
    return list(merged.values())


def _chain(org: OrgProjection, objective: Objective) -> list[Objective]:
    """The objective, then its parent, grandparent... (cached until the cascade changes)."""
    if objective.chain is None:
        ids = org.ancestors(objective.objective_id)
        objective.chain = [objective, *(org.objectives[i] for i in ids)]
    return objective.chain


def _emit_objectives(c: _Event) -> None:
    """A version of each objective whose row would differ from its last one."""
    org = c.org
    out = c.rows[t.OBJECTIVES]
    sequence, recorded_at = c.event.sequence, c.recorded_at
    for objective in _objectives_to_emit(c):
        structure = objective.structure
        if structure is None:
            structure = objective.structure = _structure(org, objective)
        members = _members(org, objective)
        numbers = (
            objective.progress,
            objective.confidence,
            len(members.key_results),
            len(members.children),
        )
        emitted = objective.emitted
        if (
            emitted is None
            or emitted[1] != numbers
            or (emitted[0] is not structure and emitted[0] != structure)
        ):
            objective.emitted = (structure, numbers)
            out.append((org.org_id, objective.objective_id, sequence, recorded_at, *structure,
                        *numbers))  # fmt: skip


def _emit_changes(c: _Event) -> None:
    org = c.org
    if c.key_results:
        out = c.rows[t.KEY_RESULTS]
        ids = c.key_results if len(c.key_results) == 1 else dict.fromkeys(c.key_results)
        for key_result_id in ids:
            key_result = org.key_results[key_result_id]
            refresh_key_result(key_result)
            out.append(_key_result_row(c, key_result))
            c.chains.append(key_result.objective_id)
    if c.chains or c.all_objectives:
        _emit_objectives(c)
    for theme_id in c.themes:
        theme = org.themes[theme_id]
        c.emit(t.THEMES, (org.org_id, theme_id, *c.stamp(), theme.name, theme.description,
                          theme.active))  # fmt: skip
    for unit_id in c.units:
        unit = org.units[unit_id]
        c.emit(t.UNITS, (org.org_id, unit_id, *c.stamp(), unit.name, unit.kind,
                         unit.parent_unit_id, unit.active))  # fmt: skip
    for period_id in c.periods:
        period = org.periods[period_id]
        c.emit(t.PERIODS, (org.org_id, period_id, *c.stamp(), period.name, period.starts_on,
                           period.ends_on, period.closed))  # fmt: skip
    if c.strategy:
        c.emit(t.STRATEGY, _strategy_row(c))


def _strategy_row(c: _Event) -> Row:
    strategy = c.org.strategy
    quadrants: dict[str, list[str]] = {q: [] for q in ("strength", "weakness", "opportunity",
                                                      "threat")}  # fmt: skip
    for quadrant, text in strategy.swot.values():
        quadrants[quadrant].append(text)
    active = [(theme_id, th.name) for theme_id, th in c.org.themes.items() if th.active]
    review = strategy.review
    return (
        c.org.org_id,
        *c.stamp(),
        strategy.mission,
        strategy.vision,
        quadrants["strength"],
        quadrants["weakness"],
        quadrants["opportunity"],
        quadrants["threat"],
        [
            (x.name, x.strengths, x.weaknesses, x.differentiation)
            for x in strategy.competitors.values()
        ],
        [theme_id for theme_id, _name in active],
        [name for _theme_id, name in active],
        review.verdict if review else None,
        review.notes if review else None,
        review.reviewer if review else None,
        review.reviewed_at if review else None,
    )


def project_rejections(rejections: Sequence[tuple[int, Rejection]]) -> RowBatch:
    """Rows for rejections, each with its position (its place in the rejection log).

    Rejections are not ledger events: they have no sequence, only their order in the log.
    """
    rows: RowBatch = {t.REJECTIONS: [], t.CHECKPOINTS: []}
    for position, r in rejections:
        rows[t.REJECTIONS].append(
            (
                position,
                parse_time(r.recorded_at),
                r.reason.value,
                r.message,
                orjson.dumps(r.details).decode(),
                r.org_id,
                r.event_id,
                r.type,
                r.source,
                r.line,
                r.raw.decode("utf-8", errors="replace"),
                r.raw_length,
                r.raw_sha256,
            )
        )
    if rejections:
        last, newest = rejections[-1]
        rows[t.CHECKPOINTS].append((t.REJECTION_STREAM, "", last, parse_time(newest.recorded_at)))
    return rows
