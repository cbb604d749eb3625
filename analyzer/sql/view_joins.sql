-- joins: every subscription attempt (phx_join the client sent) with its outcome:
--   status   'ok' / 'error' (the reply's status), 'timeout' (no reply within the join timeout,
--            getvariable('rt_join_timeout_s'), default 10 s as realtime-py), 'interrupted' (the
--            connection closed first), 'pending' (the recording ends before the timeout)
--   reason   response.reason of an error reply
--   latency_ms  reply time - join time
--   bindings    the join's config.postgres_changes (JSON), n_bindings their number
CREATE OR REPLACE VIEW joins AS
WITH j AS (
    SELECT ts, session_id, seq, source, topic, ref, join_ref, payload
    FROM control_frames
    WHERE direction = 'out' AND event = 'phx_join'
),
r AS (
    SELECT ts, session_id, seq, topic, ref, payload
    FROM control_frames
    WHERE direction = 'in' AND event = 'phx_reply' AND topic IS DISTINCT FROM 'phoenix'
),
matched AS (
    SELECT j.session_id, j.seq, min(r.seq) AS reply_seq
    FROM j JOIN r ON r.session_id = j.session_id AND r.topic = j.topic AND r.ref = j.ref AND r.seq > j.seq
    GROUP BY ALL
),
ends AS (
    SELECT session_id, last_ts, closed AS closed_ts FROM sessions
)
SELECT
    j.ts, j.session_id, j.seq, j.source, j.topic, j.ref, j.join_ref,
    r.ts AS reply_ts, r.seq AS reply_seq,
    CASE
        WHEN r.seq IS NOT NULL THEN coalesce(json_extract_string(r.payload, '$.status'), 'error')
        WHEN e.closed_ts IS NOT NULL AND e.closed_ts < j.ts + to_microseconds(CAST(coalesce(getvariable('rt_join_timeout_s'), 10) * 1e6 AS BIGINT)) THEN 'interrupted'
        WHEN e.closed_ts IS NULL AND e.last_ts < j.ts + to_microseconds(CAST(coalesce(getvariable('rt_join_timeout_s'), 10) * 1e6 AS BIGINT)) THEN 'pending'
        ELSE 'timeout'
    END AS status,
    json_extract_string(r.payload, '$.response.reason') AS reason,
    date_diff('microsecond', j.ts, r.ts) / 1000.0 AS latency_ms,
    json_extract(j.payload, '$.config.postgres_changes')::VARCHAR AS bindings,
    coalesce(json_array_length(j.payload, '$.config.postgres_changes'), 0) AS n_bindings,
    r.payload AS reply_payload
FROM j
LEFT JOIN matched m ON m.session_id = j.session_id AND m.seq = j.seq
LEFT JOIN r ON r.session_id = m.session_id AND r.seq = m.reply_seq
LEFT JOIN ends e ON e.session_id = j.session_id;
