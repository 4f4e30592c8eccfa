"""Key results and their check-ins: handlers, scoring, and the versions they emit.

A check-in is scored against the key result's target in force at its business time. Each
event about a check-in emits a version of it (recorded, corrected, retracted, or re-scored
when a target revision changes the target in force); each event about a key result makes its
current row (emitted once per batch) and its objective's numbers move.
"""

from collections.abc import Mapping
from datetime import date
from typing import Any

from processors import tables as t
from processors.batch import Batch
from processors.objectives import key_result_moved, membership_changed
from processors.scoring import score
from processors.state import (
    CORRECTED,
    NO_CONFIDENCE,
    RECORD,
    RETRACTED,
    CheckInLog,
    KeyResult,
    OrgProjection,
    id_bytes,
)
from processors.tables import Row
from schemas.envelope import event_id_text, original_check_in_key
from schemas.errors import ProjectionError

Data = dict[str, Any]
Record = Mapping[str, Any]
Stamp = tuple[int, int]
_PACK, _SIZE = RECORD.pack, RECORD.size


def _definition_row(org: OrgProjection, kr: KeyResult, stamp: Stamp) -> Row:
    return (
        org.org_id, kr.key_result_id, *stamp, kr.objective_id, kr.owner_unit_id, kr.period_id,
        kr.starts_on, kr.ends_on, kr.title, kr.kind, kr.unit, kr.start, kr.current_target,
        kr.weight, kr.due_on, kr.cadence_days, kr.retired,
    )  # fmt: skip


def _check_in_row(org: OrgProjection, kr: KeyResult, index: int, stamp: Stamp, change: str) -> Row:
    """A version of an earlier check-in, as the state knows it now."""
    log = org.check_ins_of(kr)
    c = log[index]
    target = kr.target_at(c.occurred)
    progress, attainment = score(kr.kind, kr.start, target, c.value)
    actor, source = org.origins[c.origin]
    return (
        org.org_id, kr.key_result_id, c.check_in_id, *stamp, change, c.sequence, c.recorded,
        c.occurred, kr.kind, kr.start, target, c.value, log.original.get(index, c.value),
        progress, attainment, c.known_confidence, log.comment.get(index), actor, source,
        bool(c.flags & CORRECTED), bool(c.flags & RETRACTED), log.reason.get(index),
    )  # fmt: skip


def _set_current(kr: KeyResult, log: CheckInLog, index: int) -> None:
    """Make check-in ``index`` (-1: none) the current one and score it."""
    kr.current = index
    if index < 0:
        kr.target, kr.value, kr.confidence = kr.current_target, kr.start, None
        kr.last_at = kr.last_id = None
    else:
        c = log[index]
        kr.last_at = c.occurred
        kr.target = kr.target_at(c.occurred)
        kr.value = c.value
        kr.confidence = c.known_confidence
        kr.last_id = c.check_in_id
    kr.progress, kr.attainment = score(kr.kind, kr.start, kr.target, kr.value)


def _moved(
    b: Batch, org: OrgProjection, kr: KeyResult, before: tuple[float, float | None], stamp: Stamp
) -> None:
    """The key result changed (its progress and confidence were ``before``): its current row,
    and its objective's numbers."""
    b.key_result_changed(org, kr, stamp)
    if (kr.progress, kr.confidence) != before:
        key_result_moved(b, org, kr, before, stamp)


def _check_in(org: OrgProjection, kr: KeyResult, event_id: Any, seq: int) -> tuple[CheckInLog, int]:
    log = org.check_ins_of(kr)
    index = log.find(id_bytes(str(event_id)))
    if index < 0:
        raise ProjectionError(
            f"org {org.org_id!r}, event {seq}: key result {kr.key_result_id!r} has no "
            f"check-in {event_id!s}"
        )
    return log, index


