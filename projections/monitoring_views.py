"""The monitoring views BI tools read (issue 11): ``owners``, ``engagement``, ``progress_trend``,
``attention``. Each answers by the rules of :mod:`projections.monitoring` (a test checks that
the views and the CLI agree); docs/projections.md states them.

Each builder takes its :class:`Sources`: the views read the other views and answer now
(``now64(6)``); their parameterized twins (``<view>_at``) read the same SQL cut as of
``{as_of}`` and answer at the view's reference time (:data:`projections.sql.VIEW_REF`).
"""

from dataclasses import dataclass

from processors import tables as t
from projections import sql

NOW = "now64(6)"


@dataclass(frozen=True, slots=True)
class Sources:
    """What a monitoring view reads: relations (a table or view name, or a subquery in
    parentheses, ``{db}`` standing for the database), a filter of the history tables
    (``where``: empty for all) and the reference time ``ref``. ``objectives`` is each
    objective's latest structure version (the rows :func:`projections.sql.objectives_at`
    rolls up over).

    The engine analyses a relation's whole definition at each place a view names it, and
    the numbers (``key_result_progress``) cost the most: the parameterized twins read them
    once, and what needs only structure reads it from the structures: ``key_results`` (each
    key result's definition), ``objective_flags`` (each objective's ``flags``),
    ``theme_coverage`` (only ``uncovered`` rows and names are read). The live check-ins are
    read from the check-in versions matching ``where`` (:func:`_live_check_ins`,
    :func:`_live_check_in_times`). ``coverage_ends_on``: ``theme_coverage``'s rows carry their
    period's last day (``ends_on``), so that the attention list needs not join ``periods``."""

    key_result_progress: str = "{db}.key_result_progress"
    key_results: str = "{db}.key_result_progress"
    objective_flags: str = "{db}.objective_progress"
    objectives: str = sql.latest_sorted("{db}", t.OBJECTIVES)
    theme_coverage: str = "{db}.theme_coverage"
    periods: str = "{db}.periods"
    owners: str = "{db}.owners"
    coverage_ends_on: bool = False
    where: str = ""
    ref: str = NOW

    @property
    def today(self) -> str:
        return f"toDate({self.ref})"


NOW_SOURCES = Sources()


def owners(where: str = "") -> str:
    """The owner of every objective and key result that ever had one (among the owner rows
    matching ``where``: all, or a ledger prefix)."""
    condition = f"WHERE {where} " if where else ""
    return f"""
SELECT org_id, subject_kind, subject_id, argMax(tuple(owner), sequence).1 AS owner,
    max(sequence) AS as_of_sequence, argMax(recorded_at, sequence) AS updated_at
FROM {{db}}.{t.OWNERS} {condition}GROUP BY org_id, subject_kind, subject_id"""


_KR_COLUMNS = ", ".join(
    f"k.{c} AS {c}"
    for c in (
        "org_id", "key_result_id", "objective_id", "owner_unit_id", "period_id", "title",
        "stale", "status", "last_check_in_at", "period_starts_on", "period_ends_on", "progress",
        "expected_progress",
    )
)  # fmt: skip


def _key_results_with_owners(src: Sources) -> str:
    """Key results not retired, of the periods running at the reference time, with their owner
    (their own, else their objective's: a key result whose owner was cleared has its
    objective's, as :func:`projections.monitoring.key_result_owner` says)."""
    return f"""(
    SELECT {_KR_COLUMNS},
        coalesce(o.owner_of[concat('key_result:', k.key_result_id)],
            o.owner_of[concat('objective:', k.objective_id)]) AS owner
    FROM {src.key_result_progress} AS k
    LEFT JOIN (
        SELECT org_id, CAST(groupArray((concat(subject_kind, ':', subject_id), owner)),
            'Map(String, Nullable(String))') AS owner_of
        FROM {src.owners} GROUP BY org_id
    ) AS o ON o.org_id = k.org_id
    WHERE NOT k.retired AND {src.today} BETWEEN k.period_starts_on AND k.period_ends_on
)"""


