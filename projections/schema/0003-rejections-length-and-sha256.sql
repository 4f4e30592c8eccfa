-- Migration 3: rejections: length and SHA-256 of a submission kept in part.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).

ALTER TABLE {db}.rejections ADD COLUMN IF NOT EXISTS raw_length Nullable(UInt64);

ALTER TABLE {db}.rejections ADD COLUMN IF NOT EXISTS raw_sha256 Nullable(String);

CREATE OR REPLACE VIEW {db}.rejection_history AS SELECT * FROM {db}.rejections FINAL ORDER BY position;

