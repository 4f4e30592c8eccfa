"""The projection schema: append-only migrations, the current tables' columns, and the views.

Each migration is a SQL file in ``projections/schema/`` (``{db}`` stands for the database),
applied once per store and recorded in ``schema_migrations``. A released migration never
changes (a test pins the digest of each file): a schema change is a new file that alters what
is there (``ALTER TABLE ... ADD COLUMN``), or, when the projected rows themselves change, drops
and recreates the tables and empties the ledger checkpoints, so that the next catch-up projects
the whole ledger again. Statements are idempotent (``IF [NOT] EXISTS``), so a migration cut
short can run again.

:data:`COLUMN_TYPES` describes the tables as the migrations leave them (the store inserts by
it; a test checks each table of a migrated store against it). The views are derived: built
from :mod:`projections.sql` (the same SQL as the queries) and recreated whenever their
definition changes.
"""

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from processors import tables as t
from projections import monitoring_views, sql

TIME = "DateTime64(6, 'UTC')"
ID = "String"
LOW = "LowCardinality(String)"
SETTINGS_TABLE = "projection_settings"
MIGRATIONS_TABLE = "schema_migrations"
VIEWS_SETTING = "views"
"""The projection setting that records the digest of the views' definitions."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    file: str
    exclusive: bool = False
    """It rewrites tables and must run with no other writer: a store shared by several
    processes is not migrated by their open while it is pending (``okr-ledger init`` is)."""

    @property
    def text(self) -> str:
        return (resources.files("projections") / "schema" / self.file).read_text("utf-8")

    @property
    def statements(self) -> tuple[str, ...]:
        """The file's statements: each ends with ``;`` at the end of a line; ``--`` lines are
        comments."""
        lines = [line for line in self.text.splitlines() if not line.startswith("--")]
        text = "\n".join(lines)
        return tuple(s.strip().removesuffix(";") for s in text.split(";\n") if s.strip(" \n;"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "history tables", "0001-history-tables.sql"),
    Migration(2, "views for BI tools", "0002-views-for-bi-tools.sql"),
    Migration(3, "rejections: length and SHA-256 of a submission kept in part",
              "0003-rejections-length-and-sha256.sql"),
    Migration(4, "tables for the questions asked: current state, check-ins by time; "
              "projected again", "0004-tables-for-the-questions.sql"),
    Migration(5, "grades of closed periods; confidence rolled up by rollup mode: projected "
              "again", "0005-period-grades.sql"),
    Migration(6, "owners of objectives and key results", "0006-owners.sql"),
    Migration(7, "snapshots for as-of answers: key result numbers, objective stamps, updates "
              "by sequence; projected again", "0007-snapshots-for-as-of.sql"),
    Migration(8, "event times by sequence for as-of lookups; filled from the audit, nothing "
              "projected again", "0008-event-times.sql"),
    Migration(9, "smaller write buffers and merge blocks (memory); nothing projected again",
              "0009-smaller-write-buffers-and-merges.sql"),
    Migration(10, "check-in versions also sorted by check-in (a projection) for --at; "
              "nothing projected again", "0010-check-ins-by-check-in.sql"),
    Migration(11, "check-ins counted per key result per business day (a table a materialized "
              "view fills) for --at; nothing projected again", "0011-check-ins-per-day.sql"),
    Migration(12, "bounds of (org_id, sequence) per granule for a takeover's read beyond the "
              "checkpoints; nothing projected again", "0012-org-sequence-bounds.sql"),
    Migration(13, "small new parts merged together, not each into the largest part; nothing "
              "projected again", "0013-small-parts-merged-together.sql"),
    Migration(14, "finer granules in the tables an as-of answer reads by sequence; nothing "
              "projected again", "0014-finer-granules-for-as-of.sql", exclusive=True),
)  # fmt: skip

BASELINE = Migration(14, "the schema migrations 1-14 leave, at once", "baseline.sql")
"""A new store's tables in one step: what :data:`MIGRATIONS` up to ``BASELINE.version`` leave
(made by ``make schema`` from a store migrated one by one; a test holds the two equal). A new
store runs it instead of those migrations (about a sixth of their statements) and records them
as applied; a store that has any table already takes the migrations one by one."""
BASELINE_BEGUN = Migration(0, "baseline begun", "baseline.sql")
"""Recorded before the baseline runs: alone, it says the baseline was cut short (the next
open runs it again). Not listed among the migrations applied."""

_KEY_RESULT_DEFINITION = [
    ("objective_id", ID), ("owner_unit_id", ID), ("period_id", ID),
    ("period_starts_on", "Date32"), ("period_ends_on", "Date32"), ("title", "String"),
    ("kind", LOW), ("unit", LOW), ("start", "Float64"), ("current_target", "Float64"),
]  # fmt: skip
_OBJECTIVE_STRUCTURE = [
    ("title", "String"), ("description", "Nullable(String)"), ("owner_unit_id", ID),
    ("period_id", ID), ("period_starts_on", "Date32"), ("period_ends_on", "Date32"),
    ("lifecycle", LOW), ("rollup", LOW), ("weight", "Float64"),
    ("parent_objective_id", "Nullable(String)"), ("ancestor_ids", "Array(String)"),
    ("depth", "UInt16"), ("theme_ids", "Array(String)"), ("reached_theme_ids", "Array(String)"),
    ("contributes_to", "Array(String)"), ("depends_on", "Array(String)"), ("orphan", "Bool"),
    ("parent_inactive", "Bool"), ("unit_objective_count", "UInt32"),
    ("key_result_count", "UInt32"), ("child_count", "UInt32"),
]  # fmt: skip
_NUMBERS = [("progress", "Float64"), ("confidence", "Nullable(Float64)")]

COLUMN_TYPES: dict[str, list[tuple[str, str]]] = {
    t.AUDIT: [
        ("org_id", LOW), ("sequence", "UInt64"), ("event_id", ID), ("type", LOW),
        ("schema_version", "UInt16"), ("occurred_at", TIME), ("recorded_at", TIME),
        ("actor", "String"), ("source", LOW), ("source_event_id", "Nullable(String)"),
        ("correlation_id", "Nullable(String)"), ("causation_id", "Nullable(String)"),
        ("subject_kind", LOW), ("subject_id", ID), ("related_ids", "Array(String)"),
        ("data", "String"), ("prev_hash", "String"), ("hash", "String"),
    ],
    t.CHECK_INS: [
        ("org_id", LOW), ("key_result_id", ID), ("check_in_id", ID), ("sequence", "UInt64"),
        ("recorded_at", TIME), ("change", LOW), ("check_in_sequence", "UInt64"),
        ("check_in_recorded_at", TIME), ("occurred_at", TIME), ("kind", LOW),
        ("start", "Float64"), ("target", "Float64"), ("value", "Float64"),
        ("original_value", "Float64"), ("progress", "Float64"), ("attainment", "Float64"),
        ("confidence", "Nullable(Float64)"), ("comment", "Nullable(String)"),
        ("actor", "String"), ("source", LOW), ("corrected", "Bool"), ("retracted", "Bool"),
        ("reason", "Nullable(String)"),
    ],
    t.KEY_RESULTS: [
        ("org_id", LOW), ("key_result_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        *_KEY_RESULT_DEFINITION, ("weight", "Float64"), ("due_on", "Nullable(Date32)"),
        ("checkin_every_days", "UInt16"), ("retired", "Bool"),
    ],
    t.TARGETS: [
        ("org_id", LOW), ("key_result_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        ("effective_at", TIME), ("target", "Float64"), ("reason", "Nullable(String)"),
    ],
    t.OBJECTIVES: [
        ("org_id", LOW), ("objective_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        *_OBJECTIVE_STRUCTURE,
    ],
    t.OBJECTIVE_UPDATES: [
        ("org_id", LOW), ("objective_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
    ],
    t.THEMES: [
        ("org_id", LOW), ("theme_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        ("name", "String"), ("description", "Nullable(String)"), ("active", "Bool"),
    ],
    t.UNITS: [
        ("org_id", LOW), ("unit_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        ("name", "String"), ("kind", LOW), ("parent_unit_id", "Nullable(String)"),
        ("active", "Bool"),
    ],
    t.PERIODS: [
        ("org_id", LOW), ("period_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        ("name", "String"), ("starts_on", "Date32"), ("ends_on", "Date32"), ("closed", "Bool"),
    ],
    t.STRATEGY: [
        ("org_id", LOW), ("sequence", "UInt64"), ("recorded_at", TIME),
        ("mission", "Nullable(String)"), ("vision", "Nullable(String)"),
        ("strengths", "Array(String)"), ("weaknesses", "Array(String)"),
        ("opportunities", "Array(String)"), ("threats", "Array(String)"),
        ("competitors", "Array(Tuple(name String, strengths String, weaknesses String, "
                        "differentiation String))"),
        ("active_theme_ids", "Array(String)"), ("active_themes", "Array(String)"),
        ("review_verdict", "Nullable(String)"), ("review_notes", "Nullable(String)"),
        ("reviewer", "Nullable(String)"), ("reviewed_at", f"Nullable({TIME})"),
    ],
    t.REJECTIONS: [
        ("position", "UInt64"), ("recorded_at", TIME), ("reason_code", LOW),
        ("message", "String"), ("details", "String"), ("org_id", "Nullable(String)"),
        ("event_id", "Nullable(String)"), ("type", "Nullable(String)"),
        ("source", "Nullable(String)"), ("line", "Nullable(UInt64)"), ("raw", "String"),
        ("raw_length", "Nullable(UInt64)"), ("raw_sha256", "Nullable(String)"),
    ],
    t.PERIOD_GRADES: [
        ("org_id", LOW), ("period_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        ("closed_at", TIME), ("subject_kind", LOW), ("subject_id", ID), ("objective_id", ID),
        ("parent_objective_id", "Nullable(String)"), ("title", "String"),
        ("owner_unit_id", ID), ("kind", "Nullable(String)"), ("unit", "String"),
        ("lifecycle", LOW), ("weight", "Float64"), ("value", "Nullable(Float64)"),
        ("target", "Nullable(Float64)"), ("progress", "Float64"),
        ("attainment", "Nullable(Float64)"), ("expected_progress", "Float64"), ("status", LOW),
        ("confidence", "Nullable(Float64)"),
    ],
    t.KEY_RESULTS_NOW: [
        ("org_id", LOW), ("key_result_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        *_KEY_RESULT_DEFINITION, ("target", "Float64"), ("value", "Float64"),
        ("progress", "Float64"), ("attainment", "Float64"), ("confidence", "Nullable(Float64)"),
        ("last_check_in_at", f"Nullable({TIME})"), ("last_check_in_id", "Nullable(String)"),
        ("check_in_count", "UInt32"), ("weight", "Float64"), ("due_on", "Nullable(Date32)"),
        ("checkin_every_days", "UInt16"), ("retired", "Bool"),
    ],
    t.OBJECTIVES_NOW: [
        ("org_id", LOW), ("objective_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        *_OBJECTIVE_STRUCTURE, *_NUMBERS,
    ],
    t.CHECKPOINTS: [
        ("stream", LOW), ("org_id", LOW), ("position", "UInt64"), ("last_recorded_at", TIME),
    ],
    t.OWNERS: [
        ("org_id", LOW), ("subject_kind", LOW), ("subject_id", ID), ("sequence", "UInt64"),
        ("recorded_at", TIME), ("effective_at", TIME), ("owner", "Nullable(String)"),
        ("reason", "Nullable(String)"),
    ],
    t.KEY_RESULT_NUMBERS: [
        ("org_id", LOW), ("sequence", "UInt64"), ("key_result_id", ID),
        ("changed_sequence", "UInt64"), ("changed_at", TIME), ("target", "Float64"),
        ("value", "Float64"), ("progress", "Float64"), ("attainment", "Float64"),
        ("confidence", "Nullable(Float64)"), ("last_check_in_at", f"Nullable({TIME})"),
        ("last_check_in_id", "Nullable(String)"), ("check_in_count", "UInt32"),
    ],
    t.OBJECTIVE_STAMPS: [
        ("org_id", LOW), ("sequence", "UInt64"), ("objective_id", ID),
        ("changed_sequence", "UInt64"), ("changed_at", TIME),
    ],
    t.EVENT_TIMES: [("org_id", LOW), ("sequence", "UInt64"), ("recorded_at", TIME)],
}  # fmt: skip
"""Every table's columns and ClickHouse types, as the migrations leave them."""

