-- Error-level log records (candidates for "unclassified"; the report removes those an incident explains).
SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
       left(line, 300) AS text, level
FROM log_signals
WHERE level IN ('error', 'critical')
ORDER BY ts NULLS LAST, source, "offset";