def _live_check_ins(src: Sources) -> str:
    """The latest version of every check-in not retracted, measured by the reference time:
    ``org_id``, ``key_result_id``, ``check_in_id``, ``check_in_sequence``, ``occurred_at``,
    ``progress``, ``confidence``. Most check-ins have one version (recorded), read as it is;
    the few changed since (corrected or retracted) from their latest change. No set of every
    check-in's latest version (the check-in history's): at 1,000,000 check-ins it cost ~1 s
    a read. A check-in's versions share its key result, id and business time, and once
    retracted every later version is."""
    where = f"{src.where} AND " if src.where else ""
    changed = f"{where}change != 'recorded'"
    return f"""(
    SELECT org_id, key_result_id, check_in_id, check_in_sequence, occurred_at, progress,
        confidence
    FROM {{db}}.{t.CHECK_INS}
    WHERE {where}change = 'recorded' AND occurred_at <= {src.ref}
        AND (org_id, check_in_sequence) NOT IN (
            SELECT org_id, check_in_sequence FROM {{db}}.{t.CHECK_INS} WHERE {changed})
    UNION ALL
    SELECT org_id, key_result_id, check_in_id, check_in_sequence, occurred_at,
        v.1 AS progress, v.2 AS confidence
    FROM (
        SELECT org_id, key_result_id, check_in_id, check_in_sequence, occurred_at,
            argMax(tuple(progress, confidence, retracted), sequence) AS v
        FROM {{db}}.{t.CHECK_INS} WHERE {changed} AND occurred_at <= {src.ref}
        GROUP BY org_id, key_result_id, check_in_id, check_in_sequence, occurred_at
    )
    WHERE NOT v.3
)"""


def _live_check_in_times(src: Sources) -> str:
    """Every check-in not retracted, measured by the reference time: ``org_id``,
    ``key_result_id``, ``occurred_at``, from its first version (``recorded``: one per
    check-in, and a check-in's versions share its key result and business time), less those
    with a retracted version (once retracted every later version is). One read of the
    versions and one of the retracted ones, where :func:`_live_check_ins` (which also gives
    each one's latest numbers) has four for the engine to analyse."""
    where = f"{src.where} AND " if src.where else ""
    return f"""(
    SELECT org_id, key_result_id, occurred_at FROM {{db}}.{t.CHECK_INS}
    WHERE {where}change = 'recorded' AND occurred_at <= {src.ref}
        AND (org_id, check_in_sequence) NOT IN ({sql.retracted_check_ins("{db}", src.where)})
)"""


def engagement(src: Sources = NOW_SOURCES) -> str:
    return f"""
SELECT org_id, grp.1 AS group, grp.2 AS id, toUInt64(count()) AS key_results,
    toUInt64(sum(n7)) AS check_ins_7d, toUInt64(sum(n28)) AS check_ins_28d,
    toUInt64(countIf(NOT stale)) AS within_cadence,
    countIf(NOT stale) / count() AS within_cadence_share,
    maxOrNull(last_check_in_at) AS last_check_in_at,
    arraySort(groupArray(key_result_id)) AS key_result_ids
FROM (
    SELECT k.org_id AS org_id, k.key_result_id AS key_result_id, k.stale AS stale,
        k.last_check_in_at AS last_check_in_at, r.n7 AS n7, r.n28 AS n28,
        arrayJoin([tuple('owner', k.owner), tuple('unit', toNullable(k.owner_unit_id))]) AS grp
    FROM {_key_results_with_owners(src)} AS k
    LEFT JOIN (
        SELECT org_id, key_result_id,
            countIf(occurred_at > {src.ref} - INTERVAL 7 DAY) AS n7, count() AS n28
        FROM {_live_check_in_times(src)} WHERE occurred_at > {src.ref} - INTERVAL 28 DAY
        GROUP BY org_id, key_result_id
    ) AS r ON r.org_id = k.org_id AND r.key_result_id = k.key_result_id
)
GROUP BY org_id, grp"""


def _buckets(starts: str, ends: str, today: str) -> str:
    """The weekly (from Monday) and daily buckets of a period from ``starts`` to ``ends`` up to
    ``today``: an array of ``(granularity, first day)`` to ``ARRAY JOIN``."""
    return f"""arrayConcat(
        arrayMap(d -> tuple('week', d), arrayMap(n -> toMonday({starts}) + 7 * n,
            range(toUInt32(greatest(0, intDiv(dateDiff('day', toMonday({starts}),
                least({today}, {ends})), 7) + 1))))),
        arrayMap(d -> tuple('day', d), arrayMap(n -> {starts} + n,
            range(toUInt32(greatest(0, dateDiff('day', {starts},
                least({today}, {ends})) + 1)))))
    )"""


