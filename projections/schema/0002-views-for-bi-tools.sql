-- Migration 2: views for BI tools.
-- Released: never edit (tests/projections/test_migrations.py pins its digest).

CREATE OR REPLACE VIEW {db}.audit_history AS SELECT * FROM {db}.audit_events FINAL ORDER BY org_id, sequence;

CREATE OR REPLACE VIEW {db}.check_in_history AS SELECT * EXCEPT (sequence, recorded_at, change), sequence AS as_of_sequence, recorded_at AS updated_at, change AS last_change FROM (SELECT * FROM {db}.check_in_versions WHERE (org_id, check_in_id, sequence) IN (SELECT org_id, check_in_id, max(sequence) FROM {db}.check_in_versions  GROUP BY org_id, check_in_id) LIMIT 1 BY org_id, check_in_id);

CREATE OR REPLACE VIEW {db}.target_history AS SELECT * FROM {db}.key_result_targets FINAL ORDER BY org_id, key_result_id, sequence;

CREATE OR REPLACE VIEW {db}.key_result_progress AS 
SELECT org_id, key_result_id, objective_id, owner_unit_id, period_id, title, kind, unit,
    start, target, current_target, value, progress, attainment,
    if(kind IN ('stay_above', 'stay_below'), 1., greatest(0., least(1., (toUnixTimestamp64Micro(now64(6)) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)) / (((toInt64(toUnixTimestamp(toDateTime(period_ends_on, 'UTC'))) * 1000000) + 86400000000) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000))))) AS expected_progress,
    multiIf((if(kind IN ('stay_above', 'stay_below'), 1., greatest(0., least(1., (toUnixTimestamp64Micro(now64(6)) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)) / (((toInt64(toUnixTimestamp(toDateTime(period_ends_on, 'UTC'))) * 1000000) + 86400000000) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000))))) - progress) <= 0.1, 'on_track', (if(kind IN ('stay_above', 'stay_below'), 1., greatest(0., least(1., (toUnixTimestamp64Micro(now64(6)) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)) / (((toInt64(toUnixTimestamp(toDateTime(period_ends_on, 'UTC'))) * 1000000) + 86400000000) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000))))) - progress) <= 0.25, 'at_risk', 'off_track') AS status,
    confidence, last_check_in_at, last_check_in_id, check_in_count,
    toBool(NOT retired AND least(toUnixTimestamp64Micro(now64(6)), ((toInt64(toUnixTimestamp(toDateTime(period_ends_on, 'UTC'))) * 1000000) + 86400000000)) - ifNull(toUnixTimestamp64Micro(last_check_in_at), (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)) > toInt64(checkin_every_days) * 86400000000) AS stale,
    weight, due_on, checkin_every_days, retired, period_starts_on, period_ends_on,
    sequence AS as_of_sequence, recorded_at AS updated_at
FROM (SELECT * FROM {db}.key_result_versions WHERE (org_id, key_result_id, sequence) IN (SELECT org_id, key_result_id, max(sequence) FROM {db}.key_result_versions  GROUP BY org_id, key_result_id) LIMIT 1 BY org_id, key_result_id);

CREATE OR REPLACE VIEW {db}.objective_progress AS 
SELECT org_id, objective_id, title, description, owner_unit_id, period_id, lifecycle, rollup,
    weight, parent_objective_id, ancestor_ids, depth, theme_ids, reached_theme_ids,
    contributes_to, depends_on, progress,
    greatest(0., least(1., (toUnixTimestamp64Micro(now64(6)) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)) / (((toInt64(toUnixTimestamp(toDateTime(period_ends_on, 'UTC'))) * 1000000) + 86400000000) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)))) AS expected_progress,
    multiIf((greatest(0., least(1., (toUnixTimestamp64Micro(now64(6)) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)) / (((toInt64(toUnixTimestamp(toDateTime(period_ends_on, 'UTC'))) * 1000000) + 86400000000) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)))) - progress) <= 0.1, 'on_track', (greatest(0., least(1., (toUnixTimestamp64Micro(now64(6)) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)) / (((toInt64(toUnixTimestamp(toDateTime(period_ends_on, 'UTC'))) * 1000000) + 86400000000) - (toInt64(toUnixTimestamp(toDateTime(period_starts_on, 'UTC'))) * 1000000)))) - progress) <= 0.25, 'at_risk', 'off_track') AS status,
    confidence, key_result_count, child_count, unit_objective_count,
    orphan, parent_inactive, toBool(lifecycle != 'abandoned' AND unit_objective_count > ifNull((SELECT toUInt32OrNull(argMax(value, updated_at)) FROM {db}.projection_settings WHERE name = 'over_focus_limit'), 5)) AS over_focus,
    arrayFilter(f -> f != '', [if(orphan, 'orphan', ''),
        if(parent_inactive, 'parent_inactive', ''), if(toBool(lifecycle != 'abandoned' AND unit_objective_count > ifNull((SELECT toUInt32OrNull(argMax(value, updated_at)) FROM {db}.projection_settings WHERE name = 'over_focus_limit'), 5)), 'over_focus', '')]) AS flags,
    period_starts_on, period_ends_on, sequence AS as_of_sequence, recorded_at AS updated_at
