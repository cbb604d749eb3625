-- sessions: one row per recorded WebSocket session (frames with a session_id), read by the views
-- joins and connections (materialised once for a report):
--   opened     time of its open row (NULL: the handshake never completed, e.g. refused)
--   first_ts   its first frame       last_ts  its last frame
--   closed     time of its (last) close row, NULL while it is still open
CREATE OR REPLACE VIEW sessions AS
SELECT
    session_id,
    min(ts) FILTER (WHERE kind = 'open') AS opened,
    min(ts) AS first_ts,
    max(ts) AS last_ts,
    max(ts) FILTER (WHERE kind = 'close') AS closed
FROM frames
WHERE session_id IS NOT NULL
GROUP BY session_id;
