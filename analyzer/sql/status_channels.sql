-- /status: the last known state of each channel topic, from frames (joins, replies, closes,
-- errors, leaves) and from the bot's "subscription state" lines, whichever is later.
WITH frame_events AS (
    SELECT topic, ts,
        CASE
            WHEN direction = 'out' AND event = 'phx_join' THEN 'joining'
            WHEN direction = 'out' AND event = 'phx_leave' THEN 'leaving'
            WHEN event = 'phx_reply' AND json_extract_string(payload, '$.status') = 'ok' THEN 'joined'
            WHEN event = 'phx_reply' THEN 'errored'
            WHEN event = 'phx_close' THEN 'closed'
            WHEN event = 'phx_error' THEN 'errored'
            WHEN event = 'system' AND json_extract_string(payload, '$.status') = 'error' THEN 'errored'
        END AS state,
        'frames' AS origin
    FROM frames
    WHERE topic IS NOT NULL AND topic <> 'phoenix'
      AND event IN ('phx_join', 'phx_leave', 'phx_reply', 'phx_close', 'phx_error', 'system')
),
log_events AS (
    SELECT topic, ts,
        CASE state WHEN 'SUBSCRIBED' THEN 'joined' WHEN 'CLOSED' THEN 'closed' ELSE 'errored' END AS state,
        'logs' AS origin
    FROM log_signals WHERE signal = 'sub_state' AND topic IS NOT NULL AND ts IS NOT NULL
),
e AS (SELECT * FROM frame_events WHERE state IS NOT NULL UNION ALL SELECT * FROM log_events)
SELECT topic, arg_max(state, ts) AS state, max(ts) AS since, arg_max(origin, ts) AS origin
FROM e GROUP BY topic ORDER BY topic;
