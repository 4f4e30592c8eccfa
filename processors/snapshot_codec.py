"""The snapshot file format: one org's projector state as gzip-compressed JSON, read back with
validation.

Nothing in a file decides what code runs: the bytes are inflated (at most
:data:`MAX_INFLATION` times their size), parsed as JSON and validated, field by field and
strictly, against the wire models below (pydantic), then checked for consistency
(every id the state refers to is in it) before the state's dataclasses are built. A file that
fails any check raises :class:`~schemas.errors.UnusableSnapshotError`.

Caches of the state (an objective's members, chain and structure) are not written: the
projector rebuilds them. What an objective last emitted is written, because it decides which
rows the next event emits. Check-ins are written once, as positional rows in the field order of
:class:`~processors.state.CheckIn`; a key result lists its check-ins by id.
"""

import gzip
import zlib
from datetime import UTC, date
from operator import attrgetter
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, ValidationError

from processors.projector import collector_paused
from processors.state import (
    CheckIn,
    Competitor,
    KeyResult,
    Objective,
    OrgProjection,
    Period,
    Review,
    Strategy,
    Theme,
    Unit,
)
from schemas.errors import UnusableSnapshotError

SnapshotFormat = Literal[3]
SNAPSHOT_FORMAT: SnapshotFormat = 3
"""Raise it (both places) whenever the state's shape or the projector's rules change: files of
another format are ignored. Format 3 is this JSON; formats 1 and 2 were pickles, never read."""
COMPRESSION_LEVEL = 1
"""gzip's fastest level: a third of the JSON's size (check-ins' ids are random)."""
MAX_INFLATION = 64
MIN_INFLATED = 16 << 20
"""A file inflates to at most ``max(MIN_INFLATED, MAX_INFLATION * its size)`` bytes: no
small file can take the memory of a large state (the JSON of a real state is ~3x its gzip)."""

UtcTime = Annotated[AwareDatetime, AfterValidator(lambda moment: moment.astimezone(UTC))]
"""The state holds UTC datetimes (``datetime.UTC``), as the projector makes them."""

CheckInRow = tuple[
    str, str, UtcTime, int, UtcTime, float, float, float | None, str | None, str, str, float,
    bool, bool, str | None,
]  # fmt: skip
"""A :class:`CheckIn`'s fields, in order."""
CHECK_IN_FIELDS = (
    "check_in_id", "key_result_id", "occurred_at", "sequence", "recorded_at", "original_value",
    "value", "confidence", "comment", "actor", "source", "target", "corrected", "retracted",
    "reason",
)  # fmt: skip
_check_in_row = attrgetter(*CHECK_IN_FIELDS)

StructureRow = tuple[
    str, str | None, str, str, date, date, str, str, float, str | None, list[str], int,
    list[str], list[str], list[str], list[str], bool, bool, int,
]  # fmt: skip
"""The cascade part of an objective's row (``processors.projector._structure``)."""
NumbersRow = tuple[float, float | None, int, int]
"""Progress, confidence, key results and children counted (``_emit_objectives``)."""


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ReviewWire(_Wire):
    verdict: str
    notes: str
    reviewer: str
    reviewed_at: UtcTime


class StrategyWire(_Wire):
    mission: str | None
    vision: str | None
    swot: dict[str, tuple[str, str]]
    competitors: dict[str, Competitor]
    review: ReviewWire | None


class ObjectiveWire(_Wire):
    objective_id: str
    title: str
    description: str | None
    owner_unit_id: str
    period_id: str
    theme_ids: list[str]
    parent_id: str | None
    rollup: str
    weight: float
    lifecycle: str
    links: list[tuple[str, str]]
    key_result_ids: list[str]
    child_ids: list[str]
    progress: float
    confidence: float | None
    emitted: tuple[StructureRow, NumbersRow] | None


class KeyResultWire(_Wire):
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
    retired: bool
    revisions: list[tuple[UtcTime, int, float]]
    check_in_ids: list[str]
    """Its check-ins, retracted ones too, in (business time, sequence) order."""
    live_check_ins: int
    last_check_in_id: str | None
    target: float
    value: float
    progress: float
    attainment: float


class StateWire(_Wire):
    last_sequence: int
    last_recorded_at: UtcTime
    strategy: StrategyWire
    themes: dict[str, Theme]
    units: dict[str, Unit]
    periods: dict[str, Period]
    objectives: list[ObjectiveWire]
    key_results: list[KeyResultWire]
    check_ins: list[CheckInRow]
    focus: list[tuple[str, str, int]]


class SnapshotWire(_Wire):
    format: SnapshotFormat
    org_id: str
    position: int
    event_hash: str
    state: StateWire


_OBJECTIVE_FIELDS = tuple(name for name in ObjectiveWire.model_fields if name != "emitted")
_KEY_RESULT_FIELDS = tuple(
    name
    for name in KeyResultWire.model_fields
    if name not in ("check_in_ids", "last_check_in_id", "revisions")
)


# --- writing --------------------------------------------------------------------------------


def encode(org_id: str, position: int, event_hash: str, state: OrgProjection) -> bytes:
    """The snapshot file's bytes: gzip of the JSON document."""
    document = {
        "format": SNAPSHOT_FORMAT,
        "org_id": org_id,
        "position": position,
        "event_hash": event_hash,
        "state": {
            "last_sequence": state.last_sequence,
            "last_recorded_at": state.last_recorded_at,
            "strategy": state.strategy,
            "themes": state.themes,
            "units": state.units,
            "periods": state.periods,
            "objectives": [_objective(o) for o in state.objectives.values()],
            "key_results": [_key_result(kr) for kr in state.key_results.values()],
            "check_ins": [_check_in_row(c) for c in state.check_ins.values()],
            "focus": [(unit, period, n) for (unit, period), n in state.focus.items()],
        },
    }
    return gzip.compress(orjson.dumps(document), COMPRESSION_LEVEL, mtime=0)