def key_result_defined(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    occurred, stamp = b.occurred, b.stamp
    objective = org.objectives[d["objective_id"]]
    period = org.periods[objective.period_id]
    due_on = d.get("due_on")
    kr = KeyResult(
        key_result_id=d["key_result_id"],
        objective_id=objective.objective_id,
        title=d["title"],
        kind=d["kind"],
        start=float(d["start"]),
        defined_target=float(d["target"]),
        unit=d.get("unit", ""),
        weight=float(d.get("weight", 1.0)),
        due_on=date.fromisoformat(due_on) if due_on else None,
        cadence_days=int(d.get("checkin_every_days", 7)),
        period_id=objective.period_id,
        owner_unit_id=objective.owner_unit_id,
        starts_on=period.starts_on,
        ends_on=period.ends_on,
        check_ins=CheckInLog(),
    )
    org.key_results[kr.key_result_id] = kr
    org.changed.add(kr.key_result_id)
    objective.key_result_ids.append(kr.key_result_id)
    b.rows[t.TARGETS].append(
        (org.org_id, kr.key_result_id, *stamp, occurred, kr.defined_target, None)
    )
    _set_current(kr, org.check_ins_of(kr), -1)
    b.rows[t.KEY_RESULTS].append(_definition_row(org, kr, stamp))
    b.key_result_changed(org, kr, stamp)
    membership_changed(b, org, objective, stamp)


def target_revised(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    occurred, stamp = b.occurred, b.stamp
    kr = org.key_results[d["key_result_id"]]
    log = org.check_ins_of(kr)
    target = float(d["target"])
    before = (kr.progress, kr.confidence)
    affected = sorted(
        (c.occurred, c.sequence, i, kr.target_at(c.occurred))
        for i, c in enumerate(log)
        if c.occurred >= occurred
    )
    kr.revisions.append((occurred, stamp[0], target))
    kr.revisions.sort()
    b.rows[t.TARGETS].append((org.org_id, kr.key_result_id, *stamp, occurred, target, d["reason"]))
    for measured, _sequence, index, was in affected:
        if kr.target_at(measured) != was:
            b.check_ins.append(_check_in_row(org, kr, index, stamp, "rescored"))
    _set_current(kr, log, kr.current)
    b.rows[t.KEY_RESULTS].append(_definition_row(org, kr, stamp))
    _moved(b, org, kr, before, stamp)


def key_result_retired(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    kr = org.key_results[d["key_result_id"]]
    kr.retired = True
    b.rows[t.KEY_RESULTS].append(_definition_row(org, kr, stamp))
    b.key_result_changed(org, kr, stamp)
    membership_changed(b, org, org.objectives[kr.objective_id], stamp)


def check_in_recorded(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    """The hot path: one call per check-in of the ledger."""
    occurred, stamp = b.occurred, b.stamp
    sequence, recorded = stamp
    kr = org.key_results[d["key_result_id"]]
    log = kr.check_ins if kr.check_ins is not None else org.recent(kr)  # maybe only its tail
    event_id: str = r["event_id"]
    actor: str = r["actor"]
    source: str = r["source"]
    value = float(d["value"])
    confidence = d.get("confidence")
    comment = d.get("comment")
    index = log.base + len(log.data) // _SIZE
    log.data += _PACK(
        id_bytes(event_id), occurred, sequence, recorded, value,
        NO_CONFIDENCE if confidence is None else confidence, org.origin(actor, source), 0,
    )  # fmt: skip
    if comment is not None:
        log.comment[index] = comment
    org.changed.add(kr.key_result_id)
    kind, start = kr.kind, kr.start
    target = kr.target_at(occurred) if kr.revisions else kr.defined_target
    progress, attainment = score(kind, start, target, value)
    b.check_ins.append(
        (org.org_id, kr.key_result_id, event_id, sequence, recorded, "recorded", sequence,
         recorded, occurred, kind, start, target, value, value, progress, attainment,
         confidence, comment, actor, source, False, False, None)
    )  # fmt: skip
    kr.live += 1
    last_at = kr.last_at
    if last_at is not None and occurred < last_at:  # measured before the current one
        b.key_result_changed(org, kr, stamp)
        return
    before = (kr.progress, kr.confidence)
    kr.current = index
    kr.target, kr.value, kr.confidence = target, value, confidence
    kr.progress, kr.attainment = progress, attainment
    kr.last_at, kr.last_id = occurred, event_id
    b.key_result_changed(org, kr, stamp)
    if progress != before[0] or confidence != before[1]:
        key_result_moved(b, org, kr, before, stamp)


def _amended(
    b: Batch, org: OrgProjection, r: Record, d: Data
) -> tuple[KeyResult, CheckInLog, int, tuple[float, float | None]]:
    """The check-in a correction or retraction names (by its id or the source's): its key
    result, log and index, and the key result's (progress, confidence) before the change."""
    kr = org.key_results[d["key_result_id"]]
    named = event_id_text(original_check_in_key(org.org_id, r["source"], d))
    log, index = _check_in(org, kr, named, b.stamp[0])
    org.changed.add(kr.key_result_id)
    return kr, log, index, (kr.progress, kr.confidence)


def check_in_corrected(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    kr, log, index, before = _amended(b, org, r, d)
    log.set_original(index, log[index].value)
    log.set_value(index, float(d["value"]))
    if d.get("confidence") is not None:
        log.set_confidence(index, d["confidence"])
    log.flag(index, CORRECTED)
    log.set_reason(index, d["reason"])
    b.check_ins.append(_check_in_row(org, kr, index, stamp, "corrected"))
    if index == kr.current:
        _set_current(kr, log, index)
    _moved(b, org, kr, before, stamp)


def check_in_retracted(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    stamp = b.stamp
    kr, log, index, before = _amended(b, org, r, d)
    if not log[index].flags & RETRACTED:
        kr.live -= 1
    log.flag(index, RETRACTED)
    log.set_reason(index, d["reason"])
    b.check_ins.append(_check_in_row(org, kr, index, stamp, "retracted"))
    if index == kr.current:
        _set_current(kr, log, log.latest_live())
    _moved(b, org, kr, before, stamp)


HANDLERS = {
    "KeyResultDefined": key_result_defined,
    "KeyResultTargetRevised": target_revised,
    "KeyResultRetired": key_result_retired,
    "CheckInRecorded": check_in_recorded,
    "CheckInCorrected": check_in_corrected,
    "CheckInRetracted": check_in_retracted,
}
