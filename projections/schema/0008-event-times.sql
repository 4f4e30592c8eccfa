-- Migration 8 (issue 9, as-of queries): the last sequence recorded by a time, read in about
-- one granule whatever the ledger's size.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).
--
-- event_times holds each event's recorded_at by (org_id, sequence), with a minmax index on
-- recorded_at: `--as-of T` reads it in reverse sequence order (ORDER BY sequence DESC LIMIT 1)
-- and the index skips every granule whose times are all after T, so the first granule read
-- holds the answer. It is exact whatever the order of recorded_at along the sequence (a clock
-- stepped back only makes the index skip less). audit_events, sorted by subject, had to be
-- read whole for the org. The projector writes a row per event from now on; this migration
-- fills the table from audit_events (the rows the projector would have written) and empties
-- nothing. Run again after being cut short, it inserts only what is missing.

CREATE TABLE IF NOT EXISTS {db}.event_times (
    org_id LowCardinality(String),
    sequence UInt64,
    recorded_at DateTime64(6, 'UTC'),
    INDEX recorded_at_idx recorded_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, sequence);

INSERT INTO {db}.event_times (org_id, sequence, recorded_at)
SELECT org_id, sequence, any(recorded_at) FROM {db}.audit_events
WHERE (org_id, sequence) NOT IN (SELECT org_id, sequence FROM {db}.event_times)
GROUP BY org_id, sequence
ORDER BY org_id, sequence;
