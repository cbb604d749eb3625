-- Heartbeats that timed out: no reply before the next heartbeat on the same connection (exactly the
-- rows of view heartbeats with reply_ts IS NULL AND followed), by one ordered pass over a session's
-- heartbeats and phoenix replies instead of the view's ASOF join: a heartbeat was answered when the
-- next of these frames after it (by seq) is a reply whose ref fits, and followed when a later
-- heartbeat exists in the session.
WITH s AS (
    SELECT ts, session_id, seq, ref, direction = 'out' AS heartbeat
    FROM frames
    WHERE (direction = 'out' AND event = 'heartbeat')
       OR (direction = 'in' AND event = 'phx_reply' AND topic = 'phoenix')
),
n AS (
    SELECT *,
           lead(heartbeat) OVER w AS next_is_heartbeat,
           lead(ref) OVER w AS next_ref,
           max(CASE WHEN heartbeat THEN seq END) OVER (PARTITION BY session_id) AS last_heartbeat
    FROM s
    WINDOW w AS (PARTITION BY session_id ORDER BY seq)
)
SELECT ts, session_id, seq
FROM n
WHERE heartbeat AND seq < last_heartbeat
  AND NOT (session_id IS NOT NULL AND next_is_heartbeat IS NOT DISTINCT FROM false
           AND (ref IS NULL OR next_ref IS NULL OR next_ref = ref))
ORDER BY ts, session_id, seq;
