-- The worst window for payload_error_rate, on 1-second buckets: for each second that holds
-- postgres_changes frames, the window of $window_s seconds that ends with it; among windows with at
-- least $min_events frames, the one with the highest share of invalid payloads (earliest on ties).
WITH b AS (
    -- the second ts falls in (floor, as epoch(date_trunc('second', ts)), without its time-zone arithmetic)
    SELECT CASE WHEN epoch_us(ts) >= 0 THEN epoch_us(ts) // 1000000 ELSE -((999999 - epoch_us(ts)) // 1000000) END AS sec,
           count(*) AS n,
           count(*) FILTER (WHERE problem IS NOT NULL) AS bad, min(ts) AS first_ts, max(ts) AS last_ts
    FROM changes GROUP BY sec
),
w AS (
    SELECT last_ts,
           sum(n) OVER win AS n,
           sum(bad) OVER win AS bad_n,
           min(first_ts) OVER win AS first_ts
    FROM b
    WINDOW win AS (ORDER BY sec RANGE BETWEEN $window_s - 1 PRECEDING AND CURRENT ROW)
)
SELECT last_ts AS ts, n, bad_n, bad_n / n AS rate, first_ts
FROM w
WHERE n >= $min_events
ORDER BY rate DESC, ts
LIMIT 1;
