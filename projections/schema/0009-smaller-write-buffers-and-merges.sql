-- Migration 9 (issue 9: peak RSS <= 500 MB for any command at 1,000,000 events): smaller
-- write buffers and merges, in every table. Nothing is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- In chDB the background merges of the history tables took up to ~95 MiB of the process at
-- once during a first catch-up (system.merges: each merge holds a compression buffer of
-- max_compress_block_size, 1 MiB by default, per column of the part it writes, and reads
-- every part merged): compression blocks of 32-128 KiB, merge blocks of 1,024 rows and at
-- most 5 parts a merge brought it to ~50 MiB and the first catch-up's peak RSS down by
-- 15-25 MiB (benchmarks/profiling/memory_profile.py). Inserts write with the same buffers.

ALTER TABLE {db}.audit_events MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.check_in_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.key_result_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.key_result_targets MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.objective_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.objective_updates MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.theme_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.unit_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.period_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.strategy_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.rejections MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.period_grades MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.key_results_now MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.objectives_now MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.checkpoints MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.owner_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.key_result_numbers MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.objective_stamps MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;

ALTER TABLE {db}.event_times MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024,
    max_parts_to_merge_at_once = 5;
