"""SQL shared by the views (what BI tools read) and the CLI's queries, so both say the same.

Each builder takes its *sources*: for a view, the current-state tables (``FINAL``) or the
latest version of every entity (:func:`latest`); for an as-of query, the state up to a ledger
sequence (:func:`latest_as_of`; the CLI's answers from the snapshots,
:func:`key_result_numbers_as_of` and :func:`objective_structures_as_of`).
Time-dependent columns take a *reference time* expression: ``now64(6)`` in views, a bound
parameter in queries. ``processors/scoring.py`` has the same rules in Python (for ``--at``);
a test checks that the two agree.
"""

from processors import tables as t
from processors.scoring import AT_RISK_GAP, ON_TRACK_GAP

KEYS = {
    t.KEY_RESULTS: "key_result_id",
    t.OBJECTIVES: "objective_id",
    t.OBJECTIVE_UPDATES: "objective_id",
    t.CHECK_INS: "check_in_id",
    t.THEMES: "theme_id",
    t.UNITS: "unit_id",
    t.PERIODS: "period_id",
    t.STRATEGY: "org_id",
}
NOW = "now64(6)"
AS_OF_FILTER = "org_id = {org:String} AND sequence <= {seq:UInt64}"
"""The filter of an as-of query: one org, the ledger up to a sequence."""


def latest(db: str, table: str, where: str = "") -> str:
    """The latest version of every entity of ``table`` (among the rows matching ``where``).

    Finds each key's highest sequence first, then fetches those rows: much faster than
    sorting every version. ``LIMIT 1 BY`` drops a row inserted twice (before a merge).
    """
    key = f"org_id, {KEYS[table]}"
    condition = f"WHERE {where}" if where else ""
    and_condition = f"{where} AND " if where else ""
    return (
        f"(SELECT * FROM {db}.{table} WHERE {and_condition}({key}, sequence) IN "
        f"(SELECT {key}, max(sequence) FROM {db}.{table} {condition} GROUP BY {key}) "
        f"LIMIT 1 BY {key})"
    )


def latest_sorted(db: str, table: str, where: str = "") -> str:
    """The latest version of every entity of ``table`` among the rows matching ``where``, by
    sorting them (as :func:`latest_as_of`, over every org): for the small tables (the
    objectives, key results, themes, periods), read by the parameterized views, where
    :func:`latest`'s second read (``IN``) of the table is more for the engine to analyse at
    each place a view names them."""
    condition = f"WHERE {where} " if where else ""
    return (
        f"(SELECT * FROM {db}.{table} {condition}"
        f"ORDER BY sequence DESC LIMIT 1 BY org_id, {KEYS[table]})"
    )


def latest_as_of(db: str, table: str) -> str:
    """The latest version of every entity of ``table`` up to ``{seq}``, of one org: its rows
    sorted by key, then by sequence from the latest, the first of each key (a few thousand
    rows at most in these tables: 5 ms where :func:`latest`'s ``IN`` took 48 on the
    objectives at 1,000,000 check-ins), in key order as :func:`latest` gives them (sums over
    them add up in the same order). One sort, in the order of the tables' own sort key
    (``org_id``, the key, ``sequence``): ~2.5 ms less than a sort by sequence, then by key."""
    return f"({latest_rows(db, table, AS_OF_FILTER)})"


def latest_as_of_rows(db: str, table: str, columns: str = "*") -> str:
    """:func:`latest_as_of` as a statement of its own, ``columns`` of it: one ``SELECT``, not
    one around a subquery (~1-2 ms less of the engine's analysis each)."""
    return latest_rows(db, table, AS_OF_FILTER, columns)


def latest_rows(db: str, table: str, where: str, columns: str = "*") -> str:
    """The latest row of each entity of ``table`` among those ``where`` selects, in key order
    (one sort, in the table's own sort order): ``columns`` of it. A statement of its own: for
    the small tables (themes, periods: a few rows an org), half the CPU of :func:`latest`'s
    ``IN`` (~4 against ~8 ms on the demo store)."""
    key = f"org_id, {KEYS[table]}"
    return (
        f"SELECT {columns} FROM {db}.{table} WHERE {where} "
        f"ORDER BY {key}, sequence DESC LIMIT 1 BY {key}"
    )


def now(db: str, table: str) -> str:
    """The rows of one org in a current-state table."""
    return f"(SELECT * FROM {db}.{table} FINAL WHERE org_id = {{org:String}})"


