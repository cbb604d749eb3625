-- postgres_changes bindings the client asked for in successful joins: (topic, event, schema.table).
SELECT DISTINCT j.topic,
       coalesce(json_extract_string(b.value, '$.event'), '*') AS event,
       coalesce(json_extract_string(b.value, '$.schema'), 'public') || '.' || coalesce(json_extract_string(b.value, '$.table'), '*') AS relation
FROM joins j, json_each(j.bindings) b
WHERE j.status = 'ok' AND j.bindings IS NOT NULL;
