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

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, Literal

from processors import scoring
from processors import tables as t
from projections import sql
from projections.store import ONE_THREAD, ProjectionStore
from schemas.errors import ProjectionError, UnknownNameError

Record = dict[str, Any]
Statement = tuple[str, dict[str, Any]]
"""A statement and its parameters, for :meth:`ProjectionStore.dicts_together`."""


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


def _sql(store: ProjectionStore, query: str) -> str:
    """``query`` with :data:`projections.store.ONE_THREAD` in chDB (here or
    :attr:`ProjectionStore.served_chdb`): each of an answer's statements on one thread. They
    run at once on up to three connections (:meth:`ProjectionStore.dicts_together`), a few
    thousand rows each: on 2 cores, two threads each only waited for each other (``--at`` p50
    ~-10 % at load 6, alternated; docs/projections.md). A server's statements run in turn:
    left as set."""
    return query + ONE_THREAD if store.embedded or store.served_chdb else query


def _records(
    store: ProjectionStore, query: str, params: dict[str, Any], reads: "Reads | None" = None
) -> list[Record]:
    """The rows of one statement (``reads``: from those of the answer this one is part of)."""
    if reads is not None:
        return reads.dicts(query, params)
    return store.dicts(_sql(store, query), params)


def _together(
    store: ProjectionStore, statements: Sequence[Statement], reads: "Reads | None" = None
) -> list[list[Record]]:
    """:meth:`ProjectionStore.dicts_together` of an answer's statements (:data:`ONE_THREAD`);
    ``reads``: from those of the answer this one is part of (:class:`Reads`)."""
    if reads is not None:
        return reads.together(statements)
    return store.dicts_together([(_sql(store, query), params) for query, params in statements])


_PARAMETER = re.compile(r"\{(\w+):")


