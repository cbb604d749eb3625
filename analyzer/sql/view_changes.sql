-- changes: postgres_changes frames the client received, flattened (realtime-protocol.md §4): the
-- rows of changes_base (recorder/sql/derive_changes.sql: table, type, commit_timestamp, errors, row
-- id, payload check) with the validator's verdicts applied:
--   problem  NULL when the payload is valid, else why not (the validator's verdict when
--            STORE/verdicts holds one for this frame, else change_problem() of derive_macros.sql)
--   kind     what is wrong, for the rules: NULL, 'too_large' (error 413), 'unauthorized' (401),
--            'server_error' (other errors), 'null_record', 'empty_record', 'missing_field',
--            'wrong_type', 'undecodable', 'too_deep'; from the verdict's error_kind when there is one
--   payload  the payload of an invalid frame (NULL for valid ones)
-- Queries should use these columns, not the JSON. {payload} and {payload_join} are filled in by
-- analyzer/views.py (the payload of frames only a verdict refutes is fetched from frames).
CREATE OR REPLACE VIEW changes AS
WITH checked AS (
    SELECT
        b.ts, b.session_id, b.seq, b.source, b.topic, b.schema_name, b.table_name, b.relation, b.type,
        b.commit_timestamp, b.record_id, b.errors,
        CASE WHEN v.valid THEN NULL
             WHEN v.valid = false THEN coalesce(v.error_path || ': ', '') || coalesce(v.error, 'invalid')
             ELSE b.problem END AS problem,
        v.valid = false AS refuted,
        v.error_kind, v.error_path,
        v.valid IS NOT NULL AS from_validator,
        {payload} AS payload
    FROM changes_base b LEFT JOIN verdicts v ON v.session_id = b.session_id AND v.seq = b.seq
    {payload_join}
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