def objective_structures_as_of(db: str) -> str:
    """Each objective's structure version up to ``{seq}``, with its last update up to then
    (``updated_sequence``, ``updated_recorded_at``): its numbers are rolled up from the key
    results (see :mod:`projections.queries`, which reads the two sides apart,
    :func:`objective_versions_as_of` and :func:`last_updates_as_of`, and joins them itself)."""
    return f"""
SELECT s.*, u.u_sequence AS updated_sequence, u.u_recorded_at AS updated_recorded_at
FROM {latest_as_of(db, t.OBJECTIVES)} AS s
LEFT JOIN {_last_updates(db)} AS u ON u.objective_id = s.objective_id
ORDER BY s.objective_id"""


def objective_versions_as_of(db: str) -> str:
    """Each objective's structure version up to ``{seq}``, by id."""
    return latest_as_of_rows(db, t.OBJECTIVES)


def last_updates_as_of(db: str) -> str:
    """Each objective's last change up to ``{seq}``: ``objective_id``, ``u_sequence``,
    ``u_recorded_at`` (one row for each objective changed up to then)."""
    return f"SELECT * FROM {_last_updates(db)}"


def _last_updates(db: str) -> str:
    """Each objective's last change up to ``{seq}`` (``u_sequence``, ``u_recorded_at``): its
    last change at the snapshot ``{base}`` (of its structure or numbers: the later of the two
    is what the answer shows), or its last update after it. Two ranges of tables sorted by
    sequence, not the objective's whole history."""
    return f"""(
    SELECT objective_id, max(u_seq) AS u_sequence, argMax(u_at, u_seq) AS u_recorded_at
    FROM (
        SELECT objective_id, changed_sequence AS u_seq, changed_at AS u_at
        FROM {db}.{t.OBJECTIVE_STAMPS}
        WHERE org_id = {{org:String}} AND sequence = {{base:UInt64}}
        UNION ALL
        SELECT objective_id, sequence AS u_seq, recorded_at AS u_at
        FROM {db}.{t.OBJECTIVE_UPDATES}
        WHERE {AS_OF_FILTER} AND sequence > {{base:UInt64}}
    )
    GROUP BY objective_id
)"""


def key_result_definition_versions(db: str, where: str = AS_OF_FILTER) -> str:
    """Every version of the key results' definitions up to ``{seq}`` (the rows ``where``
    selects), in no order: :func:`projections.queries._key_results_then` keeps each one's latest
    and puts them in the answers' order. A key result is rarely revised (1,009 versions of
    1,000 at 1,000,000 check-ins), and the engine's sort and ``LIMIT 1 BY`` over them cost
    ~1.5 of ~5 ms (asof39)."""
    return f"SELECT * FROM {db}.{t.KEY_RESULTS} WHERE {where}"


def key_result_numbers_as_of(db: str, only: bool = False) -> str:
    """Each key result's numbers up to ``{seq}``: its latest row from the snapshot at
    ``{base}`` on (``{only}``: just those key results)."""
    return f"""
SELECT * FROM {db}.{t.KEY_RESULT_NUMBERS}
WHERE org_id = {{org:String}} AND sequence >= {{base:UInt64}} AND sequence <= {{seq:UInt64}}
    {ONLY_KEY_RESULTS if only else ""}
ORDER BY sequence DESC LIMIT 1 BY key_result_id"""


CHECK_IN_KEY = (
    "bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64) + check_in_sequence"
)
"""How check-ins compete to be a key result's current one, as one number: business time,
ties broken by the check-in's sequence."""


def retracted_check_ins(db: str, where: str = "") -> str:
    """``org_id, check_in_sequence`` of every check-in with a retracted version among the
    rows matching ``where`` (once retracted, every later version of a check-in is)."""
    condition = f"{where} AND " if where else ""
    return f"SELECT org_id, check_in_sequence FROM {db}.{t.CHECK_INS} WHERE {condition}retracted"


