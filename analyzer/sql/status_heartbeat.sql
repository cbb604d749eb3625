-- /status: the last heartbeat the client sent, and its round trip.
SELECT ts, reply_ts, rtt_ms FROM heartbeats ORDER BY ts DESC LIMIT 1;
