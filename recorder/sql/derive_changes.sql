-- changes: the postgres_changes frames the client received, read from {rows} (the store's frames,
-- or the rows of one part as it is committed), flattened (realtime-protocol.md §4): one row per
-- frame with table, type, commit_timestamp, errors and the row id, plus
--   problem  NULL when the payload passes change_problem() (derive_macros.sql), else why not
--   payload  the payload, kept only when problem is not NULL (the report quotes it as evidence)
-- The recorder writes this beside each part it commits (recorder/derive.py); the analyzer runs it
-- for parts without it, and its view changes adds the validator's verdicts.
-- The JSON is parsed once here, by one json_extract with a list of paths (change_paths()).
WITH pc AS (
    SELECT ts, session_id, seq, source, topic, payload,
           json_extract(payload, change_paths('$'))::VARCHAR[] AS j
    FROM {rows}
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
        ts, session_id, seq, source, topic,
        schema_name, table_name, schema_name || '.' || table_name AS relation,
        typ AS type, json_piece_text(cts) AS commit_timestamp,
        record_id,
        CASE WHEN errs IS NOT NULL AND errs <> 'null' THEN errs END AS errors,
        change_problem(
            CASE WHEN data_seen OR ids IS NOT NULL THEN 'OBJECT' ELSE json_type(payload) END,
            CASE WHEN data_seen THEN 'OBJECT' ELSE json_type(payload, '$.data') END,
            ids, typj, typ, rec, old, errs, cts, sch, tab, cols) AS problem,
        payload
    FROM pieces
)
SELECT ts, session_id, seq, source, topic, schema_name, table_name, relation, type, commit_timestamp,
       record_id, errors, problem, CASE WHEN problem IS NOT NULL THEN payload END AS payload
FROM checked
