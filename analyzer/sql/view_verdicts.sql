-- verdicts: per-frame results of the payload validator (rt-replay validate), when it has written
-- them beside the recording as STORE/verdicts/*.parquet (analyzer/validate.py VERDICTS_SCHEMA):
--     session_id VARCHAR, seq BIGINT, valid BOOLEAN,
--     error_path VARCHAR   JSON Pointer of the first error ('' = the whole payload)
--     error      VARCHAR   what is wrong there
--     error_kind VARCHAR   missing, null, empty, wrong_type, bad_value, unexpected, server_error,
--                          too_large, undecodable, too_deep (NULL in files written before it existed)
-- Without such files the view is empty and view_changes.sql falls back to change_problem().
-- {verdicts_union} is replaced by a UNION ALL BY NAME over the files, or nothing when there are none.
CREATE OR REPLACE VIEW verdicts AS
SELECT session_id, seq, valid, error_path, error, error_kind
FROM (
    SELECT NULL::VARCHAR AS session_id, NULL::BIGINT AS seq, NULL::BOOLEAN AS valid,
           NULL::VARCHAR AS error_path, NULL::VARCHAR AS error, NULL::VARCHAR AS error_kind
    WHERE false
    {verdicts_union}
);
