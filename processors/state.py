"""The projector's state: each org's entities, and each key result's check-ins as typed arrays.

Times are integers (microseconds since 1970-01-01 UTC), as in the rows. A check-in costs about
60 bytes of state (no Python object of its own): its id as 16 bytes, five 8-byte numbers, an
index of its (actor, source) pair and a flag byte; comments, reasons and original values of
corrected check-ins are kept apart, only where there is one. A check-in's target is not kept:
it is always the key result's target in force at the check-in's business time
(:meth:`KeyResult.target_at`), as the projector re-scores check-ins when a revision changes it.
"""

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID

from processors.tables import Row
from schemas.errors import ProjectionError

CORRECTED = 1
RETRACTED = 2
NO_CONFIDENCE = math.nan
"""How a check-in without a confidence is kept in :attr:`CheckInLog.confidence`."""


def id_bytes(event_id: str) -> bytes:
    """An event id (a lowercase, hyphenated UUID, as the ledger writes them) as 16 bytes."""
    try:
        raw = bytes.fromhex(event_id.replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 16 or id_text(raw) != event_id:
        raise ProjectionError(f"event id {event_id!r} is not a lowercase, hyphenated UUID")
    return raw


def id_text(raw: bytes) -> str:
    return str(UUID(bytes=raw))


@dataclass(slots=True)
class CheckInLog:
    """Every check-in of one key result, retracted ones too, in ledger (sequence) order."""

    ids: bytearray = field(default_factory=bytearray)
    occurred: "array[int]" = field(default_factory=lambda: array("q"))
    sequence: "array[int]" = field(default_factory=lambda: array("q"))
    recorded: "array[int]" = field(default_factory=lambda: array("q"))
    value: "array[float]" = field(default_factory=lambda: array("d"))
    """The value now: as recorded, or as last corrected."""
    confidence: "array[float]" = field(default_factory=lambda: array("d"))
    origin: "array[int]" = field(default_factory=lambda: array("I"))
    """Index of its (actor, source) in :attr:`OrgProjection.origins`."""
    flags: bytearray = field(default_factory=bytearray)
    original: dict[int, float] = field(default_factory=dict)
    """The value as recorded, of check-ins corrected since."""
    comment: dict[int, str] = field(default_factory=dict)
    reason: dict[int, str] = field(default_factory=dict)
    """Why a check-in was corrected or retracted (the last reason given)."""

    def __len__(self) -> int:
        return len(self.sequence)

    def find(self, raw_id: bytes) -> int:
        """The index of the check-in with this id, or -1."""
        at = self.ids.find(raw_id)
        while at >= 0 and at % 16:
            at = self.ids.find(raw_id, at + 1)
        return at // 16 if at >= 0 else -1

    def check_in_id(self, index: int) -> str:
        return id_text(bytes(self.ids[16 * index : 16 * index + 16]))

    def confidence_of(self, index: int) -> float | None:
        found = self.confidence[index]
        return None if math.isnan(found) else found

    def latest_live(self) -> int:
        """The index of the check-in that is current: the latest by business time, ties broken
        by sequence, that is not retracted; -1 if none is."""
        best = -1
        flags, occurred = self.flags, self.occurred
        for index in range(len(flags)):
            if not flags[index] & RETRACTED and (best < 0 or occurred[index] >= occurred[best]):
                best = index  # in sequence order: on a tie, the later one wins
        return best


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
    revisions: list[tuple[int, int, float]] = field(default_factory=list)
    """Target revisions as (business time, sequence, target), sorted."""
    check_ins: CheckInLog | None = None
    """None until loaded (:meth:`OrgProjection.check_ins_of`)."""
    live: int = 0
    """Check-ins not retracted."""
    current: int = -1
    """Index of the current check-in in :attr:`check_ins`; -1 without one."""
    target: float = 0.0
    """The target the current value is scored against."""
    value: float = 0.0
    progress: float = 0.0
    attainment: float = 0.0
    confidence: float | None = None
    last_at: int | None = None
    last_id: str | None = None
    stamp: tuple[int, int] = (0, 0)
    """(sequence, recorded_at) of the last event about it: its current row's version."""

    def target_at(self, moment: int) -> float:
        """The target in force at business time ``moment``: the last revision up to it."""
        for occurred_at, _sequence, target in reversed(self.revisions):
            if occurred_at <= moment:
                return target
        return self.defined_target

    @property
    def current_target(self) -> float:
        return self.revisions[-1][2] if self.revisions else self.defined_target


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
    emitted: Row | None = None
    """What its last structure version said (its structure and membership columns)."""
    stamp: tuple[int, int] = (0, 0)
    """(sequence, recorded_at) of the last event that changed its row."""
    members: "Members | None" = None
    """Cached until its membership, rollup or weights change."""
    chain: "list[Objective] | None" = None
    """Cached: itself, then its parent, grandparent..."""
    structure: Row | None = None
    """Cached: the structure and membership columns of its row."""

    @property
    def abandoned(self) -> bool:
        return self.lifecycle == "abandoned"


@dataclass(slots=True)
class Members:
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
    reviewed_at: int


@dataclass(slots=True)
class Strategy:
    mission: str | None = None
    vision: str | None = None
    swot: dict[str, tuple[str, str]] = field(default_factory=dict)
    """SWOT item id -> (quadrant, text), for items not removed."""
    competitors: dict[str, Competitor] = field(default_factory=dict)
    review: Review | None = None


CheckInLoader = Callable[[str], CheckInLog]
"""Reads the check-ins of a key result (by id) from where the state was saved."""


@dataclass(slots=True)
class Saved:
    """What an org's state in memory shares with its saved copy (:mod:`processors.snapshots`)."""

    generation: str
    """The saved copy it was loaded from or last saved as."""
    records: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Each key result's saved check-ins: (how many, CRC-32)."""


@dataclass(slots=True)
class OrgProjection:
    """Everything the projector knows about one org, after ``last_sequence``."""

    org_id: str
    last_sequence: int = 0
    last_recorded_at: int = 0
    strategy: Strategy = field(default_factory=Strategy)
    themes: dict[str, Theme] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    periods: dict[str, Period] = field(default_factory=dict)
    objectives: dict[str, Objective] = field(default_factory=dict)
    key_results: dict[str, KeyResult] = field(default_factory=dict)
    focus: dict[tuple[str, str], int] = field(default_factory=dict)
    """(unit, period) -> objectives that are not abandoned."""
    origins: list[tuple[str, str]] = field(default_factory=list)
    """Every (actor, source) of a check-in, once."""
    origin_index: dict[tuple[str, str], int] = field(default_factory=dict)
    loader: CheckInLoader | None = None
    """Where key results' check-ins not loaded yet are read from (a saved state)."""
    saved: Saved | None = None
    changed: set[str] = field(default_factory=set)
    """Key results whose check-ins changed since the state was saved or loaded."""

    def origin(self, actor: str, source: str) -> int:
        key = (actor, source)
        index = self.origin_index.get(key)
        if index is None:
            index = self.origin_index[key] = len(self.origins)
            self.origins.append(key)
        return index

    def check_ins_of(self, key_result: KeyResult) -> CheckInLog:
        log = key_result.check_ins
        if log is None:
            log = self.loader(key_result.key_result_id) if self.loader else CheckInLog()
            key_result.check_ins = log
        return log

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
