-- Writes the bot logged (or a --writes file listed, table expected_writes) with no change of the
-- same table and operation (and row id, when both have one) arriving from $before_us before to
-- $after_us after the write: candidates for "missed events" (the rls rule still checks that the
-- client was connected and subscribed, and that no other rule explained the write).
-- Times compare as epoch microseconds: the same as adding intervals, without time-zone arithmetic per pair.
-- w is read once (MATERIALIZED) without the text of the lines, which only the few writes that
-- missed need (fetched at the end); a is read by each of the two anti joins.
WITH w AS MATERIALIZED (
    SELECT ts, 'logs' AS "table", source, "offset", file_id, NULL::VARCHAR AS text, table_name, op, record_id
    FROM log_signals
    WHERE signal = 'write' AND ts IS NOT NULL AND table_name IS NOT NULL AND op IS NOT NULL
      AND NOT realtime_relation(table_name)
    UNION ALL
    SELECT ts, 'writes', source, "offset", file_id, text, table_name, op, record_id FROM expected_writes
),
a AS NOT MATERIALIZED (
    SELECT ts, relation, type, record_id FROM changes
    UNION ALL
    SELECT ts, table_name, op, record_id FROM log_signals WHERE signal IN ('received_change', 'empty_record') AND ts IS NOT NULL
),
missed AS (
    SELECT w.* FROM w ANTI JOIN a
        ON a.relation = w.table_name AND a.type = w.op AND a.record_id = w.record_id
       AND epoch_us(a.ts) BETWEEN epoch_us(w.ts) - $before_us AND epoch_us(w.ts) + $after_us
    WHERE w.record_id IS NOT NULL
    UNION ALL
    SELECT w.* FROM w ANTI JOIN a
        ON a.relation = w.table_name AND a.type = w.op
       AND epoch_us(a.ts) BETWEEN epoch_us(w.ts) - $before_us AND epoch_us(w.ts) + $after_us
    WHERE w.record_id IS NULL
)
SELECT m.ts, m."table", m.source, m."offset", m.file_id, NULL::BIGINT AS seq, NULL::VARCHAR AS session_id,
       coalesce(m.text, l.line) AS text, m.table_name, m.op, m.record_id
FROM missed m
LEFT JOIN (SELECT file_id, "offset", line FROM log_signals WHERE signal = 'write') l
       ON m."table" = 'logs' AND l.file_id = m.file_id AND l."offset" = m."offset"
ORDER BY m.ts, m.source, m."offset";
