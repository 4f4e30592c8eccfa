"""The weekly review's questions: owners, engagement, trends, attention, the strategy.

Each answers as of any moment, as :mod:`projections.queries` does: ``as_of`` (recorded time)
picks the ledger prefix, ``at`` (business time) the values, ``ref`` (``at``, else ``as_of``,
else now) the reference time of windows, expectations and staleness. They are built on the
same queries as ``progress`` (so a trend point equals ``progress --at`` at that point) and read
``owner_versions`` for owners. docs/projections.md states every rule.
"""

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from processors import tables as t
from projections import queries, sql
from projections.queries import Moment, Record
from projections.store import ProjectionStore
from schemas.errors import UnknownNameError

OWNER, UNIT = "owner", "unit"
OBJECTIVE, KEY_RESULT = "objective", "key_result"
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
ENDING_WITHIN_DAYS = 14
"""Periods ending within this many days of the reference time are in the attention list."""


# --- owners ------------------------------------------------------------------------------


def owners(store: ProjectionStore, org_id: str, seq: int) -> dict[tuple[str, str], str | None]:
    """``(subject_kind, subject_id) -> owner`` (None: nobody) up to ledger sequence ``seq``."""
    rows = store.rows(
        "SELECT subject_kind, subject_id, argMax(tuple(owner), sequence).1 "
        f"FROM {{db}}.{t.OWNERS} WHERE {sql.AS_OF_FILTER} GROUP BY subject_kind, subject_id",
        {"org": org_id, "seq": seq},
    )
    return {(str(kind), str(subject)): owner for kind, subject, owner in rows}


def key_result_owner(owner_of: dict[tuple[str, str], str | None], key_result: Record) -> str | None:
    """A key result's owner: its own, else its objective's."""
    own = owner_of.get((KEY_RESULT, key_result["key_result_id"]))
    return own if own is not None else owner_of.get((OBJECTIVE, key_result["objective_id"]))


def _running(record: Record, ref: datetime) -> bool:
    """Whether ``ref`` falls inside the record's period (its days, UTC)."""
    return bool(record["period_starts_on"] <= ref.date() <= record["period_ends_on"])


# --- engagement -------------------------------------------------------------------------


def _recent_check_ins(
    store: ProjectionStore, org_id: str, seq: int, ref: datetime
) -> dict[str, tuple[int, int]]:
    """Per key result: live check-ins measured in the 7 and the 28 days up to ``ref``."""
    rows = store.rows(
        "SELECT key_result_id, countIf(occurred_at > {since7:DateTime64(6, 'UTC')}), count() "
        "FROM (SELECT key_result_id, occurred_at, retracted "
        f"FROM {{db}}.{t.CHECK_INS} WHERE {sql.AS_OF_FILTER} "
        "AND occurred_at > {since28:DateTime64(6, 'UTC')} "
        "AND occurred_at <= {ref:DateTime64(6, 'UTC')} "
        "ORDER BY sequence DESC LIMIT 1 BY check_in_sequence) "
        "WHERE NOT retracted GROUP BY key_result_id",
        {"org": org_id, "seq": seq, "ref": ref, "since7": ref - WEEK, "since28": ref - 4 * WEEK},
    )
    return {str(kr): (int(n7), int(n28)) for kr, n7, n28 in rows}


