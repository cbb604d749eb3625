-- frames: one row per WebSocket event and connection lifecycle row (design.md, "The store"),
-- read from the committed Parquet parts.
--
-- {parts} is replaced by the quoted glob of the parts (recorder.store.Store.part_glob), e.g.
-- 'STORE/frames/date=*/part-*.parquet'; paste that in to run this file by hand in the DuckDB shell.
-- See view_logs.sql for why the typed empty SELECT and the read_parquet options are there.
CREATE OR REPLACE VIEW frames AS
SELECT
    ts, session_id, seq, direction, kind, vsn, topic, event, ref, join_ref,
    payload, payload_bytes, raw, close_code, decode_error, source
FROM (
    SELECT
        NULL::TIMESTAMPTZ AS ts,
        NULL::VARCHAR AS session_id,
        NULL::BIGINT AS seq,
        NULL::VARCHAR AS direction,
        NULL::VARCHAR AS kind,
        NULL::VARCHAR AS vsn,
        NULL::VARCHAR AS topic,
        NULL::VARCHAR AS event,
        NULL::VARCHAR AS ref,
        NULL::VARCHAR AS join_ref,
        NULL::VARCHAR AS payload,
        NULL::BIGINT AS payload_bytes,
        NULL::BLOB AS raw,
        NULL::INTEGER AS close_code,
        NULL::VARCHAR AS decode_error,
        NULL::VARCHAR AS source
    WHERE false
    UNION ALL BY NAME
    SELECT * FROM read_parquet({parts}, hive_partitioning = false, union_by_name = true, allow_empty = true)
);