SETTINGS_COLUMNS = [("name", "String"), ("value", "String"), ("updated_at", TIME)]
FOCUS_LIMIT_SQL = (
    f"ifNull((SELECT toUInt32OrNull(argMax(value, updated_at)) FROM {{db}}.{SETTINGS_TABLE} "
    "WHERE name = 'over_focus_limit'), 5)"
)


VIEW_SETTINGS = "join_algorithm = 'hash', use_query_condition_cache = 0"
"""Each view's settings. ``hash``: the default join (a concurrent hash join) took ~10 ms to
set up at each join of each read, whatever the rows. No query condition cache: it kept which
parts a view's filter on its cut of the ledger (a scalar subquery of ``{as_of}``) matched, and
gave them again for another ``as_of`` (a twin read as of one time, then of an earlier one,
answered nothing)."""


def _view(name: str, body: str) -> str:
    return f"CREATE OR REPLACE VIEW {{db}}.{name} AS {body} SETTINGS {VIEW_SETTINGS}"


def _history(table: str, order: str) -> str:
    return f"SELECT * FROM {{db}}.{table} FINAL ORDER BY {order}"


def _now(table: str) -> str:
    return f"(SELECT * FROM {{db}}.{table} FINAL)"


@cache
def view_statements() -> tuple[str, ...]:
    """The views BI tools read: each a plain ``SELECT`` away from the right answer."""
    db = "{db}"

    def latest(table: str) -> str:
        return sql.latest(db, table)

    return (
        _view("audit_history", _history(t.AUDIT, "org_id, sequence")),
        _view(
            "check_in_history",
            f"SELECT * EXCEPT (sequence, recorded_at, change), sequence AS as_of_sequence, "
            f"recorded_at AS updated_at, change AS last_change FROM {latest(t.CHECK_INS)}",
        ),
        _view("target_history", _history(t.TARGETS, "org_id, key_result_id, sequence")),
        _view("key_result_progress", sql.key_result_progress(_now(t.KEY_RESULTS_NOW), sql.NOW)),
        _view(
            "objective_progress",
            sql.objective_progress(_now(t.OBJECTIVES_NOW), sql.NOW, FOCUS_LIMIT_SQL),
        ),
        _view(
            "theme_coverage",
            sql.theme_coverage(_now(t.OBJECTIVES_NOW), latest(t.THEMES), latest(t.PERIODS)),
        ),
        _view("strategy_now", f"SELECT * FROM {latest(t.STRATEGY)}"),
        _view("themes", f"SELECT * FROM {latest(t.THEMES)}"),
        _view("org_units", f"SELECT * FROM {latest(t.UNITS)}"),
        _view("periods", f"SELECT * FROM {latest(t.PERIODS)}"),
        _view("period_results", sql.period_results(db, latest(t.PERIODS))),
        _view("rejection_history", _history(t.REJECTIONS, "position")),
        _view("owners", monitoring_views.owners()),
        _view("engagement", monitoring_views.engagement()),
        _view("progress_trend", monitoring_views.progress_trend()),
        _view("attention", monitoring_views.attention()),
        *parameterized_view_statements(),
    )