class Reads:
    """The reads of one answer made of several (a trend's points, attention's progress and
    coverage, a dashboard page's sections): each statement read once for the values of the
    parameters it names, the org's ledger sequence as of a moment once (so every section
    answers about the same ledger position, even while the projector commits). A trend
    point's reads but its check-ins at ``at`` name no business time: one read serves every
    point. For one answer only (what is read is kept)."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        self._rows: dict[tuple[str, tuple[Any, ...]], list[Record]] = {}
        self._sequences: dict[tuple[str, datetime | None], int] = {}

    def sequence_as_of(self, org_id: str, as_of: datetime | None) -> int:
        key = (org_id, as_of)
        if key not in self._sequences:
            self._sequences[key] = sequence_as_of(self.store, org_id, as_of)
        return self._sequences[key]

    def together(self, statements: Sequence[Statement]) -> list[list[Record]]:
        """As :meth:`ProjectionStore.dicts_together`, the statements not read yet only (each
        answer's rows copies: callers add to them)."""
        keys = [(query, _named(query, params)) for query, params in statements]
        missing = {key: statement for key, statement in zip(keys, statements, strict=True)
                   if key not in self._rows}  # fmt: skip
        read = _together(self.store, list(missing.values()))
        self._rows |= dict(zip(missing, read, strict=True))
        return [[dict(row) for row in self._rows[key]] for key in keys]

    def dicts(self, query: str, params: dict[str, Any]) -> list[Record]:
        return self.together([(query, params)])[0]


def _sequence_as_of(
    store: ProjectionStore, org_id: str, as_of: datetime | None, reads: Reads | None
) -> int:
    """:func:`sequence_as_of`, from ``reads`` when the answer has them."""
    if reads is None:
        return sequence_as_of(store, org_id, as_of)
    return reads.sequence_as_of(org_id, as_of)


def _named(query: str, params: dict[str, Any]) -> tuple[Any, ...]:
    """The values of the parameters ``query`` names (hashable)."""
    return tuple(
        (name, tuple(value) if isinstance(value, list) else value)
        for name in sorted(set(_PARAMETER.findall(query)))
        for value in (params.get(name),)
    )


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
    """The last ledger sequence of ``org_id`` recorded at or before ``as_of`` (None: the last),
    never past its checkpoint: rows of a commit cut short (inserted, not checkpointed) are
    not part of any answer."""
    if as_of is None:
        return store.positions().get(org_id, 0)
    # ``event_times`` is sorted by sequence with a minmax index on the time: read in reverse
    # order, the first granule the index keeps holds the answer (exact even if a clock stepped
    # back). ``audit_events`` (sorted by subject) was read whole: 10-27 ms at 1,000,000 events.
    # The checkpoint is read beside it (``UNION ALL``), not as a bound inside it (a scalar
    # subquery: ~4 ms more of the engine's analysis); beyond it, read again within it.
    params = _sequence_params(org_id, as_of)
    found = store.rows(_sql(store, _SEQUENCE_AND_CHECKPOINT), params)
    return _sequence_found(store, params, found)


def _sequence_params(org_id: str, as_of: datetime) -> dict[str, Any]:
    return {"org": org_id, "as_of": as_of, "stream": t.LEDGER_STREAM}


def _sequence_found(
    store: ProjectionStore, params: dict[str, Any], found: Sequence[Sequence[Any]]
) -> int:
    """:func:`sequence_as_of` from the rows of :data:`_SEQUENCE_AND_CHECKPOINT` at ``params``
    (beyond the checkpoint: read again within it)."""
    read = {int(kind): value for kind, value in found}
    latest, checkpoint = read.get(0), int(read[1])
    if latest is None:
        return 0
    if latest <= checkpoint:
        return int(latest)
    rows = store.rows(_sql(store, _SEQUENCE_WITHIN_CHECKPOINT), params)
    return int(rows[0][0]) if rows else 0


def _sequence_and_definitions(
    store: ProjectionStore, org_id: str, as_of: datetime, only: Sequence[str] | None
) -> tuple[int, list[Record]]:
    """The ledger sequence of ``as_of`` (:func:`sequence_as_of`) and every version of the
    key results' definitions (``only``: of these; :data:`_DEFINITIONS`), read at once: the
    definitions need not wait for the sequence (a key result is rarely revised: the versions
    after it are few), :func:`_key_results_then` keeps those up to it. For an answer that
    reads alone (:class:`Reads` resolves its sequence once for all its parts)."""
    params = _sequence_params(org_id, as_of)
    restrict = sql.ONLY_KEY_RESULTS if only is not None else ""
    definitions = {"org": org_id, "only": list(only) if only is not None else []}
    found, rows = _together(
        store, [(_SEQUENCE_AND_CHECKPOINT, params), (_DEFINITIONS + restrict, definitions)]
    )
    return _sequence_found(store, params, [tuple(row.values()) for row in found]), rows


_DEFINITIONS = sql.key_result_definition_versions("{db}", "org_id = {org:String}")
"""Every version of an org's key results' definitions (:func:`_sequence_and_definitions`)."""


_SEQUENCE_OF_AS_OF = (
    f"SELECT sequence FROM {{db}}.{t.EVENT_TIMES} "
    "WHERE org_id = {org:String} AND recorded_at <= {as_of:DateTime64(6, 'UTC')} "
)
_ORG_CHECKPOINT = (
    "SELECT max(position) FROM {db}.checkpoints "
    "WHERE stream = {stream:String} AND org_id = {org:String}"
)
_SEQUENCE_AND_CHECKPOINT = (
    f"SELECT 0, sequence FROM {{db}}.{t.EVENT_TIMES} WHERE org_id = {{org:String}} "
    "AND recorded_at <= {as_of:DateTime64(6, 'UTC')} ORDER BY sequence DESC LIMIT 1 "
    f"UNION ALL {_ORG_CHECKPOINT.replace('max(position)', '1, max(position)')}"
)
"""``(0, the last sequence recorded by {as_of})`` (none: no row) and ``(1, the checkpoint)``
(0: none), for :func:`sequence_as_of`."""
_SEQUENCE_WITHIN_CHECKPOINT = (
    f"{_SEQUENCE_OF_AS_OF}AND sequence <= ({_ORG_CHECKPOINT}) ORDER BY sequence DESC LIMIT 1"
)
"""The last sequence recorded by ``{as_of}`` up to the checkpoint: rows of a commit cut short
(inserted, not checkpointed) are not part of any answer."""


def _checkpoint_seq(
    store: ProjectionStore, org_id: str, moment: Moment, reads: Reads | None
) -> int | None:
    """The ledger sequence of ``moment.as_of`` for :func:`_key_results_as_of`; None (its
    checkpoint, read there with the answer's first statements instead of before them) when
    the answer is as known now and reads nothing of another's."""
    if moment.as_of is None and reads is None:
        return None
    return _sequence_as_of(store, org_id, moment.as_of, reads)


_CHECKPOINT = (
    "SELECT max(position) AS position FROM {db}.checkpoints "
    f"WHERE stream = '{t.LEDGER_STREAM}' AND org_id = {{org:String}}"
)
"""An org's checkpoint (0: none), as :meth:`ProjectionStore.positions` reads it."""


def _params(org_id: str, seq: int, moment: Moment, **more: Any) -> dict[str, Any]:
    """``base``: the snapshot the answer as of ``seq`` starts from (:func:`snapshot_base`)."""
    return {"org": org_id, "seq": seq, "base": snapshot_base(seq), "ref": moment.ref, **more}


def snapshot_base(seq: int) -> int:
    """The greatest multiple of :data:`processors.tables.SNAPSHOT_EVERY` at or below ``seq``:
    the projector wrote every key result's numbers and every objective's last change there."""
    return seq - seq % t.SNAPSHOT_EVERY


_AT = "{at:DateTime64(6, 'UTC')}"


def key_results(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    only: Sequence[str] | None = None,
    *,
    reads: Reads | None = None,
) -> list[Record]:
    """``only``: just these key results. ``reads``: what the answer this one is part of read
    already (:class:`Reads`)."""
    if moment.as_of is None and moment.at is None:
        rows = _records(store, _KEY_RESULTS_NOW, {"org": org_id})
        return _key_results_now(rows, moment, only)
    seq = _checkpoint_seq(store, org_id, moment, reads)
    return _key_results_as_of(store, org_id, seq, moment, only, reads=reads)[0]


_KEY_RESULTS_NOW = f"SELECT * FROM {{db}}.{t.KEY_RESULTS_NOW} FINAL WHERE org_id = {{org:String}}"
_OBJECTIVES_NOW = f"SELECT * FROM {{db}}.{t.OBJECTIVES_NOW} FINAL WHERE org_id = {{org:String}}"
"""The rows of one org in a current-state table (:func:`projections.sql.now`), in no order:
sorted here (:func:`_in_order`), for ~2 ms less each than the engine's subquery and sort."""
_KEY_RESULTS_NOW_DEFINED = (
    "SELECT * EXCEPT (target, value, progress, attainment, confidence, last_check_in_at, "
    f"last_check_in_id) FROM {{db}}.{t.KEY_RESULTS_NOW} FINAL WHERE org_id = {{org:String}}"
)
""":data:`_KEY_RESULTS_NOW` without the numbers ``--at`` works out again (~2 ms less)."""
_KEY_RESULT_ORDER = itemgetter("objective_id", "key_result_id")
_OBJECTIVE_ORDER = itemgetter("objective_id")


def _in_order(rows: list[Record], key: Callable[[Record], Any]) -> list[Record]:
    """``rows`` sorted as ``ORDER BY`` sorts them: ids compare as the engine compares strings
    (by bytes, in UTF-8: by code point, as Python compares them), and are unique in a
    current-state table read with ``FINAL``."""
    rows.sort(key=key)
    return rows


def _key_results_now(
    rows: list[Record], moment: Moment, only: Sequence[str] | None
) -> list[Record]:
    """The answers of the current-state rows ``rows`` (``only``: just these key results)."""
    wanted = None if only is None else set(only)
    ref, ref_micros = moment.ref, scoring.micros(moment.ref)
    return [
        _scored_key_result(row, ref, ref_micros)
        for row in _in_order(rows, _KEY_RESULT_ORDER)
        if wanted is None or row["key_result_id"] in wanted
    ]


def _objectives_now(rows: list[Record], moment: Moment, focus_limit: int) -> list[Record]:
    return [
        _scored_objective(o, o["progress"], o["confidence"], moment.ref, focus_limit)
        for o in _in_order(rows, _OBJECTIVE_ORDER)
    ]


def objectives(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    focus_limit: int,
    *,
    as_of: tuple[int, list[Record]] | None = None,
) -> list[Record]:
    """``as_of``: the ledger sequence of ``moment.as_of`` and the key results then, if known."""
    if moment.as_of is not None:
        return _objectives_as_of(store, org_id, moment, focus_limit, as_of)
    return _objectives_now(_records(store, _OBJECTIVES_NOW, {"org": org_id}), moment, focus_limit)


# The answers' derived columns (expected progress, status, staleness, flags) are worked out
# here, as for ``--as-of``, not in SQL: the engine's analysis of those expressions cost more
# than reading the rows (``progress``: ~13 and ~10 ms of ~24, against ~4 ms each for the plain
# reads). The views keep them in SQL; the tests hold the two equal.


_expected = lru_cache(maxsize=4096)(scoring.expected_progress)
"""Expected progress, worked out once per kind, period, due date and reference time (most key
results of an answer share them: ~1 of its ~10 µs per key result)."""


_period_micros = lru_cache(maxsize=4096)(scoring.period_micros)
"""A period's bounds as microseconds, worked out once per period (for staleness)."""


def _scored_key_results(rows: list[Record], ref: datetime) -> list[Record]:
    """:func:`_scored_key_result` of each of ``rows``, at one reference time."""
    ref_micros = scoring.micros(ref)
    return [_scored_key_result(row, ref, ref_micros) for row in rows]


def _scored_key_result(row: Record, ref: datetime, ref_micros: int) -> Record:
    """A key result's answer (the columns and order of
    :func:`projections.sql.key_result_progress`) from a row with the columns of
    ``key_results_now``: its current-state row, or one made of its history up to a sequence.
    ``ref_micros``: ``ref`` as :func:`processors.scoring.micros` (once for every key result
    of an answer; staleness from it, as :func:`processors.scoring.is_stale`)."""
    expected = _expected(
        row["kind"], row["period_starts_on"], row["period_ends_on"], ref, row["due_on"]
    )
    return {
        "org_id": row["org_id"], "key_result_id": row["key_result_id"],
        "objective_id": row["objective_id"], "owner_unit_id": row["owner_unit_id"],
        "period_id": row["period_id"], "title": row["title"], "kind": row["kind"],
        "unit": row["unit"], "start": row["start"], "target": row["target"],
        "current_target": row["current_target"], "value": row["value"],
        "progress": row["progress"], "attainment": row["attainment"],
        "expected_progress": expected, "status": scoring.status(row["progress"], expected),
        "confidence": row["confidence"], "last_check_in_at": row["last_check_in_at"],
        "last_check_in_id": row["last_check_in_id"], "check_in_count": row["check_in_count"],
        "stale": not row["retired"] and scoring.stale_in(
            row["last_check_in_at"], row["checkin_every_days"],
            _period_micros(row["period_starts_on"], row["period_ends_on"]), ref_micros,
        ),
        "weight": row["weight"], "due_on": row["due_on"],
        "checkin_every_days": row["checkin_every_days"], "retired": row["retired"],
        "period_starts_on": row["period_starts_on"], "period_ends_on": row["period_ends_on"],
        "as_of_sequence": row["sequence"], "updated_at": row["recorded_at"],
    }  # fmt: skip


def _scored_objective(
    o: Record, progress: float, confidence: float | None, ref: datetime, focus_limit: int
) -> Record:
    """An objective's answer (the columns, rules and order of
    :func:`projections.sql.objective_progress`) from its row, with these numbers."""
    expected = _expected(None, o["period_starts_on"], o["period_ends_on"], ref)
    over_focus = o["lifecycle"] != "abandoned" and o["unit_objective_count"] > focus_limit
    return {
        **{name: o[name] for name in _OBJECTIVE_HEAD},
        "progress": progress, "expected_progress": expected,
        "status": scoring.status(progress, expected, o["lifecycle"]), "confidence": confidence,
        "key_result_count": o["key_result_count"], "child_count": o["child_count"],
        "unit_objective_count": o["unit_objective_count"], "orphan": o["orphan"],
        "parent_inactive": o["parent_inactive"], "over_focus": over_focus,
        "flags": [flag for flag, on in (("orphan", o["orphan"]),
                  ("parent_inactive", o["parent_inactive"]), ("over_focus", over_focus)) if on],
        "period_starts_on": o["period_starts_on"], "period_ends_on": o["period_ends_on"],
        "as_of_sequence": o["sequence"], "updated_at": o["recorded_at"],
    }  # fmt: skip


def progress(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    focus_limit: int,
    *,
    only: Sequence[str] | None = None,
    reads: Reads | None = None,
) -> Progress:
    """Every objective and key result of ``org_id`` as of ``moment``.

    ``only`` (with ``moment.as_of`` or ``moment.at``): just these key results, and every
    objective's numbers rolled up from those alone; right for an objective whose key results
    and descendants' key results are all in it (:func:`key_results_under`). Its cost is that of
    those key results' history, not the org's. ``reads``: what the answer this one is part of
    read already (:class:`Reads`: attention's coverage reads the objectives again)."""
    org = {"org": org_id}
    if moment.as_of is None and moment.at is None:
        now = [(_OBJECTIVES_NOW, org), (_KEY_RESULTS_NOW, org)]
        objective_rows, key_result_rows = _together(store, now, reads)
        return Progress(
            _objectives_now(objective_rows, moment, focus_limit),
            _key_results_now(key_result_rows, moment, only),
        )
    if moment.as_of is None:  # at ``moment.at``: the current objectives, rolled up again
        key_result_records, (objective_rows,) = _key_results_as_of(
            store, org_id, _checkpoint_seq(store, org_id, moment, reads), moment, only,
            also=[(_OBJECTIVES_NOW, org)], reads=reads,
        )  # fmt: skip
        objective_records = _objectives_now(objective_rows, moment, focus_limit)
        _roll_up(objective_records, key_result_records, moment.ref)
        return Progress(objective_records, key_result_records)
    definitions = None
    if reads is None:
        seq, definitions = _sequence_and_definitions(store, org_id, moment.as_of, only)
    else:
        seq = reads.sequence_as_of(org_id, moment.as_of)
    # The objectives rolled up from the key results as given (at ``moment.at`` if given, with
    # ``moment.ref``): what rolling up the key results then and again at ``at`` gave, for one
    # derivation of the key results instead of two.
    key_result_records, (versions, updates) = _key_results_as_of(
        store, org_id, seq, moment, only, also=_structure_statements(org_id, seq, moment),
        reads=reads, definitions=definitions,
    )  # fmt: skip
    structures = _structures(versions, updates)
    objective_records = _objective_records(
        structures, _rolled_up(structures, key_result_records), moment, focus_limit
    )
    return Progress(objective_records, key_result_records)


def cascade(store: ProjectionStore, org_id: str, moment: Moment, focus_limit: int) -> list[Record]:
    """The objectives as :func:`objectives` gives them; with ``moment.at``, their numbers,
    expected progress and status at that business time (as :func:`progress`)."""
    if moment.at is None:
        return objectives(store, org_id, moment, focus_limit)
    return progress(store, org_id, moment, focus_limit).objectives


def coverage(
    store: ProjectionStore, org_id: str, moment: Moment, *, reads: Reads | None = None
) -> list[Record]:
    """Every active theme in every period: objectives, key results and progress reaching it
    (with ``moment.at``: the objectives' progress at that business time). ``reads``: what the
    answer this one is part of read already (:class:`Reads`).

    The rows of :func:`projections.sql.theme_coverage`, joined and counted here from three
    plain reads run at once (the objectives, the themes, the periods): the engine's analysis
    of that statement's joins and ``GROUP BY`` cost ~30 ms of CPU on a small store, the reads
    ~5 ms each. As of a moment, the objectives are the structures and numbers the answer
    works out anyway (:func:`_structures_as_of`), the themes and periods read with them."""
    if moment.as_of is None and moment.at is None:
        org = {"org": org_id}
        statements = [(_OBJECTIVES_NOW, org)] + [
            (sql.latest_rows("{db}", table, "org_id = {org:String}"), org)
            for table in (t.THEMES, t.PERIODS)
        ]
        objective_rows, themes, periods = _together(store, statements, reads)
        numbers = {o["objective_id"]: o["progress"] for o in objective_rows}
    else:
        _seq, objective_rows, rolled_up, (themes, periods) = _structures_as_of(
            store, org_id, moment, None, values_at=moment.at is not None, reads=reads,
            also=_THEMES_AND_PERIODS_AS_OF,
        )  # fmt: skip
        numbers = {objective: progress for objective, (progress, _c) in rolled_up.items()}
    return _theme_coverage(objective_rows, numbers, themes, periods)


_THEMES_AND_PERIODS_AS_OF = tuple(
    sql.latest_as_of_rows("{db}", table) for table in (t.THEMES, t.PERIODS)
)
"""The themes and the periods up to ``{seq}`` (:func:`coverage`)."""


def _theme_coverage(
    objective_rows: list[Record],
    progress_of: dict[str, float],
    themes: list[Record],
    periods: list[Record],
) -> list[Record]:
    """:func:`projections.sql.theme_coverage`'s rows, ``ORDER BY period_id, theme_id``: every
    active theme in every period, with the objectives not abandoned whose
    ``reached_theme_ids`` hold it (each time they do; ``direct``: in ``theme_ids`` too), their
    key results, and the weighted progress of the direct ones (``progress_of``: each
    objective's; one missing: 0); no objective: zeros, ``uncovered``. The sums run over the
    objectives in the order read, as the engine's one-thread ``GROUP BY`` runs them."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for o in objective_rows:
        if o["lifecycle"] == "abandoned":
            continue
        progress, weight = progress_of.get(o["objective_id"], 0.0), o["weight"]
        for theme in o["reached_theme_ids"]:
            g = groups.setdefault((o["period_id"], theme), [0, 0, 0, 0.0, 0.0])
            g[0] += 1
            g[2] += o["key_result_count"]
            if theme in o["theme_ids"]:
                g[1] += 1
                g[3] += weight * progress
                g[4] += weight
    rows = []
    for theme in themes:
        if not theme["active"]:
            continue
        for period in periods:
            count, directs, key_results, weighted, weights = groups.get(
                (period["period_id"], theme["theme_id"]), (0, 0, 0, 0.0, 0.0)
            )
            rows.append({
                "org_id": theme["org_id"], "period_id": period["period_id"],
                "theme_id": theme["theme_id"], "theme_name": theme["name"],
                "objective_count": count, "direct_objective_count": directs,
                "key_result_count": key_results,
                "progress": weighted / weights if weights > 0 else 0.0,
                "uncovered": count == 0,
            })  # fmt: skip
    rows.sort(key=itemgetter("period_id", "theme_id"))
    return rows


def _structures_as_of(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    as_of: tuple[int, list[Record]] | None,
    values_at: bool = False,
    *,
    reads: Reads | None = None,
    also: Sequence[str] = (),
) -> tuple[int, list[Record], dict[str, tuple[float, float | None]], list[list[Record]]]:
    """The ledger sequence of ``moment.as_of``, each objective's structure then, and its
    numbers rolled up from the key results then (``as_of``: that sequence and those key
    results, if known; else read with the structures, their values at ``moment.at`` if
    ``values_at``, else as recorded). ``also``: statements (with the answer's parameters at
    that sequence) read with the structures; their rows last."""
    if as_of is None:
        definitions = None
        if reads is None and moment.as_of is not None:
            seq, definitions = _sequence_and_definitions(store, org_id, moment.as_of, None)
        else:
            seq = _sequence_as_of(store, org_id, moment.as_of, reads)
        key_result_moment = moment if values_at else replace(moment, at=None)
        statements = _structure_statements(org_id, seq, moment, also)
        key_result_records, (versions, updates, *extra) = _key_results_as_of(
            store, org_id, seq, key_result_moment, also=statements, reads=reads,
            definitions=definitions,
        )  # fmt: skip
    else:
        seq, key_result_records = as_of
        versions, updates, *extra = _together(
            store, _structure_statements(org_id, seq, moment, also)
        )
    structures = _structures(versions, updates)
    return seq, structures, _rolled_up(structures, key_result_records), extra


def _structure_statements(
    org_id: str, seq: int, moment: Moment, also: Sequence[str] = ()
) -> list[Statement]:
    """Each objective's structure version up to ``seq``, and its last change up to then
    (:func:`_structures` puts them together); then ``also``, with the same parameters."""
    params = _params(org_id, seq, moment)
    return [
        (sql.objective_versions_as_of("{db}"), params),
        (sql.last_updates_as_of("{db}"), params),
        *((query, params) for query in also),
    ]


def _structures(versions: list[Record], updates: list[Record]) -> list[Record]:
    """Each objective's structure version with its last change (``updated_sequence``,
    ``updated_recorded_at``: none, 0 and the epoch), as
    :func:`projections.sql.objective_structures_as_of` joins them (the engine's analysis of
    that join cost more than the two reads: ~21 against ~8 and ~8 ms at 1,000,000
    check-ins, and the two run at once)."""
    last = {u["objective_id"]: u for u in updates}
    for s in versions:
        u = last.get(s["objective_id"])
        s["updated_sequence"] = u["u_sequence"] if u else 0
        s["updated_recorded_at"] = u["u_recorded_at"] if u else _EPOCH
    return versions


def _objectives_as_of(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    focus_limit: int,
    as_of: tuple[int, list[Record]] | None,
) -> list[Record]:
    """As :func:`projections.sql.objective_progress` gives them (the same columns, rules and
    order), from the structures and the numbers rolled up then."""
    _seq, structures, numbers, _ = _structures_as_of(store, org_id, moment, as_of)
    return _objective_records(structures, numbers, moment, focus_limit)


def _objective_records(
    structures: list[Record],
    numbers: dict[str, tuple[float, float | None]],
    moment: Moment,
    focus_limit: int,
) -> list[Record]:
    records = []
    for o in structures:
        progress, confidence = numbers[o["objective_id"]]
        record = _scored_objective(o, progress, confidence, moment.ref, focus_limit)
        if o["updated_sequence"] > o["sequence"]:
            record["as_of_sequence"] = o["updated_sequence"]
            record["updated_at"] = o["updated_recorded_at"]
        records.append(record)
    return records


_OBJECTIVE_HEAD = (
    "org_id", "objective_id", "title", "description", "owner_unit_id", "period_id",
    "lifecycle", "rollup", "weight", "parent_objective_id", "ancestor_ids", "depth",
    "theme_ids", "reached_theme_ids", "contributes_to", "depends_on",
)  # fmt: skip
"""The columns of an objective's answer before its numbers (:func:`sql.objective_progress`)."""


