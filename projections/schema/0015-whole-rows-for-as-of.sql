-- Migration 15 (issue 9: `progress --as-of` p95 <= 60 ms): a key result's whole row in
-- key_result_numbers (its definition beside its numbers) and an objective's structure beside
-- its stamp in objective_stamps, so that an as-of answer reads a key result from one range of
-- one table and an objective's structure and last change in one statement: 2 statements
-- fewer (docs/projections.md, "Throughput"). Nothing is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- Every event that writes a key result's definition (key_result_versions) writes its numbers
-- row too, at the same sequence; a row of numbers gets the definition as of its sequence (the
-- latest version at or before it: ASOF JOIN), a snapshot's row the one as of the snapshot.
-- An objective's stamp at a snapshot gets its structure as of the snapshot (the latest
-- version in objective_versions at or before it), which is what the projector had emitted.
--
-- As migration 14, each table is made again beside the old one, filled from it, swapped with
-- it (EXCHANGE TABLES) and the old one dropped; the copy runs on one thread in blocks of
-- 32,768 rows (rows twice as wide as migration 14's: in blocks of 131,072 the process peaked
-- at ~670 MiB at 1,000,000 check-ins, ~450 in these). EXCLUSIVE (`Migration.exclusive`): no other writer while it runs (a row
-- inserted into the old table between its copy and the swap would be lost; two processes
-- would drop each other's copies); a shared store's open refuses while it is pending, naming
-- `okr-ledger init`. Run again after being cut short, each table starts over from its first
-- statement (the same rows).

DROP TABLE IF EXISTS {db}.key_result_numbers_15 SYNC;

CREATE TABLE IF NOT EXISTS {db}.key_result_numbers_15 (
    `org_id` LowCardinality(String),
    `sequence` UInt64,
    `key_result_id` String,
    `changed_sequence` UInt64,
    `changed_at` DateTime64(6, 'UTC'),
    `target` Float64,
    `value` Float64,
    `progress` Float64,
    `attainment` Float64,
    `confidence` Nullable(Float64),
    `last_check_in_at` Nullable(DateTime64(6, 'UTC')),
    `last_check_in_id` Nullable(String),
    `check_in_count` UInt32,
    `objective_id` String,
    `owner_unit_id` String,
    `period_id` String,
    `period_starts_on` Date32,
    `period_ends_on` Date32,
    `title` String,
    `kind` LowCardinality(String),
    `unit` LowCardinality(String),
    `start` Float64,
    `current_target` Float64,
    `weight` Float64,
    `due_on` Nullable(Date32),
    `checkin_every_days` UInt16,
    `retired` Bool
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence, key_result_id)
SETTINGS index_granularity = 1024, max_compress_block_size = 131072, min_compress_block_size = 32768,
    merge_max_block_size = 1024, merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

INSERT INTO {db}.key_result_numbers_15
SELECT n.org_id, n.sequence, n.key_result_id, n.changed_sequence, n.changed_at, n.target, n.value,
    n.progress, n.attainment, n.confidence, n.last_check_in_at, n.last_check_in_id,
    n.check_in_count, d.objective_id, d.owner_unit_id, d.period_id, d.period_starts_on,
    d.period_ends_on, d.title, d.kind, d.unit, d.start, d.current_target, d.weight, d.due_on,
    d.checkin_every_days, d.retired
FROM {db}.key_result_numbers AS n
ASOF INNER JOIN {db}.key_result_versions AS d
    ON d.org_id = n.org_id AND d.key_result_id = n.key_result_id AND n.sequence >= d.sequence
SETTINGS max_threads = 1, max_insert_threads = 1, max_block_size = 8192,
    min_insert_block_size_rows = 32768, min_insert_block_size_bytes = 0;

EXCHANGE TABLES {db}.key_result_numbers AND {db}.key_result_numbers_15;

DROP TABLE IF EXISTS {db}.key_result_numbers_15 SYNC;

DROP TABLE IF EXISTS {db}.objective_stamps_15 SYNC;

CREATE TABLE IF NOT EXISTS {db}.objective_stamps_15 (
    `org_id` LowCardinality(String),
    `sequence` UInt64,
    `objective_id` String,
    `changed_sequence` UInt64,
    `changed_at` DateTime64(6, 'UTC'),
    `title` String,
    `description` Nullable(String),
    `owner_unit_id` String,
    `period_id` String,
    `period_starts_on` Date32,
    `period_ends_on` Date32,
    `lifecycle` LowCardinality(String),
    `rollup` LowCardinality(String),
    `weight` Float64,
    `parent_objective_id` Nullable(String),
    `ancestor_ids` Array(String),
    `depth` UInt16,
    `theme_ids` Array(String),
    `reached_theme_ids` Array(String),
    `contributes_to` Array(String),
    `depends_on` Array(String),
    `orphan` Bool,
    `parent_inactive` Bool,
    `unit_objective_count` UInt32,
    `key_result_count` UInt32,
    `child_count` UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence, objective_id)
SETTINGS index_granularity = 256, max_compress_block_size = 131072, min_compress_block_size = 32768,
    merge_max_block_size = 1024, merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

INSERT INTO {db}.objective_stamps_15
SELECT s.org_id, s.sequence, s.objective_id, s.changed_sequence, s.changed_at, v.title,
    v.description, v.owner_unit_id, v.period_id, v.period_starts_on, v.period_ends_on,
    v.lifecycle, v.rollup, v.weight, v.parent_objective_id, v.ancestor_ids, v.depth, v.theme_ids,
    v.reached_theme_ids, v.contributes_to, v.depends_on, v.orphan, v.parent_inactive,
    v.unit_objective_count, v.key_result_count, v.child_count
FROM {db}.objective_stamps AS s
ASOF INNER JOIN {db}.objective_versions AS v
    ON v.org_id = s.org_id AND v.objective_id = s.objective_id AND s.sequence >= v.sequence
SETTINGS max_threads = 1, max_insert_threads = 1, max_block_size = 8192,
    min_insert_block_size_rows = 32768, min_insert_block_size_bytes = 0;

EXCHANGE TABLES {db}.objective_stamps AND {db}.objective_stamps_15;

DROP TABLE IF EXISTS {db}.objective_stamps_15 SYNC;
