-- Frames from the server that could not be decoded, or broadcasts whose inner payload is not an
-- object (the official client drops those, realtime-protocol.md §7.6).
SELECT ts, 'frames' AS "table", source, NULL::BIGINT AS "offset", NULL::VARCHAR AS file_id, seq, session_id,
       topic, event,
       CASE WHEN decode_error IS NOT NULL THEN 'frame: ' || decode_error
            ELSE 'payload.payload: ' || coalesce(lower(json_type(payload, '$.payload')), 'missing') || ', not an object' END AS problem,
       coalesce(event || ' ' || payload, 'undecodable frame: ' || decode_error) AS text
FROM frames
WHERE direction = 'in' AND kind IN ('text', 'binary')
  AND (decode_error IS NOT NULL
       -- the inner payload's type, NULL when missing (one json_type: the payload is parsed once)
       OR (event = 'broadcast' AND coalesce(json_type(payload, '$.payload') NOT IN ('OBJECT', 'BLOB'), true)))
ORDER BY ts, session_id, seq;
