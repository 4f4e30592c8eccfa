-- Migration 10 (issue 9: `progress --at` p95 <= 100 ms at 1,000,000 check-ins): the
-- check-ins' versions also sorted by check-in, in a projection of their table. Nothing is
-- projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- `--at` reads the last version of each key result's current check-in by the check-in's
-- sequence (projections/sql.py, current_versions). The table is sorted by key result and
-- business time, so that read scanned the sequence column of every version known (48-55 ms at
-- 1,000,000 check-ins); from the projection it is a few ranges of check-in sequences (the
-- current check-ins at one moment were recorded about then): 14 marks of 256 rows, 7-8 ms.
-- ClickHouse keeps a projection part by part, as the rows are inserted and merged, and
-- chooses it for a query when it reads fewer marks (a part without it is read as a table).
-- By default it refuses a ReplacingMergeTree merge and a DELETE on a table with a projection:
-- - a merge merges the projection's parts as they are (`ignore`): the history tables hold no
--   row twice but for a worker's commit inserted after a takeover (identical rows), and the
--   read takes each check-in's last version (LIMIT 1 BY), so a row twice changes no answer.
--   (`rebuild`, the projection made again from the merged rows, held every column of up to
--   ~1M rows at once in chDB 4.4: the first catch-up at 1,000,000 events peaked at 611 MiB
--   instead of ~500.)
-- - a lightweight DELETE drops it from the parts it marks (`drop`; `rebuild` left the deleted
--   rows in the projection in chDB 4.4, so reads from it would have seen them), and such a part
--   never merges again with one that has it ("Parts have different projection sets"): the
--   store discards a commit cut short from this table with a mutation (ALTER TABLE ... DELETE),
--   which keeps the projection in the parts it rewrites.
-- MATERIALIZE makes it for the rows already there (a mutation; `mutations_sync` waits). A part
-- marked by an earlier lightweight DELETE would not get it: the marks are applied first.

ALTER TABLE {db}.check_in_versions MODIFY SETTING deduplicate_merge_projection_mode = 'ignore',
    lightweight_mutation_projection_mode = 'drop';

ALTER TABLE {db}.check_in_versions ADD PROJECTION IF NOT EXISTS by_check_in (
    SELECT org_id, check_in_sequence, sequence, check_in_id, value, confidence
    ORDER BY org_id, check_in_sequence, sequence
);

ALTER TABLE {db}.check_in_versions APPLY DELETED MASK SETTINGS mutations_sync = 2;

ALTER TABLE {db}.check_in_versions MATERIALIZE PROJECTION by_check_in
    SETTINGS mutations_sync = 2;
