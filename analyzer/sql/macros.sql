-- Macros shared by the views. change_problem() is THE payload check of the analyzer: the one
-- place that says whether a postgres_changes payload is valid (realtime-protocol.md §4). It is
-- replaced per frame by a verdict of the validator when STORE/verdicts/*.parquet holds one
-- (see view_changes.sql).
--
-- Arguments are pieces of the payload extracted once by the caller (view_changes.sql):
--   p     the payload text                       d   $.data          ids  $.ids
--   typ   $.data.type (text)                     rec $.data.record   old  $.data.old_record
--   errs  $.data.errors                          cts $.data.commit_timestamp
--   sch   $.data.schema                          tab $.data.table    cols $.data.columns
-- Result: NULL when valid, else a short reason starting with the field at fault.
CREATE OR REPLACE MACRO change_problem(p, d, ids, typ, rec, old, errs, cts, sch, tab, cols) AS
    CASE
        WHEN p IS NULL THEN 'frame: not decoded'
        WHEN json_type(p) <> 'OBJECT' THEN 'payload: not an object'
        WHEN d IS NULL OR json_type(d) = 'NULL' THEN 'data: missing'
        WHEN json_type(d) <> 'OBJECT' THEN 'data: not an object'
        WHEN errs IS NOT NULL AND json_type(errs) <> 'NULL' THEN 'errors: ' || errs::VARCHAR
        WHEN ids IS NULL OR json_type(ids) <> 'ARRAY' THEN 'ids: missing or not a list'
        WHEN json_type(json_extract(d, '$.type')) IS DISTINCT FROM 'VARCHAR' THEN 'type: missing or not a string'
        WHEN typ NOT IN ('INSERT', 'UPDATE', 'DELETE') THEN 'type: ' || typ || ' is not INSERT, UPDATE or DELETE'
        WHEN json_type(sch) IS DISTINCT FROM 'VARCHAR' THEN 'schema: missing or not a string'
        WHEN json_type(tab) IS DISTINCT FROM 'VARCHAR' THEN 'table: missing or not a string'
        WHEN json_type(cts) IS DISTINCT FROM 'VARCHAR' THEN 'commit_timestamp: missing or not a string'
        WHEN cols IS NOT NULL AND json_type(cols) <> 'ARRAY' THEN 'columns: not a list'
        WHEN typ IN ('INSERT', 'UPDATE') AND (rec IS NULL OR json_type(rec) = 'NULL') THEN 'record: null or missing'
        WHEN typ IN ('INSERT', 'UPDATE') AND json_type(rec) <> 'OBJECT' THEN 'record: not an object'
        WHEN typ IN ('INSERT', 'UPDATE') AND rec::VARCHAR = '{}' THEN 'record: empty'
        WHEN typ IN ('UPDATE', 'DELETE') AND (old IS NULL OR json_type(old) <> 'OBJECT') THEN 'old_record: missing or not an object'
        WHEN typ = 'DELETE' AND old::VARCHAR = '{}' THEN 'old_record: empty'
    END;

-- Python repr of a str ('...' with \' and \\ escapes, as realtime-py logs a frame it cannot
-- parse) back to the text; NULL when it is not a single-quoted repr.
CREATE OR REPLACE MACRO py_repr_text(r) AS
    CASE WHEN starts_with(r, '''') AND ends_with(r, '''')
         THEN replace(replace(replace(r[2:-2], '\\\\', chr(1)), '\''', ''''), chr(1), '\\')
    END;