def _objective(objective: Objective) -> dict[str, Any]:
    document = {name: getattr(objective, name) for name in _OBJECTIVE_FIELDS}
    document["links"] = sorted(objective.links)
    document["emitted"] = objective.emitted
    return document


def _key_result(key_result: KeyResult) -> dict[str, Any]:
    document = {name: getattr(key_result, name) for name in _KEY_RESULT_FIELDS}
    document["revisions"] = key_result.revisions
    document["check_in_ids"] = [c.check_in_id for _at, _seq, c in key_result.check_ins]
    document["last_check_in_id"] = key_result.last.check_in_id if key_result.last else None
    return document


# --- reading --------------------------------------------------------------------------------


def decode(data: bytes) -> tuple[str, int, str, OrgProjection]:
    """``(org_id, position, event_hash, state)`` from a snapshot file's bytes.

    Raises :class:`UnusableSnapshotError` for anything but a consistent snapshot of this format.
    """
    document = _inflate(data)
    with collector_paused():  # many objects that live on, no cycles: as in the projector
        try:
            wire = SnapshotWire.model_validate_json(document)
        except ValidationError as error:
            raise UnusableSnapshotError(_first_problem(error)) from None
        _require(
            wire.position == wire.state.last_sequence,
            f"its position {wire.position} is not its state's {wire.state.last_sequence}",
        )
        return wire.org_id, wire.position, wire.event_hash, _state(wire.org_id, wire.state)


def _inflate(data: bytes) -> bytes:
    limit = max(MIN_INFLATED, MAX_INFLATION * len(data))
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    try:
        document = inflater.decompress(data, limit)
    except zlib.error as error:
        raise UnusableSnapshotError(f"not gzip: {error}") from None
    _require(not inflater.unconsumed_tail, f"it inflates beyond {limit:,} bytes")
    _require(inflater.eof and not inflater.unused_data, "its gzip stream is truncated or trailed")
    return document


def _first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    return f"{where}: {first['msg']}"


def _state(org_id: str, wire: StateWire) -> OrgProjection:
    check_ins = {row[0]: CheckIn(*row) for row in wire.check_ins}
    _require(len(check_ins) == len(wire.check_ins), "a check-in id appears twice")
    objectives = {o.objective_id: _objective_of(o) for o in wire.objectives}
    _require(len(objectives) == len(wire.objectives), "an objective id appears twice")
    key_results = {kr.key_result_id: _key_result_of(kr, check_ins) for kr in wire.key_results}
    _require(len(key_results) == len(wire.key_results), "a key result id appears twice")
    state = OrgProjection(
        org_id,
        last_sequence=wire.last_sequence,
        last_recorded_at=wire.last_recorded_at,
        strategy=Strategy(
            wire.strategy.mission,
            wire.strategy.vision,
            dict(wire.strategy.swot),
            dict(wire.strategy.competitors),
            Review(**dict(wire.strategy.review)) if wire.strategy.review else None,
        ),
        themes=dict(wire.themes),
        units=dict(wire.units),
        periods=dict(wire.periods),
        objectives=objectives,
        key_results=key_results,
        check_ins=check_ins,
        focus={(unit, period): n for unit, period, n in wire.focus},
    )
    _check_references(state)
    return state


def _objective_of(wire: ObjectiveWire) -> Objective:
    objective = Objective(**{name: getattr(wire, name) for name in _OBJECTIVE_FIELDS})
    objective.links = set(wire.links)
    objective.emitted = wire.emitted
    return objective


def _key_result_of(wire: KeyResultWire, check_ins: dict[str, CheckIn]) -> KeyResult:
    key_result = KeyResult(**{name: getattr(wire, name) for name in _KEY_RESULT_FIELDS})
    key_result.revisions = wire.revisions
    for check_in_id in wire.check_in_ids:
        check_in = check_ins.get(check_in_id)
        _require(
            check_in is not None and check_in.key_result_id == wire.key_result_id,
            f"key result {wire.key_result_id!r} lists a check-in it does not have",
        )
        assert check_in is not None
        key_result.check_ins.append((check_in.occurred_at, check_in.sequence, check_in))
    _require(
        key_result.check_ins == sorted(key_result.check_ins, key=lambda c: (c[0], c[1])),
        f"the check-ins of key result {wire.key_result_id!r} are out of order",
    )
    if wire.last_check_in_id is not None:
        key_result.last = check_ins.get(wire.last_check_in_id)
        _require(
            key_result.last is not None and key_result.last.key_result_id == wire.key_result_id,
            f"the current check-in of key result {wire.key_result_id!r} is not one of its own",
        )
    return key_result


def _check_references(state: OrgProjection) -> None:
    """Every id the state looks up while projecting is in it."""
    listed = [c.check_in_id for kr in state.key_results.values() for _t, _s, c in kr.check_ins]
    _require(
        len(listed) == len(set(listed)) == len(state.check_ins),
        "a check-in is listed by no key result, or by two",
    )
    for kr in state.key_results.values():
        _require(kr.objective_id in state.objectives, f"no objective for {kr.key_result_id!r}")
    for objective in state.objectives.values():
        name = repr(objective.objective_id)
        _require(objective.period_id in state.periods, f"no period for objective {name}")
        _require(
            (objective.owner_unit_id, objective.period_id) in state.focus,
            f"no focus count for objective {name}",
        )
        _require(
            all(k in state.key_results for k in objective.key_result_ids)
            and all(o in state.objectives for o in objective.child_ids),
            f"objective {name} names a key result or child it does not have",
        )


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise UnusableSnapshotError(problem)