def engagement(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    *,
    period: str | None = None,
    reads: queries.Reads | None = None,
) -> list[Record]:
    """Per owner and per unit: key results owned (not retired; of ``period``, else of the
    periods running at ``ref``), their check-ins in the last 7 and 28 days, how many (and
    which share) were checked in within their cadence (not stale), and the last check-in.
    ``reads``: those of the other answers about ``moment`` it is read with (a page's)."""
    reads = reads if reads is not None else queries.Reads(store)  # the sequence, read once
    seq = reads.sequence_as_of(org_id, moment.as_of)
    ref = moment.ref
    owner_of = owners(store, org_id, seq)
    recent = _recent_check_ins(store, org_id, seq, ref)
    groups: dict[tuple[str, str | None], dict[str, Any]] = {}
    for kr in queries.key_results(store, org_id, moment, reads=reads):
        if kr["retired"] or not (kr["period_id"] == period if period else _running(kr, ref)):
            continue
        n7, n28 = recent.get(kr["key_result_id"], (0, 0))
        for group in ((OWNER, key_result_owner(owner_of, kr)), (UNIT, kr["owner_unit_id"])):
            g = groups.setdefault(group, {
                "org_id": org_id, "group": group[0], "id": group[1], "key_results": 0,
                "check_ins_7d": 0, "check_ins_28d": 0, "within_cadence": 0,
                "within_cadence_share": 0.0, "last_check_in_at": None, "key_result_ids": [],
            })  # fmt: skip
            g["key_results"] += 1
            g["key_result_ids"].append(kr["key_result_id"])
            g["check_ins_7d"] += n7
            g["check_ins_28d"] += n28
            g["within_cadence"] += 0 if kr["stale"] else 1
            last = kr["last_check_in_at"]
            if last is not None and (g["last_check_in_at"] is None or last > g["last_check_in_at"]):
                g["last_check_in_at"] = last
    for g in groups.values():
        g["within_cadence_share"] = g["within_cadence"] / g["key_results"]
    return sorted(groups.values(), key=lambda g: (g["group"], g["id"] is None, g["id"] or ""))


# --- trends -----------------------------------------------------------------------------


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def trend_points(ref: datetime, count: int, *, daily: bool = False) -> list[tuple[date, datetime]]:
    """The last ``count`` buckets up to the one holding ``ref`` (weeks from Monday 00:00 UTC,
    or days), oldest first: ``(bucket's first day, point)``, the point being the bucket's end
    or ``ref``, whichever is earlier."""
    ref = ref.astimezone(UTC)
    day = ref.date()
    first = day if daily else day - timedelta(days=day.weekday())
    step = DAY if daily else WEEK
    points = []
    for k in range(count - 1, -1, -1):
        start = first - k * step
        points.append((start, min(_midnight(start) + step, ref)))
    return points


def trend(
    store: ProjectionStore,
    org_id: str,
    subject: str,
    moment: Moment,
    focus_limit: int,
    *,
    count: int = 8,
    daily: bool = False,
) -> list[Record]:
    """The progress of one key result or objective at each point of :func:`trend_points`, as
    known at ``moment.as_of``: each point is ``progress --at POINT`` for that subject, worked
    out from the key results its numbers come from alone (so a point costs their history, not
    the org's). The points' reads that name no business time are read once
    (:class:`queries.Reads`): per point, its check-ins and their versions."""
    lines = []
    reads = queries.Reads(store)
    seq = reads.sequence_as_of(org_id, moment.as_of)
    only = queries.key_results_under(store, org_id, subject, moment, seq)
    for bucket, point in trend_points(moment.ref, count, daily=daily) if only is not None else ():
        at = replace(moment, at=point)
        found = queries.progress(store, org_id, at, focus_limit, only=only, reads=reads)
        for kind, records, key in (
            (KEY_RESULT, found.key_results, "key_result_id"),
            (OBJECTIVE, found.objectives, "objective_id"),
        ):
            for r in records:
                if r[key] == subject:
                    lines.append({
                        "org_id": org_id, "subject_kind": kind, "subject_id": subject,
                        "title": r["title"], "granularity": "day" if daily else "week",
                        "bucket": bucket, "at": point, "progress": r["progress"],
                        "expected_progress": r["expected_progress"], "status": r["status"],
                        "value": r.get("value"), "confidence": r["confidence"],
                    })  # fmt: skip
    if not lines:
        now = queries.progress(store, org_id, Moment(now=moment.now), focus_limit)
        known = {kr["key_result_id"] for kr in now.key_results}
        known |= {o["objective_id"] for o in now.objectives}
        if subject not in known:
            raise UnknownNameError("key result or objective", subject, known)
    return lines


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """One character per value in [0, 1]: ▁ for 0 up to █ for 1."""
    top = len(SPARKS) - 1
    return "".join(SPARKS[round(min(max(v, 0.0), 1.0) * top)] for v in values)


