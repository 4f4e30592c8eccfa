"""The row contract between the projector and the store: table names and column order.

Rows are tuples in this column order. Times (the ``DateTime64`` columns) are integers:
microseconds since 1970-01-01 UTC. The DDL in ``projections/migrations.py`` declares the same
columns with their ClickHouse types (a test checks they agree).

Two kinds of tables:

- *history* tables: every row is a version of something, stamped with the ledger ``sequence``
  of the event that made it. Their rows are a function of the ledger prefix alone, whatever
  the batch boundaries: incremental projection and a rebuild give the same rows.
- *current-state* tables (:data:`CURRENT`): the latest version of each key result and
  objective, one row per entity per batch that changed it. Only the latest (``FINAL``, or the
  highest ``sequence``) is an answer; that one is the same whatever the batches.
"""

from typing import Any

Row = tuple[Any, ...]
RowBatch = dict[str, list[Row]]
"""Table name -> rows to insert. The store inserts ``CHECKPOINTS`` last."""

AUDIT = "audit_events"
CHECK_INS = "check_in_versions"
KEY_RESULTS = "key_result_versions"
TARGETS = "key_result_targets"
OBJECTIVES = "objective_versions"
OBJECTIVE_UPDATES = "objective_updates"
THEMES = "theme_versions"
UNITS = "unit_versions"
PERIODS = "period_versions"
STRATEGY = "strategy_versions"
REJECTIONS = "rejections"
KEY_RESULTS_NOW = "key_results_now"
OBJECTIVES_NOW = "objectives_now"
PERIOD_GRADES = "period_grades"
CHECKPOINTS = "checkpoints"
OWNERS = "owner_versions"
KEY_RESULT_NUMBERS = "key_result_numbers"
OBJECTIVE_STAMPS = "objective_stamps"
EVENT_TIMES = "event_times"
"""Each event's ``recorded_at`` by ``(org_id, sequence)``, with a minmax index on the time:
``--as-of T`` finds the last sequence recorded by T in about one granule, whatever the ledger's
size (``audit_events`` is sorted by subject)."""
CHECK_IN_DAYS = "check_in_days"
"""Not the projector's: a materialized view (:data:`CHECK_IN_DAYS_FILLER`) fills it from
every insert into :data:`CHECK_INS` (migration 11): the check-ins per key result per business
day, which ``--at`` reads with a check (:func:`projections.queries._measured`)."""
CHECK_IN_DAYS_FILLER = "check_in_days_filler"

SNAPSHOT_EVERY = 8192
"""Every this many events of an org (at each sequence that is a multiple of it), the projector
writes every key result's numbers (:data:`KEY_RESULT_NUMBERS`) and every objective's last
change (:data:`OBJECTIVE_STAMPS`): an answer as of a sequence reads the snapshot at the
greatest multiple at or below it and the rows after it, never the whole history. Read at each
call (tests make it small); changing it needs the projections made anew (a migration)."""

KEY_RESULT_NOW_COLUMNS = (
    "org_id", "key_result_id", "sequence", "recorded_at", "objective_id", "owner_unit_id",
    "period_id", "period_starts_on", "period_ends_on", "title", "kind", "unit", "start",
    "current_target", "target", "value", "progress", "attainment", "confidence",
    "last_check_in_at", "last_check_in_id", "check_in_count", "weight", "due_on",
    "checkin_every_days", "retired",
)  # fmt: skip
KEY_RESULT_NUMBER_COLUMNS = (
    "org_id", "sequence", "key_result_id", "changed_sequence", "changed_at", "target", "value",
    "progress", "attainment", "confidence", "last_check_in_at", "last_check_in_id",
    "check_in_count",
)  # fmt: skip
"""A key result's numbers after an event that changed it (``sequence`` = ``changed_sequence``),
or at a snapshot (``sequence``: the snapshot's; ``changed_*``: the event that last changed it)."""
OBJECTIVE_STRUCTURE_COLUMNS = (
    "title", "description", "owner_unit_id", "period_id", "period_starts_on", "period_ends_on",
    "lifecycle", "rollup", "weight", "parent_objective_id", "ancestor_ids", "depth",
    "theme_ids", "reached_theme_ids", "contributes_to", "depends_on", "orphan",
    "parent_inactive", "unit_objective_count", "key_result_count", "child_count",
)  # fmt: skip
"""What an objective's cascade and membership say: changed only by structural events."""
STAMP = ("sequence", "recorded_at")

