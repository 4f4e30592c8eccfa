"""The format of a saved projector state: one JSON document per org, and one binary record of
typed arrays per key result's check-ins, each read back with validation.

Nothing in a saved state decides what code runs. The org document is parsed as JSON and
validated, field by field and strictly, against the wire models below (pydantic), then checked
for consistency (every id the state refers to is in it) before the state's dataclasses are
built. A key result's check-ins are saved in chunks of :data:`processors.state.CHUNK`: each
chunk fixed-width records of numbers (:data:`processors.state.RECORD`) plus a small JSON
document of its sparse fields (comments, reasons, original values); the org document records
each key result's number of check-ins and each chunk's CRC-32. Anything that fails a check
raises :class:`~schemas.errors.UnusableSnapshotError`.

Format 5 (one record per key result, every check-in in it, its CRC-32 in the document) is
still read, so that a saved state of the version before is used once more (and saved anew in
this format) rather than the whole ledger replayed.

Caches of the state (an objective's members, chain and structure) are not written: the
projector rebuilds them. What an objective last emitted is written, because it decides which
rows the next event emits.
"""

import sys
import zlib
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from processors.state import (
    CHUNK,
    RECORD,
    CheckInLog,
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

SnapshotFormat = Literal[5, 6]
SNAPSHOT_FORMAT = 6
"""Raise it (and :data:`SnapshotFormat`) whenever the state's shape or the projector's rules
change: saved states of another format are ignored, but for those :data:`READ_FORMATS` lists.
Format 6 is this one (issue 9: check-ins in chunks, so that a saved log need not be in memory);
format 5 had one record of every check-in per key result (JSON and typed arrays in SQLite;
issue 11: objective confidence rolled up by the rollup mode); format 4 the same before it;
format 3 was gzip JSON files, formats 1 and 2 pickles."""
LEGACY_FORMAT = 5
READ_FORMATS = (LEGACY_FORMAT, SNAPSHOT_FORMAT)
"""The formats read: this one, and the one before it (upgraded by the next save)."""
BYTE_ORDER = sys.byteorder
"""Check-ins are packed in this machine's byte order; a state saved on another is ignored."""


StructureRow = tuple[
    str, str | None, str, str, date, date, str, str, float, str | None, list[str], int,
    list[str], list[str], list[str], list[str], bool, bool, int, int, int,
]  # fmt: skip
"""The structure part of an objective's row (``processors.objectives.structure``)."""


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ReviewWire(_Wire):
    verdict: str
    notes: str
    reviewer: str
    reviewed_at: int


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
    emitted: StructureRow | None
    stamp: tuple[int, int]


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
    revisions: list[tuple[int, int, float]]
    live: int
    current: int
    target: float
    value: float
    progress: float
    attainment: float
    confidence: float | None
    last_at: int | None
    last_id: str | None
    stamp: tuple[int, int]
    check_ins: int
    """How many check-ins its saved chunks (or, format 5, its record) hold."""
    chunks: list[int] | None = None
    """The CRC-32 of each chunk (format 6)."""
    crc: int | None = None
    """The CRC-32 of its one record (format 5)."""


class OrgWire(_Wire):
    format: SnapshotFormat
    byte_order: Literal["little", "big"]
    org_id: str
    position: int
    event_hash: str
    last_recorded_at: int
    strategy: StrategyWire
    themes: dict[str, Theme]
    units: dict[str, Unit]
    periods: dict[str, Period]
    objectives: list[ObjectiveWire]
    key_results: list[KeyResultWire]
    focus: list[tuple[str, str, int]]
    origins: list[tuple[str, str]]


class SparseWire(_Wire):
    original: list[tuple[int, float]]
    comment: list[tuple[int, str]]
    reason: list[tuple[int, str]]


_OBJECTIVE_FIELDS = tuple(name for name in ObjectiveWire.model_fields if name != "links")
_KEY_RESULT_FIELDS = tuple(
    name
    for name in KeyResultWire.model_fields
    if name not in ("check_ins", "chunks", "crc", "revisions")
)


# --- a key result's check-ins -----------------------------------------------------------------


def chunks_of(count: int) -> int:
    """How many chunks ``count`` check-ins take."""
    return -(-count // CHUNK)


def encode_chunk(log: CheckInLog, chunk: int) -> bytes:
    """The record of chunk ``chunk`` of a key result's check-ins (the log must hold it): its
    packed records, then its sparse fields as JSON (by index in the whole log)."""
    first = chunk * CHUNK
    last = min(len(log), first + CHUNK)
    start = (first - log.base) * RECORD.size
    if start < 0:
        raise ValueError(f"chunk {chunk} is not in memory")

    def within(sparse: dict[int, Any]) -> list[tuple[int, Any]]:
        return sorted((i, value) for i, value in sparse.items() if first <= i < last)

    sparse = {
        "original": within(log.original),
        "comment": within(log.comment),
        "reason": within(log.reason),
    }
    return bytes(log.data[start : start + (last - first) * RECORD.size]) + orjson.dumps(sparse)


def decode_chunks(
    records: Sequence[bytes], crcs: Sequence[int], first: int, count: int, origins: int
) -> CheckInLog:
    """A key result's check-ins from chunk ``first`` on, from those chunks' records: the whole
    log holds ``count`` check-ins, chunk ``n``'s CRC-32 is ``crcs[n]``, and they name only the
    first ``origins`` (actor, source) pairs."""
    _require(len(crcs) == chunks_of(count), "a key result's chunks are not all listed")
    _require(len(records) == len(crcs) - first, "a key result's chunks are missing")
    log = CheckInLog(base=first * CHUNK, clean=count)
    data = bytearray()
    for chunk, record in enumerate(records, first):
        _require(zlib.crc32(record) == crcs[chunk], "a chunk of check-ins does not match its CRC")
        start = chunk * CHUNK
        size = min(CHUNK, count - start)
        fixed = size * RECORD.size
        _require(len(record) >= fixed, "a chunk of check-ins is truncated")
        sparse = _sparse(record[fixed:])
        data += record[:fixed]
        _require(
            all(start <= i < start + size for i, _ in (*sparse.original, *sparse.comment,
                                                     *sparse.reason)),
            "a sparse field names a check-in that is not in its chunk",
        )  # fmt: skip
        log.original.update(sparse.original)
        log.comment.update(sparse.comment)
        log.reason.update(sparse.reason)
    log.data = data
    _check_records(log, origins)
    return log


def decode_check_ins(record: bytes, count: int, crc: int, origins: int) -> CheckInLog:
    """Format 5: a key result's check-ins from its one record, which must hold ``count`` of
    them, have CRC-32 ``crc`` and name only the first ``origins`` (actor, source) pairs. The
    log is whole and, for format 6, not saved yet (``clean`` 0)."""
    _require(zlib.crc32(record) == crc, "a key result's check-ins do not match their checksum")
    fixed = count * RECORD.size
    _require(len(record) >= fixed, "a key result's check-ins are truncated")
    sparse = _sparse(record[fixed:])
    log = CheckInLog(bytearray(record[:fixed]), dict(sparse.original), dict(sparse.comment),
                     dict(sparse.reason))  # fmt: skip
    _check_records(log, origins)
    _require(
        all(0 <= i < count for i in (*log.original, *log.comment, *log.reason)),
        "a sparse field names a check-in that is not there",
    )
    return log


def _sparse(document: bytes) -> SparseWire:
    try:
        return SparseWire.model_validate_json(document)
    except ValidationError as error:
        raise UnusableSnapshotError(_first_problem(error)) from None


def _check_records(log: CheckInLog, origins: int) -> None:
    previous = 0
    for check_in in log:
        _require(check_in.sequence > previous, "a key result's check-ins are out of order")
        _require(check_in.flags <= 3, "a check-in has unknown flags")
        _require(check_in.origin < origins, "a check-in names an unknown origin")
        previous = check_in.sequence


# --- an org -----------------------------------------------------------------------------------


def encode_org(
    org: OrgProjection, event_hash: str, records: dict[str, tuple[int, list[int]]]
) -> bytes:
    """The org document; ``records`` gives each key result's (check-ins, chunks' CRC-32) as
    saved."""
    strategy = org.strategy
    document = {
        "format": SNAPSHOT_FORMAT,
        "byte_order": BYTE_ORDER,
        "org_id": org.org_id,
        "position": org.last_sequence,
        "event_hash": event_hash,
        "last_recorded_at": org.last_recorded_at,
        "strategy": {
            "mission": strategy.mission,
            "vision": strategy.vision,
            "swot": strategy.swot,
            "competitors": strategy.competitors,
            "review": strategy.review,
        },
        "themes": org.themes,
        "units": org.units,
        "periods": org.periods,
        "objectives": [_objective(o) for o in org.objectives.values()],
        "key_results": [_key_result(kr, records) for kr in org.key_results.values()],
        "focus": [(unit, period, n) for (unit, period), n in org.focus.items()],
        "origins": org.origins,
    }
    return orjson.dumps(document)


def _objective(objective: Objective) -> dict[str, Any]:
    document = {name: getattr(objective, name) for name in _OBJECTIVE_FIELDS}
    document["links"] = sorted(objective.links)
    return document


def _key_result(key_result: KeyResult, records: dict[str, tuple[int, list[int]]]) -> dict[str, Any]:
    document = {name: getattr(key_result, name) for name in _KEY_RESULT_FIELDS}
    document["revisions"] = key_result.revisions
    document["check_ins"], document["chunks"] = records[key_result.key_result_id]
    return document


def decode_org(data: bytes) -> tuple[OrgWire, OrgProjection]:
    """The org document's wire model and the state it describes, its key results' check-ins
    not loaded (:attr:`OrgProjection.loader` is left for the caller to set)."""
    try:
        wire = OrgWire.model_validate_json(data)
    except ValidationError as error:
        raise UnusableSnapshotError(_first_problem(error)) from None
    _require(wire.byte_order == BYTE_ORDER, f"it was saved in {wire.byte_order}-endian order")
    for kr in wire.key_results:
        _require(
            (kr.crc is not None, kr.chunks is not None) == (wire.format == LEGACY_FORMAT,
                                                            wire.format != LEGACY_FORMAT),
            f"key result {kr.key_result_id!r}: its check-ins are not of format {wire.format}",
        )  # fmt: skip
        _require(
            kr.chunks is None or len(kr.chunks) == chunks_of(kr.check_ins),
            f"key result {kr.key_result_id!r}: its chunks do not hold its check-ins",
        )
    objectives = {o.objective_id: _objective_of(o) for o in wire.objectives}
    _require(len(objectives) == len(wire.objectives), "an objective id appears twice")
    key_results = {kr.key_result_id: _key_result_of(kr) for kr in wire.key_results}
    _require(len(key_results) == len(wire.key_results), "a key result id appears twice")
    review = wire.strategy.review
    state = OrgProjection(
        wire.org_id,
        last_sequence=wire.position,
        last_recorded_at=wire.last_recorded_at,
        strategy=Strategy(
            wire.strategy.mission,
            wire.strategy.vision,
            dict(wire.strategy.swot),
            dict(wire.strategy.competitors),
            Review(**dict(review)) if review else None,
        ),
        themes=dict(wire.themes),
        units=dict(wire.units),
        periods=dict(wire.periods),
        objectives=objectives,
        key_results=key_results,
        focus={(unit, period): n for unit, period, n in wire.focus},
        origins=list(wire.origins),
        origin_index={origin: n for n, origin in enumerate(wire.origins)},
    )
    _require(len(state.origin_index) == len(state.origins), "an origin appears twice")
    _check_references(state, wire)
    return wire, state


def _objective_of(wire: ObjectiveWire) -> Objective:
    objective = Objective(**{name: getattr(wire, name) for name in _OBJECTIVE_FIELDS})
    objective.links = set(wire.links)
    return objective


def _key_result_of(wire: KeyResultWire) -> KeyResult:
    key_result = KeyResult(**{name: getattr(wire, name) for name in _KEY_RESULT_FIELDS})
    key_result.revisions = list(wire.revisions)
    _require(
        key_result.revisions == sorted(key_result.revisions),
        f"the revisions of key result {wire.key_result_id!r} are out of order",
    )
    _require(
        -1 <= wire.current < wire.check_ins and 0 <= wire.live <= wire.check_ins,
        f"key result {wire.key_result_id!r} counts check-ins it does not have",
    )
    return key_result


def _check_references(state: OrgProjection, wire: OrgWire) -> None:
    """Every id the state looks up while projecting is in it."""
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
    _require(wire.position >= 0 and wire.last_recorded_at >= 0, "negative position or time")


def _first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the document"
    return f"{where}: {first['msg']}"


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise UnusableSnapshotError(problem)
