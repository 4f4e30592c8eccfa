"""Periods: closing one grades it, reopening one lets it change again.

A ``PeriodClosed`` takes each key result's and objective's final grade as of the close (rows
of ``period_grades``, stamped with the close's sequence): value, progress, attainment, expected
progress and status at the close's business time, and confidence. A ``PeriodReopened`` emits
only the period's new version; closing it again grades it anew, under the new close's sequence,
and the earlier grades stay in the table (the ``period_results`` view shows those of a period's
latest close while it is closed; as of an earlier moment, those of the close in force then).
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from processors import scoring
from processors import tables as t
from processors.batch import Batch
from processors.objectives import fresh
from processors.state import OrgProjection
from processors.strategy import period_changed

Data = dict[str, Any]
Record = Mapping[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def grades(b: Batch, org: OrgProjection, period_id: str) -> None:
    """Each key result (not retired) and objective of the period, graded as of now (the close):
    objectives in id order, then key results in id order."""
    sequence, recorded = b.stamp
    closed_at = b.occurred
    ref = _moment(closed_at)
    period = org.periods[period_id]
    rows = b.rows[t.PERIOD_GRADES]
    head = (org.org_id, period_id, sequence, recorded, closed_at)
    for objective_id in sorted(org.objectives):
        objective = org.objectives[objective_id]
        if objective.period_id != period_id:
            continue
        fresh(org, objective)
        expected = scoring.expected_progress(None, period.starts_on, period.ends_on, ref)
        rows.append((
            *head, "objective", objective_id, objective_id, objective.parent_id,
            objective.title, objective.owner_unit_id, None, "", objective.lifecycle,
            objective.weight, None, None, objective.progress, None, expected,
            scoring.status(objective.progress, expected, objective.lifecycle),
            objective.confidence,
        ))  # fmt: skip
    for key_result_id in sorted(org.key_results):
        kr = org.key_results[key_result_id]
        if kr.period_id != period_id or kr.retired:
            continue
        expected = scoring.expected_progress(
            kr.kind, period.starts_on, period.ends_on, ref, kr.due_on
        )
        rows.append((
            *head, "key_result", key_result_id, kr.objective_id, None, kr.title,
            kr.owner_unit_id, kr.kind, kr.unit, "active", kr.weight, kr.value, kr.target,
            kr.progress, kr.attainment, expected, scoring.status(kr.progress, expected),
            kr.confidence,
        ))  # fmt: skip


def period_closed(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    period_id = d["period_id"]
    org.periods[period_id].closed = True
    period_changed(b, org, period_id, b.stamp)
    grades(b, org, period_id)


def period_reopened(b: Batch, org: OrgProjection, r: Record, d: Data) -> None:
    period_id = d["period_id"]
    org.periods[period_id].closed = False
    period_changed(b, org, period_id, b.stamp)


HANDLERS = {"PeriodClosed": period_closed, "PeriodReopened": period_reopened}