def history(store: ProjectionStore, org_id: str, subject: str, moment: Moment) -> list[Record]:
    """The audit trail of one entity: events about it or naming it, in ledger order.

    The audit is sorted by subject: the events about it are read as one range, and those that
    only name it are found by the index on ``related_ids``.
    """
    seq = sequence_as_of(store, org_id, moment.as_of)
    part = (
        "SELECT * FROM {db}.audit_events WHERE org_id = {org:String} AND sequence <= {seq:UInt64}"
    )
    return _records(
        store,
        f"SELECT * FROM ({part} AND subject_id = {{subject:String}} UNION ALL {part}"
        " AND has(related_ids, {subject:String}) AND subject_id != {subject:String})"
        " ORDER BY sequence LIMIT 1 BY sequence",
        _params(org_id, seq, moment, subject=subject),
    )


def check_ins(
    store: ProjectionStore, org_id: str, key_result_id: str, moment: Moment
) -> list[Record]:
    """Each check-in of a key result as known at ``moment.as_of``, by business time."""
    seq = sequence_as_of(store, org_id, moment.as_of)
    return _records(
        store,
        f"SELECT * FROM (SELECT * FROM {{db}}.{t.CHECK_INS} WHERE {sql.AS_OF_FILTER}"
        " AND key_result_id = {kr:String}"
        " ORDER BY sequence DESC LIMIT 1 BY check_in_sequence)"
        " ORDER BY occurred_at, check_in_sequence",
        _params(org_id, seq, moment, kr=key_result_id),
    )