def key_results_as_of(db: str, at: str | None, where: str = AS_OF_FILTER) -> str:
    """Each key result's definition up to ``{seq}``, and from its check-in versions up to then:
    the last version's sequence (``last_sequence``) and time (``last_recorded_at``), how many
    check-ins are live (``live``: not retracted, and measured by ``at`` if given), and the
    current one among them (``current``: its key, :data:`CHECK_IN_KEY`, 0 for none, then its
    latest version's ``check_in_id``, ``occurred_at``, ``value``, ``target``, ``progress``,
    ``attainment``, ``confidence``).

    ``where`` chooses the rows (:data:`AS_OF_FILTER`, or :data:`VIEW_FILTER` in the
    parameterized views, over every org). The history tables hold no row twice (the store
    removes a commit cut short before it projects those events again), so rows may be counted.
    A check-in's versions share its key and whether it is live, so the latest version of the
    current one is the greatest (key, sequence) among the live versions: one pass over the
    versions, where a second read of the current ones (``IN`` the first's keys) doubled what
    the engine analyses at every read of the views. The pair (key, sequence) is compared as one
    ``UInt256`` (the key shifted above the sequence): the same order as the tuple's, ~20 % less
    CPU at 1,000,000 check-ins.
    """
    gone = f"(org_id, check_in_sequence) IN ({retracted_check_ins(db, where)})"
    live = f"NOT {gone}" + (f" AND occurred_at <= {at}" if at else "")
    return f"""
SELECT d.*, c.last_sequence AS last_sequence, c.last_recorded_at AS last_recorded_at,
    c.live AS live, c.current AS current
FROM (
    SELECT * FROM {db}.{t.KEY_RESULTS} WHERE {where}
    ORDER BY sequence DESC LIMIT 1 BY org_id, key_result_id
) AS d
LEFT JOIN (
SELECT org_id, key_result_id, max(sequence) AS last_sequence,
    argMax(recorded_at, sequence) AS last_recorded_at,
    countIf(change = 'recorded' AND counted) AS live,
    argMaxIf(tuple({CHECK_IN_KEY}, check_in_id, occurred_at, value, target, progress,
        attainment, confidence), bitShiftLeft(toUInt256({CHECK_IN_KEY}), 64) + sequence,
        counted) AS current
FROM (
    SELECT org_id, key_result_id, sequence, recorded_at, change, occurred_at,
        check_in_sequence, check_in_id, value, target, progress, attainment, confidence,
        {live} AS counted
    FROM {db}.{t.CHECK_INS} WHERE {where}
)
GROUP BY org_id, key_result_id
) AS c ON c.org_id = d.org_id AND c.key_result_id = d.key_result_id"""


ONLY_KEY_RESULTS = " AND key_result_id IN {only:Array(String)}"
"""Added to :data:`AS_OF_FILTER`: only the key results in ``{only}`` (a range of the history
tables' sort key each)."""


def check_ins_at(only: str = "", where: str = AS_OF_FILTER) -> str:
    """Per key result, its check-ins measured by ``{at}`` and known up to ``{seq}``, but those
    retracted then (the check-ins matching ``where`` with a retracted version: few, a column
    of flags read in the statement itself, so no parameter grows with the ledger): how many
    (``live``), and the key (:data:`CHECK_IN_KEY`) of the current one (``current``; 0: none).
    One pass over the check-ins' first versions by then (a range of each key result's:
    ``PREWHERE`` on the sort key and the version's kind, read first); the ledger cut and the
    retractions are conditions of the aggregates, not of the scan (as a filter, ``sequence``
    was read for every row of the table)."""
    gone = f"SELECT check_in_sequence FROM {{db}}.{t.CHECK_INS} WHERE {where} AND retracted"
    return f"""
WITH sequence <= {{seq:UInt64}} AND check_in_sequence NOT IN ({gone}) AS known
SELECT key_result_id, countIf(known) AS live, maxIf({CHECK_IN_KEY}, known) AS current
FROM {{db}}.{t.CHECK_INS}
PREWHERE org_id = {{org:String}} AND occurred_at <= {{at:DateTime64(6, 'UTC')}}
    AND change = 'recorded'{only}
GROUP BY key_result_id"""


_AT_DAY = "toDate32({at:DateTime64(6, 'UTC')})"
_AT_KEY = (
    "bitShiftLeft(toUInt128(toUnixTimestamp64Micro({at:DateTime64(6, 'UTC')})), 64)"
    " + 18446744073709551615"
)
"""The greatest :data:`CHECK_IN_KEY` measured by ``{at}``."""


def check_in_days() -> str:
    """Per key result, from ``check_in_days`` (migration 11: per business day, ~91 rows a key
    result over a quarter whatever the check-ins): on the days before ``{at}``'s, the live
    check-ins (recorded less retracted: ``live_before``) and the keys (:data:`CHECK_IN_KEY`) of
    the latest recorded (``latest``) and retracted (``latest_gone``; equal: the latest is
    retracted); over every day, the rows recorded (``recorded_rows``) and retracted
    (``retracted_rows``), the distinct keys retracted (``retracted_keys``: few, and a row twice adds
    none) and the last sequence of any version (``newest``); on ``{at}``'s day, from its keys,
    the check-ins measured by ``{at}`` and not retracted (``live_on_day``) and the latest of
    them (``current_on_day``; 0: none). The rows are partial (one per insert): summed here, so
    never ``FINAL``. Only an answer's check (:func:`projections.queries._measured`) makes these
    numbers one. The CLI reads its two sides apart, at once (:func:`check_in_days_all`,
    :func:`check_in_day_of_at`), and joins them itself."""
    return f"""
SELECT a.key_result_id AS key_result_id, a.live_before AS live_before, a.latest AS latest,
    a.latest_gone AS latest_gone, a.recorded_rows AS recorded_rows,
    a.retracted_rows AS retracted_rows,
    a.retracted_keys AS retracted_keys, a.newest AS newest,
    b.live_on_day AS live_on_day, b.current_on_day AS current_on_day
FROM ({check_in_days_all()}) AS a
LEFT JOIN ({check_in_day_of_at()}) AS b ON b.key_result_id = a.key_result_id"""


