-- Migration 12 ("cost must not grow with history"): the bounds of (org_id, sequence) of each
-- granule, in every history table whose sort key does not start with them. Nothing is
-- projected again.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- A takeover of a partition reads, for the orgs taken over, the history rows beyond their
-- checkpoints (ProjectionStore._beyond: the rows of a commit cut short). These tables are
-- sorted by org, then by subject: each granule holds rows of one subject from all over its
-- org's history, so the primary key kept the read to the orgs and no further, and it read
-- every row of theirs (1,000,000 check-ins over 12 orgs: 5,150,901 rows, ~750 ms of CPU). A
-- minmax index on (org_id, sequence) keeps each granule's smallest and largest of both: the
-- committed rows are all at or before their org's checkpoint, so the read skips their granules
-- and reads only those that hold a row beyond (the store writes the condition as one
-- `org_id = o AND sequence > checkpoint` per org, which the index analysis can use: 37
-- granules, ~130 ms, most of it the analysis of those 12 terms). The
-- tables sorted by (org_id, sequence) (key_result_numbers, objective_updates,
-- objective_stamps, strategy_versions, event_times) need none: their primary key does it.
-- MATERIALIZE builds it for the parts already there (a mutation that writes only the index:
-- the projection by_check_in of check_in_versions stays, tests/projections/test_migrations.py).
-- Its price is at insert: ~2.6% more CPU for a first catch-up of 1,000,000 check-ins, more for
-- one insert of many rows in one block (chDB's minmax over a string column; ARCHITECTURE.md).

ALTER TABLE {db}.audit_events ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.check_in_versions ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.key_result_versions ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.key_result_targets ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.objective_versions ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.theme_versions ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.unit_versions ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.period_versions ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.period_grades ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.owner_versions ADD INDEX IF NOT EXISTS org_sequence (org_id, sequence)
    TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.audit_events MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.check_in_versions MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.key_result_versions MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.key_result_targets MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.objective_versions MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.theme_versions MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.unit_versions MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.period_versions MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.period_grades MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;

ALTER TABLE {db}.owner_versions MATERIALIZE INDEX org_sequence SETTINGS mutations_sync = 2;
