-- UnableToBroadcastChanges lines of the Realtime server (realtime-protocol.md §5.2), once each:
-- the same line may have been recorded from several files (console, docker logs -t, dashboard
-- exports); `dup` is true for the copies (same millisecond and text, same rank in its file).
WITH e AS (
    SELECT *, row_number() OVER (PARTITION BY file_id, date_trunc('millisecond', ts), line ORDER BY "offset") AS k
    FROM log_signals
    WHERE signal = 'broadcast_error' AND ts IS NOT NULL
)
SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
       line AS text, reason AS atom,
       row_number() OVER (PARTITION BY date_trunc('millisecond', ts), line, k ORDER BY source, file_id) > 1 AS dup
FROM e
ORDER BY ts, source, "offset";