def check_in_days_all() -> str:
    """The columns of :func:`check_in_days` over every day and the days before ``{at}``'s:
    ``key_result_id`` to ``newest``, a row for each key result with any day."""
    before = f"day < {_AT_DAY}"
    return f"""
    SELECT key_result_id,
        toInt64(sumIf(recorded, {before})) - toInt64(sumIf(retracted, {before})) AS live_before,
        maxIf(latest, {before}) AS latest, maxIf(latest_gone, {before}) AS latest_gone,
        toInt64(sum(recorded)) AS recorded_rows, toInt64(sum(retracted)) AS retracted_rows,
        toInt64(uniqExactArray(gone_keys)) AS retracted_keys, max(newest) AS newest
    FROM {{db}}.{t.CHECK_IN_DAYS} WHERE org_id = {{org:String}}
    GROUP BY key_result_id"""


def check_in_day_of_at() -> str:
    """The columns of :func:`check_in_days` on ``{at}``'s day: ``key_result_id``,
    ``live_on_day``, ``current_on_day``, a row for each key result with that day (the others:
    none measured on it; 0 and 0). The keys made distinct once per key result
    (``arrayDistinct``), not in a set per group (``groupUniqArrayArray``): ~14 -> 11 ms."""
    return f"""
    SELECT key_result_id, live_on_day, current_on_day FROM (
    SELECT key_result_id, arrayFilter(k -> k <= {_AT_KEY} AND NOT has(gone, k), keys) AS live,
        length(live) AS live_on_day, if(empty(live), toUInt128(0), arrayMax(live)) AS current_on_day
    FROM (
        SELECT key_result_id, arrayDistinct(groupArrayArray(recorded_keys)) AS keys,
            arrayDistinct(groupArrayArray(gone_keys)) AS gone
        FROM {{db}}.{t.CHECK_IN_DAYS} WHERE org_id = {{org:String}} AND day = {_AT_DAY}
        GROUP BY key_result_id
    ))"""


def current_versions(where: str = AS_OF_FILTER) -> str:
    """The last version up to ``{seq}`` of each check-in in ``{current}`` (by their sequences):
    its id, value and confidence, read from the projection ``by_check_in`` of the table
    (migration 10: sorted by check-in sequence; the current check-ins at one moment were
    recorded about then, so a few ranges of it; the table, sorted by key result, had its
    sequence column scanned). The target and score are worked out from the targets.
    ``{current}``: the sequences in one string, comma-separated (bound as one value, not a
    literal of ~1,000 bound one by one: ~3 ms of the driver's Python an answer), not empty."""
    return f"""
SELECT check_in_sequence, check_in_id, value, confidence
FROM {{db}}.{t.CHECK_INS}
WHERE {where} AND check_in_sequence IN splitByChar(',', {{current:String}})::Array(UInt64)
ORDER BY sequence DESC LIMIT 1 BY check_in_sequence"""


def targets_as_of(where: str = AS_OF_FILTER) -> str:
    """Every target of the key results up to ``{seq}``: definitions (``revision`` false) and
    revisions, in ledger order."""
    return f"""
SELECT key_result_id, sequence, effective_at, target, reason IS NOT NULL AS revision
FROM {{db}}.{t.TARGETS} WHERE {where} ORDER BY sequence"""


def _micros(expression: str) -> str:
    return f"toUnixTimestamp64Micro({expression})"


def _day_micros(date_expression: str) -> str:
    return f"(toInt64(toUnixTimestamp(toDateTime({date_expression}, 'UTC'))) * 1000000)"


def expected_sql(ref: str, kind: str | None = "kind", due: str | None = "due_on") -> str:
    """As :func:`processors.scoring.expected_progress`: linear from the period's start to the
    end of ``due`` (else of the period) at ``ref``; a milestone 0 until then and 1 after; 1 for
    the kinds that must hold all along."""
    start = _day_micros("period_starts_on")
    last_day = f"ifNull({due}, period_ends_on)" if due else "period_ends_on"
    end = f"({_day_micros(last_day)} + 86400000000)"
    now = _micros(ref)
    step = f"if({now} >= {end}, 1., 0.)"
    fraction = f"({now} - {start}) / ({end} - {start})"
    linear = f"if({end} <= {start}, {step}, greatest(0., least(1., {fraction})))"
    if kind is None:
        return linear
    return (
        f"multiIf({kind} IN ('stay_above', 'stay_below'), 1., {kind} = 'milestone', {step}, "
        f"{linear})"
    )


