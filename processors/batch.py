"""One call of the projector: the event being applied, the rows it emits, and what changed.

History rows are appended as each event is applied. The current-state rows (key results and
objectives now) are emitted once for each entity that changed since they were last emitted (at
the end of a batch, or of several: :class:`Changes`), stamped with the event that last changed
it: so their latest version is the same whatever the batch boundaries.
"""

from dataclasses import dataclass, field
from itertools import count

from processors import tables as t
from processors.state import KeyResult, Objective, OrgProjection
from processors.tables import Row, RowBatch

_MARKS = count()


@dataclass(slots=True)
class Changes:
    """What changed since the current-state rows were last emitted."""

    key_results: list[tuple[OrgProjection, KeyResult]] = field(default_factory=list)
    """Key results changed (each once)."""
    objectives: list[tuple[OrgProjection, Objective]] = field(default_factory=list)
    """Objectives whose row changed (each once)."""
    mark: int = field(default_factory=lambda: next(_MARKS))
    """Set on what changed, once it is listed."""


@dataclass(slots=True)
class Batch:
    changes: Changes = field(default_factory=Changes)
    rows: RowBatch = field(default_factory=t.empty_batch)
    orgs: dict[str, OrgProjection] = field(default_factory=dict)
    """Orgs that moved in this batch (their checkpoints)."""
    occurred: int = 0
    """The business time of the event being applied."""
    stamp: tuple[int, int] = (0, 0)
    """(sequence, recorded_at) of the event being applied: the version of what it changes."""
    audit: list[Row] = field(init=False)
    check_ins: list[Row] = field(init=False)
    objective_updates: list[Row] = field(init=False)
    """The rows of the tables most events add to (shortcuts into :attr:`rows`)."""

    def __post_init__(self) -> None:
        rows = self.rows
        self.audit = rows[t.AUDIT]
        self.check_ins = rows[t.CHECK_INS]
        self.objective_updates = rows[t.OBJECTIVE_UPDATES]

    def key_result_changed(
        self, org: OrgProjection, key_result: KeyResult, stamp: tuple[int, int]
    ) -> None:
        """Called once per event that changes the key result, after the change: its numbers
        then (:data:`processors.tables.KEY_RESULT_NUMBERS`)."""
        key_result.stamp = stamp
        self.rows[t.KEY_RESULT_NUMBERS].append(numbers_row(org, key_result, stamp[0]))
        changes = self.changes
        if key_result.mark != changes.mark:
            key_result.mark = changes.mark
            changes.key_results.append((org, key_result))

    def objective_changed(
        self, org: OrgProjection, objective: Objective, stamp: tuple[int, int]
    ) -> None:
        objective.stamp = stamp
        changes = self.changes
        if objective.mark != changes.mark:
            objective.mark = changes.mark
            changes.objectives.append((org, objective))

    def snapshot(self, org: OrgProjection, sequence: int) -> None:
        """At a multiple of :data:`processors.tables.SNAPSHOT_EVERY`: every key result's numbers
        (those the event itself changed have their row already) and every objective's last
        change, as of ``sequence``."""
        numbers = self.rows[t.KEY_RESULT_NUMBERS]
        for key_result in org.key_results.values():
            if key_result.stamp[0] != sequence:
                numbers.append(numbers_row(org, key_result, sequence))
        self.rows[t.OBJECTIVE_STAMPS].extend(
            (org.org_id, sequence, objective.objective_id, *objective.stamp)
            for objective in org.objectives.values()
        )

    def finish(self, current: bool) -> RowBatch:
        """The batch's rows, with its checkpoints, and, if ``current``, the current-state rows
        of what changed (their objectives' numbers exact: see
        :func:`processors.objectives.fresh`)."""
        rows = self.rows
        if current:
            changes = self.changes
            now = rows[t.KEY_RESULTS_NOW]
            for org, key_result in changes.key_results:
                now.append(key_result_row(org, key_result))
            now = rows[t.OBJECTIVES_NOW]
            for org, objective in changes.objectives:
                assert objective.emitted is not None
                assert not objective.stale
                now.append(
                    (org.org_id, objective.objective_id, *objective.stamp, *objective.emitted,
                     objective.progress, objective.confidence)
                )  # fmt: skip
            changes.key_results.clear()
            changes.objectives.clear()
            changes.mark = next(_MARKS)
        for org in self.orgs.values():
            rows[t.CHECKPOINTS].append(
                (t.LEDGER_STREAM, org.org_id, org.last_sequence, org.last_recorded_at)
            )
        return rows


def numbers_row(org: OrgProjection, kr: KeyResult, sequence: int) -> Row:
    """A key result's numbers as of ``sequence`` (:data:`processors.tables.KEY_RESULT_NUMBERS`)."""
    return (
        org.org_id, sequence, kr.key_result_id, *kr.stamp, kr.target, kr.value, kr.progress,
        kr.attainment, kr.confidence, kr.last_at, kr.last_id, kr.live,
    )  # fmt: skip


def key_result_row(org: OrgProjection, kr: KeyResult) -> Row:
    """A key result now: its definition, its current check-in's numbers, its check-in count."""
    return (
        org.org_id, kr.key_result_id, *kr.stamp, kr.objective_id, kr.owner_unit_id,
        kr.period_id, kr.starts_on, kr.ends_on, kr.title, kr.kind, kr.unit, kr.start,
        kr.current_target, kr.target, kr.value, kr.progress, kr.attainment, kr.confidence,
        kr.last_at, kr.last_id, kr.live, kr.weight, kr.due_on, kr.cadence_days, kr.retired,
    )  # fmt: skip
