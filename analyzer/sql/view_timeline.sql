-- timeline: frames and log records in one time order. "table" says where a row comes from;
-- (session_id, seq) identify a frame, (file_id, "offset") a log record. text: the log message,
-- or for a frame its event and payload (or why it could not be decoded).
CREATE OR REPLACE VIEW timeline AS
SELECT ts, 'frames' AS "table", source, session_id, seq, NULL::VARCHAR AS file, NULL::VARCHAR AS file_id,
       NULL::BIGINT AS "offset", direction, kind, topic, event, NULL::VARCHAR AS level,
       coalesce(event || ' ', kind || ' ') || coalesce(decode_error, payload, '') AS text
FROM frames
UNION ALL
SELECT ts, 'logs', source, NULL, NULL, file, file_id, "offset", NULL, NULL, NULL, NULL, level, message
FROM logs;
