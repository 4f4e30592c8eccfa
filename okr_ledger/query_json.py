"""The query commands' JSON: the lines ``progress``, ``cascade``, ``coverage`` and ``history``
print with ``--json``, and the HTTP API returns. Built here once, for both."""

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson

from okr_ledger import progress_render as render
from okr_ledger.cli_options import parse_time
from projections import monitoring, queries
from projections.queries import Moment, Record
from projections.store import ProjectionStore

JsonLine = dict[str, Any]


def parse_moment(text: str) -> datetime:
    """RFC 3339 (a missing offset means UTC), a plain date (its midnight, UTC), ``now`` or a
    relative ``-3d`` (:func:`okr_ledger.cli_options.parse_time`), in UTC; ``ValueError``
    otherwise."""
    return parse_time(text)


def encode_line(line: JsonLine) -> bytes:
    """One NDJSON line: times in UTC with ``Z``."""
    return orjson.dumps(line, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC) + b"\n"


def encode_lines(lines: Iterable[JsonLine]) -> bytes:
    return b"".join(encode_line(line) for line in lines)


def _filtered(progress: queries.Progress, period: str | None, unit: str | None) -> queries.Progress:
    kept = [
        o
        for o in progress.objectives
        if (period is None or o["period_id"] == period)
        and (unit is None or o["owner_unit_id"] == unit)
    ]
    ids = {o["objective_id"] for o in kept}
    return queries.Progress(kept, [kr for kr in progress.key_results if kr["objective_id"] in ids])


def progress(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    focus_limit: int,
    *,
    period: str | None = None,
    unit: str | None = None,
    reads: queries.Reads | None = None,
) -> queries.Progress:
    """An org's objectives and key results, only ``period``'s and ``unit``'s if given."""
    found = queries.progress(store, org_id, moment, focus_limit, reads=reads)
    return _filtered(found, period, unit)


def progress_lines(org_id: str, found: queries.Progress) -> Iterator[JsonLine]:
    return render.progress_lines(org_id, found)


def cascade_lines(org_id: str, objectives: list[Record]) -> Iterator[JsonLine]:
    return (render.cascade_line(org_id, o) for o in objectives)


def cascade(
    store: ProjectionStore, org_id: str, moment: Moment, focus_limit: int
) -> list[JsonLine]:
    """``cascade --json``: one line per objective, as of ``moment`` (``--at`` included)."""
    return list(cascade_lines(org_id, queries.cascade(store, org_id, moment, focus_limit)))


def coverage_lines(store: ProjectionStore, org_id: str, moment: Moment) -> list[JsonLine]:
    return queries.coverage(store, org_id, moment)


def history_lines(
    store: ProjectionStore, orgs: list[str], subject: str, moment: Moment
) -> dict[str, list[JsonLine]]:
    """Each org's events about ``subject``; an unknown subject raises ``UnknownNameError``
    (one known, but not as of ``moment.as_of``, gives empty lists)."""
    if subject == STRATEGY_SUBJECT:
        return {org_id: monitoring.strategy_history(store, org_id, moment) for org_id in orgs}
    found = {org_id: queries.history(store, org_id, subject, moment) for org_id in orgs}
    if not any(found.values()):
        queries.require_subject(store, subject, orgs)
    return found


def results_lines(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    period: str | None = None,
    *,
    reads: queries.Reads | None = None,
) -> list[JsonLine]:
    """The grades of the org's closed periods (``results --json``): one line per objective and
    key result, ``kind`` saying which (a key result's own kind is ``key_result_kind``), as of
    their period's latest close."""
    lines = []
    for r in queries.period_results(store, org_id, moment, period, reads=reads):
        line = {"kind": r["subject_kind"], "id": r["subject_id"]}
        line.update((k, v) for k, v in r.items() if k != "kind")
        line["key_result_kind"] = r["kind"]
        lines.append(line)
    return lines


# --- monitoring (issue 11) ---------------------------------------------------------------

STRATEGY_SUBJECT = "strategy"
"""``history strategy``: the strategy's trail (its events, SWOT items, competitors, themes)."""


def engagement_lines(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    *,
    period: str | None = None,
    reads: queries.Reads | None = None,
) -> list[JsonLine]:
    return monitoring.engagement(store, org_id, moment, period=period, reads=reads)


def trend_lines(
    store: ProjectionStore,
    org_id: str,
    subject: str,
    moment: Moment,
    focus_limit: int,
    *,
    count: int = 8,
    daily: bool = False,
) -> list[JsonLine]:
    return monitoring.trend(store, org_id, subject, moment, focus_limit, count=count, daily=daily)


def attention_lines(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    focus_limit: int,
    *,
    reads: queries.Reads | None = None,
) -> list[JsonLine]:
    return monitoring.attention(store, org_id, moment, focus_limit, reads=reads)


def strategy_lines(store: ProjectionStore, org_id: str, moment: Moment) -> list[JsonLine]:
    """One line (the strategy then), or none before it was defined."""
    found = monitoring.strategy(store, org_id, moment)
    return [] if found is None else [found]
