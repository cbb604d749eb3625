-- For each UnableToBroadcastChanges line ($errors: list of times), the writes the bot logged (not to
-- realtime.*) at most $tol_us microseconds away, nearest first, writes before the error preferred
-- (errors follow writes; a write after it only matters for a server clock running behind), at most
-- $per_error candidates per error. The rule pairs each error with one write, each write once.
WITH e AS (SELECT unnest($errors) AS ets),
w AS (
    SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
           line AS text, table_name, op, record_id
    FROM log_signals
    WHERE signal = 'write' AND ts IS NOT NULL AND split_part(coalesce(table_name, ''), '.', 1) <> 'realtime'
)
SELECT e.ets, w.ts > e.ets AS after, w.*
FROM e JOIN w ON w.ts BETWEEN e.ets - to_microseconds($tol_us) AND e.ets + to_microseconds($tol_us)
QUALIFY row_number() OVER (PARTITION BY e.ets ORDER BY w.ts > e.ets, abs(epoch_us(e.ets) - epoch_us(w.ts))) <= $per_error
ORDER BY e.ets, after, abs(epoch_us(e.ets) - epoch_us(w.ts));