COLUMNS: dict[str, tuple[str, ...]] = {
    AUDIT: (
        "org_id", "sequence", "event_id", "type", "schema_version", "occurred_at",
        "recorded_at", "actor", "source", "source_event_id", "correlation_id", "causation_id",
        "subject_kind", "subject_id", "related_ids", "data", "prev_hash", "hash",
    ),
    CHECK_INS: (
        "org_id", "key_result_id", "check_in_id", "sequence", "recorded_at", "change",
        "check_in_sequence", "check_in_recorded_at", "occurred_at", "kind", "start", "target",
        "value", "original_value", "progress", "attainment", "confidence", "comment", "actor",
        "source", "corrected", "retracted", "reason",
    ),
    KEY_RESULTS: (
        "org_id", "key_result_id", "sequence", "recorded_at", "objective_id", "owner_unit_id",
        "period_id", "period_starts_on", "period_ends_on", "title", "kind", "unit", "start",
        "current_target", "weight", "due_on", "checkin_every_days", "retired",
    ),
    TARGETS: ("org_id", "key_result_id", "sequence", "recorded_at", "effective_at", "target",
              "reason"),
    OBJECTIVES: ("org_id", "objective_id", *STAMP, *OBJECTIVE_STRUCTURE_COLUMNS),
    OBJECTIVE_UPDATES: ("org_id", "objective_id", *STAMP),
    THEMES: ("org_id", "theme_id", "sequence", "recorded_at", "name", "description", "active"),
    UNITS: ("org_id", "unit_id", "sequence", "recorded_at", "name", "kind", "parent_unit_id",
            "active"),
    PERIODS: ("org_id", "period_id", "sequence", "recorded_at", "name", "starts_on", "ends_on",
              "closed"),
    STRATEGY: (
        "org_id", "sequence", "recorded_at", "mission", "vision", "strengths", "weaknesses",
        "opportunities", "threats", "competitors", "active_theme_ids", "active_themes",
        "review_verdict", "review_notes", "reviewer", "reviewed_at",
    ),
    REJECTIONS: (
        "position", "recorded_at", "reason_code", "message", "details", "org_id", "event_id",
        "type", "source", "line", "raw", "raw_length", "raw_sha256",
    ),
    PERIOD_GRADES: (
        "org_id", "period_id", "sequence", "recorded_at", "closed_at", "subject_kind",
        "subject_id", "objective_id", "parent_objective_id", "title", "owner_unit_id", "kind",
        "unit", "lifecycle", "weight", "value", "target", "progress", "attainment",
        "expected_progress", "status", "confidence",
    ),
    KEY_RESULTS_NOW: KEY_RESULT_NOW_COLUMNS,
    OBJECTIVES_NOW: (
        "org_id", "objective_id", *STAMP, *OBJECTIVE_STRUCTURE_COLUMNS, "progress", "confidence",
    ),
    CHECKPOINTS: ("stream", "org_id", "position", "last_recorded_at"),
    OWNERS: ("org_id", "subject_kind", "subject_id", "sequence", "recorded_at", "effective_at",
             "owner", "reason"),
    KEY_RESULT_NUMBERS: KEY_RESULT_NUMBER_COLUMNS,
    OBJECTIVE_STAMPS: ("org_id", "sequence", "objective_id", "changed_sequence", "changed_at"),
    EVENT_TIMES: ("org_id", "sequence", "recorded_at"),
}  # fmt: skip

CURRENT = (KEY_RESULTS_NOW, OBJECTIVES_NOW)
"""The current-state tables: compare them after ``FINAL``, never row for row."""
HISTORY = tuple(name for name in COLUMNS if name not in (*CURRENT, CHECKPOINTS))
"""The history tables: a function of the ledger prefix, row for row."""

LEDGER_STREAM = "ledger"
REJECTION_STREAM = "rejections"
BEGUN_STREAM = "ledger-begun"
"""Checkpoint rows inserted before a commit's history rows: where the commit will end, or (a
worker's commits) beyond it, set ahead. One beyond its org's ``LEDGER_STREAM`` checkpoint says
that a commit may have been cut short: a discard looks for rows beyond the checkpoint."""
OWNER_STREAM = "ledger-owner"
"""Checkpoint rows of the Kafka projector, one per ledger partition (:func:`owner_key`): the
claim of its latest owner, a number above every earlier claim on it. A discard of unfinished
commits and a commit's ledger checkpoints go in only while their worker's claim is still the
latest (a paused worker waking up cannot delete or hide what the next owner projected)."""


def owner_key(partition: int) -> str:
    """The ``org_id`` column of a partition's ``OWNER_STREAM`` row."""
    return f"partition-{partition}"


def empty_batch() -> RowBatch:
    return {table: [] for table in COLUMNS}


def merge(into: RowBatch, other: RowBatch) -> RowBatch:
    for table, rows in other.items():
        into.setdefault(table, []).extend(rows)
    return into
