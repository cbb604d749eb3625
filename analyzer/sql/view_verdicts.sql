-- verdicts: per-frame results of the payload validator (rt-replay validate), when it has written
-- them beside the recording as STORE/verdicts/*.parquet with the columns
--     session_id VARCHAR, seq BIGINT, valid BOOLEAN, error_path VARCHAR, error VARCHAR
-- Without such files the view is empty and view_changes.sql falls back to change_problem().
-- {verdicts} is the quoted glob of the files, or NULL when there are none.
CREATE OR REPLACE VIEW verdicts AS
SELECT session_id, seq, valid, error_path, error
FROM (
    SELECT NULL::VARCHAR AS session_id, NULL::BIGINT AS seq, NULL::BOOLEAN AS valid,
           NULL::VARCHAR AS error_path, NULL::VARCHAR AS error
    WHERE false
    {verdicts_union}
);
