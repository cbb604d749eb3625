-- What happened to channels, per session and topic, in order: joins and leaves the client sent,
-- join replies, phx_close / phx_error, and system messages (realtime-protocol.md §3).
SELECT ts, 'frames' AS "table", source, NULL::BIGINT AS "offset", NULL::VARCHAR AS file_id, seq, session_id,
       direction, topic, event, ref, join_ref,
       json_extract_string(payload, '$.status') AS status,
       json_extract_string(payload, '$.extension') AS extension,
       json_extract_string(payload, '$.message') AS message,
       json_extract_string(payload, '$.response.reason') AS reason,
       coalesce(json_array_length(payload, '$.config.postgres_changes'), 0) AS n_bindings,
       json_extract(payload, '$.config.postgres_changes')::VARCHAR AS bindings,
       event || ' ' || coalesce(payload, '') AS text
FROM control_frames
WHERE topic IS DISTINCT FROM 'phoenix'
  AND ((direction = 'out' AND event IN ('phx_join', 'phx_leave'))
       OR (direction = 'in' AND event IN ('phx_reply', 'phx_close', 'phx_error', 'system')))
ORDER BY session_id, seq;
