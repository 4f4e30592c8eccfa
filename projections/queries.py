"""The questions the CLI asks: progress, cascade, coverage, history, each as of any moment.

``as_of`` is recorded time: the answer from the part of the ledger recorded up to then, read
from the history tables (the latest version of each entity up to that ledger sequence).
``at`` is business time: values as of then, from the check-in history as known at ``as_of``
(or now), rolled up with the projector's own functions. ``ref`` is the reference time for
expected progress, status and staleness: ``at``, else ``as_of``, else now.

A name a caller asks about (org, unit, period, subject) is checked with the ``require_``
functions: unknown, it raises :class:`~schemas.errors.UnknownNameError` with the closest known
names, rather than an empty answer. Known means in the projections at all (now), so an
``as_of`` before a name existed gives an empty answer, not an error.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from processors import scoring
from processors import tables as t
from projections import sql
from projections.store import ProjectionStore
from schemas.errors import UnknownNameError

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Moment:
    """Which version of the world a query answers about."""

    as_of: datetime | None = None
    at: datetime | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ref(self) -> datetime:
        return self.at or self.as_of or self.now


@dataclass(frozen=True, slots=True)
class Progress:
    objectives: list[Record]
    key_results: list[Record]


def aware(value: Any) -> Any:
    """clickhouse-connect returns UTC times without a zone: say that they are UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _records(store: ProjectionStore, query: str, params: dict[str, Any]) -> list[Record]:
    return [{k: aware(v) for k, v in row.items()} for row in store.dicts(query, params)]


def org_ids(store: ProjectionStore) -> list[str]:
    return sorted(store.positions())


def require_org(store: ProjectionStore, org_id: str) -> None:
    """Raise unless the projections hold ``org_id``."""
    known = org_ids(store)
    if org_id not in known:
        raise UnknownNameError("org", org_id, known)


_ENTITIES = {"unit": (t.UNITS, "unit_id"), "period": (t.PERIODS, "period_id")}


def require_entity(
    store: ProjectionStore, kind: Literal["unit", "period"], name: str, orgs: list[str]
) -> None:
    """Raise unless one of ``orgs`` has (or had) a unit or period with this id."""
    table, column = _ENTITIES[kind]
    known = _names(store, f"SELECT DISTINCT {column} FROM {{db}}.{table}", orgs)
    if name not in known:
        raise UnknownNameError(kind, name, known)


def require_subject(store: ProjectionStore, subject: str, orgs: list[str]) -> None:
    """Raise unless an event of one of ``orgs`` is about ``subject`` or names it (any time)."""
    found = store.rows(
        "SELECT 1 FROM {db}.audit_events WHERE has({orgs:Array(String)}, org_id)"
        " AND (subject_id = {subject:String} OR has(related_ids, {subject:String})) LIMIT 1",
        {"orgs": orgs, "subject": subject},
    )
    if not found:
        known = _names(store, "SELECT DISTINCT subject_id FROM {db}.audit_events", orgs)
        raise UnknownNameError("subject", subject, known - {""})


def _names(store: ProjectionStore, select: str, orgs: list[str]) -> set[str]:
    rows = store.rows(f"{select} WHERE has({{orgs:Array(String)}}, org_id)", {"orgs": orgs})
    return {str(name) for (name,) in rows}


def sequence_as_of(store: ProjectionStore, org_id: str, as_of: datetime | None) -> int:
    """The last ledger sequence of ``org_id`` recorded at or before ``as_of`` (None: the last)."""
    if as_of is None:
        return store.positions().get(org_id, 0)
    rows = store.rows(
        "SELECT max(sequence) FROM {db}.audit_events "
        "WHERE org_id = {org:String} AND recorded_at <= {as_of:DateTime64(6, 'UTC')}",
        {"org": org_id, "as_of": as_of},
    )
    return int(rows[0][0] or 0) if rows else 0


def _params(org_id: str, seq: int, moment: Moment, **more: Any) -> dict[str, Any]:
    return {"org": org_id, "seq": seq, "ref": moment.ref, **more}


