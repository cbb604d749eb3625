-- heartbeats: every heartbeat the client sent (topic phoenix) and the reply that answered it:
-- the first phoenix phx_reply after it in the same session, with the same ref when the
-- heartbeat had one, and before the next heartbeat (realtime-py sends ref null). followed: a
-- later heartbeat was sent on the same connection (an unanswered heartbeat then timed out).
CREATE OR REPLACE VIEW heartbeats AS
WITH h AS (
    SELECT ts, session_id, seq, ref,
           lead(seq) OVER (PARTITION BY session_id ORDER BY seq) AS next_seq
    FROM frames WHERE direction = 'out' AND event = 'heartbeat'
),
r AS (
    SELECT ts, session_id, seq, ref FROM frames
    WHERE direction = 'in' AND event = 'phx_reply' AND topic = 'phoenix'
)
SELECT h.ts, h.session_id, h.seq, h.ref, h.next_seq IS NOT NULL AS followed,
       CASE WHEN r.seq < coalesce(h.next_seq, 9223372036854775807) AND (h.ref IS NULL OR r.ref IS NULL OR r.ref = h.ref) THEN r.ts END AS reply_ts,
       CASE WHEN r.seq < coalesce(h.next_seq, 9223372036854775807) AND (h.ref IS NULL OR r.ref IS NULL OR r.ref = h.ref)
            THEN date_diff('microsecond', h.ts, r.ts) / 1000.0 END AS rtt_ms
FROM h ASOF LEFT JOIN r ON r.session_id = h.session_id AND r.seq >= h.seq;
