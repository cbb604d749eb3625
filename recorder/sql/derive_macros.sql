-- Macros of the derived tables (recorder/derive.py) and of the analyzer's views. change_problem()
-- is THE payload check of the analyzer: the one place that says whether a postgres_changes payload
-- is valid (realtime-protocol.md §4). It is replaced per frame by a verdict of the validator when
-- STORE/verdicts/*.parquet holds one (see analyzer/sql/view_changes.sql).
--
-- JSON is parsed once per payload: the caller takes the pieces it needs with ONE
-- json_extract(payload, [paths]) (a list of paths parses the text once) and the checks below
-- read those pieces as text. json_extract writes a piece minified, so its first character says
-- its type ('{' object, '[' array, '"' string, 'null'); json_piece_type/json_piece_text turn a
-- piece into what json_type / json_extract_string would have said of the same path.
CREATE OR REPLACE MACRO json_piece_type(v) AS
    CASE WHEN v IS NULL THEN NULL
         WHEN starts_with(v, '{') THEN 'OBJECT'
         WHEN starts_with(v, '[') THEN 'ARRAY'
         WHEN starts_with(v, '"') THEN 'VARCHAR'
         WHEN v = 'null' THEN 'NULL'
         ELSE json_type(v) END;

CREATE OR REPLACE MACRO json_piece_text(v) AS
    CASE WHEN v IS NULL OR v = 'null' THEN NULL
         WHEN NOT starts_with(v, '"') THEN v
         WHEN contains(v, '\') THEN json_extract_string(v, '$')
         ELSE substring(v, 2, length(v) - 2) END;

-- Arguments (pieces as text, see above), for a postgres_changes payload p:
--   pt   json_type(p)        dt   json_type of $.data     ids  $.ids
--   typj $.data.type (JSON)  typ  $.data.type (text)      rec  $.data.record   old $.data.old_record
--   errs $.data.errors        cts  $.data.commit_timestamp
--   sch  $.data.schema        tab  $.data.table            cols $.data.columns
-- Result: NULL when valid, else a short reason starting with the field at fault.
CREATE OR REPLACE MACRO change_problem(pt, dt, ids, typj, typ, rec, old, errs, cts, sch, tab, cols) AS
    CASE
        WHEN pt IS NULL THEN 'frame: not decoded'
        WHEN pt <> 'OBJECT' THEN 'payload: not an object'
        WHEN dt IS NULL OR dt = 'NULL' THEN 'data: missing'
        WHEN dt <> 'OBJECT' THEN 'data: not an object'
        WHEN errs IS NOT NULL AND errs <> 'null' THEN 'errors: ' || errs
        WHEN ids IS NULL OR NOT starts_with(ids, '[') THEN 'ids: missing or not a list'
        WHEN typj IS NULL OR NOT starts_with(typj, '"') THEN 'type: missing or not a string'
        WHEN typ NOT IN ('INSERT', 'UPDATE', 'DELETE') THEN 'type: ' || typ || ' is not INSERT, UPDATE or DELETE'
        WHEN sch IS NULL OR NOT starts_with(sch, '"') THEN 'schema: missing or not a string'
        WHEN tab IS NULL OR NOT starts_with(tab, '"') THEN 'table: missing or not a string'
        WHEN cts IS NULL OR NOT starts_with(cts, '"') THEN 'commit_timestamp: missing or not a string'
        WHEN cols IS NOT NULL AND NOT starts_with(cols, '[') THEN 'columns: not a list'
        WHEN typ IN ('INSERT', 'UPDATE') AND (rec IS NULL OR rec = 'null') THEN 'record: null or missing'
        WHEN typ IN ('INSERT', 'UPDATE') AND NOT starts_with(rec, '{') THEN 'record: not an object'
        WHEN typ IN ('INSERT', 'UPDATE') AND rec = '{}' THEN 'record: empty'
        WHEN typ IN ('UPDATE', 'DELETE') AND (old IS NULL OR NOT starts_with(old, '{')) THEN 'old_record: missing or not an object'
        WHEN typ = 'DELETE' AND old = '{}' THEN 'old_record: empty'
    END;

-- The pieces change_problem() reads, in this order, from a postgres_changes payload ($) or from
-- the payload of a whole frame ($.payload): one json_extract(text, change_paths('$')) call.
CREATE OR REPLACE MACRO change_paths(root) AS
    [root || '.ids', root || '.data.type', root || '.data.schema', root || '.data.table',
     root || '.data.commit_timestamp', root || '.data.record', root || '.data.old_record',
     root || '.data.errors', root || '.data.columns', root || '.data.record.id', root || '.data.old_record.id'];
