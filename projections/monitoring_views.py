"""The monitoring views BI tools read (issue 11): ``owners``, ``engagement``, ``progress_trend``,
``attention``. Each answers now (``now64(6)``), by the rules of :mod:`projections.monitoring`
(a test checks that the views and the CLI agree); docs/projections.md states them.
"""

from processors import tables as t

NOW = "now64(6)"
TODAY = f"toDate({NOW})"


def owners() -> str:
    """The current owner of every objective and key result that ever had one."""
    return f"""
SELECT org_id, subject_kind, subject_id, argMax(tuple(owner), sequence).1 AS owner,
    max(sequence) AS as_of_sequence, argMax(recorded_at, sequence) AS updated_at
FROM {{db}}.{t.OWNERS} GROUP BY org_id, subject_kind, subject_id"""


_KR_COLUMNS = ", ".join(
    f"k.{c} AS {c}"
    for c in (
        "org_id", "key_result_id", "objective_id", "owner_unit_id", "period_id", "title",
        "stale", "status", "last_check_in_at", "period_starts_on", "period_ends_on", "progress",
        "expected_progress",
    )
)  # fmt: skip


def _key_results_with_owners() -> str:
    """Key results not retired, of the periods running today, with their owner (their own,
    else their objective's)."""
    return f"""(
    SELECT {_KR_COLUMNS},
        if(ko.subject_id != '', ko.owner, oo.owner) AS owner
    FROM {{db}}.key_result_progress AS k
    LEFT JOIN {{db}}.owners AS ko ON ko.org_id = k.org_id AND ko.subject_kind = 'key_result'
        AND ko.subject_id = k.key_result_id
    LEFT JOIN {{db}}.owners AS oo ON oo.org_id = k.org_id AND oo.subject_kind = 'objective'
        AND oo.subject_id = k.objective_id
    WHERE NOT k.retired AND {TODAY} BETWEEN k.period_starts_on AND k.period_ends_on
)"""


def _live_check_ins() -> str:
    """The latest version of every check-in not retracted, measured by now."""
    return f"""(
    SELECT * FROM {{db}}.check_in_history WHERE NOT retracted AND occurred_at <= {NOW}
)"""


def engagement() -> str:
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
    FROM {_key_results_with_owners()} AS k
    LEFT JOIN (
        SELECT org_id, key_result_id,
            countIf(occurred_at > {NOW} - INTERVAL 7 DAY) AS n7, count() AS n28
        FROM {_live_check_ins()} WHERE occurred_at > {NOW} - INTERVAL 28 DAY
        GROUP BY org_id, key_result_id
    ) AS r ON r.org_id = k.org_id AND r.key_result_id = k.key_result_id
)
GROUP BY org_id, grp"""


def progress_trend() -> str:
    """Each key result's progress at the end of every week (from Monday, UTC) and every day of
    its period up to now (the current bucket's point is now): the current check-in then (the
    latest measured by the point), else its start scored against its current target."""
    grid = f"""(
    SELECT k.org_id AS org_id, k.key_result_id AS key_result_id, k.title AS title,
        k.kind AS kind, k.start AS start, k.current_target AS current_target,
        k.period_starts_on AS period_starts_on, k.period_ends_on AS period_ends_on,
        g.1 AS granularity, g.2 AS bucket,
        least(toDateTime64(g.2 + if(g.1 = 'week', 7, 1), 6, 'UTC'), {NOW}) AS point_at
    FROM {{db}}.key_result_progress AS k
    ARRAY JOIN arrayConcat(
        arrayMap(d -> tuple('week', d), arrayMap(n -> toMonday(k.period_starts_on) + 7 * n,
            range(toUInt32(greatest(0, intDiv(dateDiff('day', toMonday(k.period_starts_on),
                least({TODAY}, k.period_ends_on)), 7) + 1))))),
        arrayMap(d -> tuple('day', d), arrayMap(n -> k.period_starts_on + n,
            range(toUInt32(greatest(0, dateDiff('day', k.period_starts_on,
                least({TODAY}, k.period_ends_on)) + 1)))))
    ) AS g
    WHERE k.period_starts_on <= {TODAY}
)"""
    start_score = (
        "multiIf(g.kind = 'stay_above', toFloat64(g.start >= g.current_target), "
        "g.kind = 'stay_below', toFloat64(g.start <= g.current_target), "
        "g.kind = 'milestone', toFloat64(g.start >= 1), 0.)"
    )
    return f"""
