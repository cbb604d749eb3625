-- The client's "Unrecognized message format '<frame>'" lines (realtime-protocol.md §7.6) with the
-- frame taken back out of its Python repr and checked like a recorded one.
WITH u AS (
    SELECT ts, source, "offset", file_id, line, topic, py_repr_text(reason) AS frame
    FROM log_signals WHERE signal = 'unrecognized_frame' AND ts IS NOT NULL
),
p AS (
    SELECT *, CASE WHEN json_valid(frame) THEN frame END AS j FROM u
),
c AS (
    SELECT *, json_extract(j, change_paths('$.payload'))::VARCHAR[] AS x FROM p
)
SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
       left(line, 400) AS text, topic,
       json_extract_string(j, '$.event') AS event,
       CASE
           WHEN j IS NULL THEN 'frame: not JSON'
           WHEN json_type(j) <> 'OBJECT' THEN 'frame: not an object (vsn 2.0.0 array?)'
           WHEN json_extract_string(j, '$.event') = 'postgres_changes' THEN change_problem(
                json_type(j, '$.payload'), json_type(j, '$.payload.data'), x[1], x[2], json_piece_text(x[2]),
                x[6], x[7], x[8], x[5], x[3], x[4], x[9])
           WHEN json_extract_string(j, '$.event') = 'broadcast' AND json_type(j, '$.payload.payload') IS DISTINCT FROM 'OBJECT'
                THEN 'payload.payload: ' || coalesce(lower(json_type(j, '$.payload.payload')), 'missing') || ', not an object'
       END AS problem,
       json_extract_string(j, '$.payload.data.errors') AS errors
FROM c
ORDER BY ts, source, "offset";