def key_results_under(
    store: ProjectionStore, org_id: str, subject: str, moment: Moment, seq: int | None = None
) -> list[str] | None:
    """The key results whose numbers make ``subject``'s, as the ledger up to ``moment.as_of``
    had them: a key result, itself; an objective, its own and those of every objective below
    it. None if it was neither then. ``seq``: the ledger sequence of ``moment.as_of``, if
    known."""
    if seq is None:
        seq = sequence_as_of(store, org_id, moment.as_of)
    params = _params(org_id, seq, moment)
    objective_rows, key_result_rows = _together(store, [
        (sql.latest_as_of_rows("{db}", t.OBJECTIVES, "objective_id, parent_objective_id"), params),
        (sql.latest_as_of_rows("{db}", t.KEY_RESULTS, "key_result_id, objective_id"), params),
    ])  # fmt: skip
    parents = {row["objective_id"]: row["parent_objective_id"] for row in objective_rows}
    owners = {row["key_result_id"]: row["objective_id"] for row in key_result_rows}
    if subject in owners:
        return [subject]
    if subject not in parents:
        return None
    below: dict[str, bool] = {subject: True}

    def is_below(objective: str | None) -> bool:
        seen = []
        while objective is not None and objective not in below:
            seen.append(objective)
            objective = parents.get(objective)
            if objective in seen:  # a cycle the rules refuse; never below
                break
        found = objective is not None and below.get(objective, False)
        below.update(dict.fromkeys(seen, found))
        return found

    return sorted(kr for kr, objective in owners.items() if is_below(objective))


