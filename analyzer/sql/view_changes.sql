-- changes: postgres_changes frames the client received, flattened (realtime-protocol.md §4):
-- one row per frame with table, type, commit_timestamp, errors and the row id, plus
--   problem  NULL when the payload is valid, else why not (the validator's verdict when
--            STORE/verdicts holds one for this frame, else change_problem() of macros.sql)
--   kind     what is wrong, for the rules: NULL, 'too_large' (error 413), 'unauthorized' (401),
--            'server_error' (other errors), 'null_record', 'empty_record', 'missing_field',
--            'wrong_type', 'undecodable', 'too_deep'; from the verdict's error_kind when there is one
-- The JSON is parsed once here, by one json_extract with a list of paths (change_paths() of
-- macros.sql): queries should use these columns, not the payload.
CREATE OR REPLACE VIEW changes AS
WITH pc AS (
    SELECT ts, session_id, seq, source, topic, payload,
           json_extract(payload, change_paths('$'))::VARCHAR[] AS j
    FROM frames
    WHERE event = 'postgres_changes' AND direction = 'in'
),
pieces AS (
    SELECT ts, session_id, seq, source, topic, payload,
           j[1] AS ids, j[2] AS typj, json_piece_text(j[2]) AS typ, j[3] AS sch, j[4] AS tab, j[5] AS cts,
           json_piece_text(j[3]) AS schema_name, json_piece_text(j[4]) AS table_name,
           j[6] AS rec, j[7] AS old, j[8] AS errs, j[9] AS cols,
           coalesce(json_piece_text(j[10]), json_piece_text(j[11])) AS record_id,
           -- a piece under $.data proves $.data an object (and the payload one); else ask the text
           coalesce(j[2], j[3], j[4], j[5], j[6], j[7], j[8], j[9]) IS NOT NULL AS data_seen
    FROM pc
),
checked AS (
    SELECT
        p.ts, p.session_id, p.seq, p.source, p.topic,
        p.schema_name, p.table_name, p.schema_name || '.' || p.table_name AS relation,
        p.typ AS type, json_piece_text(p.cts) AS commit_timestamp,
        p.record_id,
        CASE WHEN p.errs IS NOT NULL AND p.errs <> 'null' THEN p.errs END AS errors,
        coalesce(
            CASE WHEN v.valid THEN NULL WHEN v.valid = false THEN coalesce(v.error_path || ': ', '') || coalesce(v.error, 'invalid') END,
            CASE WHEN v.valid IS NULL THEN change_problem(
                CASE WHEN p.data_seen OR p.ids IS NOT NULL THEN 'OBJECT' ELSE json_type(p.payload) END,
                CASE WHEN p.data_seen THEN 'OBJECT' ELSE json_type(p.payload, '$.data') END,
                p.ids, p.typj, p.typ, p.rec, p.old, p.errs, p.cts, p.sch, p.tab, p.cols) END
        ) AS problem,
        v.valid = false AS refuted,
        v.error_kind, v.error_path,
        v.valid IS NOT NULL AS from_validator,
        p.payload
    FROM pieces p LEFT JOIN verdicts v ON v.session_id = p.session_id AND v.seq = p.seq
)
SELECT
    ts, session_id, seq, source, topic, schema_name, table_name, relation, type, commit_timestamp,
    record_id, errors, problem,
    CASE
        WHEN problem IS NULL THEN NULL
        WHEN contains(errors, '413') THEN 'too_large'
        WHEN contains(errors, '401') OR contains(errors, 'Unauthorized') THEN 'unauthorized'
        WHEN errors IS NOT NULL THEN 'server_error'
        -- the validator's verdict says what kind of invalid (analyzer/validate.py ERROR_KINDS)
        WHEN refuted AND error_kind IS NOT NULL THEN CASE
            WHEN error_kind = 'too_large' THEN 'too_large'
            WHEN error_kind = 'server_error' THEN 'server_error'
            WHEN error_kind IN ('null', 'missing') AND error_path = '/data/record' THEN 'null_record'
            WHEN error_kind = 'empty' AND error_path IN ('/data/record', '/data/old_record') THEN 'empty_record'
            WHEN error_kind IN ('null', 'missing', 'empty') THEN 'missing_field'
            WHEN error_kind IN ('undecodable', 'too_deep') THEN error_kind
            ELSE 'wrong_type'
        END
        WHEN problem LIKE '%: null or missing' AND starts_with(problem, 'record') THEN 'null_record'
        WHEN problem LIKE '%: empty' THEN 'empty_record'
        WHEN problem LIKE '%missing%' THEN 'missing_field'
        ELSE 'wrong_type'
    END AS kind,
    from_validator, payload
FROM checked;
