-- /stats: join latency (reply - join, answered joins) and heartbeat round trip, p50 / p99 in ms.
SELECT 'join_latency_ms' AS metric, count(latency_ms) AS n,
       quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.99) AS p99
FROM joins WHERE latency_ms IS NOT NULL
UNION ALL
SELECT 'heartbeat_rtt_ms', count(rtt_ms), quantile_cont(rtt_ms, 0.5), quantile_cont(rtt_ms, 0.99)
FROM heartbeats WHERE rtt_ms IS NOT NULL;