# --- as of a ledger sequence, at a business time: from the check-ins ---------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEQUENCE = (1 << 64) - 1
"""The check-in's sequence in :data:`projections.sql.CHECK_IN_KEY`."""


def _key_results_as_of(
    store: ProjectionStore,
    org_id: str,
    seq: int | None,
    moment: Moment,
    only: Sequence[str] | None = None,
    *,
    also: Sequence[Statement] = (),
    reads: Reads | None = None,
    definitions: list[Record] | None = None,
) -> tuple[list[Record], list[list[Record]]]:
    """Key results as the ledger up to ``seq`` knew them, their values at ``moment.at`` (if
    given): each key result's definition up to ``seq`` and the check-in that is current then
    (the latest by business time that is not retracted), scored as the projector scored it.
    ``only``: just these key results.

    Without ``at``, the projector's own numbers up to ``seq`` (:func:`_key_results_then`).
    With ``at``, each key result's check-ins measured by then, as known up to ``seq``: one
    pass over them counts the live ones and finds the current one's key, and its version up
    to ``seq`` is read by its sequence.

    ``also``: statements to run with the first reads (:meth:`ProjectionStore.dicts_together`,
    all at once); their rows come second. ``reads``: those read already (:class:`Reads`).
    ``seq`` None (as known now, ``moment.at`` given): the org's checkpoint, read with those
    statements (none of which names ``{seq}`` then: the targets beyond it are dropped here)
    rather than in a round trip of its own before them. ``definitions``: the key results'
    definitions' versions, read already (:func:`_sequence_and_definitions`)."""
    at = moment.at
    params = _params(org_id, seq or 0, moment, at=at)
    if only is not None:
        params["only"] = list(only)
    restrict = sql.ONLY_KEY_RESULTS if only is not None else ""
    where = sql.AS_OF_FILTER + restrict
    current_rows = moment.as_of is None and at is not None  # as known now: the current rows
    if seq is None and not current_rows:
        raise ValueError("the checkpoint is read with the statements only for --at alone")
    if current_rows:
        statements = [(_KEY_RESULTS_NOW_DEFINED + restrict, params)]
    else:
        statements = [(sql.key_result_numbers_as_of("{db}", only is not None), params)]
        if definitions is None:
            statements.insert(0, (sql.key_result_definition_versions("{db}", where), params))
    if at is not None:
        if only is None:  # sql.check_in_days, its two sides at once
            statements += [(sql.check_in_days_all(), params), (sql.check_in_day_of_at(), params)]
        target_where = where if seq is not None else "org_id = {org:String}" + restrict
        statements.append((sql.targets_as_of(target_where), params))
        if seq is None:
            statements.append((_CHECKPOINT, params))
    read = _together(store, [*statements, *also], reads)
    found, extra = read[: len(statements)], read[len(statements) :]
    if seq is None:
        seq = int(found.pop()[0]["position"])
        params |= {"seq": seq, "base": snapshot_base(seq)}
    if current_rows:
        then = _in_order(found[0], _KEY_RESULT_ORDER)
    else:
        if definitions is None:
            definitions = found.pop(0)
        then = _key_results_then(params, definitions, found[0])
    if at is None:
        return _scored_key_results(then, moment.ref), extra
    days = _check_in_days(found[-3], found[-2]) if only is None else []  # one pass instead
    measured = _measured(store, params, then, only is not None, days, reads=reads)
    keys = {kr: m["current"] for kr, m in measured.items() if m["current"]}
    versions = (
        _records(
            store,
            sql.current_versions(where),
            {**params, "current": ",".join(str(key & _SEQUENCE) for key in keys.values())},
            reads,
        )
        if keys
        else []
    )
    current = {row["check_in_sequence"]: row for row in versions}
    targets = _Targets([tuple(row.values()) for row in found[-1] if row["sequence"] <= seq])
    at_micros = scoring.micros(at)
    records = []
    for d in then:
        kr, kind, start = d["key_result_id"], d["kind"], d["start"]
        key = keys.get(kr)
        row = {**d, "check_in_count": measured[kr]["live"] if kr in measured else 0}
        if key is None:
            target = targets.at(kr, at_micros, d["current_target"])
            progress, attainment = scoring.score(kind, start, target, start)
            row |= {
                "target": target, "value": start, "progress": progress,
                "attainment": attainment, "confidence": None, "last_check_in_at": None,
                "last_check_in_id": None,
            }  # fmt: skip
        else:
            # The current check-in's last version up to {seq} holds its value and confidence;
            # its target is the one in force at its measurement as known then (the projector
            # re-scored it on each revision that changed that), and its score follows.
            check_in = current[key & _SEQUENCE]
            occurred = key >> 64
            target = targets.at(kr, occurred, d["current_target"])
            progress, attainment = scoring.score(kind, start, target, check_in["value"])
            row |= {
                "target": target, "value": check_in["value"], "progress": progress,
                "attainment": attainment, "confidence": check_in["confidence"],
                "last_check_in_at": _EPOCH + timedelta(microseconds=occurred),
                "last_check_in_id": check_in["check_in_id"],
            }  # fmt: skip
        records.append(row)
    return _scored_key_results(records, moment.ref), extra


