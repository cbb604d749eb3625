-- /stats: postgres_changes per table and type, with how many failed the payload check.
SELECT coalesce(relation, '?') AS relation, coalesce(type, '?') AS type, count(*) AS changes,
       count(*) FILTER (WHERE problem IS NOT NULL) AS invalid
FROM changes
GROUP BY ALL
ORDER BY changes DESC, relation, type;
