-- Frames from the server that could not be decoded, or broadcasts whose inner payload is not an
-- object (view bad_frames: recorder/sql/derive_bad_frames.sql), in order.
SELECT ts, 'frames' AS "table", source, NULL::BIGINT AS "offset", NULL::VARCHAR AS file_id, seq, session_id,
       topic, event, problem, text
FROM bad_frames
ORDER BY ts, session_id, seq;