def _check_in_days(every_day: list[Record], day_of_at: list[Record]) -> list[Record]:
    """The rows of :func:`projections.sql.check_in_days` from those of its two sides, joined
    as it joins them (a key result with nothing on ``{at}``'s day: 0 and 0)."""
    on_day = {row["key_result_id"]: row for row in day_of_at}
    rows = []
    for row in every_day:
        day = on_day.get(row["key_result_id"])
        rows.append({
            **row,
            "live_on_day": day["live_on_day"] if day else 0,
            "current_on_day": day["current_on_day"] if day else 0,
        })  # fmt: skip
    return rows


ONE_PASS_SHARE = 0.25
"""With more than this share of the key results to read check-in by check-in (their days
unchecked), :func:`_measured` reads every check-in in one pass instead."""


def _measured(
    store: ProjectionStore,
    params: dict[str, Any],
    then: list[Record],
    only: bool,
    days_rows: list[Record],
    *,
    reads: Reads | None = None,
) -> dict[str, Record]:
    """Per key result of ``then`` (the key results as of ``{seq}``, with the projector's live
    count ``check_in_count``), its check-ins measured by ``{at}`` as known up to ``{seq}`` and
    not retracted then: how many (``live``), and the key (:data:`projections.sql.CHECK_IN_KEY`)
    of the current one (``current``; 0: none); none of them: left out.

    From the check-ins per business day (:func:`projections.sql.check_in_days`), for a key
    result whose days are checked: no version there later than ``{seq}``, its retracted rows
    as many as its distinct keys retracted (a check-in is retracted at most once), and its
    recorded rows less retracted as many as the projector's live check-ins. That table is
    filled by a materialized view, which sees every insert and no delete: rows inserted twice,
    rows deleted from the check-ins (a commit cut short) and projected again, and rows inserted
    while migration 11 ran are counted twice there, never missed (but for an insert already
    running when the migration made the view: its header). Rows being only ever added,
    a key result that passes holds each of its rows once: more retracted rows than keys fail
    the first equality, more recorded rows the second (migration 11's header, the arithmetic).
    One that fails is read from its check-ins (:func:`_measured_in_one_pass`), as is one whose
    latest check-in before ``{at}``'s day is retracted (the one before it unknown there).
    ``only`` (a few key results), or more than :data:`ONE_PASS_SHARE` of them unchecked (an
    answer as of well before now): one pass over the check-ins. ``days_rows``: the rows of
    :func:`projections.sql.check_in_days` at these parameters (:func:`_check_in_days`).
    ``reads``: what the answer this one is part of read already (:class:`Reads`)."""
    if only:
        return _measured_in_one_pass(store, params, sql.ONLY_KEY_RESULTS, reads)
    seq = params["seq"]
    days = {str(row["key_result_id"]): tuple(row.values())[1:] for row in days_rows}
    measured: dict[str, Record] = {}
    unchecked = []
    for d in then:
        kr, count = d["key_result_id"], int(d["check_in_count"])
        found = days.get(kr)
        if found is None:  # no check-in in the days: none live then, unless they miss some
            if count:
                unchecked.append(kr)
            continue
        (live_before, latest, latest_gone, recorded, retracted, retracted_keys, newest,
         live_on_day, current_on_day) = found  # fmt: skip
        if (
            newest > seq
            or retracted != retracted_keys  # a retracted row twice
            or recorded - retracted != count  # a recorded row twice
            or (latest and latest == latest_gone and not current_on_day)
        ):
            unchecked.append(kr)
            continue
        live, current = live_before + live_on_day, max(int(latest), int(current_on_day))
        if live or current:
            measured[kr] = {"live": int(live), "current": current}
    if len(unchecked) > ONE_PASS_SHARE * len(then):
        return _measured_in_one_pass(store, params, "", reads)
    if unchecked:
        rest = {**params, "only": unchecked}
        measured |= _measured_in_one_pass(store, rest, sql.ONLY_KEY_RESULTS, reads)
    return measured


