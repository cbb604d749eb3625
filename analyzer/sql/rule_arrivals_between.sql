-- Broadcasts that reached the client between $start and $end (frames, and the bot's
-- "received broadcast" lines), optionally only of $topic (full or short form) and $event.
SELECT ts, topic, event FROM (
    SELECT ts, topic, json_extract_string(payload, '$.event') AS event FROM frames
    WHERE direction = 'in' AND event = 'broadcast' AND ts BETWEEN $start AND $end
    UNION ALL
    SELECT ts, topic, reason FROM log_signals
    WHERE signal = 'broadcast_received' AND ts BETWEEN $start AND $end
)
WHERE ($topic IS NULL OR topic IN ($topic, 'realtime:' || $topic)) AND ($event IS NULL OR event = $event)
ORDER BY ts;