FROM (SELECT * FROM {db}.objective_versions WHERE (org_id, objective_id, sequence) IN (SELECT org_id, objective_id, max(sequence) FROM {db}.objective_versions  GROUP BY org_id, objective_id) LIMIT 1 BY org_id, objective_id);

CREATE OR REPLACE VIEW {db}.theme_coverage AS 
SELECT th.org_id AS org_id, p.period_id AS period_id, th.theme_id AS theme_id,
    th.name AS theme_name,
    r.objective_count AS objective_count,
    r.direct_objective_count AS direct_objective_count,
    r.key_result_count AS key_result_count,
    r.progress AS progress,
    toBool(r.objective_count = 0) AS uncovered
FROM (SELECT * FROM (SELECT * FROM {db}.theme_versions WHERE (org_id, theme_id, sequence) IN (SELECT org_id, theme_id, max(sequence) FROM {db}.theme_versions  GROUP BY org_id, theme_id) LIMIT 1 BY org_id, theme_id) WHERE active) AS th
INNER JOIN (SELECT * FROM {db}.period_versions WHERE (org_id, period_id, sequence) IN (SELECT org_id, period_id, max(sequence) FROM {db}.period_versions  GROUP BY org_id, period_id) LIMIT 1 BY org_id, period_id) AS p ON p.org_id = th.org_id
LEFT JOIN (
    SELECT org_id, period_id, theme_id,
        count() AS objective_count,
        countIf(direct) AS direct_objective_count,
        sum(key_result_count) AS key_result_count,
        if(sumIf(weight, direct) > 0,
           sumIf(weight * progress, direct) / sumIf(weight, direct), 0.) AS progress
    FROM (
        SELECT org_id, period_id, objective_id, weight, progress, key_result_count,
            arrayJoin(reached_theme_ids) AS theme_id, has(theme_ids, theme_id) AS direct
        FROM (SELECT * FROM {db}.objective_versions WHERE (org_id, objective_id, sequence) IN (SELECT org_id, objective_id, max(sequence) FROM {db}.objective_versions  GROUP BY org_id, objective_id) LIMIT 1 BY org_id, objective_id) WHERE lifecycle != 'abandoned'
    )
    GROUP BY org_id, period_id, theme_id
) AS r ON r.org_id = th.org_id AND r.period_id = p.period_id AND r.theme_id = th.theme_id;

CREATE OR REPLACE VIEW {db}.strategy_now AS SELECT * FROM (SELECT * FROM {db}.strategy_versions WHERE (org_id, org_id, sequence) IN (SELECT org_id, org_id, max(sequence) FROM {db}.strategy_versions  GROUP BY org_id, org_id) LIMIT 1 BY org_id, org_id);

CREATE OR REPLACE VIEW {db}.themes AS SELECT * FROM (SELECT * FROM {db}.theme_versions WHERE (org_id, theme_id, sequence) IN (SELECT org_id, theme_id, max(sequence) FROM {db}.theme_versions  GROUP BY org_id, theme_id) LIMIT 1 BY org_id, theme_id);

CREATE OR REPLACE VIEW {db}.org_units AS SELECT * FROM (SELECT * FROM {db}.unit_versions WHERE (org_id, unit_id, sequence) IN (SELECT org_id, unit_id, max(sequence) FROM {db}.unit_versions  GROUP BY org_id, unit_id) LIMIT 1 BY org_id, unit_id);

CREATE OR REPLACE VIEW {db}.periods AS SELECT * FROM (SELECT * FROM {db}.period_versions WHERE (org_id, period_id, sequence) IN (SELECT org_id, period_id, max(sequence) FROM {db}.period_versions  GROUP BY org_id, period_id) LIMIT 1 BY org_id, period_id);

CREATE OR REPLACE VIEW {db}.rejection_history AS SELECT * FROM {db}.rejections FINAL ORDER BY position;