_REF = "{ref:DateTime64(6, 'UTC')}"


def key_results(store: ProjectionStore, org_id: str, moment: Moment) -> list[Record]:
    seq = sequence_as_of(store, org_id, moment.as_of)
    source = sql.latest_as_of("{db}", t.KEY_RESULTS)
    query = sql.key_result_progress(source, _REF) + " ORDER BY objective_id, key_result_id"
    records = _records(store, query, _params(org_id, seq, moment))
    if moment.at is not None:
        _values_at(store, org_id, seq, moment, records)
    return records


def objectives(
    store: ProjectionStore, org_id: str, moment: Moment, focus_limit: int
) -> list[Record]:
    seq = sequence_as_of(store, org_id, moment.as_of)
    source = sql.latest_as_of("{db}", t.OBJECTIVES)
    query = sql.objective_progress(source, _REF, "{limit:UInt32}") + " ORDER BY objective_id"
    return _records(store, query, _params(org_id, seq, moment, limit=focus_limit))


def progress(store: ProjectionStore, org_id: str, moment: Moment, focus_limit: int) -> Progress:
    """Every objective and key result of ``org_id`` as of ``moment``."""
    objective_records = objectives(store, org_id, moment, focus_limit)
    key_result_records = key_results(store, org_id, moment)
    if moment.at is not None:
        _roll_up(objective_records, key_result_records, moment.ref)
    return Progress(objective_records, key_result_records)


def coverage(store: ProjectionStore, org_id: str, moment: Moment) -> list[Record]:
    """Every active theme in every period: objectives, key results and progress reaching it."""
    seq = sequence_as_of(store, org_id, moment.as_of)
    query = sql.theme_coverage(
        *(sql.latest_as_of("{db}", table) for table in (t.OBJECTIVES, t.THEMES, t.PERIODS))
    )
    return _records(store, query + " ORDER BY period_id, theme_id", _params(org_id, seq, moment))


def history(store: ProjectionStore, org_id: str, subject: str, moment: Moment) -> list[Record]:
    """The audit trail of one entity: events about it or naming it, in ledger order."""
    seq = sequence_as_of(store, org_id, moment.as_of)
    return _records(
        store,
        "SELECT * FROM {db}.audit_history WHERE org_id = {org:String} AND sequence <= {seq:UInt64}"
        " AND (subject_id = {subject:String} OR has(related_ids, {subject:String}))"
        " ORDER BY sequence",
        _params(org_id, seq, moment, subject=subject),
    )


def check_ins(
    store: ProjectionStore, org_id: str, key_result_id: str, moment: Moment
) -> list[Record]:
    """Each check-in of a key result as known at ``moment.as_of``, by business time."""
    seq = sequence_as_of(store, org_id, moment.as_of)
    source = sql.latest_as_of("{db}", t.CHECK_INS)
    return _records(
        store,
        f"SELECT * FROM {source} WHERE key_result_id = {{kr:String}} "
        "ORDER BY occurred_at, check_in_sequence",
        _params(org_id, seq, moment, kr=key_result_id),
    )


# --- business time: values at ``at``, rolled up in Python ------------------------------------