def status_sql(progress: str, expected: str, lifecycle: str | None = None) -> str:
    """As :func:`processors.scoring.status`; ``lifecycle`` for objectives."""
    gap = f"({expected} - {progress})"
    own = f"{lifecycle} IN ('achieved', 'abandoned'), {lifecycle}, " if lifecycle else ""
    return (
        f"multiIf({own}{gap} <= {ON_TRACK_GAP!r}, 'on_track', "
        f"{gap} <= {AT_RISK_GAP!r}, 'at_risk', 'off_track')"
    )


def stale_sql(ref: str) -> str:
    start = _day_micros("period_starts_on")
    end = f"({_day_micros('period_ends_on')} + 86400000000)"
    since = f"ifNull({_micros('last_check_in_at')}, {start})"
    return (
        f"toBool(NOT retired AND least({_micros(ref)}, {end}) - {since} "
        "> toInt64(checkin_every_days) * 86400000000)"
    )


def key_result_progress(source: str, ref: str) -> str:
    """A key result's answer from ``source``. Each expression is written once and named (the
    status reads ``expected_progress``): the engine's analysis of a query, not its execution,
    is most of its cost here, and grows with the text of the expressions."""
    expected = expected_sql(ref)
    return f"""
SELECT org_id, key_result_id, objective_id, owner_unit_id, period_id, title, kind, unit,
    start, target, current_target, value, progress, attainment,
    {expected} AS expected_progress,
    {status_sql("progress", "expected_progress")} AS status,
    confidence, last_check_in_at, last_check_in_id, check_in_count,
    {stale_sql(ref)} AS stale,
    weight, due_on, checkin_every_days, retired, period_starts_on, period_ends_on,
    sequence AS as_of_sequence, recorded_at AS updated_at
FROM {source}"""


def over_focus_sql(focus_limit: str) -> str:
    """``over_focus`` of an objective, from its structure columns."""
    return f"toBool(lifecycle != 'abandoned' AND unit_objective_count > {focus_limit})"


def objective_flags() -> str:
    """``flags`` of an objective, from its structure columns and its ``over_focus``
    (:func:`over_focus_sql`, a column of the layer below: as an alias in the same layer, it
    and its scalar subquery were analysed at each place it is read): a ``SELECT`` item of
    both :func:`objective_progress` and the attention list's flags."""
    return """arrayFilter(f -> f != '', [if(orphan, 'orphan', ''),
        if(parent_inactive, 'parent_inactive', ''), if(over_focus, 'over_focus', '')]) AS flags"""


def objective_progress(source: str, ref: str, focus_limit: str) -> str:
    """An objective's answer from ``source``: ``expected_progress`` and ``over_focus`` in a
    layer below the formulas that read them (see :func:`key_result_progress`)."""
    expected = expected_sql(ref, kind=None, due=None)
    return f"""
SELECT org_id, objective_id, title, description, owner_unit_id, period_id, lifecycle, rollup,
    weight, parent_objective_id, ancestor_ids, depth, theme_ids, reached_theme_ids,
    contributes_to, depends_on, progress, expected_progress,
    {status_sql("progress", "expected_progress", "lifecycle")} AS status,
    confidence, key_result_count, child_count, unit_objective_count,
    orphan, parent_inactive, over_focus, {objective_flags()},
    period_starts_on, period_ends_on, sequence AS as_of_sequence, recorded_at AS updated_at
FROM (
    SELECT *, {expected} AS expected_progress, {over_focus_sql(focus_limit)} AS over_focus
    FROM {source}
)"""


def theme_coverage(objectives: str, themes: str, periods: str) -> str:
    """Every active theme in every period, with the objectives that reach it (maybe none).

    Unmatched LEFT JOIN columns take their type's default (0): no NULLs to explain to BI.
    """
    return f"""
SELECT th.org_id AS org_id, p.period_id AS period_id, th.theme_id AS theme_id,
    th.name AS theme_name,
    r.objective_count AS objective_count,
    r.direct_objective_count AS direct_objective_count,
    r.key_result_count AS key_result_count,
    r.progress AS progress,
    toBool(r.objective_count = 0) AS uncovered
FROM (SELECT * FROM {themes} WHERE active) AS th
INNER JOIN {periods} AS p ON p.org_id = th.org_id
LEFT JOIN (
    SELECT org_id, period_id, theme_id,
        count() AS objective_count,
        countIf(direct) AS direct_objective_count,
        sum(key_result_count) AS key_result_count,
        if(sumIf(weight, direct) > 0,
           sumIf(weight * progress, direct) / sumIf(weight, direct), 0.) AS progress
    FROM (
        SELECT org_id, period_id, objective_id, weight, progress, key_result_count,
            arrayJoin(reached_theme_ids) AS theme_id, has(theme_ids, theme_id) AS direct
        FROM {objectives} WHERE lifecycle != 'abandoned'
    )
    GROUP BY org_id, period_id, theme_id
) AS r ON r.org_id = th.org_id AND r.period_id = p.period_id AND r.theme_id = th.theme_id"""


