-- The bot's health checks that say the database has a problem ($bad = true) or is fine again
-- ($bad = false), between $start and $end; at most $limit rows, in time order.
SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
       line AS text, signal, state
FROM log_signals
WHERE ts BETWEEN $start AND $end
  AND ((signal = 'health' AND (split_part(state, ' ', 2) <> 'ok') = $bad)
       OR (NOT $bad AND signal = 'db_ok'))
ORDER BY ts
LIMIT $limit;
