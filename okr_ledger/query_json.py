"""The query commands' JSON: the lines ``progress``, ``cascade``, ``coverage`` and ``history``
print with ``--json``, and the HTTP API returns. Built here once, for both."""

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import orjson

from okr_ledger import progress_render as render
from projections import queries
from projections.queries import Moment, Record
from projections.store import ProjectionStore

JsonLine = dict[str, Any]


def parse_moment(text: str) -> datetime:
    """RFC 3339 (a missing offset means UTC) or a plain date (its midnight, UTC), in UTC;
    ``ValueError`` otherwise."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
) -> queries.Progress:
    """An org's objectives and key results, only ``period``'s and ``unit``'s if given."""
    return _filtered(queries.progress(store, org_id, moment, focus_limit), period, unit)


def progress_lines(org_id: str, found: queries.Progress) -> Iterator[JsonLine]:
    return render.progress_lines(org_id, found)


def cascade_lines(org_id: str, objectives: list[Record]) -> Iterator[JsonLine]:
    return (render.cascade_line(org_id, o) for o in objectives)


def coverage_lines(store: ProjectionStore, org_id: str, moment: Moment) -> list[JsonLine]:
    return queries.coverage(store, org_id, moment)


def history_lines(
    store: ProjectionStore, orgs: list[str], subject: str, moment: Moment
) -> dict[str, list[JsonLine]]:
    """Each org's events about ``subject``; an unknown subject raises ``UnknownNameError``
    (one known, but not as of ``moment.as_of``, gives empty lists)."""
    found = {org_id: queries.history(store, org_id, subject, moment) for org_id in orgs}
    if not any(found.values()):
        queries.require_subject(store, subject, orgs)
    return found
