-- The client's "Unrecognized message format '<frame>'" lines (realtime-protocol.md §7.6) with the
-- frame taken back out of its Python repr and checked like a recorded one.
WITH u AS (
    SELECT ts, source, "offset", file_id, line, topic, py_repr_text(reason) AS frame
    FROM log_signals WHERE signal = 'unrecognized_frame' AND ts IS NOT NULL
),
p AS (
    SELECT *, CASE WHEN json_valid(frame) THEN frame END AS j FROM u
)
SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
       left(line, 400) AS text, topic,
       json_extract_string(j, '$.event') AS event,
       CASE
           WHEN j IS NULL THEN 'frame: not JSON'
           WHEN json_type(j) <> 'OBJECT' THEN 'frame: not an object (vsn 2.0.0 array?)'
           WHEN json_extract_string(j, '$.event') = 'postgres_changes' THEN change_problem(
                json_extract(j, '$.payload')::VARCHAR, json_extract(j, '$.payload.data'), json_extract(j, '$.payload.ids'),
                json_extract_string(j, '$.payload.data.type'), json_extract(j, '$.payload.data.record'),
                json_extract(j, '$.payload.data.old_record'), json_extract(j, '$.payload.data.errors'),
                json_extract(j, '$.payload.data.commit_timestamp'), json_extract(j, '$.payload.data.schema'),
                json_extract(j, '$.payload.data.table'), json_extract(j, '$.payload.data.columns'))
           WHEN json_extract_string(j, '$.event') = 'broadcast' AND json_type(j, '$.payload.payload') IS DISTINCT FROM 'OBJECT'
                THEN 'payload.payload: ' || coalesce(lower(json_type(j, '$.payload.payload')), 'missing') || ', not an object'
       END AS problem,
       json_extract_string(j, '$.payload.data.errors') AS errors
FROM p
ORDER BY ts, source, "offset";