SELECT g.org_id AS org_id, 'key_result' AS subject_kind, g.key_result_id AS subject_id,
    g.title AS title, g.granularity AS granularity, toDate(g.bucket) AS bucket,
    g.point_at AS point_at,
    if(c.check_in_id = '', {start_score}, c.progress) AS progress,
    if(c.check_in_id = '', NULL, c.confidence) AS confidence,
    if(c.check_in_id = '', NULL, c.check_in_id) AS check_in_id
FROM {grid} AS g
ASOF LEFT JOIN (
    SELECT org_id, key_result_id, occurred_at, check_in_id, progress, confidence
    FROM {_live_check_ins()}
) AS c ON c.org_id = g.org_id AND c.key_result_id = g.key_result_id
    AND g.point_at >= c.occurred_at"""


def attention() -> str:
    """Every attention item now, one row each: the rules of
    :func:`projections.monitoring.attention`."""
    running = f"{TODAY} BETWEEN period_starts_on AND period_ends_on"
    item = (
        "org_id, item_id, kind, subject_kind, subject_id, title, owner, period_id, key_result_ids"
    )
    return f"""
SELECT {item} FROM (
SELECT org_id, concat('stale:', key_result_id) AS item_id, 'stale' AS kind,
    'key_result' AS subject_kind, key_result_id AS subject_id, title, owner,
    toNullable(period_id) AS period_id, CAST([], 'Array(String)') AS key_result_ids
FROM {_key_results_with_owners()} WHERE stale
UNION ALL
SELECT k.org_id, concat('confidence_dropped:', k.key_result_id), 'confidence_dropped',
    'key_result', k.key_result_id, k.title, k.owner, toNullable(k.period_id),
    CAST([], 'Array(String)')
FROM {_key_results_with_owners()} AS k
INNER JOIN (
    SELECT org_id, key_result_id,
        arrayReverseSort(x -> x.1, groupArray(tuple((occurred_at, check_in_sequence),
            confidence))) AS recent
    FROM {_live_check_ins()} GROUP BY org_id, key_result_id
) AS c ON c.org_id = k.org_id AND c.key_result_id = k.key_result_id
WHERE k.status != 'on_track' AND length(c.recent) >= 2
    AND c.recent[1].2 < c.recent[2].2
UNION ALL
SELECT org_id, concat(flag, ':', objective_id), flag, 'objective', objective_id, title,
    o.owner, toNullable(period_id), CAST([], 'Array(String)')
FROM (SELECT *, arrayJoin(flags) AS flag FROM {{db}}.objective_progress
      WHERE lifecycle = 'active' AND period_ends_on >= {TODAY}) AS p
LEFT JOIN (SELECT org_id AS o_org, subject_id, owner FROM {{db}}.owners
           WHERE subject_kind = 'objective') AS o
    ON o.o_org = p.org_id AND o.subject_id = p.objective_id
UNION ALL
SELECT c.org_id, concat('theme_uncovered:', c.period_id, ':', c.theme_id), 'theme_uncovered',
    'theme', c.theme_id, c.theme_name, NULL, toNullable(c.period_id), CAST([], 'Array(String)')
FROM {{db}}.theme_coverage AS c
INNER JOIN {{db}}.periods AS p ON p.org_id = c.org_id AND p.period_id = c.period_id
WHERE c.uncovered AND p.ends_on >= {TODAY}
UNION ALL
SELECT org_id, concat('period_ending:', period_id), 'period_ending', 'period', period_id,
    period_id, NULL, toNullable(period_id), arraySort(groupArray(key_result_id))
FROM {{db}}.key_result_progress
WHERE NOT retired AND {running} AND progress < expected_progress
    AND dateDiff('day', {TODAY}, period_ends_on) <= 14
GROUP BY org_id, period_id
)"""