def uncovered_themes(objectives: str, themes: str, periods: str) -> str:
    """The rows of :func:`theme_coverage` whose theme no objective reaches (``uncovered``), from
    the objectives' structures alone (``org_id``, ``period_id``, ``lifecycle``,
    ``reached_theme_ids``): the coverage's numbers are not needed to know which. With the
    period's last day (``ends_on``), so that the attention list needs not join the periods
    again."""
    return f"""(
SELECT th.org_id AS org_id, p.period_id AS period_id, th.theme_id AS theme_id,
    th.name AS theme_name, toBool(1) AS uncovered, p.ends_on AS ends_on
FROM (SELECT * FROM {themes} WHERE active) AS th
INNER JOIN {periods} AS p ON p.org_id = th.org_id
WHERE (th.org_id, p.period_id, th.theme_id) NOT IN (
    SELECT org_id, period_id, arrayJoin(reached_theme_ids) FROM {objectives}
    WHERE lifecycle != 'abandoned'
)
)"""


PERIOD_RESULT_KEY = "org_id, period_id, subject_kind, subject_id, sequence"


def period_results(db: str, periods: str, where: str = "") -> str:
    """The grades of the periods closed in ``periods`` (the latest version of each: a closed one
    is the version its latest ``PeriodClosed`` made, whose sequence names its grades), among the
    grade rows matching ``where``; objectives first, then key results, by id."""
    and_where = f"AND {where}" if where else ""
    return f"""
SELECT g.org_id AS org_id, g.period_id AS period_id, p.name AS period_name,
    g.subject_kind AS subject_kind, g.subject_id AS subject_id, g.objective_id AS objective_id,
    g.parent_objective_id AS parent_objective_id, g.title AS title,
    g.owner_unit_id AS owner_unit_id, g.kind AS kind, g.unit AS unit, g.lifecycle AS lifecycle,
    g.weight AS weight, g.value AS value, g.target AS target, g.progress AS progress,
    g.attainment AS attainment, g.expected_progress AS expected_progress, g.status AS status,
    g.confidence AS confidence, g.closed_at AS closed_at, g.sequence AS close_sequence,
    g.recorded_at AS close_recorded_at
FROM (
    SELECT * FROM {db}.{t.PERIOD_GRADES}
    WHERE (org_id, period_id, sequence) IN (
        SELECT org_id, period_id, sequence FROM {periods} WHERE closed
    ) {and_where}
    LIMIT 1 BY {PERIOD_RESULT_KEY}
) AS g
INNER JOIN (SELECT org_id, period_id, name FROM {periods} WHERE closed) AS p
    ON p.org_id = g.org_id AND p.period_id = g.period_id
ORDER BY org_id, period_id, subject_kind = 'key_result', subject_id"""


# --- parameterized views: the same as-of answers in plain SQL, for BI tools ---------------------

AS_OF_PARAM = "{as_of:Nullable(DateTime64(6, 'UTC'))}"
"""A parameterized view's recorded time; left out (NULL): everything recorded."""
AT_PARAM = "{at:Nullable(DateTime64(6, 'UTC'))}"
"""A parameterized view's business time; left out (NULL): values as recorded."""
VIEW_REF_SQL = f"assumeNotNull(coalesce({AT_PARAM}, {AS_OF_PARAM}, {NOW}))"
"""The reference time of expected progress, status and stale, as ``Moment.ref``."""
VIEW_REF = "view_ref"
"""The name a parameterized view gives its :data:`VIEW_REF_SQL` (``WITH ... AS view_ref``):
written out at each of its places (a dozen in the monitoring views, each analysed again at
each read), it cost more than named once."""
_END_OF_TIME = "toDateTime64('2299-12-31 23:59:59', 6, 'UTC')"
NO_CONFIDENCE = "toFloat64('inf')"
"""No known confidence, in the SQL roll-up: above any confidence, so ``least`` skips it."""


VIEW_CUTS = "view_cuts"
"""The name a parameterized view gives its :func:`view_cuts` (``WITH ... AS view_cuts``)."""


