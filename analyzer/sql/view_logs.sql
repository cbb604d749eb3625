-- logs: one row per log record (design.md, "The store"), read from the committed Parquet parts.
--
-- {parts} is replaced by the quoted glob of the parts (recorder.store.Store.part_glob), e.g.
-- 'STORE/logs/date=*/part-*.parquet'; paste that in to run this file by hand in the DuckDB shell.
--
-- The glob is expanded each time the view is queried, so parts committed by a running recorder
-- show up in the next query. The typed empty SELECT keeps the view's columns and types while no
-- part exists yet: read_parquet(allow_empty = true) then yields one column named "empty", which
-- the outer SELECT drops. union_by_name lets parts with fewer columns read as NULL there.
-- hive_partitioning is off: date= is derived from ts (and is "unknown" when ts is null).
CREATE OR REPLACE VIEW logs AS
SELECT ts, source, file, file_id, "offset", level, logger, message, error_code, project, raw, parsed
FROM (
    SELECT
        NULL::TIMESTAMPTZ AS ts,
        NULL::VARCHAR AS source,
        NULL::VARCHAR AS file,
        NULL::VARCHAR AS file_id,
        NULL::BIGINT AS "offset",
        NULL::VARCHAR AS level,
        NULL::VARCHAR AS logger,
        NULL::VARCHAR AS message,
        NULL::VARCHAR AS error_code,
        NULL::VARCHAR AS project,
        NULL::VARCHAR AS raw,
        NULL::BOOLEAN AS parsed
    WHERE false
    UNION ALL BY NAME
    SELECT * FROM read_parquet({parts}, hive_partitioning = false, union_by_name = true, allow_empty = true)
);