def _point(src: Sources) -> str:
    """A bucket's point: its end, or the reference time in the current bucket."""
    return f"least(toDateTime64(g.2 + if(g.1 = 'week', 7, 1), 6, 'UTC'), {src.ref})"


VERSION_KEY = (
    "bitShiftLeft(toUInt256(toUnixTimestamp64Micro(occurred_at)), 128) "
    "+ bitShiftLeft(toUInt256(check_in_sequence), 64) + sequence"
)
"""A check-in version's place among its key result's, as one number: the check-in's key
(:data:`projections.sql.CHECK_IN_KEY`: business time, then the check-in's sequence), then the
version's sequence."""
_POINT_KEY = (
    f"bitShiftLeft(toUInt256(toUnixTimestamp64Micro(point_at)), 128) + toUInt256('{2**128 - 1}')"
)
"""The greatest :data:`VERSION_KEY` measured by ``point_at``."""


def _live_versions(src: Sources) -> str:
    """Every version of the check-ins live at the reference time (measured by it, never
    retracted), with its :data:`VERSION_KEY`: the greatest key up to a point is the latest
    version of the current check-in then. One read of the versions (and of the retracted
    ones): less for the engine to analyse than :func:`_live_check_ins`' two branches, and as
    fast in an ``ASOF`` join at 1,000,000 check-ins."""
    where = f"{src.where} AND " if src.where else ""
    gone = f"SELECT org_id, check_in_sequence FROM {{db}}.{t.CHECK_INS} WHERE {where}retracted"
    return f"""(
    SELECT org_id, key_result_id, {VERSION_KEY} AS key, progress, confidence, check_in_id,
        toBool(1) AS found
    FROM {{db}}.{t.CHECK_INS}
    WHERE {where}occurred_at <= {src.ref} AND (org_id, check_in_sequence) NOT IN ({gone})
)"""


def _key_results_at_points(src: Sources, grid: str) -> str:
    """Key results at points (``grid``: rows with ``org_id``, ``point_at``,
    ``key_result_id``, ``objective_id``, ``kind``, ``start``, ``current_target``,
    ``weight``, ``retired``), as ``progress --at POINT`` gives them: those columns with
    ``progress``, ``confidence`` and ``check_in_id``. The current check-in at a point is
    found by an ``ASOF`` join on the versions' :data:`VERSION_KEY` (a search in each key
    result's sorted versions), not by scanning each key result's check-ins at each point."""
    where = f"WHERE {src.where}" if src.where else ""
    revision = "reason IS NOT NULL"
    target = (
        "if(t.key_result_id = '', g.current_target, "
        "if(arrayExists(r -> r.1 <= g.point_at, t.revisions), "
        "arrayLast(r -> r.1 <= g.point_at, t.revisions).3, t.defined))"
    )
    start_score, _attainment = sql.score_sql("g.kind", "g.start", "target_then", "g.start")
    return f"""
WITH {target} AS target_then
SELECT g.org_id AS org_id, g.point_at AS point_at, g.key_result_id AS key_result_id,
    g.objective_id AS objective_id, g.weight AS weight, g.retired AS retired,
    if(c.found, c.progress, {start_score}) AS progress,
    if(c.found, c.confidence, NULL) AS confidence,
    if(c.found, c.check_in_id, NULL) AS check_in_id
FROM (SELECT *, {_POINT_KEY} AS point_key FROM {grid}) AS g
ASOF LEFT JOIN {_live_versions(src)} AS c
    ON c.org_id = g.org_id AND c.key_result_id = g.key_result_id AND c.key <= g.point_key
LEFT JOIN (
    SELECT org_id, key_result_id,
        arraySort(r -> (r.1, r.2), groupArrayIf((effective_at, sequence, target),
            {revision})) AS revisions,
        argMinIf(target, sequence, reason IS NULL) AS defined
    FROM {{db}}.{t.TARGETS} {where} GROUP BY org_id, key_result_id
) AS t ON t.org_id = g.org_id AND t.key_result_id = g.key_result_id"""


