-- Migration 5 (issue 11): the grades of closed periods; the ledger is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- period_grades holds each key result's and objective's grade at each close of a period. An
-- objective's confidence now rolls up by its rollup mode (children count), so the numbers in
-- objectives_now and the notes in objective_updates change: every projected table is emptied
-- with the checkpoints, and the next catch-up projects the whole ledger (and its rejections)
-- into them again.

TRUNCATE TABLE IF EXISTS {db}.audit_events;

TRUNCATE TABLE IF EXISTS {db}.check_in_versions;

TRUNCATE TABLE IF EXISTS {db}.key_result_versions;

TRUNCATE TABLE IF EXISTS {db}.key_result_targets;

TRUNCATE TABLE IF EXISTS {db}.objective_versions;

TRUNCATE TABLE IF EXISTS {db}.objective_updates;

TRUNCATE TABLE IF EXISTS {db}.theme_versions;

TRUNCATE TABLE IF EXISTS {db}.unit_versions;

TRUNCATE TABLE IF EXISTS {db}.period_versions;

TRUNCATE TABLE IF EXISTS {db}.strategy_versions;

TRUNCATE TABLE IF EXISTS {db}.key_results_now;

TRUNCATE TABLE IF EXISTS {db}.objectives_now;

TRUNCATE TABLE IF EXISTS {db}.rejections;

TRUNCATE TABLE IF EXISTS {db}.checkpoints;

CREATE TABLE IF NOT EXISTS {db}.period_grades (
    org_id LowCardinality(String),
    period_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    closed_at DateTime64(6, 'UTC'),
    subject_kind LowCardinality(String),
    subject_id String,
    objective_id String,
    parent_objective_id Nullable(String),
    title String,
    owner_unit_id String,
    kind Nullable(String),
    unit String,
    lifecycle LowCardinality(String),
    weight Float64,
    value Nullable(Float64),
    target Nullable(Float64),
    progress Float64,
    attainment Nullable(Float64),
    expected_progress Float64,
    status LowCardinality(String),
    confidence Nullable(Float64)
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, period_id, subject_kind, subject_id, sequence);
