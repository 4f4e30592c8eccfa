"""The projector's state: each org's entities, and each key result's check-ins as packed records.

Times are integers (microseconds since 1970-01-01 UTC), as in the rows. A check-in costs 61
bytes of state and no Python object of its own: its id as 16 bytes, its business and recorded
times, its sequence, its value and confidence, the index of its (actor, source) pair and a flag
byte (:data:`RECORD`). Comments, reasons and original values of corrected check-ins are kept
apart, only where there is one. A check-in's target is not kept: it is always the key result's
target in force at the check-in's business time (:meth:`KeyResult.target_at`), as the
projector re-scores check-ins when a revision changes it.

A key result's log need not be in memory whole: once the state is saved
(:mod:`processors.snapshots`, in chunks of :data:`CHUNK` check-ins), the saved chunks are
dropped from memory (:meth:`OrgProjection.evict`) and only the last, partly filled one is kept
(:attr:`CheckInLog.base`). Recording a check-in appends to that tail; the rarer events that
look at earlier check-ins (a correction, a retraction, a target revision) read the whole log
back first (:meth:`OrgProjection.check_ins_of`). So the memory of the projector's state does
not grow with the history.
"""

import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple
from uuid import UUID

from processors.tables import Row
from schemas.errors import ProjectionError, UnusableSnapshotError

CORRECTED = 1
RETRACTED = 2
NO_CONFIDENCE = math.nan
"""How a check-in without a confidence is kept."""
RECORD = struct.Struct("=16sqqqddIB")
"""One check-in: id, occurred_at, sequence, recorded_at, value, confidence, origin, flags."""
_VALUE = struct.Struct("=d")
_VALUE_AT, _CONFIDENCE_AT, _FLAGS_AT = 40, 48, 60
CHUNK = 128
"""Check-ins per saved chunk (7.8 KiB of records): what memory keeps of a saved log (its last,
partly filled chunk) is below one chunk per key result."""


def id_bytes(event_id: str) -> bytes:
    """An event id (a lowercase, hyphenated UUID, as the ledger writes them) as 16 bytes."""
    compact = event_id.replace("-", "")
    try:
        raw = bytes.fromhex(compact)
    except ValueError:
        raw = b""
    if len(event_id) != 36 or event_id[8:24:5] != "----" or raw.hex() != compact:
        raise ProjectionError(f"event id {event_id!r} is not a lowercase, hyphenated UUID")
    return raw


def id_text(raw: bytes) -> str:
    return str(UUID(bytes=raw))


class CheckIn(NamedTuple):
    """One check-in as its record holds it (read back only for the rarer events)."""

    raw_id: bytes
    occurred: int
    sequence: int
    recorded: int
    value: float
    """The value now: as recorded, or as last corrected."""
    confidence: float
    """NaN: none."""
    origin: int
    """Index of its (actor, source) in :attr:`OrgProjection.origins`."""
    flags: int

    @property
    def check_in_id(self) -> str:
        return id_text(self.raw_id)

    @property
    def known_confidence(self) -> float | None:
        return None if math.isnan(self.confidence) else self.confidence


