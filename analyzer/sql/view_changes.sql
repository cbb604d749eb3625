-- changes: postgres_changes frames the client received, flattened (realtime-protocol.md §4):
-- one row per frame with table, type, commit_timestamp, errors and the row id, plus
--   problem  NULL when the payload is valid, else why not (the validator's verdict when
--            STORE/verdicts holds one for this frame, else change_problem() of macros.sql)
--   kind     what is wrong, for the rules: NULL, 'too_large' (error 413), 'unauthorized' (401),
--            'server_error' (other errors), 'null_record', 'empty_record', 'missing_field', 'wrong_type'
-- The JSON is parsed once here; queries should use these columns, not the payload.
CREATE OR REPLACE VIEW changes AS
WITH pc AS (
    SELECT
        ts, session_id, seq, source, topic, payload,
        json_extract(payload, ['$.data', '$.ids', '$.data.record', '$.data.old_record', '$.data.errors',
                               '$.data.commit_timestamp', '$.data.schema', '$.data.table', '$.data.columns']) AS j,
        json_extract_string(payload, ['$.data.type', '$.data.schema', '$.data.table', '$.data.commit_timestamp',
                                      '$.data.record.id', '$.data.old_record.id']) AS s
    FROM frames
    WHERE event = 'postgres_changes' AND direction = 'in'
),
checked AS (
    SELECT
        pc.ts, pc.session_id, pc.seq, pc.source, pc.topic,
        s[2] AS schema_name, s[3] AS table_name,
        CASE WHEN s[2] IS NOT NULL AND s[3] IS NOT NULL THEN s[2] || '.' || s[3] END AS relation,
        s[1] AS type, s[4] AS commit_timestamp,
        coalesce(s[5], s[6]) AS record_id,
        CASE WHEN j[5] IS NOT NULL AND json_type(j[5]) <> 'NULL' THEN j[5]::VARCHAR END AS errors,
        coalesce(
            CASE WHEN v.valid THEN NULL WHEN v.valid = false THEN coalesce(v.error_path || ': ', '') || coalesce(v.error, 'invalid') END,
            CASE WHEN v.valid IS NULL THEN change_problem(pc.payload, j[1], j[2], s[1], j[3], j[4], j[5], j[6], j[7], j[8], j[9]) END
        ) AS problem,
        v.valid IS NOT NULL AS from_validator,
        pc.payload
    FROM pc LEFT JOIN verdicts v ON v.session_id = pc.session_id AND v.seq = pc.seq
)
SELECT
    ts, session_id, seq, source, topic, schema_name, table_name, relation, type, commit_timestamp,
    record_id, errors, problem,
    CASE
        WHEN problem IS NULL THEN NULL
        WHEN contains(errors, '413') THEN 'too_large'
        WHEN contains(errors, '401') OR contains(errors, 'Unauthorized') THEN 'unauthorized'
        WHEN errors IS NOT NULL THEN 'server_error'
        WHEN problem LIKE '%: null or missing' AND starts_with(problem, 'record') THEN 'null_record'
        WHEN problem LIKE '%: empty' THEN 'empty_record'
        WHEN problem LIKE '%missing%' THEN 'missing_field'
        ELSE 'wrong_type'
    END AS kind,
    from_validator, payload
FROM checked;
