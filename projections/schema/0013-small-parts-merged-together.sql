-- Migration 13 (issue 9: `progress` after one new event <= 300 ms): a table's small new parts
-- are merged together, not each into the table's largest part. Nothing is projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- A commit of one event adds a part of one row to each table it writes. ClickHouse's merge
-- selector takes a range of parts and by default drops from its right end the parts smaller
-- than 1% of the range (merge_selector_enable_heuristic_to_remove_small_parts_at_right): in
-- a table whose parts are all small (under a few MiB: 10,000 check-ins), the range it kept
-- was the largest part and the oldest one-row part, so each commit's row cost a merge that
-- wrote the whole table again (check_in_versions with its projection, check_in_days with its
-- aggregates...; the largest part at merge level 48 after 48 commits). Without it the same
-- selector takes the one-row parts with it once every few commits (3 merges in 12 commits):
-- at 10,000 check-ins, a one-event catch-up in a long-lived process 152 / 170 -> 134 / 107 ms
-- of CPU, all threads (A B B A, docs/projections.md). Tables of larger parts (1,000,000
-- check-ins) merge their small parts among themselves either way. The rows are the same;
-- only which parts a merge takes changes. Needs a ClickHouse that has the setting (chDB 4.4's
-- 26.9 has it).

ALTER TABLE {db}.audit_events MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.check_in_versions MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.key_result_versions MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.key_result_targets MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.objective_versions MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.objective_updates MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.theme_versions MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.unit_versions MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.period_versions MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.strategy_versions MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.rejections MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.period_grades MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.key_results_now MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.objectives_now MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.checkpoints MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.owner_versions MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.key_result_numbers MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.objective_stamps MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.event_times MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;

ALTER TABLE {db}.check_in_days MODIFY SETTING
    merge_selector_enable_heuristic_to_remove_small_parts_at_right = 0;
