-- /status: whether the bot fell back to polling, and since when: the run of polling or
-- health-check lines that ends the recording, with its first line.
WITH p AS (
    SELECT ts, "offset",
           CASE WHEN signal = 'polling_on' THEN true
                WHEN signal = 'polling_off' THEN false
                ELSE split_part(state, ' ', 3) = 'on' END AS polling,
           line
    FROM log_signals
    WHERE ts IS NOT NULL
      AND (signal IN ('polling_on', 'polling_off') OR (signal = 'health' AND split_part(state, ' ', 3) IN ('on', 'off')))
),
q AS (SELECT *, lag(polling) OVER (ORDER BY ts, "offset") AS prev FROM p),
g AS (SELECT *, sum(CASE WHEN polling IS DISTINCT FROM prev THEN 1 ELSE 0 END) OVER (ORDER BY ts, "offset") AS run FROM q)
SELECT min(ts) AS ts, any_value(polling) AS polling, arg_min(line, ts) AS line
FROM g
WHERE run = (SELECT max(run) FROM g)
HAVING count(*) > 0;
