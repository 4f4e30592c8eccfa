-- Migration 4: tables for the questions asked; the ledger is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- Each key result and objective gets a current-state table beside its history; a key
-- result's numbers have no history of their own (its check-ins' is theirs), and an objective's
-- numbers only a note of when they changed (objective_updates). The audit is ordered by
-- subject, the check-ins by business time. So the history tables are made anew and the
-- checkpoints emptied: the next catch-up projects the whole ledger into them. The rejections
-- are kept (projected again, they collapse with the rows there).

DROP TABLE IF EXISTS {db}.audit_events;

DROP TABLE IF EXISTS {db}.check_in_versions;

DROP TABLE IF EXISTS {db}.key_result_versions;

DROP TABLE IF EXISTS {db}.key_result_targets;

DROP TABLE IF EXISTS {db}.objective_versions;

DROP TABLE IF EXISTS {db}.theme_versions;

DROP TABLE IF EXISTS {db}.unit_versions;

DROP TABLE IF EXISTS {db}.period_versions;

DROP TABLE IF EXISTS {db}.strategy_versions;

TRUNCATE TABLE IF EXISTS {db}.checkpoints;

CREATE TABLE IF NOT EXISTS {db}.audit_events (
    org_id LowCardinality(String),
    sequence UInt64,
    event_id String,
    type LowCardinality(String),
    schema_version UInt16,
    occurred_at DateTime64(6, 'UTC'),
    recorded_at DateTime64(6, 'UTC'),
    actor String,
    source LowCardinality(String),
    source_event_id Nullable(String),
    correlation_id Nullable(String),
    causation_id Nullable(String),
    subject_kind LowCardinality(String),
    subject_id String,
    related_ids Array(String),
    data String,
    prev_hash String,
    hash String,
    INDEX related_idx related_ids TYPE bloom_filter GRANULARITY 1
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, subject_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.check_in_versions (
    org_id LowCardinality(String),
    key_result_id String,
    check_in_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    change LowCardinality(String),
    check_in_sequence UInt64,
    check_in_recorded_at DateTime64(6, 'UTC'),
    occurred_at DateTime64(6, 'UTC'),
    kind LowCardinality(String),
    start Float64,
    target Float64,
    value Float64,
    original_value Float64,
    progress Float64,
    attainment Float64,
    confidence Nullable(Float64),
    comment Nullable(String),
    actor String,
    source LowCardinality(String),
    corrected Bool,
    retracted Bool,
    reason Nullable(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, key_result_id, occurred_at, check_in_sequence, sequence)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS {db}.key_result_versions (
    org_id LowCardinality(String),
    key_result_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    objective_id String,
    owner_unit_id String,
    period_id String,
    period_starts_on Date32,
    period_ends_on Date32,
    title String,
    kind LowCardinality(String),
    unit LowCardinality(String),
    start Float64,
    current_target Float64,
    weight Float64,
    due_on Nullable(Date32),
    checkin_every_days UInt16,
    retired Bool
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, key_result_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.key_result_targets (
    org_id LowCardinality(String),
    key_result_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    effective_at DateTime64(6, 'UTC'),
    target Float64,
    reason Nullable(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, key_result_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.objective_versions (
    org_id LowCardinality(String),
    objective_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    title String,
    description Nullable(String),
    owner_unit_id String,
    period_id String,
    period_starts_on Date32,
    period_ends_on Date32,
    lifecycle LowCardinality(String),
    rollup LowCardinality(String),
    weight Float64,
    parent_objective_id Nullable(String),
    ancestor_ids Array(String),
    depth UInt16,
    theme_ids Array(String),
    reached_theme_ids Array(String),
    contributes_to Array(String),
    depends_on Array(String),
    orphan Bool,
    parent_inactive Bool,
    unit_objective_count UInt32,
    key_result_count UInt32,
    child_count UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, objective_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.objective_updates (
    org_id LowCardinality(String),
    objective_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, objective_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.theme_versions (
    org_id LowCardinality(String),
    theme_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    name String,
    description Nullable(String),
    active Bool
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, theme_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.unit_versions (
    org_id LowCardinality(String),
    unit_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    name String,
    kind LowCardinality(String),
    parent_unit_id Nullable(String),
    active Bool
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, unit_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.period_versions (
    org_id LowCardinality(String),
    period_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    name String,
    starts_on Date32,
    ends_on Date32,
    closed Bool
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, period_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.strategy_versions (
    org_id LowCardinality(String),
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    mission Nullable(String),
    vision Nullable(String),
    strengths Array(String),
    weaknesses Array(String),
    opportunities Array(String),
    threats Array(String),
    competitors Array(Tuple(name String, strengths String, weaknesses String, differentiation String)),
    active_theme_ids Array(String),
    active_themes Array(String),
    review_verdict Nullable(String),
    review_notes Nullable(String),
    reviewer Nullable(String),
    reviewed_at Nullable(DateTime64(6, 'UTC'))
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence);

CREATE TABLE IF NOT EXISTS {db}.key_results_now (
    org_id LowCardinality(String),
    key_result_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    objective_id String,
    owner_unit_id String,
    period_id String,
    period_starts_on Date32,
    period_ends_on Date32,
    title String,
    kind LowCardinality(String),
    unit LowCardinality(String),
    start Float64,
    current_target Float64,
    target Float64,
    value Float64,
    progress Float64,
    attainment Float64,
    confidence Nullable(Float64),
    last_check_in_at Nullable(DateTime64(6, 'UTC')),
    last_check_in_id Nullable(String),
    check_in_count UInt32,
    weight Float64,
    due_on Nullable(Date32),
    checkin_every_days UInt16,
    retired Bool
)
ENGINE = ReplacingMergeTree(sequence)
ORDER BY (org_id, key_result_id);

CREATE TABLE IF NOT EXISTS {db}.objectives_now (
    org_id LowCardinality(String),
    objective_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    title String,
    description Nullable(String),
    owner_unit_id String,
    period_id String,
    period_starts_on Date32,
    period_ends_on Date32,
    lifecycle LowCardinality(String),
    rollup LowCardinality(String),
    weight Float64,
    parent_objective_id Nullable(String),
    ancestor_ids Array(String),
    depth UInt16,
    theme_ids Array(String),
    reached_theme_ids Array(String),
    contributes_to Array(String),
    depends_on Array(String),
    orphan Bool,
    parent_inactive Bool,
    unit_objective_count UInt32,
    key_result_count UInt32,
    child_count UInt32,
    progress Float64,
    confidence Nullable(Float64)
)
ENGINE = ReplacingMergeTree(sequence)
ORDER BY (org_id, objective_id);
