-- Macros of the analyzer's views and rules (the payload check and JSON piece macros they also use
-- are in recorder/sql/derive_macros.sql, shared with the recorder's derived tables).

-- Python repr of a str ('...' with \' and \\ escapes, as realtime-py logs a frame it cannot
-- parse) back to the text; NULL when it is not a single-quoted repr.
CREATE OR REPLACE MACRO py_repr_text(r) AS
    CASE WHEN starts_with(r, '''') AND ends_with(r, '''')
         THEN replace(replace(replace(r[2:-2], '\\\\', chr(1)), '\''', ''''), chr(1), '\\')
    END;

-- Whether a bot write names Realtime's own schema (realtime.messages, ...), not a table of the
-- application: split_part(t, '.', 1) = 'realtime' without splitting every name. NULL for NULL.
CREATE OR REPLACE MACRO realtime_relation(t) AS t = 'realtime' OR starts_with(t, 'realtime.');