# --- attention --------------------------------------------------------------------------


def _previous_confidences(
    store: ProjectionStore, org_id: str, seq: int, ref: datetime, ids: list[str]
) -> dict[str, tuple[float | None, float | None]]:
    """Per key result of ``ids``: the confidence of its current and previous check-ins (the
    two latest live ones measured by ``ref``, by business time)."""
    if not ids:
        return {}
    rows = store.rows(
        "SELECT key_result_id, groupArray(tuple(confidence)) FROM ("
        "SELECT key_result_id, confidence FROM ("
        "SELECT key_result_id, occurred_at, check_in_sequence, confidence, retracted "
        f"FROM {{db}}.{t.CHECK_INS} WHERE {sql.AS_OF_FILTER} "
        "AND key_result_id IN {ids:Array(String)} AND occurred_at <= {ref:DateTime64(6, 'UTC')} "
        "ORDER BY sequence DESC LIMIT 1 BY check_in_sequence) WHERE NOT retracted "
        "ORDER BY key_result_id, occurred_at DESC, check_in_sequence DESC "
        "LIMIT 2 BY key_result_id) GROUP BY key_result_id",
        {"org": org_id, "seq": seq, "ref": ref, "ids": ids},
    )
    found: dict[str, tuple[float | None, float | None]] = {}
    for kr, pairs in rows:
        confidences = [pair[0] for pair in pairs]
        found[str(kr)] = (confidences[0], confidences[1] if len(confidences) > 1 else None)
    return found


def _item(kind: str, subject_kind: str, subject_id: str, **detail: Any) -> Record:
    key = detail.pop("key", subject_id)
    return {"item_id": f"{kind}:{key}", "kind": kind, "subject_kind": subject_kind,
            "subject_id": subject_id, **detail}  # fmt: skip


def attention(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    focus_limit: int,
    *,
    reads: queries.Reads | None = None,
) -> list[Record]:
    """What needs someone now (at ``ref``), as known at ``moment.as_of``: each item with a
    stable ``item_id`` (``kind:subject``), by kind then id. Rules: docs/projections.md.
    ``reads``: those of the other answers about ``moment`` it is read with (a page's)."""
    reads = reads if reads is not None else queries.Reads(store)  # progress and coverage share
    seq = reads.sequence_as_of(org_id, moment.as_of)
    ref = moment.ref
    found = queries.progress(store, org_id, moment, focus_limit, reads=reads)
    owner_of = owners(store, org_id, seq)
    items: list[Record] = []
    live = [kr for kr in found.key_results if not kr["retired"] and _running(kr, ref)]
    for kr in live:
        if kr["stale"]:
            items.append(_item(
                "stale", KEY_RESULT, kr["key_result_id"], title=kr["title"],
                owner=key_result_owner(owner_of, kr), last_check_in_at=kr["last_check_in_at"],
                checkin_every_days=kr["checkin_every_days"],
            ))  # fmt: skip
    slipping = [kr for kr in live if kr["status"] != "on_track"]
    confidences = _previous_confidences(
        store, org_id, seq, ref, [kr["key_result_id"] for kr in slipping]
    )
    for kr in slipping:
        current, previous = confidences.get(kr["key_result_id"], (None, None))
        if current is not None and previous is not None and current < previous:
            items.append(_item(
                "confidence_dropped", KEY_RESULT, kr["key_result_id"], title=kr["title"],
                owner=key_result_owner(owner_of, kr), status=kr["status"],
                confidence=current, previous_confidence=previous,
            ))  # fmt: skip
    for o in found.objectives:
        if o["lifecycle"] != "active" or o["period_ends_on"] < ref.date():
            continue
        for flag in o["flags"]:
            items.append(_item(
                flag, OBJECTIVE, o["objective_id"], title=o["title"],
                owner=owner_of.get((OBJECTIVE, o["objective_id"])), period_id=o["period_id"],
            ))  # fmt: skip
    open_periods: set[str] | None = None
    for row in queries.coverage(store, org_id, moment, reads=reads):
        if row["uncovered"] and open_periods is None:
            open_periods = _open_periods(store, org_id, seq, ref)
        if row["uncovered"] and row["period_id"] in (open_periods or set()):
            items.append(_item(
                "theme_uncovered", "theme", row["theme_id"], title=row["theme_name"],
                period_id=row["period_id"], key=f"{row['period_id']}:{row['theme_id']}",
            ))  # fmt: skip
    behind: dict[str, list[Record]] = defaultdict(list)
    for kr in live:
        days_left = (kr["period_ends_on"] - ref.date()).days
        if days_left <= ENDING_WITHIN_DAYS and kr["progress"] < kr["expected_progress"]:
            behind[kr["period_id"]].append(kr)
    for period_id, krs in sorted(behind.items()):
        items.append(_item(
            "period_ending", "period", period_id,
            ends_on=krs[0]["period_ends_on"],
            days_left=(krs[0]["period_ends_on"] - ref.date()).days,
            key_result_ids=sorted(kr["key_result_id"] for kr in krs),
        ))  # fmt: skip
    order = {kind: i for i, kind in enumerate(ATTENTION_KINDS)}
    return sorted(
        ({"org_id": org_id, **item} for item in items),
        key=lambda i: (order[i["kind"]], i["item_id"]),
    )