def _twin_view(name: str, body: str) -> str:
    """A parameterized view: its cut of the ledger (:func:`projections.sql.view_cuts`) named
    once."""
    return _view(
        name,
        f"WITH {sql.view_cuts('{db}')} AS {sql.VIEW_CUTS}, {sql.VIEW_REF_SQL} AS {sql.VIEW_REF} "
        f"{body}",
    )


def parameterized_view_statements() -> tuple[str, ...]:
    """``<view>_at(as_of = ..., at = ...)`` for every view: the answer as of a recorded time
    (and, where business time matters, at a business time), as the CLI's ``--as-of`` /
    ``--at`` give it. Both parameters may be left out (everything recorded; values as
    recorded)."""
    db = "{db}"
    where = sql.VIEW_FILTER

    def latest(table: str) -> str:
        return sql.latest(db, table, where)

    def history(table: str, order: str) -> str:
        return f"SELECT * FROM {db}.{table} FINAL WHERE {where} ORDER BY {order}"

    # A twin has the SQL of the twins it is built on written out, each read once, not their
    # names: the engine analyses a parameterized view's whole definition at each place a
    # statement names it, and again to learn its columns (so twins naming twins multiplied
    # it: ``attention_at`` cost ~1.4 s of CPU on an empty store, ``key_result_progress``
    # 15 ms). Relations only the structure matters to are read from the structures.
    key_result_progress = sql.key_result_progress(sql.key_results_at(db), sql.VIEW_REF)
    objective_progress = sql.objective_progress(
        sql.objectives_at(db), sql.VIEW_REF, FOCUS_LIMIT_SQL
    )
    themes = sql.latest_sorted(db, t.THEMES, where)
    periods = sql.latest_sorted(db, t.PERIODS, where)
    structures = sql.latest_sorted(db, t.OBJECTIVES, where)
    check_in_history = (
        "SELECT * EXCEPT (sequence, recorded_at, change), sequence AS as_of_sequence, "
        f"recorded_at AS updated_at, change AS last_change FROM {latest(t.CHECK_INS)}"
    )
    owners = monitoring_views.owners(where)
    sources = monitoring_views.Sources(
        key_result_progress=f"({key_result_progress})",
        key_results=sql.latest_sorted(db, t.KEY_RESULTS, where),
        objective_flags=(
            f"(SELECT *, {sql.objective_flags()} FROM (SELECT *, "
            f"{sql.over_focus_sql(FOCUS_LIMIT_SQL)} AS over_focus FROM {structures}))"
        ),
        objectives=structures,
        theme_coverage=sql.uncovered_themes(structures, themes, periods),
        periods=periods,
        owners=f"({owners})",
        coverage_ends_on=True,
        where=where,
        ref=sql.VIEW_REF,
    )
    return (
        _twin_view("audit_history_at", history(t.AUDIT, "org_id, sequence")),
        _twin_view("check_in_history_at", check_in_history),
        _twin_view("target_history_at", history(t.TARGETS, "org_id, key_result_id, sequence")),
        _twin_view(
            "key_result_progress_at",
            key_result_progress + " ORDER BY org_id, objective_id, key_result_id",
        ),
        _twin_view("objective_progress_at", objective_progress + " ORDER BY org_id, objective_id"),
        _twin_view(
            "theme_coverage_at",
            sql.theme_coverage(sql.objectives_at(db), themes, periods)
            + " ORDER BY org_id, period_id, theme_id",
        ),
        _twin_view("strategy_now_at", f"SELECT * FROM {latest(t.STRATEGY)}"),
        _twin_view("themes_at", f"SELECT * FROM {latest(t.THEMES)}"),
        _twin_view("org_units_at", f"SELECT * FROM {latest(t.UNITS)}"),
        _twin_view("periods_at", f"SELECT * FROM {latest(t.PERIODS)}"),
        _twin_view("period_results_at", sql.period_results(db, periods, where)),
        _view(
            "rejection_history_at",
            f"SELECT * FROM {db}.{t.REJECTIONS} FINAL WHERE {sql.AS_OF_PARAM} IS NULL "
            f"OR recorded_at <= {sql.AS_OF_PARAM} ORDER BY position",
        ),
        _twin_view("owners_at", owners),
        _twin_view("engagement_at", monitoring_views.engagement(sources)),
        _twin_view("progress_trend_at", monitoring_views.progress_trend(sources)),
        _twin_view("attention_at", monitoring_views.attention(sources)),
    )


@cache
def views_digest() -> str:
    """What the views' definitions are: when it changes, the store recreates them."""
    return hashlib.sha256("\n".join(view_statements()).encode()).hexdigest()


VIEWS = (
    "audit_history",
    "check_in_history",
    "target_history",
    "key_result_progress",
    "objective_progress",
    "theme_coverage",
    "strategy_now",
    "themes",
    "org_units",
    "periods",
    "period_results",
    "rejection_history",
    "owners",
    "engagement",
    "progress_trend",
    "attention",
)
"""What BI tools read (and what ``export-projections`` writes)."""

PARAMETERIZED_VIEWS = {view: f"{view}_at" for view in VIEWS}
"""Each view's parameterized twin, ``<view>_at(as_of = ..., at = ...)``: the same columns as
of a recorded time (``export-projections --as-of`` writes these)."""
