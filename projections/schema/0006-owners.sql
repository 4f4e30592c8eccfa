-- Migration 6: owners of objectives and key results (issue 11).
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- One row per owner named or changed: at creation (ObjectiveCreated / KeyResultDefined with
-- an owner) and by ObjectiveOwnerChanged / KeyResultOwnerChanged. No ledger before this
-- migration names an owner, so nothing is projected again.

CREATE TABLE IF NOT EXISTS {db}.owner_versions (
    org_id LowCardinality(String),
    subject_kind LowCardinality(String),
    subject_id String,
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    effective_at DateTime64(6, 'UTC'),
    owner Nullable(String),
    reason Nullable(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, subject_kind, subject_id, sequence);
