"""The numbers: a key result's progress, an objective's rollup, expected progress, status, stale.

Pure functions shared by the projector (which computes them when events arrive) and by the
queries that answer ``--at`` (which roll up values as of a business time). ``docs/projections.md``
states the same rules; ``projections/views.py`` mirrors the time-dependent ones in SQL.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime

ON_TRACK, AT_RISK, OFF_TRACK = "on_track", "at_risk", "off_track"
ACHIEVED, ABANDONED = "achieved", "abandoned"
"""An objective's status once it is achieved or abandoned: its lifecycle, whatever its numbers."""
ON_TRACK_GAP = 0.10
"""On track while progress trails expected progress by at most this much."""
AT_RISK_GAP = 0.25
"""At risk while it trails by at most this much; off track beyond."""
BINARY_KINDS = frozenset({"stay_above", "stay_below", "milestone"})
HOLD_KINDS = frozenset({"stay_above", "stay_below"})
_MICROS_PER_DAY = 86_400_000_000


def score(kind: str, start: float, target: float, value: float) -> tuple[float, float]:
    """``(progress, attainment)`` of ``value`` against ``target``.

    increase / decrease: attainment = (value - start) / (target - start), progress = it
    clamped to [0, 1]. The binary kinds score 1 or 0, and their attainment equals progress.
    """
    if kind == "stay_above":
        hit = 1.0 if value >= target else 0.0
    elif kind == "stay_below":
        hit = 1.0 if value <= target else 0.0
    elif kind == "milestone":
        hit = 1.0 if value >= 1 else 0.0
    else:
        span = target - start
        attainment = (value - start) / span if span else 1.0  # the rules forbid span == 0
        return min(max(attainment, 0.0), 1.0), attainment
    return hit, hit


def weighted_mean(parts: Iterable[tuple[float, float]]) -> float:
    """Σ weight·progress / Σ weight over ``(weight, progress)`` pairs; 0 with nothing to average."""
    total_weight = total = 0.0
    for weight, progress in parts:
        total_weight += weight
        total += weight * progress
    return total / total_weight if total_weight > 0 else 0.0


def rollup_progress(
    rollup: str,
    key_results: Iterable[tuple[str, float, float]],
    children: Iterable[tuple[str, float, float]],
) -> float:
    """An objective's progress from its members, each ``(id, weight, progress)``.

    ``key_results`` are the non-retired key results, ``children`` the child objectives that
    are not abandoned; ``rollup`` (key_results, children or both) says which count. They are
    summed key results first, then children, each in id order: the same members always give
    the same float, wherever it is computed.
    """
    parts: list[tuple[float, float]] = []
    if rollup != "children":
        parts.extend((weight, progress) for _id, weight, progress in sorted(key_results))
    if rollup != "key_results":
        parts.extend((weight, progress) for _id, weight, progress in sorted(children))
    return weighted_mean(parts)


def weakest(confidences: Iterable[float | None]) -> float | None:
    """The lowest known confidence, or None when none is known."""
    known = [c for c in confidences if c is not None]
    return min(known) if known else None


def rollup_confidence(
    rollup: str,
    key_results: Iterable[float | None],
    children: Iterable[float | None],
) -> float | None:
    """An objective's confidence: the weakest among the members its ``rollup`` counts (as for
    progress: the non-retired key results, the children that are not abandoned, or both), each
    child with its own rolled-up confidence; None when none of them has one."""
    counted: list[float | None] = []
    if rollup != "children":
        counted.extend(key_results)
    if rollup != "key_results":
        counted.extend(children)
    return weakest(counted)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = _EPOCH.date()


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (the SQL side uses the same integers)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _day_micros(day: date) -> int:
    """:func:`micros` of ``day`` 00:00 UTC (days are whole: no instant is made)."""
    return (day - _EPOCH_DAY).days * _MICROS_PER_DAY


def period_micros(starts_on: date, ends_on: date) -> tuple[int, int]:
    """A period as :func:`micros`: ``starts_on`` 00:00 UTC up to the day after ``ends_on``."""
    return _day_micros(starts_on), _day_micros(ends_on) + _MICROS_PER_DAY


def expected_progress(
    kind: str | None, starts_on: date, ends_on: date, ref: datetime, due_on: date | None = None
) -> float:
    """Expected progress at ``ref``: 1 for stay_above / stay_below (they must always hold); for a
    milestone, 0 until its due date is over (``due_on``, else the period's end) and 1 from then
    on; otherwise linear from the period's start to the end of ``due_on`` (else of the period).

    ``kind`` is None for an objective (linear through its period).
    """
    if kind in HOLD_KINDS:
        return 1.0
    begin, finish = period_micros(starts_on, due_on if due_on is not None else ends_on)
    now = micros(ref)
    if kind == "milestone" or finish <= begin:
        return 1.0 if now >= finish else 0.0
    fraction = (now - begin) / (finish - begin)
    return min(max(fraction, 0.0), 1.0)


def status(progress: float, expected: float, lifecycle: str | None = None) -> str:
    """on_track, at_risk or off_track, from how far progress trails expected progress; an
    achieved or abandoned objective (``lifecycle``) has that as its status."""
    if lifecycle is not None and lifecycle in {ACHIEVED, ABANDONED}:
        return lifecycle
    gap = expected - progress
    if gap <= ON_TRACK_GAP:
        return ON_TRACK
    if gap <= AT_RISK_GAP:
        return AT_RISK
    return OFF_TRACK


def is_stale(
    *,
    retired: bool,
    last_check_in_at: datetime | None,
    cadence_days: int,
    starts_on: date,
    ends_on: date,
    ref: datetime,
) -> bool:
    """No check-in within the cadence, counted up to ``ref`` (or the period's end, if earlier).

    Without any check-in the clock starts at the period's start. Retired key results are
    never stale.
    """
    if retired:
        return False
    return stale_in(last_check_in_at, cadence_days, period_micros(starts_on, ends_on), micros(ref))


def stale_in(
    last_check_in_at: datetime | None, cadence_days: int, period: tuple[int, int], ref: int
) -> bool:
    """:func:`is_stale` of a key result not retired, its period and ``ref`` as
    :func:`period_micros` and :func:`micros` give them (worked out once for many)."""
    start, end = period
    since = micros(last_check_in_at) if last_check_in_at is not None else start
    return min(ref, end) - since > cadence_days * _MICROS_PER_DAY
