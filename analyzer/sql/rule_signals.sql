-- Log records with the given signals ($signals: a list), in time order, with the columns an
-- Evidence row needs. Records without a time cannot be placed in an incident and are left out.
SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
       line AS text, signal, topic, code, reason, table_name, op, record_id, payload, state, level
FROM log_signals
WHERE signal IN (SELECT unnest($signals)) AND ts IS NOT NULL
ORDER BY ts, source, file_id, "offset";
