-- Migration 11 (issue 9: `progress --at` p95 <= 100 ms at 1,000,000 check-ins): the check-ins
-- counted per key result per business day, in a table a materialized view fills from every
-- insert into check_in_versions. Nothing is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- `--at T` (projections/queries.py, _measured) read every check-in measured by T (~500,000 at
-- mid-period at 1,000,000 check-ins); it now reads the days: ~91,000 rows (1,000 key results
-- over a quarter), whatever the number of check-ins, and T's own day's keys.
-- Per (org, business day in UTC, key result): the check-in versions recorded and retracted,
-- the key (projections/sql.py CHECK_IN_KEY, written out here as there) of the latest recorded
-- and of the latest retracted, the last sequence of any version, and the keys recorded and
-- retracted (sets: T's own day is read from them). Partial rows (one per insert) are summed,
-- maxed and united by merges and by the query's GROUP BY, so an answer never needs a merge.
-- The table is a cache with a check, never the only source. A view sees every insert and no
-- delete, so a row can be counted here twice, never not at all: rows inserted twice (a paused
-- worker's commit after a takeover), the rows of a commit cut short that the store deleted
-- from check_in_versions and projected again, and rows inserted while this migration ran
-- (the view is made first, then the table emptied and filled from check_in_versions: a row
-- inserted in between is counted by both, once too often, never not at all).
-- So a key result is read from its days (projections/queries.py _measured) only if its last
-- sequence there is within the answer's ledger cut and both sums are exact: the retracted
-- rows as many as the distinct keys retracted (a check-in is retracted at most once; a set
-- does not grow with a duplicate), and recorded less retracted equal to the projector's own
-- live count (`check_in_count`); rows being only ever added, both equalities hold only if no
-- row is there twice. Otherwise it is read from its check-ins, as before.
-- The one insert this cannot see: one into check_in_versions that began before the view was
-- made (ClickHouse binds an insert's views when it begins) and ended after the table was
-- filled, on a store written to while it migrates; even then only a recorded row missed
-- there can hide a wrong count (the check's arithmetic, docs/projections.md "`--at T`").
-- Run again after being cut short, it counts every row once (TRUNCATE then INSERT). The write
-- buffers and merge blocks are migration 9's (memory).

CREATE TABLE IF NOT EXISTS {db}.check_in_days (
    org_id LowCardinality(String),
    day Date32,
    key_result_id String,
    recorded SimpleAggregateFunction(sum, UInt64),
    retracted SimpleAggregateFunction(sum, UInt64),
    latest SimpleAggregateFunction(max, UInt128),
    latest_gone SimpleAggregateFunction(max, UInt128),
    newest SimpleAggregateFunction(max, UInt64),
    recorded_keys SimpleAggregateFunction(groupUniqArrayArray, Array(UInt128)),
    gone_keys SimpleAggregateFunction(groupUniqArrayArray, Array(UInt128))
)
ENGINE = AggregatingMergeTree
ORDER BY (org_id, day, key_result_id)
SETTINGS max_compress_block_size = 131072, min_compress_block_size = 32768,
    merge_max_block_size = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.check_in_days_filler TO {db}.check_in_days AS
SELECT org_id, toDate32(occurred_at) AS day, key_result_id,
    countIf(change = 'recorded') AS recorded,
    countIf(change = 'retracted') AS retracted,
    maxIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64) + check_in_sequence,
        change = 'recorded') AS latest,
    maxIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64) + check_in_sequence,
        change = 'retracted') AS latest_gone,
    max(sequence) AS newest,
    groupUniqArrayIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64)
        + check_in_sequence, change = 'recorded') AS recorded_keys,
    groupUniqArrayIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64)
        + check_in_sequence, change = 'retracted') AS gone_keys
FROM {db}.check_in_versions
GROUP BY org_id, day, key_result_id;

TRUNCATE TABLE IF EXISTS {db}.check_in_days;

INSERT INTO {db}.check_in_days
SELECT org_id, toDate32(occurred_at) AS day, key_result_id,
    countIf(change = 'recorded') AS recorded,
    countIf(change = 'retracted') AS retracted,
    maxIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64) + check_in_sequence,
        change = 'recorded') AS latest,
    maxIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64) + check_in_sequence,
        change = 'retracted') AS latest_gone,
    max(sequence) AS newest,
    groupUniqArrayIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64)
        + check_in_sequence, change = 'recorded') AS recorded_keys,
    groupUniqArrayIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64)
        + check_in_sequence, change = 'retracted') AS gone_keys
FROM {db}.check_in_versions
GROUP BY org_id, day, key_result_id;
