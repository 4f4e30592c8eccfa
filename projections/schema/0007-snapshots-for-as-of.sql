-- Migration 7 (issue 9, as-of queries): snapshots for answers as of a ledger sequence; the
-- ledger is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- key_result_numbers holds a key result's numbers after each event that changes it, and every
-- key result's numbers at each multiple of processors.tables.SNAPSHOT_EVERY; objective_stamps
-- every objective's last change at those multiples; objective_updates is sorted by sequence.
-- An answer as of a sequence then reads the snapshot at the greatest multiple at or below it
-- and the rows after it, a range of these tables, instead of each entity's whole history.
-- The rows of the other tables do not change, but the new tables need the whole ledger: every
-- projected table is emptied with the checkpoints and the next catch-up projects the ledger
-- (and its rejections) again.

TRUNCATE TABLE IF EXISTS {db}.audit_events;

TRUNCATE TABLE IF EXISTS {db}.check_in_versions;

TRUNCATE TABLE IF EXISTS {db}.key_result_versions;

TRUNCATE TABLE IF EXISTS {db}.key_result_targets;

TRUNCATE TABLE IF EXISTS {db}.objective_versions;

DROP TABLE IF EXISTS {db}.objective_updates;

TRUNCATE TABLE IF EXISTS {db}.theme_versions;

TRUNCATE TABLE IF EXISTS {db}.unit_versions;

TRUNCATE TABLE IF EXISTS {db}.period_versions;

TRUNCATE TABLE IF EXISTS {db}.strategy_versions;

TRUNCATE TABLE IF EXISTS {db}.key_results_now;

TRUNCATE TABLE IF EXISTS {db}.objectives_now;

TRUNCATE TABLE IF EXISTS {db}.period_grades;

TRUNCATE TABLE IF EXISTS {db}.owner_versions;

TRUNCATE TABLE IF EXISTS {db}.rejections;

TRUNCATE TABLE IF EXISTS {db}.checkpoints;

CREATE TABLE IF NOT EXISTS {db}.objective_updates (
    org_id LowCardinality(String),
    objective_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence, objective_id);

CREATE TABLE IF NOT EXISTS {db}.key_result_numbers (
    org_id LowCardinality(String),
    sequence UInt64,
    key_result_id String,
    changed_sequence UInt64,
    changed_at DateTime64(6, 'UTC'),
    target Float64,
    value Float64,
    progress Float64,
    attainment Float64,
    confidence Nullable(Float64),
    last_check_in_at Nullable(DateTime64(6, 'UTC')),
    last_check_in_id Nullable(String),
    check_in_count UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence, key_result_id);

CREATE TABLE IF NOT EXISTS {db}.objective_stamps (
    org_id LowCardinality(String),
    sequence UInt64,
    objective_id String,
    changed_sequence UInt64,
    changed_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence, objective_id);
