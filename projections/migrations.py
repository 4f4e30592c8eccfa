"""The projection schema as versioned migrations. ``{db}`` is replaced by the database name.

Each statement is idempotent (``IF NOT EXISTS``, ``CREATE OR REPLACE``), so a migration that
was cut short can run again. Applied versions are recorded in ``schema_migrations``.
History tables are ReplacingMergeTree: a row projected twice (after a crash) has the same
sorting key as the first and collapses with it; the views never show it twice.
"""

from dataclasses import dataclass

from processors import tables as t
from projections import sql

TIME = "DateTime64(6, 'UTC')"
ID = "String"
LOW = "LowCardinality(String)"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _table(name: str, columns: list[tuple[str, str]], order_by: str, engine: str = "") -> str:
    body = ",\n    ".join(f"{column} {kind}" for column, kind in columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {{db}}.{name} (\n    {body}\n)\n"
        f"ENGINE = {engine or 'ReplacingMergeTree'}\nORDER BY ({order_by})"
    )


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
        ("objective_id", ID), ("owner_unit_id", ID), ("period_id", ID),
        ("period_starts_on", "Date32"), ("period_ends_on", "Date32"), ("title", "String"),
        ("kind", LOW), ("unit", LOW), ("start", "Float64"), ("current_target", "Float64"),
        ("target", "Float64"), ("value", "Float64"), ("progress", "Float64"),
        ("attainment", "Float64"), ("confidence", "Nullable(Float64)"),
        ("last_check_in_at", f"Nullable({TIME})"), ("last_check_in_id", "Nullable(String)"),
        ("check_in_count", "UInt32"), ("weight", "Float64"), ("due_on", "Nullable(Date32)"),
        ("checkin_every_days", "UInt16"), ("retired", "Bool"),
    ],
    t.TARGETS: [
        ("org_id", LOW), ("key_result_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        ("effective_at", TIME), ("target", "Float64"), ("reason", "Nullable(String)"),
    ],
    t.OBJECTIVES: [
        ("org_id", LOW), ("objective_id", ID), ("sequence", "UInt64"), ("recorded_at", TIME),
        ("title", "String"), ("description", "Nullable(String)"), ("owner_unit_id", ID),
        ("period_id", ID), ("period_starts_on", "Date32"), ("period_ends_on", "Date32"),
        ("lifecycle", LOW), ("rollup", LOW), ("weight", "Float64"),
        ("parent_objective_id", "Nullable(String)"), ("ancestor_ids", "Array(String)"),
        ("depth", "UInt16"), ("theme_ids", "Array(String)"),
        ("reached_theme_ids", "Array(String)"), ("contributes_to", "Array(String)"),
        ("depends_on", "Array(String)"), ("orphan", "Bool"), ("parent_inactive", "Bool"),
        ("unit_objective_count", "UInt32"), ("progress", "Float64"),
        ("confidence", "Nullable(Float64)"), ("key_result_count", "UInt32"),
        ("child_count", "UInt32"),
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
    t.CHECKPOINTS: [
        ("stream", LOW), ("org_id", LOW), ("position", "UInt64"), ("last_recorded_at", TIME),
    ],
}  # fmt: skip

_ORDER_BY = {
    t.AUDIT: "org_id, sequence",
    t.CHECK_INS: "org_id, key_result_id, check_in_id, sequence",
    t.KEY_RESULTS: "org_id, key_result_id, sequence",
    t.TARGETS: "org_id, key_result_id, sequence",
    t.OBJECTIVES: "org_id, objective_id, sequence",
    t.THEMES: "org_id, theme_id, sequence",
    t.UNITS: "org_id, unit_id, sequence",
    t.PERIODS: "org_id, period_id, sequence",
    t.STRATEGY: "org_id, sequence",
    t.REJECTIONS: "position",
    t.CHECKPOINTS: "stream, org_id",
}

SETTINGS_TABLE = "projection_settings"
MIGRATIONS_TABLE = "schema_migrations"
FOCUS_LIMIT_SQL = (
    f"ifNull((SELECT toUInt32OrNull(argMax(value, updated_at)) FROM {{db}}.{SETTINGS_TABLE} "
    "WHERE name = 'over_focus_limit'), 5)"
)


def _base_tables() -> tuple[str, ...]:
    statements = []
    for table, columns in COLUMN_TYPES.items():
        engine = "ReplacingMergeTree(position)" if table == t.CHECKPOINTS else ""
        statements.append(_table(table, columns, _ORDER_BY[table], engine))
    statements.append(
        "ALTER TABLE {db}.audit_events ADD INDEX IF NOT EXISTS subject_idx subject_id "
        "TYPE bloom_filter GRANULARITY 4"
    )
    statements.append(
        _table(
            SETTINGS_TABLE,
            [("name", "String"), ("value", "String"), ("updated_at", TIME)],
            "name",
            "ReplacingMergeTree(updated_at)",
        )
    )
    return tuple(statements)


def _view(name: str, body: str) -> str:
    return f"CREATE OR REPLACE VIEW {{db}}.{name} AS {body}"


def _history(table: str, order: str) -> str:
    return f"SELECT * FROM {{db}}.{table} FINAL ORDER BY {order}"


def _views() -> tuple[str, ...]:
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
        _view("key_result_progress", sql.key_result_progress(latest(t.KEY_RESULTS), sql.NOW)),
        _view(
            "objective_progress",
            sql.objective_progress(latest(t.OBJECTIVES), sql.NOW, FOCUS_LIMIT_SQL),
        ),
        _view(
            "theme_coverage",
            sql.theme_coverage(latest(t.OBJECTIVES), latest(t.THEMES), latest(t.PERIODS)),
        ),
        _view("strategy_now", f"SELECT * FROM {latest(t.STRATEGY)}"),
        _view("themes", f"SELECT * FROM {latest(t.THEMES)}"),
        _view("org_units", f"SELECT * FROM {latest(t.UNITS)}"),
        _view("periods", f"SELECT * FROM {latest(t.PERIODS)}"),
        _view("rejection_history", _history(t.REJECTIONS, "position")),
    )


def _whole_submission_of_rejections() -> tuple[str, ...]:
    """Stores made before version 3 lack the two columns (a new store has them from 1)."""
    added = [
        f"ALTER TABLE {{db}}.{t.REJECTIONS} ADD COLUMN IF NOT EXISTS {column} {kind}"
        for column, kind in COLUMN_TYPES[t.REJECTIONS][-2:]
    ]
    return (*added, _view("rejection_history", _history(t.REJECTIONS, "position")))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "history tables", _base_tables()),
    Migration(2, "views for BI tools", _views()),
    Migration(3, "rejections: length and SHA-256 of a submission kept in part",
              _whole_submission_of_rejections()),
)  # fmt: skip

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
    "rejection_history",
)
"""What BI tools read (and what ``export-projections`` writes)."""
