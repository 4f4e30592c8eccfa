"""Figures a benchmark measured, written as JSON for :mod:`benchmarks.summary` to print together.

Each script writes one file, ``benchmarks/.work/figures/<name>.json``::

    {"title": "...", "measured_at": "...", "load": [1.2, 0.9, 0.8],
     "figures": [{"figure": "...", "value": 1.5, "unit": "ms", "target": "<= 30",
                  "met": true, "anchor": "...", "note": "..."}]}

``target`` is text (how the issue states it) and ``met`` whether the value meets it (null when
there is no target); ``anchor`` is the raw library figure measured in the same run that the
value is to be read against.
"""

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

FIGURES = Path(__file__).resolve().parent / ".work" / "figures"


@dataclass(slots=True)
class Figure:
    figure: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    anchor: str = ""
    note: str = ""


RSS_LIMIT_MIB = 500e6 / 2**20
"""The issues' memory target, "peak RSS <= 500 MB", in the MiB the scripts print (476.8 MiB)."""
THROUGHPUT_TARGETS = {1: 20_000, 2: 30_000}
"""Issue 8's end-to-end Kafka targets by worker count (one worker, two on this 2-core machine)."""


def at_most(value: float, limit: float) -> tuple[str, bool]:
    return f"<= {limit:g}", value <= limit


def at_least(value: float, limit: float) -> tuple[str, bool]:
    return f">= {limit:g}", value >= limit


@dataclass(slots=True)
class Figures:
    """The figures of one script, printed as they come and written at the end."""

    name: str
    title: str
    rows: list[Figure] = field(default_factory=list)

    def add(
        self,
        figure: str,
        value: float,
        unit: str,
        target: tuple[str, bool] | None = None,
        *,
        anchor: str = "",
        note: str = "",
    ) -> None:
        text, met = target if target is not None else ("", None)
        self.rows.append(Figure(figure, value, unit, text, met, anchor, note))
        shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
        verdict = "" if met is None else (" (target met)" if met else " (target NOT met)")
        extra = f"  [{anchor}]" if anchor else ""
        print(f"  {figure}: {shown} {unit}{' ' + text if text else ''}{verdict}{extra}", flush=True)

    def write(self) -> Path:
        FIGURES.mkdir(parents=True, exist_ok=True)
        path = FIGURES / f"{self.name}.json"
        document = {
            "title": self.title,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load": list(os.getloadavg()),
            "figures": [asdict(row) for row in self.rows],
        }
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        return path


def process_memory(pid: str = "self") -> dict[str, int]:
    """VmHWM (peak RSS), VmRSS, RssAnon and RssFile of this process (or ``pid``), in MiB."""
    found = {}
    with open(f"/proc/{pid}/status") as lines:
        for line in lines:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                found[name] = int(value.split()[0]) // 1024
    return found


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tasks(pid: int) -> list[Path]:
    """The /proc directories of ``pid``'s threads (none once it is gone); Linux."""
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []


def children(pid: int) -> list[int]:
    """The processes ``pid``'s threads started (none once it is gone)."""
    found: list[int] = []
    for task in tasks(pid):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_times(stat: Path) -> tuple[float, float] | None:
    """User and system CPU seconds from a /proc ``stat`` file (a process's: its threads, not
    its children; or one thread's); None once it is gone."""
    try:
        text = stat.read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS  # utime, stime


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (its threads; not its children)."""
    times = cpu_times(Path(f"/proc/{pid}/stat"))
    return None if times is None else sum(times)