def progress_trend(src: Sources = NOW_SOURCES) -> str:
    """Each key result's and objective's progress at the end of every week (from Monday, UTC)
    and every day of its period up to the reference time (the current bucket's point is the
    reference time), as ``progress --at POINT``. A key result's: the current check-in then (the
    latest live one measured by the point, by business time, then sequence), else its start
    scored against its target then (the latest revision in effect by the point, else its
    defined target). An objective's: rolled up through the cascade from every key result's
    progress at that point, as :func:`projections.sql.objectives_at` (one roll-up per org and
    point).

    The key results are worked out once, at every point of their org (``points``: each
    midnight of each period begun, from the day after its start up to the reference day and
    a week after its end, and the reference time: a superset of the buckets' points, from the
    periods' bounds): the roll-up carries them (``key_results_at``), and each row
    (``subjects``: who, which bucket, which point) takes its numbers from the roll-up's rows
    (``found``), so the check-ins are read once, and the buckets written out once."""
    today = src.today

    def subjects(kind: str, source: str, t: str) -> str:
        """Each ``kind`` of ``source`` (alias ``t``) in each bucket begun, with its point."""
        return f"""
    SELECT {t}.org_id AS org_id, '{kind}' AS subject_kind, {t}.{kind}_id AS subject_id,
        {t}.title AS title, g.1 AS granularity, toDate(g.2) AS bucket, {_point(src)} AS point_at
    FROM {source} AS {t}
    ARRAY JOIN {_buckets(f"{t}.period_starts_on", f"{t}.period_ends_on", today)} AS g
    WHERE {t}.period_starts_on <= {today}"""

    key_result_subjects = subjects("key_result", "kd", "k")
    objective_subjects = subjects("objective", "st", "o")
    key_results_then = _key_results_at_points(
        src,
        """(
    SELECT p.org_id AS org_id, p.point_at AS point_at, k.key_result_id AS key_result_id,
        k.objective_id AS objective_id, k.kind AS kind, k.start AS start,
        k.current_target AS current_target, k.weight AS weight, k.retired AS retired
    FROM points AS p INNER JOIN kd AS k ON k.org_id = p.org_id
)""",
    )
    no_confidence = f"CAST(nullIf(v.2, {sql.NO_CONFIDENCE}), 'Nullable(Float64)')"
    return f"""
SELECT * FROM (
WITH st AS {src.objectives},
kd AS (
    SELECT org_id, key_result_id, objective_id, title, kind, start, current_target, weight,
        retired, period_starts_on, period_ends_on
    FROM {src.key_results}
),
subjects AS ({key_result_subjects}
    UNION ALL{objective_subjects}
),
points AS (
    SELECT DISTINCT org_id, arrayJoin(arrayPushBack(arrayMap(
            n -> toDateTime64(starts + n + 1, 6, 'UTC'),
            range(toUInt32(greatest(0, dateDiff('day', starts, least({today}, ends)))))),
        {src.ref})) AS point_at
    FROM (
        SELECT DISTINCT org_id, period_starts_on AS starts, period_ends_on + 7 AS ends
        FROM (SELECT org_id, period_starts_on, period_ends_on FROM kd
            UNION ALL SELECT org_id, period_starts_on, period_ends_on FROM st)
        WHERE period_starts_on <= {today}
    )
),
kr AS ({key_results_then}),
sp AS (SELECT s.*, p.point_at AS point_at FROM st AS s INNER JOIN points AS p
    ON p.org_id = s.org_id),
{sql.rollup_ctes("kr", "sp", ("org_id", "point_at"), cascade="st", carry=True)},
found AS (
    SELECT org_id, point_at, e.1 AS subject_kind, e.2 AS subject_id, e.3 AS progress,
        e.4 AS confidence, e.5 AS check_in_id
    FROM numbers
    ARRAY JOIN arrayConcat(
        arrayMap(k -> ('key_result', k.1, k.2, k.3, k.4), key_results_at),
        arrayMap((o, v) -> ('objective', o, v.1, {no_confidence},
            CAST(NULL, 'Nullable(String)')), mapKeys(numbers_of), mapValues(numbers_of))
    ) AS e
)
SELECT g.org_id AS org_id, g.subject_kind AS subject_kind, g.subject_id AS subject_id,
    g.title AS title, g.granularity AS granularity, g.bucket AS bucket,
    g.point_at AS point_at, f.progress AS progress, f.confidence AS confidence,
    f.check_in_id AS check_in_id
FROM subjects AS g
LEFT JOIN found AS f ON f.org_id = g.org_id AND f.point_at = g.point_at
    AND f.subject_kind = g.subject_kind AND f.subject_id = g.subject_id
)"""