def _measured_in_one_pass(
    store: ProjectionStore, params: dict[str, Any], only: str, reads: Reads | None = None
) -> dict[str, Record]:
    """As :func:`_measured`, in one pass over the check-ins measured by ``{at}``
    (:func:`projections.sql.check_ins_at`; ``only``: those of the key results in ``{only}``,
    a range each)."""
    query = sql.check_ins_at(only, sql.AS_OF_FILTER + only)
    rows = _records(store, query, params, reads)
    return {row["key_result_id"]: row for row in rows}


def _key_results_then(
    params: dict[str, Any], definitions: list[Record], numbers_rows: list[Record]
) -> list[Record]:
    """Each key result as the ledger up to ``{seq}`` had it, with the columns of
    ``key_results_now``: its definition then, and its numbers from the snapshot at ``{base}``
    and the numbers written after it (a range of ``key_result_numbers``; each one's latest
    row there is its numbers as the projector had them after that event). Its version is the
    later of its definition's and its numbers' (the event that last changed it): from the
    rows of :func:`projections.sql.key_result_definition_versions` (each key result's latest
    up to ``{seq}`` kept, by sequence: a row inserted twice is the same row; put in the
    answers' order here) and :func:`projections.sql.key_result_numbers_as_of`."""
    seq = params["seq"]
    latest: dict[str, Record] = {}
    for d in definitions:
        kept = latest.get(d["key_result_id"])
        if d["sequence"] <= seq and (kept is None or d["sequence"] > kept["sequence"]):
            latest[d["key_result_id"]] = d
    numbers = {row["key_result_id"]: row for row in numbers_rows}
    rows = []
    for d in _in_order(list(latest.values()), _KEY_RESULT_ORDER):
        n = numbers.get(d["key_result_id"])
        if n is None:  # every definition up to a checkpoint comes with its numbers
            raise ProjectionError(
                f"the projections of org {params['org']!r} are damaged: key result "
                f"{d['key_result_id']!r} has no numbers as of sequence {params['seq']}; "
                "run `okr-ledger rebuild`"
            )
        if n["changed_sequence"] > d["sequence"]:
            d["sequence"], d["recorded_at"] = n["changed_sequence"], n["changed_at"]
        for name in _NUMBERS:
            d[name] = n[name]
        rows.append(d)  # in place: each answer's rows are its own (Reads gives copies)
    return rows


_NUMBERS = (
    "target", "value", "progress", "attainment", "confidence", "last_check_in_at",
    "last_check_in_id", "check_in_count",
)  # fmt: skip
"""A key result's numbers in ``key_result_numbers`` (:func:`_key_results_then`)."""


