-- /stats: frames per topic, event and direction.
SELECT coalesce(topic, '(' || kind || ')') AS topic, coalesce(event, '') AS event, direction, count(*) AS frames
FROM frames
GROUP BY ALL
ORDER BY frames DESC, topic, event, direction;
