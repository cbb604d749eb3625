-- postgres_changes frames whose payload is not valid (view changes: problem / kind), in order.
SELECT c.ts, 'frames' AS "table", c.source, NULL::BIGINT AS "offset", NULL::VARCHAR AS file_id, c.seq, c.session_id,
       c.topic, c.relation, c.type, c.record_id, c.errors, c.problem, c.kind,
       'postgres_changes ' || coalesce(c.payload, '') AS text
FROM changes c
WHERE c.problem IS NOT NULL
ORDER BY c.ts, c.session_id, c.seq;
