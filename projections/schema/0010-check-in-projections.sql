-- Migration 10 (issue 9: `progress --at` p95 <= 100 ms at 1,000,000 check-ins): the
-- check-ins' versions also sorted by check-in and by business time, and counted per key result
-- per business day, in three projections of their table. Nothing is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- `--at T` (projections/sql.py, check_in_days, check_ins_on and current_versions):
-- - by_day: per key result per business day, the check-ins recorded and retracted, the last
--   sequence and the latest check-in's key (sql.CHECK_IN_KEY, written out here as there):
--   the days before T's are read from it (~91,000 rows at 1,000,000 check-ins over 91 days,
--   instead of every check-in measured by T: 500,000 at mid-period);
-- - by_time: the versions by business time: T's own day up to T is one range (~6,000 rows);
-- - by_check_in: the last version of each current check-in, by its sequence: a few ranges
--   (the current check-ins at one moment were recorded about then; 14 marks of 256 rows),
--   where the table (sorted by key result, then business time) had its sequence column of
--   every version scanned (48-55 ms).
-- ClickHouse keeps a projection part by part, as the rows are inserted and merged, and
-- chooses it for a query when it reads fewer marks (a part without it is read as a table).
-- By default it refuses a ReplacingMergeTree merge and a DELETE on a table with a projection:
-- a merge makes it again from the merged rows (`rebuild`); the DELETE of a commit cut short
-- drops it from the parts that had such rows (`drop`; the next merge makes it again). Its
-- `rebuild` there left the deleted rows in the projection (chDB 4.4 / ClickHouse 26.9), so
-- answers from it would have counted them. MATERIALIZE makes it for the rows already there
-- (a mutation; `mutations_sync` waits for it).

ALTER TABLE {db}.check_in_versions MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild',
    lightweight_mutation_projection_mode = 'drop';

ALTER TABLE {db}.check_in_versions ADD PROJECTION IF NOT EXISTS by_check_in (
    SELECT org_id, check_in_sequence, sequence, check_in_id, value, confidence
    ORDER BY org_id, check_in_sequence, sequence
);

ALTER TABLE {db}.check_in_versions ADD PROJECTION IF NOT EXISTS by_time (
    SELECT org_id, occurred_at, check_in_sequence, sequence, key_result_id, change
    ORDER BY org_id, occurred_at, check_in_sequence, sequence
);

ALTER TABLE {db}.check_in_versions ADD PROJECTION IF NOT EXISTS by_day (
    SELECT org_id, toDate32(occurred_at), key_result_id,
        countIf(change = 'recorded'), countIf(change = 'retracted'), max(sequence),
        maxIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64) + check_in_sequence,
            change = 'recorded'),
        maxIf(bitShiftLeft(toUInt128(toUnixTimestamp64Micro(occurred_at)), 64) + check_in_sequence,
            change = 'retracted')
    GROUP BY org_id, toDate32(occurred_at), key_result_id
);

ALTER TABLE {db}.check_in_versions MATERIALIZE PROJECTION by_check_in
    SETTINGS mutations_sync = 2;

ALTER TABLE {db}.check_in_versions MATERIALIZE PROJECTION by_time
    SETTINGS mutations_sync = 2;

ALTER TABLE {db}.check_in_versions MATERIALIZE PROJECTION by_day
    SETTINGS mutations_sync = 2;
