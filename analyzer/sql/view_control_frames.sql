-- control_frames: the frames that steer a connection (open/close/error rows, joins, leaves, their
-- replies, phx_close / phx_error, system messages, anything undecoded), without the bulk of
-- traffic: postgres_changes, broadcasts, heartbeats and their replies on topic phoenix. The views
-- and rules that look at joins, replies and lifecycle rows read this (materialised once for a
-- report, it is a small table) instead of scanning every frame again.
CREATE OR REPLACE VIEW control_frames AS
SELECT * FROM frames
WHERE NOT coalesce(kind IN ('text', 'binary')
                   AND (event IN ('postgres_changes', 'broadcast', 'heartbeat')
                        OR (event = 'phx_reply' AND topic = 'phoenix' AND direction = 'in')), false);