def _values_at(
    store: ProjectionStore, org_id: str, seq: int, moment: Moment, records: list[Record]
) -> None:
    params = _params(org_id, seq, moment, at=moment.at)
    at = "{at:DateTime64(6, 'UTC')}"
    # First which check-in is current per key result (cheap columns only), then its details.
    picked = store.rows(
        "SELECT kr, count(), argMax(check_in_id, (measured, recorded_as)) FROM ("
        "SELECT check_in_id, any(key_result_id) AS kr, any(occurred_at) AS measured, "
        "any(check_in_sequence) AS recorded_as, argMax(retracted, sequence) AS retracted_now "
        "FROM {db}.check_in_versions "
        f"WHERE org_id = {{org:String}} AND sequence <= {{seq:UInt64}} AND occurred_at <= {at} "
        "GROUP BY check_in_id) WHERE NOT retracted_now GROUP BY kr",
        params,
    )
    counts = {kr: int(count) for kr, count, _id in picked}
    details = {
        row["check_in_id"]: row
        for row in _records(
            store,
            "SELECT check_in_id, occurred_at, value, target, progress, attainment, confidence "
            "FROM {db}.check_in_versions WHERE org_id = {org:String} AND sequence <= {seq:UInt64}"
            " AND has({ids:Array(String)}, check_in_id) "
            "ORDER BY sequence DESC LIMIT 1 BY check_in_id",
            {**params, "ids": [check_in_id for _kr, _n, check_in_id in picked]},
        )
    }
    latest = {kr: details[check_in_id] for kr, _n, check_in_id in picked}
    revision = f"reason IS NOT NULL AND effective_at <= {at}"
    targets: dict[str, float] = {
        row[0]: float(row[1] if row[2] else row[3])
        for row in store.rows(
            "SELECT key_result_id, "
            f"argMaxIf(target, (effective_at, sequence), {revision}),"
            f" countIf({revision}),"
            " argMinIf(target, sequence, reason IS NULL) "
            "FROM {db}.key_result_targets WHERE org_id = {org:String} AND sequence <= {seq:UInt64}"
            " GROUP BY key_result_id",
            params,
        )
    }
    for record in records:
        found = latest.get(record["key_result_id"])
        count = counts.get(record["key_result_id"], 0)
        if found is None:
            target = targets.get(record["key_result_id"], float(record["current_target"]))
            value, confidence, occurred, check_in_id = record["start"], None, None, None
            progress, attainment = scoring.score(record["kind"], record["start"], target, value)
        else:
            check_in_id, occurred, confidence = (
                found["check_in_id"], found["occurred_at"], found["confidence"]
            )  # fmt: skip
            value, target = found["value"], found["target"]
            progress, attainment = found["progress"], found["attainment"]
        expected = scoring.expected_progress(
            record["kind"], record["period_starts_on"], record["period_ends_on"], moment.ref
        )
        record.update(
            value=value,
            target=target,
            progress=progress,
            attainment=attainment,
            confidence=confidence,
            last_check_in_at=occurred,
            last_check_in_id=check_in_id,
            check_in_count=count,
            expected_progress=expected,
            status=scoring.status(progress, expected),
            stale=scoring.is_stale(
                retired=record["retired"],
                last_check_in_at=occurred,
                cadence_days=record["checkin_every_days"],
                starts_on=record["period_starts_on"],
                ends_on=record["period_ends_on"],
                ref=moment.ref,
            ),
        )


def _roll_up(
    objective_records: list[Record], key_result_records: list[Record], ref: datetime
) -> None:
    """Recompute objective progress and confidence from key results' values at ``at``."""
    by_id = {o["objective_id"]: o for o in objective_records}
    key_results_of: dict[str, list[Record]] = defaultdict(list)
    for kr in key_result_records:
        if not kr["retired"]:
            key_results_of[kr["objective_id"]].append(kr)
    children_of: dict[str, list[Record]] = defaultdict(list)
    for objective in objective_records:
        parent = objective["parent_objective_id"]
        if parent in by_id and objective["lifecycle"] != "abandoned":
            children_of[parent].append(objective)
    for objective in sorted(objective_records, key=lambda o: -int(o["depth"])):
        own = key_results_of[objective["objective_id"]]
        value = scoring.rollup_progress(
            objective["rollup"],
            [(kr["key_result_id"], kr["weight"], kr["progress"]) for kr in own],
            [
                (child["objective_id"], child["weight"], child["progress"])
                for child in children_of[objective["objective_id"]]
            ],
        )
        expected = scoring.expected_progress(
            None, objective["period_starts_on"], objective["period_ends_on"], ref
        )
        objective.update(
            progress=value,
            confidence=scoring.weakest(kr["confidence"] for kr in own),
            expected_progress=expected,
            status=scoring.status(value, expected),
        )