def view_cuts(db: str) -> str:
    """Each org's last sequence recorded by ``{as_of}`` (as
    :func:`projections.queries.sequence_as_of`, for every org at once): a map of org to
    sequence, a scalar subquery each parameterized view names once (:data:`VIEW_CUTS`) and
    its filters read (:data:`VIEW_FILTER`), where written in each filter it was analysed and
    run at each of them."""
    return (
        "(SELECT mapFromArrays(groupArray(toString(org_id)), groupArray(last)) FROM ("
        f"SELECT org_id, max(sequence) AS last FROM {db}.{t.EVENT_TIMES} "
        f"WHERE {AS_OF_PARAM} IS NULL OR recorded_at <= {AS_OF_PARAM} GROUP BY org_id))"
    )


VIEW_FILTER = f"sequence <= {VIEW_CUTS}[toString(org_id)]"
"""The rows of each org's ledger up to its last sequence recorded by ``{as_of}``, in a
parameterized view that names :func:`view_cuts`."""


def score_sql(kind: str, start: str, target: str, value: str) -> tuple[str, str]:
    """``(progress, attainment)`` as :func:`processors.scoring.score`."""
    attainment = (
        f"multiIf({kind} = 'stay_above', toFloat64({value} >= {target}), "
        f"{kind} = 'stay_below', toFloat64({value} <= {target}), "
        f"{kind} = 'milestone', toFloat64({value} >= 1), "
        f"{target} - {start} != 0, ({value} - {start}) / ({target} - {start}), 1.)"
    )
    progress = (
        f"if({kind} IN ('stay_above', 'stay_below', 'milestone'), {attainment}, "
        f"greatest(0., least(1., {attainment})))"
    )
    return progress, attainment


def key_results_at(db: str) -> str:
    """Every key result of every org as of ``{as_of}``, its numbers at ``{at}``: the columns
    of ``key_results_now``, from the history tables (the CLI's ``queries._key_results_as_of``
    reads the snapshots instead; a property test holds the two equal)."""
    where = VIEW_FILTER
    at = f"ifNull({AT_PARAM}, {_END_OF_TIME})"
    revision = f"reason IS NOT NULL AND effective_at <= {AT_PARAM}"
    progress, attainment = score_sql("k.kind", "k.start", "target", "k.start")
    return f"""(
WITH k.current.1 = 0 AS none
SELECT k.org_id AS org_id, k.key_result_id AS key_result_id, k.objective_id AS objective_id,
    k.owner_unit_id AS owner_unit_id, k.period_id AS period_id, k.title AS title,
    k.kind AS kind, k.unit AS unit, k.start AS start,
    if(none, if({AT_PARAM} IS NULL OR tg.key_result_id = '', k.current_target,
        if(tg.revisions > 0, tg.revised, tg.defined)), k.current.5) AS target,
    k.current_target AS current_target,
    if(none, k.start, k.current.4) AS value,
    if(none, {progress}, k.current.6) AS progress,
    if(none, {attainment}, k.current.7) AS attainment,
    if(none, NULL, k.current.8) AS confidence,
    if(none, NULL, k.current.3) AS last_check_in_at,
    if(none, NULL, k.current.2) AS last_check_in_id,
    toUInt32(k.live) AS check_in_count,
    k.weight AS weight, k.due_on AS due_on, k.checkin_every_days AS checkin_every_days,
    k.retired AS retired, k.period_starts_on AS period_starts_on,
    k.period_ends_on AS period_ends_on,
    greatest(k.sequence, k.last_sequence) AS sequence,
    if(k.last_sequence > k.sequence, k.last_recorded_at, k.recorded_at) AS recorded_at
FROM ({key_results_as_of(db, at, where)}) AS k
LEFT JOIN (
    SELECT org_id, key_result_id,
        argMaxIf(target, (effective_at, sequence), {revision}) AS revised,
        countIf({revision}) AS revisions,
        argMinIf(target, sequence, reason IS NULL) AS defined
    FROM {db}.{t.TARGETS} WHERE {where} GROUP BY org_id, key_result_id
) AS tg ON tg.org_id = k.org_id AND tg.key_result_id = k.key_result_id
)"""


