-- Migration 9 (issue 9: peak RSS <= 500 MB for any command at 1,000,000 events): smaller
-- write buffers and merge blocks, in every table. Nothing is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- In chDB the background merges of the history tables took up to ~95 MiB of the process at
-- once during a first catch-up (system.merges: each merge holds a compression buffer of
-- max_compress_block_size, 1 MiB by default, per column of the part it writes): compression
-- blocks of 32-128 KiB and merge blocks of 1,024 rows brought the first catch-up's peak RSS
-- down by 10-15 MiB (benchmarks/profiling/memory_profile.py), the parts and the queries as
-- before. Inserts write with the same buffers. (At most 5 parts a merge took a few MiB more
-- off but left three times the parts, and queries 50% slower: not done.)

ALTER TABLE {db}.audit_events MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.check_in_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.key_result_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.key_result_targets MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.objective_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.objective_updates MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.theme_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.unit_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.period_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.strategy_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.rejections MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.period_grades MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.key_results_now MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.objectives_now MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.checkpoints MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.owner_versions MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.key_result_numbers MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.objective_stamps MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;

ALTER TABLE {db}.event_times MODIFY SETTING max_compress_block_size = 131072,
    min_compress_block_size = 32768, merge_max_block_size = 1024;
