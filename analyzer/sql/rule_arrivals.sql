-- For each window of $windows (a list of {i, start, end, topic, event}), how many broadcasts reached
-- the client from start to end (frames, and the bot's "received broadcast" lines), only of the
-- window's topic (full or short form) and event when it names them. $width_us is at least the
-- longest window: windows and arrivals meet in time buckets that wide (a window spans at most two),
-- so the join is on equal buckets, not a range join. $lo / $hi bound all windows; $with_event says
-- whether any window names an event (only then are the frames' payloads read).
WITH w AS (
    SELECT *, unnest(generate_series(epoch_us(start) // $width_us, epoch_us("end") // $width_us)) AS bucket
    FROM (SELECT unnest($windows, recursive := true))
),
a AS (
    SELECT ts, topic, CASE WHEN $with_event THEN json_extract_string(payload, '$.event') END AS event FROM frames
    WHERE direction = 'in' AND event = 'broadcast' AND ts BETWEEN $lo AND $hi
    UNION ALL
    SELECT ts, topic, reason FROM log_signals
    WHERE signal = 'broadcast_received' AND ts BETWEEN $lo AND $hi
)
SELECT w.i, count(a.ts) AS n
FROM w LEFT JOIN a
    ON epoch_us(a.ts) // $width_us = w.bucket
   AND a.ts BETWEEN w.start AND w."end"
   AND (w.topic IS NULL OR a.topic IN (w.topic, 'realtime:' || w.topic))
   AND (w.event IS NULL OR a.event = w.event)
GROUP BY w.i
ORDER BY w.i;