def rollup_ctes(
    key_results: str,
    structures: str,
    keys: tuple[str, ...] = ("org_id",),
    cascade: str | None = None,
    carry: bool = False,
) -> str:
    """The ``WITH`` entries ``own``, ``children`` and ``numbers`` of the roll-up: ``numbers``
    holds, per ``keys`` (one org; or one org at one business time), ``numbers_of``: a map of
    each objective to its (progress, confidence, :data:`NO_CONFIDENCE` for none) rolled up
    through the cascade, children first, from ``key_results`` (``keys``, ``objective_id``,
    ``key_result_id``, ``weight``, ``progress``, ``confidence``, ``retired``) over the
    objectives of ``structures`` (``keys`` and the objectives' structure columns).
    ``cascade``: the objectives of one org (``structures`` at any one of its ``keys``), when
    ``structures`` repeats them (at several business times): the children are read from it,
    once per org, not from ``structures`` again. ``carry``: ``numbers`` also holds
    ``key_results_at``, the ``(key_result_id, progress, confidence, check_in_id)`` of every key
    result of its objectives, so that a statement that shows them reads ``key_results`` once."""
    group = ", ".join(keys)
    carried = (
        ",\n        groupArray((key_result_id, progress, confidence, check_in_id)) AS rows"
        if carry
        else ""
    )
    carried_on = ",\n        groupArrayArray(ow.rows) AS key_results_at" if carry else ""

    def on(alias: str, keys: tuple[str, ...] = keys) -> str:
        return " AND ".join(f"{alias}.{k} = s.{k}" for k in keys)

    family = ("org_id",) if cascade else keys

    members = (
        "arrayConcat(if(o.3 != 'children', o.4, []), "
        "if(o.3 != 'key_results', arrayMap(c -> (c.2, acc[c.1].1, acc[c.1].2), o.5), []))"
    )
    fold = (
        f"arrayFold((a, p) -> (a.1 + p.1, a.2 + p.1 * p.2, least(a.3, p.3)), {members}, "
        f"(0., 0., {NO_CONFIDENCE}))"
    )
    return f"""own AS (
    SELECT {group}, objective_id,
        arrayMap(x -> (x.2, x.3, x.4), arraySort(groupArrayIf((key_result_id, weight, progress,
            ifNull(confidence, {NO_CONFIDENCE})), NOT retired))) AS parts{carried}
    FROM {key_results} GROUP BY {group}, objective_id
),
children AS (
    SELECT {", ".join(family)}, assumeNotNull(parent_objective_id) AS parent_id,
        arraySort(groupArray((objective_id, weight))) AS members
    FROM {cascade or structures}
    WHERE lifecycle != 'abandoned' AND parent_objective_id IS NOT NULL
    GROUP BY {", ".join(family)}, parent_id
),
numbers AS (
    SELECT {", ".join(f"s.{k} AS {k}" for k in keys)}, arrayFold((acc, o) -> mapUpdate(acc,
            map(o.1, arrayMap(r -> (if(r.1 > 0, r.2 / r.1, 0.), r.3), [{fold}])[1])),
        arraySort(o -> -o.2, groupArray((s.objective_id, toInt32(s.depth), toString(s.rollup),
            ow.parts, ch.members))),
        map('', (0., {NO_CONFIDENCE}))) AS numbers_of{carried_on}
    FROM {structures} AS s
    LEFT JOIN own AS ow ON {on("ow")} AND ow.objective_id = s.objective_id
    LEFT JOIN children AS ch ON {on("ch", family)} AND ch.parent_id = s.objective_id
    GROUP BY {", ".join(f"s.{k}" for k in keys)}
)"""


def objectives_at(db: str, key_results: str | None = None) -> str:
    """Every objective of every org as of ``{as_of}``, with the columns of ``objectives_now``:
    its structure then, and progress and confidence rolled up from the key results at
    ``{at}`` (:func:`key_results_at`), children first, by the rules of
    :func:`processors.scoring.rollup_progress` (the members summed in the same order: key
    results, then children, each by id, so the floats are the same) and
    :func:`processors.scoring.rollup_confidence` (the weakest known confidence among the
    members the ``rollup`` mode counts, each child with its own rolled-up one; NULL when none
    has one, carried through the fold as :data:`NO_CONFIDENCE`). ``key_results``: a
    subquery in parentheses with those columns (the twin ``key_result_progress_at``), else
    :func:`key_results_at` written out."""
    where = VIEW_FILTER
    return f"""(
WITH kr AS {key_results or key_results_at(db)},
st AS {latest_sorted(db, t.OBJECTIVES, where)},
{rollup_ctes("kr", "st")},
updates AS (
    SELECT org_id, objective_id, max(sequence) AS u_sequence,
        argMax(recorded_at, sequence) AS u_recorded_at
    FROM {db}.{t.OBJECTIVE_UPDATES} WHERE {where} GROUP BY org_id, objective_id
)
SELECT s.org_id AS org_id, s.objective_id AS objective_id,
    s.* EXCEPT (org_id, objective_id, sequence, recorded_at),
    n.numbers_of[s.objective_id].1 AS progress,
    nullIf(n.numbers_of[s.objective_id].2, {NO_CONFIDENCE}) AS confidence,
    greatest(s.sequence, u.u_sequence) AS sequence,
    if(u.u_sequence > s.sequence, u.u_recorded_at, s.recorded_at) AS recorded_at
FROM st AS s
LEFT JOIN updates AS u ON u.org_id = s.org_id AND u.objective_id = s.objective_id
LEFT JOIN numbers AS n ON n.org_id = s.org_id
)"""
