-- Migration 14 (issue 9: `progress --as-of` p95 <= 60 ms): finer granules in the tables an
-- as-of answer reads by ranges of sequences. Nothing is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- An as-of answer reads event_times (the last sequence recorded by T: in reverse order, the
-- first granule the minmax index on recorded_at keeps), key_result_numbers and
-- objective_updates (the events from the snapshot at B up to S, at most SNAPSHOT_EVERY =
-- 8,192 of them) and objective_stamps (the snapshot at B: one row per objective). With
-- granules of 8,192 rows each read was one to two whole granules whatever it needed (the
-- lookup 8,192 rows for one; the numbers 16,384 for ~5,600; the stamps 9,240 for 210). With
-- granules of 1,024 rows (256 for the stamps, one snapshot of an org's objectives) each reads
-- about what it needs: at 1,000,000 check-ins, in chDB alone, the lookup 7.1 -> 4.3 ms, the
-- numbers 8.4 -> 7.0, the last changes 6.3 -> ~5.5 (docs/projections.md, "Throughput").
--
-- index_granularity cannot be altered: each table is made again beside the old one, filled
-- from it, and swapped with it (EXCHANGE TABLES: atomic; it needs an Atomic database, the
-- default, and a file system that can exchange two names), then the old one is dropped. The
-- copy runs on one thread in blocks of 131,072 rows (by default it gathered ~1,000,000 rows a
-- block: +300 MiB of the process at 1,000,000 check-ins; now ~+60).
--
-- EXCLUSIVE (`Migration.exclusive`): it runs with no other writer. A row a writer inserted
-- into the old table between its copy and the swap would be lost, and two processes running
-- it at once would drop each other's copies. The embedded store has one process; a store
-- shared by several (`serve-store`, a ClickHouse server) is not migrated by a worker's or a
-- command's open while it is pending: they refuse, naming `okr-ledger init`, which an
-- operator runs with the workers stopped. Run again after being cut short, each table starts
-- over from its first statement: the DROP removes a half-filled new table, or the old one if
-- the swap was done (the live table then holds every row); the new one is then copied from
-- the live one and swapped again, the same rows. At 1,000,000 check-ins it takes about 1.5 s
-- (docs/projections.md, "Migrations").

DROP TABLE IF EXISTS {db}.event_times_14 SYNC;

CREATE TABLE IF NOT EXISTS {db}.event_times_14 (
    `org_id` LowCardinality(String),
    `sequence` UInt64,
    `recorded_at` DateTime64(6, 'UTC'),
    INDEX recorded_at_idx recorded_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence)
SETTINGS index_granularity = 1024, max_compress_block_size = 131072, min_compress_block_size = 32768,
    merge_max_block_size = 1024, merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

INSERT INTO {db}.event_times_14 SELECT * FROM {db}.event_times
SETTINGS max_threads = 1, max_insert_threads = 1, max_block_size = 8192,
    min_insert_block_size_rows = 131072, min_insert_block_size_bytes = 0;

EXCHANGE TABLES {db}.event_times AND {db}.event_times_14;

DROP TABLE IF EXISTS {db}.event_times_14 SYNC;

DROP TABLE IF EXISTS {db}.key_result_numbers_14 SYNC;

CREATE TABLE IF NOT EXISTS {db}.key_result_numbers_14 (
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
    `check_in_count` UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence, key_result_id)
SETTINGS index_granularity = 1024, max_compress_block_size = 131072, min_compress_block_size = 32768,
    merge_max_block_size = 1024, merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

INSERT INTO {db}.key_result_numbers_14 SELECT * FROM {db}.key_result_numbers
SETTINGS max_threads = 1, max_insert_threads = 1, max_block_size = 8192,
    min_insert_block_size_rows = 131072, min_insert_block_size_bytes = 0;

EXCHANGE TABLES {db}.key_result_numbers AND {db}.key_result_numbers_14;

DROP TABLE IF EXISTS {db}.key_result_numbers_14 SYNC;

DROP TABLE IF EXISTS {db}.objective_updates_14 SYNC;

CREATE TABLE IF NOT EXISTS {db}.objective_updates_14 (
    `org_id` LowCardinality(String),
    `objective_id` String,
    `sequence` UInt64,
    `recorded_at` DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence, objective_id)
SETTINGS index_granularity = 1024, max_compress_block_size = 131072, min_compress_block_size = 32768,
    merge_max_block_size = 1024, merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

INSERT INTO {db}.objective_updates_14 SELECT * FROM {db}.objective_updates
SETTINGS max_threads = 1, max_insert_threads = 1, max_block_size = 8192,
    min_insert_block_size_rows = 131072, min_insert_block_size_bytes = 0;

EXCHANGE TABLES {db}.objective_updates AND {db}.objective_updates_14;

DROP TABLE IF EXISTS {db}.objective_updates_14 SYNC;

DROP TABLE IF EXISTS {db}.objective_stamps_14 SYNC;

CREATE TABLE IF NOT EXISTS {db}.objective_stamps_14 (
    `org_id` LowCardinality(String),
    `sequence` UInt64,
    `objective_id` String,
    `changed_sequence` UInt64,
    `changed_at` DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence, objective_id)
SETTINGS index_granularity = 256, max_compress_block_size = 131072, min_compress_block_size = 32768,
    merge_max_block_size = 1024, merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

INSERT INTO {db}.objective_stamps_14 SELECT * FROM {db}.objective_stamps
SETTINGS max_threads = 1, max_insert_threads = 1, max_block_size = 8192,
    min_insert_block_size_rows = 131072, min_insert_block_size_bytes = 0;

EXCHANGE TABLES {db}.objective_stamps AND {db}.objective_stamps_14;

DROP TABLE IF EXISTS {db}.objective_stamps_14 SYNC;
