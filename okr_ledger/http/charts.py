"""A key result's check-ins as a small SVG chart: value against target over business time.

Server-rendered, no JavaScript: a polyline of the values, a dashed step line of the target in
force at each check-in, and the period's span on the time axis.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from html import escape

from projections.queries import Record, aware

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 32


@dataclass(frozen=True, slots=True)
class Point:
    at: datetime
    value: float
    target: float


def _moment(day: date | datetime) -> datetime:
    value = day if isinstance(day, datetime) else datetime.combine(day, time())
    moment: datetime = aware(value)
    return moment


def points(check_ins: Sequence[Record]) -> list[Point]:
    """The check-ins still standing (not retracted), by business time."""
    return [
        Point(_moment(c["occurred_at"]), float(c["value"]), float(c["target"]))
        for c in check_ins
        if not c["retracted"]
    ]


def _number(value: float) -> str:
    return f"{value:g}"


def chart(key_result: Record, found: Sequence[Point]) -> str:
    """The SVG document (its text is escaped here; numbers and dates only otherwise)."""
    start_at = _moment(key_result["period_starts_on"])
    end_at = _moment(key_result["period_ends_on"])
    times = [start_at, end_at, *(p.at for p in found)]
    low_t, high_t = min(times), max(times)
    values = [float(key_result["start"]), float(key_result["current_target"])]
    values += [v for p in found for v in (p.value, p.target)]
    low_v, high_v = min(values), max(values)
    pad = (high_v - low_v) * 0.1 or 1.0
    low_v, high_v = low_v - pad, high_v + pad
    span_t = (high_t - low_t).total_seconds() or 1.0

    def x(at: datetime) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (at - low_t).total_seconds() / span_t

    def y(value: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (high_v - value) / (high_v - low_v)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="chart" role="img" aria-label="{escape(key_result["title"])}: value against '
        'target over business time">',
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{HEIGHT - TOP - BOTTOM}" class="plot"/>',
    ]
    target_steps = [(start_at, float(key_result["target"]))] + [(p.at, p.target) for p in found]
    target_steps.append((high_t, float(key_result["current_target"])))
    path = []
    for n, (at, target) in enumerate(target_steps):
        if n:
            path.append(f"{x(at):.1f},{y(target_steps[n - 1][1]):.1f}")
        path.append(f"{x(at):.1f},{y(target):.1f}")
    parts.append(f'<polyline class="target" points="{" ".join(path)}"/>')
    line = [(start_at, float(key_result["start"]))] + [(p.at, p.value) for p in found]
    coords = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v in line)
    parts.append(f'<polyline class="value" points="{coords}"/>')
    for p in found:
        parts.append(
            f'<circle class="value" cx="{x(p.at):.1f}" cy="{y(p.value):.1f}" r="3.5">'
            f"<title>{p.at:%Y-%m-%d}: {_number(p.value)}</title></circle>"
        )
    unit = escape(key_result["unit"])
    for value in (high_v - pad, low_v + pad):
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" class="axis" text-anchor="end">'
            f"{_number(round(value, 2))}</text>"
        )
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 10}" class="axis">{low_t:%Y-%m-%d}</text>'
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 10}" class="axis" text-anchor="end">'
        f"{high_t:%Y-%m-%d}</text>"
        f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT - 10}" class="axis" text-anchor="middle">'
        f"value ({unit}) — target dashed</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