ATTENTION_KINDS = (
    "stale", "confidence_dropped", "orphan", "parent_inactive", "over_focus", "theme_uncovered",
    "period_ending",
)  # fmt: skip


def _open_periods(store: ProjectionStore, org_id: str, seq: int, ref: datetime) -> set[str]:
    """Periods known at ``seq`` that have not ended by ``ref``."""
    rows = store.rows(
        sql.latest_as_of_rows("{db}", t.PERIODS, "period_id, ends_on"), {"org": org_id, "seq": seq}
    )
    return {str(period_id) for period_id, ends_on in rows if ends_on >= ref.date()}


# --- strategy ---------------------------------------------------------------------------


def strategy(
    store: ProjectionStore, org_id: str, moment: Moment, *, reads: queries.Reads | None = None
) -> Record | None:
    """The strategy as it stood at ``moment.as_of``: mission, vision, SWOT, competitors, active
    themes, the latest review and its verdict (None: no strategy yet). ``reads``: as
    :func:`attention`'s."""
    seq = (reads if reads is not None else queries.Reads(store)).sequence_as_of(
        org_id, moment.as_of
    )
    rows = store.dicts(sql.latest_as_of_rows("{db}", t.STRATEGY), {"org": org_id, "seq": seq})
    if not rows:
        return None
    row = rows[0]
    fields = ("name", "strengths", "weaknesses", "differentiation")
    row["competitors"] = [
        dict(c) if isinstance(c, dict) else dict(zip(fields, c, strict=True))
        for c in row["competitors"]
    ]
    row["as_of_sequence"] = row.pop("sequence")
    row["updated_at"] = row.pop("recorded_at")
    return row


STRATEGY_KINDS = ("strategy", "swot", "competitor", "theme")


def strategy_history(store: ProjectionStore, org_id: str, moment: Moment) -> list[Record]:
    """The strategy's audit trail up to ``moment.as_of``: the strategy's events, its SWOT
    items, competitors and themes, in ledger order."""
    seq = queries.sequence_as_of(store, org_id, moment.as_of)
    return store.dicts(
        f"SELECT * FROM {{db}}.{t.AUDIT} WHERE {sql.AS_OF_FILTER} "
        "AND subject_kind IN {kinds:Array(String)} ORDER BY sequence LIMIT 1 BY sequence",
        {"org": org_id, "seq": seq, "kinds": list(STRATEGY_KINDS)},
    )
