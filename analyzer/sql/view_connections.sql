-- connections: when the client was connected ('up') and when not ('down'), from two origins:
--   origin 'frames': one 'up' row per recorded WebSocket session (open row to close row, or its
--                    last frame), and a 'down' row for each gap between sessions (a session that
--                    never opened, e.g. a refused handshake, is part of the gap); a gap after the
--                    last session that ended with a close row is open-ended ("end" NULL); a
--                    session the client closed normally (1000/1001) or the recorder stopped
--                    leaves no gap behind it
--   origin 'logs':   islands of client/bot log lines saying up (connection established,
--                    SUBSCRIBED, health realtime=connected, restored) or down (closed, connect
--                    failed, gave up, health realtime=disconnected, down reported)
-- start_text / end_text say which record opened and closed the interval.
CREATE OR REPLACE VIEW connections AS
WITH closes AS (
    SELECT session_id, arg_max(close_code, ts) AS close_code,
           arg_max(json_extract_string(payload, '$.by'), ts) AS closed_by,
           arg_max(json_extract_string(payload, '$.why'), ts) AS why
    FROM control_frames WHERE kind = 'close' GROUP BY session_id
),
sessions AS (
    -- view sessions, with the close row of each session
    SELECT s.*, c.close_code, c.closed_by, c.why
    FROM sessions s LEFT JOIN closes c ON c.session_id = s.session_id
),
up AS (
    SELECT session_id, opened AS start, coalesce(closed, last_ts) AS "end", closed IS NOT NULL AS ended,
           close_code, closed_by,
           -- the application closing its own connection (or the recorder stopping) is not an outage
           (closed_by = 'client' AND close_code IN (1000, 1001, 1005)) OR why = 'proxy stopped' AS deliberate
    FROM sessions WHERE opened IS NOT NULL
),
ordered AS (
    SELECT *, max("end") OVER (ORDER BY start ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end,
           lead(start) OVER (ORDER BY start) AS next_start
    FROM up
),
frame_rows AS (
    SELECT 'frames' AS origin, 'up' AS state, start, "end", session_id,
           'session opened' AS start_text,
           CASE WHEN ended THEN 'closed with ' || coalesce(close_code::VARCHAR, 'no code') || coalesce(' by ' || closed_by, '')
                ELSE 'still open at the end of the recording' END AS end_text
    FROM up
    UNION ALL
    SELECT 'frames', 'down', "end", next_start, session_id,
           'closed with ' || coalesce(close_code::VARCHAR, 'no code') || coalesce(' by ' || closed_by, ''),
           CASE WHEN next_start IS NULL THEN 'no new session until the end of the recording' ELSE 'next session opened' END
    FROM ordered
    WHERE ended AND NOT coalesce(deliberate, false) AND (next_start IS NULL OR next_start > "end")
      AND "end" >= coalesce(prev_end, "end")
),
log_events AS (
    SELECT ts, line, source, "offset",
        CASE
            WHEN signal IN ('connected', 'up_reported') THEN 'up'
            WHEN signal = 'sub_state' AND state = 'SUBSCRIBED' THEN 'up'
            WHEN signal = 'health' AND starts_with(state, 'connected ') THEN 'up'
            WHEN signal IN ('ws_closed', 'connect_failed', 'gave_up', 'down_reported') THEN 'down'
            WHEN signal = 'health' AND starts_with(state, 'disconnected ') THEN 'down'
        END AS state
    FROM log_signals
    WHERE ts IS NOT NULL
      AND signal IN ('connected', 'up_reported', 'sub_state', 'health', 'ws_closed', 'connect_failed', 'gave_up', 'down_reported')
),
log_rows AS (
    -- islands of one state: each starts at a record whose state differs from the one before
    -- (one ordered pass; the island's first record gives its start and start_text)
    SELECT row_number() OVER (ORDER BY ts, source, "offset") AS island, state, ts AS start, line AS start_text
    FROM (SELECT *, lag(state) OVER (ORDER BY ts, source, "offset") AS prev FROM log_events WHERE state IS NOT NULL)
    WHERE state IS DISTINCT FROM prev
)
SELECT origin, state, start, "end", session_id, start_text, end_text FROM frame_rows
UNION ALL
SELECT 'logs', state, start, lead(start) OVER (ORDER BY island), NULL, start_text,
       lead(start_text) OVER (ORDER BY island)
FROM log_rows;