def attention(src: Sources = NOW_SOURCES) -> str:
    """Every attention item at the reference time, one row each: the rules of
    :func:`projections.monitoring.attention`. The key results' items (stale, confidence
    dropped, and the periods ending with key results behind) come from one read of them, each
    key result's kinds an ``arrayJoin``, a period's grouped into one item."""
    today = src.today
    item = (
        "org_id, item_id, kind, subject_kind, subject_id, title, owner, period_id, key_result_ids"
    )
    themes_uncovered = (
        f"{src.theme_coverage} AS c WHERE c.uncovered AND c.ends_on >= {today}"
        if src.coverage_ends_on
        else f"""{src.theme_coverage} AS c
INNER JOIN {src.periods} AS p ON p.org_id = c.org_id AND p.period_id = c.period_id
WHERE c.uncovered AND p.ends_on >= {today}"""
    )
    dropped = "k.status != 'on_track' AND length(c.recent) >= 2 AND c.recent[1].2 < c.recent[2].2"
    ending = (
        f"k.progress < k.expected_progress AND dateDiff('day', {today}, k.period_ends_on) <= 14"
    )
    return f"""
SELECT {item} FROM (
SELECT org_id, item_id, kind, subject_kind, subject_id, title, owner, period_id,
    arraySort(groupArrayIf(key_result_id, kind = 'period_ending')) AS key_result_ids
FROM (
    SELECT org_id, key_result_id, kind, kind = 'period_ending' AS of_period,
        if(of_period, concat(kind, ':', k_period_id), concat(kind, ':', key_result_id))
            AS item_id,
        if(of_period, 'period', 'key_result') AS subject_kind,
        if(of_period, k_period_id, key_result_id) AS subject_id,
        if(of_period, k_period_id, k_title) AS title,
        if(of_period, NULL, k_owner) AS owner,
        toNullable(k_period_id) AS period_id
    FROM (
    SELECT k.org_id AS org_id, k.key_result_id AS key_result_id, k.period_id AS k_period_id,
        k.title AS k_title, k.owner AS k_owner,
        arrayJoin(arrayFilter(x -> x != '', [if(k.stale, 'stale', ''),
            if({dropped}, 'confidence_dropped', ''),
            if({ending}, 'period_ending', '')])) AS kind
    FROM {_key_results_with_owners(src)} AS k
    LEFT JOIN (
        SELECT org_id, key_result_id,
            arrayReverseSort(x -> x.1, groupArray(tuple((occurred_at, check_in_sequence),
                confidence))) AS recent
        FROM {_live_check_ins(src)} GROUP BY org_id, key_result_id
    ) AS c ON c.org_id = k.org_id AND c.key_result_id = k.key_result_id
    )
)
GROUP BY org_id, item_id, kind, subject_kind, subject_id, title, owner, period_id
UNION ALL
SELECT org_id, concat(flag, ':', objective_id), flag, 'objective', objective_id, title,
    o.owner, toNullable(period_id), CAST([], 'Array(String)')
FROM (SELECT *, arrayJoin(flags) AS flag FROM {src.objective_flags}
      WHERE lifecycle = 'active' AND period_ends_on >= {today}) AS p
LEFT JOIN (SELECT org_id AS o_org, subject_id, owner FROM {src.owners}
           WHERE subject_kind = 'objective') AS o
    ON o.o_org = p.org_id AND o.subject_id = p.objective_id
UNION ALL
SELECT c.org_id, concat('theme_uncovered:', c.period_id, ':', c.theme_id), 'theme_uncovered',
    'theme', c.theme_id, c.theme_name, NULL, toNullable(c.period_id), CAST([], 'Array(String)')
FROM {themes_uncovered}
)"""