@dataclass(slots=True)
class CheckInLog:
    """The check-ins of one key result, retracted ones too, in ledger (sequence) order: all of
    them, or (``base`` > 0) those from index ``base`` on, the earlier ones being saved.
    Indices are the check-ins' places in the whole log."""

    data: bytearray = field(default_factory=bytearray)
    """The :data:`RECORD` s of check-ins ``base``, ``base + 1``..., one after the other."""
    original: dict[int, float] = field(default_factory=dict)
    """The value as recorded, of check-ins corrected since."""
    comment: dict[int, str] = field(default_factory=dict)
    reason: dict[int, str] = field(default_factory=dict)
    """Why a check-in was corrected or retracted (the last reason given)."""
    base: int = 0
    """The check-ins before ``data``: saved, not in memory (a multiple of :data:`CHUNK`)."""
    clean: int = 0
    """The first check-ins whose saved chunks are up to date (those after it, or changed since
    the last save, are written by the next)."""

    def __len__(self) -> int:
        return self.base + len(self.data) // RECORD.size

    def __getitem__(self, index: int) -> CheckIn:
        return CheckIn._make(RECORD.unpack_from(self.data, self._offset(index)))

    def __iter__(self) -> Iterator[CheckIn]:
        """The check-ins in memory (all of them when ``base`` is 0)."""
        return map(CheckIn._make, RECORD.iter_unpack(self.data))

    def _offset(self, index: int) -> int:
        if index < self.base:
            raise IndexError(f"check-in {index} is saved, not in memory (from {self.base})")
        return (index - self.base) * RECORD.size

    def find(self, raw_id: bytes) -> int:
        """The index of the check-in with this id, or -1 (among those in memory)."""
        data, size = self.data, RECORD.size
        at = data.find(raw_id)
        while at >= 0 and at % size:
            at = data.find(raw_id, at + 1)
        return self.base + at // size if at >= 0 else -1

    def set_value(self, index: int, value: float) -> None:
        _VALUE.pack_into(self.data, self._offset(index) + _VALUE_AT, value)
        self.clean = min(self.clean, index)

    def set_confidence(self, index: int, confidence: float) -> None:
        _VALUE.pack_into(self.data, self._offset(index) + _CONFIDENCE_AT, confidence)
        self.clean = min(self.clean, index)

    def flag(self, index: int, flag: int) -> None:
        self.data[self._offset(index) + _FLAGS_AT] |= flag
        self.clean = min(self.clean, index)

    def set_original(self, index: int, value: float) -> None:
        """Keep the value as recorded of a check-in being corrected (once)."""
        if index not in self.original:
            self.original[index] = value
            self.clean = min(self.clean, index)

    def set_reason(self, index: int, reason: str) -> None:
        self.reason[index] = reason
        self.clean = min(self.clean, index)

    def latest_live(self) -> int:
        """The index of the check-in that is current: the latest by business time, ties broken
        by sequence, that is not retracted; -1 if none is (of a whole log: ``base`` 0)."""
        best, latest = -1, 0
        for index, check_in in enumerate(self, self.base):
            if not check_in.flags & RETRACTED and (best < 0 or check_in.occurred >= latest):
                best, latest = index, check_in.occurred  # in sequence order: later wins a tie
        return best

    def joined(self, tail: "CheckInLog") -> "CheckInLog":
        """This whole log (as saved) with ``tail``'s check-ins in place of its own from
        ``tail.base`` on: the whole log as it is now."""
        if self.base or len(self) < tail.base:
            raise UnusableSnapshotError("the saved check-ins end before those in memory")
        cut = tail.base

        def before(sparse: dict[int, Any]) -> dict[int, Any]:
            return {i: value for i, value in sparse.items() if i < cut}

        return CheckInLog(
            self.data[: cut * RECORD.size] + tail.data,
            before(self.original) | tail.original,
            before(self.comment) | tail.comment,
            before(self.reason) | tail.reason,
            0,
            tail.clean,
        )

    def drop_saved(self) -> None:
        """Once the whole log is saved (``clean`` is its length): keep only its last chunk
        if partly filled."""
        count = len(self)
        keep = count - count % CHUNK
        if self.clean < count or keep <= self.base:
            return
        cut = (keep - self.base) * RECORD.size
        self.data = self.data[cut:]
        for sparse in (self.original, self.comment, self.reason):
            for index in [i for i in sparse if i < keep]:
                del sparse[index]
        self.base = keep


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
    """None until loaded (:meth:`OrgProjection.check_ins_of`, :meth:`~OrgProjection.recent`);
    maybe only its last check-ins (:attr:`CheckInLog.base`)."""
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
    mark: int = -1
    """The last batch that listed it as changed (:class:`processors.batch.Batch`)."""

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
    stale: bool = False
    """Its progress moved since :attr:`progress` was rolled up (see processors.objectives)."""
    emitted: Row | None = None
    """What its last structure version said (its structure and membership columns)."""
    stamp: tuple[int, int] = (0, 0)
    """(sequence, recorded_at) of the last event that changed its row."""
    mark: int = -1
    """The last batch that listed it as changed (:class:`processors.batch.Batch`)."""
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


@dataclass(slots=True)
class ObjectiveIndex:
    """What a structural event needs to find the objectives it can change
    (:func:`processors.objectives.objectives_changed`): built from an org's objectives when
    first needed, then kept up as they are created (:attr:`OrgProjection.objective_index`);
    not saved."""

    place: dict[str, int] = field(default_factory=dict)
    """Each objective's place in :attr:`OrgProjection.objectives` (their order)."""
    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(unit, period) -> the objectives it owns in it (abandoned ones too)."""
    dangling: set[str] = field(default_factory=set)
    """Parents named by an objective but missing when it was created (the rules forbid it)."""

    def add(self, objectives: dict[str, "Objective"], objective: "Objective") -> None:
        self.place[objective.objective_id] = len(self.place)
        group = (objective.owner_unit_id, objective.period_id)
        self.groups.setdefault(group, []).append(objective.objective_id)
        if objective.parent_id is not None and objective.parent_id not in objectives:
            self.dangling.add(objective.parent_id)


CheckInLoader = Callable[[str, bool], CheckInLog]
"""Reads the check-ins of a key result (by id) from where the state was saved: all of them, or
(second argument true) at least those of its last chunk (``base`` may be above 0)."""


@dataclass(slots=True)
class Saved:
    """What an org's state in memory shares with its saved copy (:mod:`processors.snapshots`)."""

    generation: str
    """The saved copy it was loaded from or last saved as."""
    records: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    """Each key result's saved check-ins: (how many, the CRC-32 of each chunk)."""


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
    objective_index: "ObjectiveIndex | None" = None
    """Built from :attr:`objectives` when a structural event first needs it; not saved."""

    def origin(self, actor: str, source: str) -> int:
        key = (actor, source)
        index = self.origin_index.get(key)
        if index is None:
            index = self.origin_index[key] = len(self.origins)
            self.origins.append(key)
        return index

    def check_ins_of(self, key_result: KeyResult) -> CheckInLog:
        """All of the key result's check-ins (read back from the saved state if need be)."""
        log = key_result.check_ins
        if log is None or log.base:
            whole = self.loader(key_result.key_result_id, False) if self.loader else CheckInLog()
            log = key_result.check_ins = whole if log is None else whole.joined(log)
        return log

    def recent(self, key_result: KeyResult) -> CheckInLog:
        """The key result's log, at least its last chunk: enough to record a check-in."""
        log = key_result.check_ins
        if log is None:
            log = self.loader(key_result.key_result_id, True) if self.loader else CheckInLog()
            key_result.check_ins = log
        return log

    def evict(self) -> None:
        """Once the state is saved: keep of each key result's check-ins only the last chunk."""
        for key_result in self.key_results.values():
            if key_result.check_ins is not None:
                key_result.check_ins.drop_saved()

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
