-- /status: the latest connection interval (frames preferred over log lines when both exist).
SELECT origin, state, start, "end", start_text, end_text
FROM connections
ORDER BY (origin = 'frames') DESC, start DESC
LIMIT 1;
