-- control_frames: of the frames read from {rows} (the store's frames, or the rows of one part as it
-- is committed), the ones that steer a connection (open/close/error rows, joins, leaves, their
-- replies, phx_close / phx_error, system messages, anything undecoded), without the bulk of
-- traffic: postgres_changes, broadcasts, heartbeats and their replies on topic phoenix. Every
-- column of frames but raw. The views and rules that look at joins, replies and lifecycle rows
-- read this small table instead of scanning every frame again. The recorder writes it beside each
-- part it commits (recorder/derive.py); the analyzer runs it for parts without it.
SELECT * EXCLUDE (raw) FROM {rows}
WHERE NOT coalesce(kind IN ('text', 'binary')
                   AND (event IN ('postgres_changes', 'broadcast', 'heartbeat')
                        OR (event = 'phx_reply' AND topic = 'phoenix' AND direction = 'in')), false)
