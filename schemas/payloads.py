"""The ``data`` of every event type, at its latest version.

Each model rejects unknown fields and non-finite numbers. Rules that need the ledger's
state (references, lifecycles, cycles) are not here: they live in ``events.rules``.
"""

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.types import (
    Confidence,
    Count,
    ExternalRef,
    FiniteFloat,
    Identifier,
    IdList,
    IsoDate,
    Name,
    Reason,
    Text,
    Title,
    Unit,
    Weight,
)


class Payload(BaseModel):
    """Base of every event's ``data``.

    Each type's validator is built when the type is first validated (``defer_build``), not at
    import: a command meets a few of the 31 types, or none (a rerun of duplicates)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)

    type_name: ClassVar[str]
    """The event type this payload belongs to."""
    subject_field: ClassVar[str | None] = None
    """The field naming the entity this event is about, if any."""


class Verdict(StrEnum):
    SOUND = "sound"
    NEEDS_WORK = "needs_work"


class Quadrant(StrEnum):
    STRENGTH = "strength"
    WEAKNESS = "weakness"
    OPPORTUNITY = "opportunity"
    THREAT = "threat"


class Rollup(StrEnum):
    KEY_RESULTS = "key_results"
    CHILDREN = "children"
    BOTH = "both"


class Relation(StrEnum):
    CONTRIBUTES_TO = "contributes_to"
    DEPENDS_ON = "depends_on"


class ObjectiveStatus(StrEnum):
    ACTIVE = "active"
    ACHIEVED = "achieved"
    ABANDONED = "abandoned"


class KeyResultKind(StrEnum):
    INCREASE = "increase"
    DECREASE = "decrease"
    STAY_ABOVE = "stay_above"
    STAY_BELOW = "stay_below"
    MILESTONE = "milestone"


# --- strategy -------------------------------------------------------------------------


class StrategyDefined(Payload):
    type_name = "StrategyDefined"
    mission: Text = Field(min_length=1)
    vision: Text = Field(min_length=1)


class StrategyRevised(Payload):
    type_name = "StrategyRevised"
    mission: Text | None = Field(default=None, min_length=1)
    vision: Text | None = Field(default=None, min_length=1)
    reason: Reason

    @model_validator(mode="after")
    def _changes_something(self) -> "StrategyRevised":
        if self.mission is None and self.vision is None:
            raise ValueError("a revision changes the mission, the vision or both")
        return self


class StrategyReviewed(Payload):
    type_name = "StrategyReviewed"
    verdict: Verdict
    notes: Text
    reviewer: Name


class SwotItemAdded(Payload):
    type_name = "SwotItemAdded"
    subject_field = "swot_id"
    swot_id: Identifier
    quadrant: Quadrant
    text: Text = Field(min_length=1)


class SwotItemRemoved(Payload):
    type_name = "SwotItemRemoved"
    subject_field = "swot_id"
    swot_id: Identifier
    reason: Reason


class CompetitorNoted(Payload):
    type_name = "CompetitorNoted"
    subject_field = "competitor_id"
    competitor_id: Identifier
    name: Name
    strengths: Text | None = None
    weaknesses: Text | None = None
    differentiation: Text | None = None


class ThemeAdded(Payload):
    type_name = "ThemeAdded"
    subject_field = "theme_id"
    theme_id: Identifier
    name: Name
    description: Text | None = None


class ThemeRevised(Payload):
    type_name = "ThemeRevised"
    subject_field = "theme_id"
    theme_id: Identifier
    name: Name | None = None
    description: Text | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> "ThemeRevised":
        if self.name is None and self.description is None:
            raise ValueError("a revision changes the name, the description or both")
        return self


class ThemeRetired(Payload):
    type_name = "ThemeRetired"
    subject_field = "theme_id"
    theme_id: Identifier
    reason: Reason


# --- organisation and time ------------------------------------------------------------


class OrgUnitAdded(Payload):
    type_name = "OrgUnitAdded"
    subject_field = "unit_id"
    unit_id: Identifier
    name: Name
    kind: Name = Field(description="company, division, department, team, person...")
    parent_unit_id: Identifier | None = None


class OrgUnitRetired(Payload):
    type_name = "OrgUnitRetired"
    subject_field = "unit_id"
    unit_id: Identifier
    reason: Reason


class PeriodDefined(Payload):
    type_name = "PeriodDefined"
    subject_field = "period_id"
    period_id: Identifier
    name: Name
    starts_on: IsoDate
    ends_on: IsoDate


class PeriodClosed(Payload):
    """Freezes the period: its key results' and objectives' grades are taken as of the close,
    and nothing more is added to it or checked in against it until it is reopened."""

    type_name = "PeriodClosed"
    subject_field = "period_id"
    period_id: Identifier


class PeriodReopened(Payload):
    """Lifts a close: the period takes changes again; its next close grades it anew."""

    type_name = "PeriodReopened"
    subject_field = "period_id"
    period_id: Identifier
    reason: Reason


# --- objectives -----------------------------------------------------------------------


class ObjectiveCreated(Payload):
    type_name = "ObjectiveCreated"
    subject_field = "objective_id"
    objective_id: Identifier
    title: Title
    description: Text | None = None
    owner_unit_id: Identifier
    period_id: Identifier
    theme_ids: IdList
    parent_objective_id: Identifier | None = None
    rollup: Rollup
    weight: Weight = 1.0
    owner: Identifier | None = Field(default=None, description="the accountable person (actor id)")


class ObjectiveRevised(Payload):
    type_name = "ObjectiveRevised"
    subject_field = "objective_id"
    objective_id: Identifier
    title: Title | None = None
    description: Text | None = None
    theme_ids: IdList | None = None
    rollup: Rollup | None = None
    weight: Weight | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> "ObjectiveRevised":
        changes = (self.title, self.description, self.theme_ids, self.rollup, self.weight)
        if all(change is None for change in changes):
            raise ValueError("a revision changes at least one field")
        return self


class ObjectiveAligned(Payload):
    type_name = "ObjectiveAligned"
    subject_field = "objective_id"
    objective_id: Identifier
    parent_objective_id: Identifier


class ObjectiveLinked(Payload):
    type_name = "ObjectiveLinked"
    subject_field = "objective_id"
    objective_id: Identifier
    linked_objective_id: Identifier
    relation: Relation


class ObjectiveUnlinked(Payload):
    type_name = "ObjectiveUnlinked"
    subject_field = "objective_id"
    objective_id: Identifier
    linked_objective_id: Identifier
    relation: Relation


class ObjectiveStatusChanged(Payload):
    type_name = "ObjectiveStatusChanged"
    subject_field = "objective_id"
    objective_id: Identifier
    status: ObjectiveStatus
    reason: Reason | None = None


class ObjectiveOwnerChanged(Payload):
    type_name = "ObjectiveOwnerChanged"
    subject_field = "objective_id"
    objective_id: Identifier
    owner: Identifier | None = Field(description="the new owner (an actor id); null: nobody")
    reason: Reason | None = None


# --- key results and check-ins --------------------------------------------------------


class KeyResultDefined(Payload):
    type_name = "KeyResultDefined"
    subject_field = "key_result_id"
    key_result_id: Identifier
    objective_id: Identifier
    title: Title
    kind: KeyResultKind
    start: FiniteFloat
    target: FiniteFloat
    unit: Unit = Field(default="", description="May be empty or left out (milestones, counts).")
    weight: Weight = 1.0
    due_on: IsoDate | None = None
    checkin_every_days: Count = Field(default=7, ge=1, le=366)
    owner: Identifier | None = Field(default=None, description="the accountable person (actor id)")


class KeyResultTargetRevised(Payload):
    type_name = "KeyResultTargetRevised"
    subject_field = "key_result_id"
    key_result_id: Identifier
    target: FiniteFloat
    reason: Reason


class KeyResultRetired(Payload):
    type_name = "KeyResultRetired"
    subject_field = "key_result_id"
    key_result_id: Identifier
    reason: Reason


class KeyResultOwnerChanged(Payload):
    type_name = "KeyResultOwnerChanged"
    subject_field = "key_result_id"
    key_result_id: Identifier
    owner: Identifier | None = Field(description="the new owner (an actor id); null: nobody")
    reason: Reason | None = None


class CheckInRecorded(Payload):
    type_name = "CheckInRecorded"
    subject_field = "key_result_id"
    key_result_id: Identifier
    value: FiniteFloat
    confidence: Confidence
    comment: Text | None = None


def _one_original(event_id: UUID | None, source_event_id: str | None, field: str) -> None:
    if (event_id is None) == (source_event_id is None):
        raise ValueError(
            f"name the original check-in by {field}_event_id or by {field}_source_event_id "
            "(exactly one)"
        )


class CheckInCorrected(Payload):
    """Names the original by its event id, or by the ``source_event_id`` it was submitted with
    by the same source (the correction's own ``source``): see :func:`named_check_in`."""

    type_name = "CheckInCorrected"
    subject_field = "key_result_id"
    key_result_id: Identifier
    corrects_event_id: UUID | None = None
    corrects_source_event_id: ExternalRef | None = None
    value: FiniteFloat
    confidence: Confidence | None = None
    reason: Reason

    @model_validator(mode="after")
    def _names_one(self) -> "CheckInCorrected":
        _one_original(self.corrects_event_id, self.corrects_source_event_id, "corrects")
        return self


class CheckInRetracted(Payload):
    type_name = "CheckInRetracted"
    subject_field = "key_result_id"
    key_result_id: Identifier
    retracts_event_id: UUID | None = None
    retracts_source_event_id: ExternalRef | None = None
    reason: Reason

    @model_validator(mode="after")
    def _names_one(self) -> "CheckInRetracted":
        _one_original(self.retracts_event_id, self.retracts_source_event_id, "retracts")
        return self


LATEST_PAYLOADS: tuple[type[Payload], ...] = (
    StrategyDefined,
    StrategyRevised,
    StrategyReviewed,
    SwotItemAdded,
    SwotItemRemoved,
    CompetitorNoted,
    ThemeAdded,
    ThemeRevised,
    ThemeRetired,
    OrgUnitAdded,
    OrgUnitRetired,
    PeriodDefined,
    PeriodClosed,
    PeriodReopened,
    ObjectiveCreated,
    ObjectiveRevised,
    ObjectiveAligned,
    ObjectiveLinked,
    ObjectiveUnlinked,
    ObjectiveStatusChanged,
    KeyResultDefined,
    KeyResultTargetRevised,
    KeyResultRetired,
    CheckInRecorded,
    CheckInCorrected,
    CheckInRetracted,
    ObjectiveOwnerChanged,
    KeyResultOwnerChanged,
)
