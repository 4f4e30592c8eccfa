"""The projector's state: each org's entities and the check-ins that decide current values."""

from bisect import insort
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from processors.tables import Row


@dataclass(slots=True)
class CheckIn:
    check_in_id: str
    key_result_id: str
    occurred_at: datetime
    sequence: int
    recorded_at: datetime
    original_value: float
    value: float
    confidence: float | None
    comment: str | None
    actor: str
    source: str
    target: float
    """The target in force at ``occurred_at``, as known now."""
    corrected: bool = False
    retracted: bool = False
    reason: str | None = None

    @property
    def order(self) -> tuple[datetime, int]:
        """Business time, ties broken by sequence: how check-ins compete to be current."""
        return self.occurred_at, self.sequence


@dataclass(slots=True)
class KeyResult:
    key_result_id: str
    objective_id: str
    title: str
    kind: str
    start: float
    defined_target: float
    unit: str
    weight: float
    due_on: date | None
    cadence_days: int
    period_id: str
    owner_unit_id: str
    starts_on: date
    ends_on: date
    retired: bool = False
    revisions: list[tuple[datetime, int, float]] = field(default_factory=list)
    """Target revisions as (business time, sequence, target), sorted."""
    check_ins: list[tuple[datetime, int, CheckIn]] = field(default_factory=list)
    """Every check-in, retracted ones too, sorted by (business time, sequence)."""
    live_check_ins: int = 0
    last: "CheckIn | None" = None
    """The current check-in (latest by business time, not retracted)."""
    target: float = 0.0
    """The target the current value is scored against."""
    value: float = 0.0
    progress: float = 0.0
    attainment: float = 0.0

    def target_at(self, moment: datetime) -> float:
        """The target in force at business time ``moment``: the last revision up to it."""
        for occurred_at, _sequence, target in reversed(self.revisions):
            if occurred_at <= moment:
                return target
        return self.defined_target

    @property
    def current_target(self) -> float:
        return self.revisions[-1][2] if self.revisions else self.defined_target

    def add_check_in(self, check_in: CheckIn) -> None:
        insort(self.check_ins, (check_in.occurred_at, check_in.sequence, check_in))
        self.live_check_ins += 1

    def current(self) -> CheckIn | None:
        """The latest check-in by business time that is not retracted."""
        for _occurred, _sequence, check_in in reversed(self.check_ins):
            if not check_in.retracted:
                return check_in
        return None


@dataclass(slots=True)
class Objective:
    objective_id: str
    title: str
    description: str | None
    owner_unit_id: str
    period_id: str
    theme_ids: list[str]
    parent_id: str | None
    rollup: str
    weight: float
    lifecycle: str = "active"
    links: set[tuple[str, str]] = field(default_factory=set)
    """Outgoing horizontal links as (relation, objective id)."""
    key_result_ids: list[str] = field(default_factory=list)
    child_ids: list[str] = field(default_factory=list)
    progress: float = 0.0
    confidence: float | None = None
    members: "Members | None" = None
    chain: "list[Objective] | None" = None
    """Cached: itself, then its parent, grandparent..."""
    structure: Row | None = None
    """Cached: the cascade part of its row, which only structural events change."""
    emitted: tuple[Row, Row] | None = None
    """What the last emitted version said, as (structure, numbers): only changes are emitted."""

    @property
    def abandoned(self) -> bool:
        return self.lifecycle == "abandoned"


@dataclass(slots=True)
class Members:
    """Cached per objective until its membership, rollup or weights change."""

    key_results: list[KeyResult]
    """Not retired, by id."""
    children: list[Objective]
    """Not abandoned, by id."""
    terms: list[tuple[float, KeyResult | Objective]]
    """(weight, member) that its rollup counts, in summing order: key results, then children."""
    total_weight: float


@dataclass(slots=True)
class Theme:
    name: str
    description: str | None
    active: bool = True


@dataclass(slots=True)
class Unit:
    name: str
    kind: str
    parent_unit_id: str | None
    active: bool = True


@dataclass(slots=True)
class Period:
    name: str
    starts_on: date
    ends_on: date
    closed: bool = False


@dataclass(slots=True)
class Competitor:
    name: str
    strengths: str
    weaknesses: str
    differentiation: str


@dataclass(slots=True)
class Review:
    verdict: str
    notes: str
    reviewer: str
    reviewed_at: datetime


@dataclass(slots=True)
class Strategy:
    mission: str | None = None
    vision: str | None = None
    swot: dict[str, tuple[str, str]] = field(default_factory=dict)
    """SWOT item id -> (quadrant, text), for items not removed."""
    competitors: dict[str, Competitor] = field(default_factory=dict)
    review: Review | None = None


@dataclass(slots=True)
class OrgProjection:
    """Everything the projector knows about one org, after ``last_sequence``."""

    org_id: str
    last_sequence: int = 0
    last_recorded_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    strategy: Strategy = field(default_factory=Strategy)
    themes: dict[str, Theme] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    periods: dict[str, Period] = field(default_factory=dict)
    objectives: dict[str, Objective] = field(default_factory=dict)
    key_results: dict[str, KeyResult] = field(default_factory=dict)
    check_ins: dict[str, CheckIn] = field(default_factory=dict)
    focus: dict[tuple[str, str], int] = field(default_factory=dict)
    """(unit, period) -> objectives that are not abandoned."""

    def ancestors(self, objective_id: str) -> list[str]:
        """Parent first, then grandparent...; stops on a cycle (which the ledger's rules forbid)."""
        chain: list[str] = []
        current = self.objectives.get(objective_id)
        while current is not None and current.parent_id is not None:
            if current.parent_id in chain or current.parent_id == objective_id:
                break
            chain.append(current.parent_id)
            current = self.objectives.get(current.parent_id)
        return chain


@dataclass(slots=True)
class ProjectorState:
    """The projector's state for every org it has seen."""

    orgs: dict[str, OrgProjection] = field(default_factory=dict)

    def org(self, org_id: str) -> OrgProjection:
        org = self.orgs.get(org_id)
        if org is None:
            org = self.orgs[org_id] = OrgProjection(org_id)
        return org

    def position(self, org_id: str) -> int:
        org = self.orgs.get(org_id)
        return org.last_sequence if org else 0