class _Targets:
    """Each key result's targets as known up to a sequence (rows of
    :func:`projections.sql.targets_as_of`): the one in force at a business time is the last
    revision measured by then (ties: the later in the ledger), else the defined one, as
    :meth:`processors.state.KeyResult.target_at`."""

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
        self.defined: dict[str, float] = {}
        self.revisions: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        for kr, sequence, effective_at, target, revision in rows:
            if revision:
                self.revisions[kr].append((scoring.micros(effective_at), sequence, target))
            elif kr not in self.defined:  # the definition: its first row
                self.defined[kr] = target
        for revisions in self.revisions.values():
            revisions.sort()

    def at(self, kr: str, moment: int, fallback: float) -> float:
        for effective, _sequence, target in reversed(self.revisions.get(kr, ())):
            if effective <= moment:
                return target
        return self.defined.get(kr, fallback)


def _rolled_up(
    objective_records: list[Record], key_result_records: list[Record]
) -> dict[str, tuple[float, float | None]]:
    """Each objective's progress and confidence, rolled up from the key results' (those not
    retired) and its children's (those not abandoned), children first, as the projector."""
    ids = {o["objective_id"] for o in objective_records}
    key_results_of: dict[str, list[Record]] = defaultdict(list)
    for kr in key_result_records:
        if not kr["retired"]:
            key_results_of[kr["objective_id"]].append(kr)
    children_of: dict[str, list[str]] = defaultdict(list)
    for objective in objective_records:
        parent = objective["parent_objective_id"]
        if parent in ids and objective["lifecycle"] != "abandoned":
            children_of[parent].append(objective["objective_id"])
    numbers: dict[str, tuple[float, float | None]] = {}
    weights = {o["objective_id"]: o["weight"] for o in objective_records}
    for objective in sorted(objective_records, key=lambda o: -int(o["depth"])):
        own = key_results_of[objective["objective_id"]]
        numbers[objective["objective_id"]] = (
            scoring.rollup_progress(
                objective["rollup"],
                [(kr["key_result_id"], kr["weight"], kr["progress"]) for kr in own],
                [
                    (child, weights[child], numbers[child][0])
                    for child in children_of[objective["objective_id"]]
                ],
            ),
            scoring.rollup_confidence(
                objective["rollup"],
                [kr["confidence"] for kr in own],
                [numbers[child][1] for child in children_of[objective["objective_id"]]],
            ),
        )
    return numbers


def _roll_up(
    objective_records: list[Record], key_result_records: list[Record], ref: datetime
) -> None:
    """Recompute objective progress and confidence from key results' values at ``at``."""
    numbers = _rolled_up(objective_records, key_result_records)
    for objective in objective_records:
        value, confidence = numbers[objective["objective_id"]]
        expected = _expected(None, objective["period_starts_on"], objective["period_ends_on"], ref)
        objective.update(
            progress=value,
            confidence=confidence,
            expected_progress=expected,
            status=scoring.status(value, expected, objective["lifecycle"]),
        )


# --- grades of closed periods ------------------------------------------------------------------


def period_results(
    store: ProjectionStore,
    org_id: str,
    moment: Moment,
    period: str | None = None,
    *,
    reads: Reads | None = None,
) -> list[Record]:
    """The grades of the org's closed periods (only ``period``'s if given), from each one's
    latest close: now, or as the ledger up to ``moment.as_of`` had them (a period reopened
    since was closed then, with the grades of that close). Objectives first, then key results,
    by id; a period that is not closed has none.

    The rows of :func:`projections.sql.period_results`, from two plain reads: the latest
    version of each period, then (if one is closed) the grades of those closes by
    ``(period_id, sequence)``, joined and sorted here (the engine's analysis of that
    statement's ``IN`` and join cost ~25 ms of CPU on a small store, the two reads ~4 ms
    each). ``reads``: the sequence as of ``moment``, if another answer read it."""
    only = " AND period_id = {period:String}" if period is not None else ""
    seq = None if moment.as_of is None else _sequence_as_of(store, org_id, moment.as_of, reads)
    where = ("org_id = {org:String}" if seq is None else sql.AS_OF_FILTER) + only
    params: dict[str, Any] = {"org": org_id, "seq": seq or 0, "period": period or ""}
    closed = {
        (row["period_id"], row["sequence"]): row["name"]
        for row in _records(store, _latest_periods(where), params)
        if row["closed"]
    }
    if not closed:
        return []
    grades = _records(store, _GRADES.format(where=where), {**params, "closes": list(closed)})
    rows = [_period_result(g, closed[g["period_id"], g["sequence"]]) for g in grades]
    rows.sort(key=lambda r: (r["period_id"], r["subject_kind"] == "key_result", r["subject_id"]))
    return rows


def _period_result(g: Record, period_name: str) -> Record:
    """A grade row with the columns of :func:`projections.sql.period_results`."""
    return {
        "org_id": g["org_id"], "period_id": g["period_id"], "period_name": period_name,
        **{name: g[name] for name in _GRADE_COLUMNS},
        "closed_at": g["closed_at"], "close_sequence": g["sequence"],
        "close_recorded_at": g["recorded_at"],
    }  # fmt: skip


def _latest_periods(where: str) -> str:
    """The latest version of each period among the rows ``where`` selects."""
    return sql.latest_rows("{db}", t.PERIODS, where, "period_id, sequence, name, closed")


_GRADES = (
    f"SELECT * FROM {{{{db}}}}.{t.PERIOD_GRADES} WHERE {{where}} "
    "AND (period_id, sequence) IN {{closes:Array(Tuple(String, UInt64))}} "
    f"LIMIT 1 BY {sql.PERIOD_RESULT_KEY}"
)
"""The grades of the closes ``{closes}`` (period, sequence) among the rows ``{where}``
selects, each row once (:func:`period_results`)."""
_GRADE_COLUMNS = (
    "subject_kind", "subject_id", "objective_id", "parent_objective_id", "title",
    "owner_unit_id", "kind", "unit", "lifecycle", "weight", "value", "target", "progress",
    "attainment", "expected_progress", "status", "confidence",
)  # fmt: skip
