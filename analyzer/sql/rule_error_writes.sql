-- For each UnableToBroadcastChanges line ($errors: a list of {run, ets, per}: the burst it belongs
-- to, its time, and how many candidates to keep), the writes the bot logged (not to realtime.*) at
-- most $tol_us microseconds away, nearest first, writes before the error preferred (errors follow
-- writes; a write after it only matters for a server clock running behind), at most `per`
-- candidates per error. The rule pairs each error with one write, each write once per burst.
-- Errors and writes meet in time buckets as wide as a window (a window spans at most two), so the
-- join is on equal buckets, not a range join of every error with every write.
WITH e AS (
    SELECT *, unnest(generate_series((epoch_us(ets) - $tol_us) // (2 * $tol_us + 1),
                                     (epoch_us(ets) + $tol_us) // (2 * $tol_us + 1))) AS bucket
    FROM (SELECT unnest($errors, recursive := true))
),
w AS (
    SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
           line AS text, table_name, op, record_id, epoch_us(ts) // (2 * $tol_us + 1) AS bucket
    FROM log_signals
    WHERE signal = 'write' AND ts IS NOT NULL AND NOT coalesce(realtime_relation(table_name), false)
)
SELECT e.run, e.ets, w.ts > e.ets AS after, w.* EXCLUDE (bucket)
FROM e JOIN w ON w.bucket = e.bucket AND epoch_us(w.ts) BETWEEN epoch_us(e.ets) - $tol_us AND epoch_us(e.ets) + $tol_us
QUALIFY row_number() OVER (PARTITION BY e.run, e.ets
                           ORDER BY w.ts > e.ets, abs(epoch_us(e.ets) - epoch_us(w.ts)), w.source, w.file_id, w."offset") <= e.per
ORDER BY e.run, e.ets, after, abs(epoch_us(e.ets) - epoch_us(w.ts)), w.source, w.file_id, w."offset";
