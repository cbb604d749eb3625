-- Connection lifecycle rows of the frames (open, close, error) with their JSON details, in order.
SELECT ts, 'frames' AS "table", source, NULL::BIGINT AS "offset", NULL::VARCHAR AS file_id, seq, session_id,
       kind, direction, close_code,
       json_extract_string(payload, '$.by') AS closed_by,
       json_extract_string(payload, '$.reason') AS reason,
       json_extract_string(payload, '$.error') AS error,
       json_extract_string(payload, '$.phase') AS phase,
       TRY_CAST(json_extract_string(payload, '$.status') AS INTEGER) AS status,
       json_extract_string(payload, '$.why') AS why,
       kind || ': ' || coalesce(payload, '') AS text
FROM control_frames
WHERE kind IN ('open', 'close', 'error')
ORDER BY ts, session_id, seq;
