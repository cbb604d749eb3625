-- bad_frames: of the frames read from {rows} (the store's frames, or the rows of one part as it is
-- committed), those from the server that could not be decoded, or broadcasts whose inner payload
-- is not an object (the official client drops those, realtime-protocol.md §7.6); invalid
-- postgres_changes are the business of derive_changes.sql. problem says what is wrong, text is the
-- frame as evidence. The recorder writes this beside each part it commits (recorder/derive.py); the
-- analyzer runs it for parts without it.
SELECT ts, session_id, seq, source, topic, event,
       CASE WHEN decode_error IS NOT NULL THEN 'frame: ' || decode_error
            ELSE 'payload.payload: ' || coalesce(lower(json_type(payload, '$.payload')), 'missing') || ', not an object' END AS problem,
       coalesce(event || ' ' || payload, 'undecodable frame: ' || decode_error) AS text
FROM {rows}
WHERE direction = 'in' AND kind IN ('text', 'binary')
  AND (decode_error IS NOT NULL
       -- the inner payload's type, NULL when missing (one json_type: the payload is parsed once)
       OR (event = 'broadcast' AND coalesce(json_type(payload, '$.payload') NOT IN ('OBJECT', 'BLOB'), true)))
