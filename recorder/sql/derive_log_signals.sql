-- log_signals: of the log records read from {rows} (the store's logs, or the rows of one part as it
-- is committed), the ones the analyzer understands, one row each, with the fields its rules need
-- pulled out once (design.md "Incident report"; realtime-protocol.md §5.3, §6, §7.5, §8). The
-- recorder writes this beside each part it commits (recorder/derive.py); the analyzer runs it for
-- parts without it. Columns: ts, source, file_id, "offset", level, line (the message's first line)
-- and:
-- signal      what the record says (NULL: nothing the analyzer knows; such rows are kept only when
--             they are error-level, so that the report can list them as unclassified)
-- topic       channel topic named by the line (realtime:...)
-- code        close code (WebSocket closes) or HTTP status (refused handshakes)
-- reason      join error reason, server error atom, ...
-- table_name  schema.table a bot line or server line names
-- op          INSERT / UPDATE / DELETE of a bot write or received change
-- record_id   id of the row a bot line names
-- payload     the payload text of a broadcast the application sent (NULL: SQL NULL, null: JSON null)
-- state       subscription state (SUBSCRIBED, CHANNEL_ERROR, TIMED_OUT, CLOSED) or health values
--
-- Bot lines follow the conventions of the example bot (fixtures/logs/README.md,
-- fixtures/scenarios/bot.py): "inserted order 4711 into public.orders",
-- "received postgres_changes INSERT for public.orders id=4711",
-- "subscription state SUBSCRIBED for realtime:public:orders",
-- "health check: realtime=connected subscription=SUBSCRIBED db=ok polling=off",
-- "sent broadcast event=E topic=T payload=P" (P: JSON, NULL for SQL NULL, null for JSON null).
WITH base AS (
    SELECT
        ts, source, file, file_id, "offset", level, logger, error_code,
        CASE WHEN strpos(message, chr(10)) > 0 THEN left(message, strpos(message, chr(10)) - 1) ELSE message END AS line,
        message
    FROM {rows}
    -- the client's frame dumps (most of a DEBUG log) have no signal (the first WHEN below) and are
    -- kept only when error-level: drop them before anything else is computed
    WHERE NOT coalesce(starts_with(message, 'send: ') OR starts_with(message, 'receive: ')
                       OR starts_with(message, 'parsed message as '), false)
       OR level IN ('error', 'critical')
),
classified AS (
    -- unnest of a one-element list: the final WHERE on signal then filters these rows, instead of
    -- being pushed down with the whole CASE copied into it (which evaluated the CASE twice)
    SELECT *,
        unnest([CASE
            WHEN starts_with(line, 'send: ') OR starts_with(line, 'receive: ') OR starts_with(line, 'parsed message as ') THEN NULL
            WHEN starts_with(line, 'health check: ') THEN 'health'
            WHEN contains(line, 'supabase/realtime:v') THEN 'server_version'
            WHEN error_code = 'UnableToBroadcastChanges' OR contains(line, 'UnableToBroadcastChanges: ') THEN 'broadcast_error'
            WHEN contains(line, 'SendingBroadcastMessage: ') THEN 'send_warning'
            WHEN starts_with(line, 'Unexpected relation on schema ') THEN 'unexpected_relation'
            WHEN contains(line, 'supabase_realtime_messages_publication contains unexpected tables') THEN 'publication_unexpected'
            WHEN starts_with(line, 'Unrecognized message format ') THEN 'unrecognized_frame'
            WHEN starts_with(line, 'WebSocket connection closed with code: ') THEN 'ws_closed'
            WHEN starts_with(line, 'WebSocket connection closed by server with code: ') THEN 'ws_closed'
            WHEN starts_with(line, 'Connection attempt failed: ') THEN 'connect_failed'
            WHEN starts_with(line, 'Connection failed permanently after ') THEN 'gave_up'
            WHEN line = 'Auto-reconnect disabled, terminating connection' THEN 'gave_up'
            WHEN line = 'Task exception was never retrieved' AND contains(message, 'AsyncRealtimeClient') THEN 'gave_up'
            WHEN starts_with(line, 'Attempting to connect to WebSocket at ') THEN 'connecting'
            WHEN line IN ('WebSocket connection established successfully', 'WebSocket connection already established') THEN 'connected'
            WHEN line = 'Initiating auto-reconnect sequence...' THEN 'reconnecting'
            WHEN starts_with(line, 'join push error for channel ') THEN 'join_error'
            WHEN starts_with(line, 'join push timeout for channel ') THEN 'join_timeout'
            WHEN starts_with(line, 'channel ') AND regexp_matches(line, '^channel \S+ error: ') THEN 'channel_error'
            WHEN starts_with(line, 'channel ') AND regexp_matches(line, '^channel \S+ closed$') THEN 'channel_closed'
            WHEN starts_with(line, 'Rejoining channel after reconnection: ') THEN 'joining'
            WHEN starts_with(line, 'subscription state ') AND regexp_matches(line, '^subscription state [A-Z_]+ for ') THEN 'sub_state'
            WHEN (starts_with(line, 'inserted ') OR starts_with(line, 'updated ') OR starts_with(line, 'deleted '))
                 AND regexp_matches(line, '^(inserted|updated|deleted) .*\b(into|in|from) [A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*') THEN 'write'
            WHEN starts_with(line, 'received postgres_changes INSERT for ') OR starts_with(line, 'received postgres_changes UPDATE for ')
                 OR starts_with(line, 'received postgres_changes DELETE for ') THEN 'received_change'
            WHEN starts_with(line, 'received postgres_changes with empty record') THEN 'empty_record'
            WHEN (starts_with(line, 'sent broadcast') OR starts_with(line, 'realtime.send') OR starts_with(line, 'inserted message into realtime.messages'))
                 AND regexp_matches(line, '^(sent broadcast|realtime\.send|inserted message into realtime\.messages)\b') THEN 'broadcast_sent'
            WHEN starts_with(line, 'received broadcast') AND regexp_matches(line, '^received broadcast\b') THEN 'broadcast_received'
            WHEN contains(line, 'Realtime connection down since') OR contains(line, 'Realtime connection lost at')
                 OR contains(line, 'Realtime connection down for more than') THEN 'down_reported'
            WHEN contains(line, 'Realtime connection restored') THEN 'up_reported'
            WHEN contains(line, 'falling back to polling') THEN 'polling_on'
            WHEN contains(line, ' stopped') AND regexp_matches(line, 'polling( of \S+)? stopped') THEN 'polling_off'
            WHEN level = 'debug' AND error_code IS NOT NULL THEN NULL
            WHEN error_code IN ('InvalidJWTToken', 'MalformedJWT', 'JwtSignatureError', 'JwtSignerError', 'InvalidJWTExpiration')
                 OR contains(line, 'Token has expired') OR contains(line, 'not a valid JWT')
                 OR contains(line, 'rejected WebSocket connection: HTTP 401') THEN 'auth_error'
            WHEN error_code IN ('UnableToConnectToProject', 'UnableToConnectToTenantDatabase', 'DatabaseLackOfConnections',
                                'DatabaseConnectionIssue', 'DatabaseConnectionRateLimitReached', 'IncreaseConnectionPool')
                 OR contains(line, 'unable to connect to the project database')
                 OR contains(line, 'PGRST001') OR contains(line, 'PGRST000')
                 OR (line ILIKE '%databa%' AND regexp_matches(line, '(?i)database (connectivity error|unreachable|connection (error|failed|refused)|is unreachable|cannot be reached)'))
                 OR (contains(line, ' to server') AND regexp_matches(line, 'could not connect to server|connection to server at .* failed')) THEN 'db_error'
            WHEN contains(line, 'database reachable again') THEN 'db_ok'
            WHEN (contains(line, 'subscription to ') AND regexp_matches(line, 'subscription to \S+ failed \d+ times'))
                 OR (contains(line, ' consecutive subscription attempts failed') AND regexp_matches(line, '\d+ consecutive subscription attempts failed')) THEN 'sub_failures_reported'
            WHEN contains(line, 'no realtime event arrived') OR starts_with(line, 'no realtime event for ') THEN 'missed_reported'
            WHEN level = 'debug' THEN NULL  -- client debug dumps repeat what the lines above already say
            WHEN error_code = 'Unauthorized' OR error_code = 'RlsPolicyError' THEN 'unauthorized'
            WHEN error_code IN ('ChannelRateLimitReached', 'ConnectionRateLimitReached', 'ClientJoinRateLimitReached',
                                'JoinsRateLimitReached', 'MessagePerSecondRateLimitReached', 'TenantNotFound',
                                'RealtimeDisabledForTenant', 'RealtimeDisabledForConfiguration', 'UnableToSubscribeToPostgres',
                                'PrivateOnly', 'TopicNameRequired', 'UnknownErrorOnChannel') THEN 'join_refused'
        END]) AS signal
    FROM base
),
verbs AS (
    -- a write line starts with one of these (the 'write' pattern above)
    SELECT *, CASE WHEN signal = 'write' THEN CASE WHEN starts_with(line, 'inserted') THEN 'inserted'
                                                   WHEN starts_with(line, 'updated') THEN 'updated' ELSE 'deleted' END END AS write_verb
    FROM classified
),
shaped AS (
    -- The bulk of a bot log is its own lines in their exact shape: one pattern takes all their
    -- fields at once ('' when a line has another shape; the general patterns below decide then).
    -- In these shapes each general pattern can only match at the place named here, so both give
    -- the same values.
    SELECT *,
        CASE WHEN signal = 'health' THEN regexp_extract(line,
            '^health check: realtime=(\w+) subscription=\w+ db=(\w+) polling=(\w+)$', ['realtime', 'db', 'polling']) END AS health,
        CASE WHEN signal = 'write' AND NOT contains(line, ''' and table ''') THEN regexp_extract(line,
            '^(?:inserted|updated|deleted) (?:[a-z_]+ )?(?:id=)?([0-9]+) (?:into|in|from) ([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)(?:[ ,;:)(].*)?$',
            ['id', 'rel']) END AS write_line,
        CASE WHEN signal = 'received_change' THEN regexp_extract(line,
            '^received postgres_changes (?:INSERT|UPDATE|DELETE) for ([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*) id=([0-9]+)$',
            ['rel', 'id']) END AS received_line
    FROM verbs
)
-- Each CASE below tests disjoint signals, so the order of its WHENs does not change a value; the
-- signals of the bulk of a log (health checks, writes, received changes) come first, so that their
-- rows leave each CASE at once.
SELECT
    ts, source, file_id, "offset", level, line, signal,
    CASE
        WHEN signal IN ('health', 'write', 'received_change') THEN NULL
        WHEN signal IN ('join_error', 'join_timeout') THEN regexp_extract(line, 'for channel (\S+?):?(\s|$)', 1)
        WHEN signal IN ('channel_error', 'channel_closed') THEN regexp_extract(line, '^channel (\S+)', 1)
        WHEN signal = 'joining' THEN regexp_extract(line, 'reconnection: (\S+)', 1)
        WHEN signal = 'sub_state' THEN rtrim(regexp_extract(line, ' for (\S+)', 1), ':')
        WHEN signal = 'unrecognized_frame' THEN nullif(regexp_extract(line, '"topic":"([^"]+)"', 1), '')
        WHEN signal = 'broadcast_sent' THEN nullif(regexp_extract(line, '\btopic=([^\s,)]+)', 1), '')
        WHEN signal IN ('sub_failures_reported') THEN nullif(regexp_extract(line, '(realtime:\S+)', 1), '')
        WHEN signal IN ('unauthorized', 'join_refused', 'auth_error') THEN nullif(regexp_extract(line, 'topic: (\S+)', 1), '')
    END AS topic,
    CASE
        WHEN signal = 'ws_closed' THEN TRY_CAST(regexp_extract(line, 'with code: (\d+)', 1) AS INTEGER)
        WHEN signal = 'connect_failed' THEN TRY_CAST(nullif(regexp_extract(line, 'HTTP (\d{3})', 1), '') AS INTEGER)
    END AS code,
    CASE
        WHEN signal = 'write' THEN write_verb
        WHEN signal IN ('health', 'received_change') THEN error_code
        WHEN signal = 'broadcast_error' THEN regexp_extract(line, 'UnableToBroadcastChanges: :?(\S+)', 1)
        WHEN signal = 'server_version' THEN regexp_extract(line, 'supabase/realtime:v(\d+\.\d+\.\d+)', 1)
        WHEN signal = 'join_error' THEN coalesce(nullif(regexp_extract(line, '''reason'': [''"](.*)[''"]\}$', 1), ''), regexp_extract(line, ': (\{.*\})$', 1))
        WHEN signal = 'sub_state' THEN nullif(regexp_extract(line, '"reason": "(.*)"\}$', 1), '')
        WHEN signal = 'channel_error' THEN nullif(regexp_extract(line, '''message'': ''([^'']*)''', 1), '')
        WHEN signal IN ('connect_failed', 'gave_up') THEN regexp_extract(line, '(?:failed: |Error: )(.*)$', 1)
        WHEN signal = 'unrecognized_frame' THEN regexp_extract(line, '^Unrecognized message format (.*)$', 1)
        WHEN signal = 'broadcast_sent' THEN nullif(regexp_extract(line, '\bevent=([^\s,)]+)', 1), '')
        ELSE error_code
    END AS reason,
    CASE
        WHEN signal = 'health' THEN NULL
        WHEN write_line.rel <> '' THEN write_line.rel
        WHEN received_line.rel <> '' THEN received_line.rel
        WHEN signal IN ('write', 'received_change', 'unexpected_relation', 'empty_record', 'db_error') THEN
            nullif(coalesce(
                CASE WHEN contains(line, ''' and table ''') THEN
                    nullif(regexp_extract(line, 'schema ''(\w+)'' and table ''(\w+)''', ['s', 't'])['s'] || '.' ||
                           regexp_extract(line, 'schema ''(\w+)'' and table ''(\w+)''', ['s', 't'])['t'], '.') END,
                regexp_extract(line, '\b(?:into|in|from|for|on insert into|on update of) ([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)', 1)
            ), '')
        WHEN signal = 'broadcast_sent' THEN 'realtime.messages'
    END AS table_name,
    CASE
        WHEN signal = 'write' THEN CASE write_verb WHEN 'inserted' THEN 'INSERT' WHEN 'updated' THEN 'UPDATE' ELSE 'DELETE' END
        -- 'received postgres_changes ' is 26 characters, and INSERT / UPDATE / DELETE 6 each
        WHEN signal = 'received_change' THEN substring(line, 27, 6)
    END AS op,
    CASE
        WHEN write_line.id <> '' THEN write_line.id
        WHEN received_line.id <> '' THEN received_line.id
        WHEN signal = 'write' THEN nullif(regexp_extract(line, '^(?:inserted|updated|deleted) (?:[a-z_]+ )?(?:id=)?([0-9]+)\b', 1), '')
        WHEN signal IN ('received_change', 'empty_record') AND contains(line, 'id=') THEN nullif(regexp_extract(line, '\bid=([0-9]+)', 1), '')
    END AS record_id,
    CASE WHEN signal = 'broadcast_sent' THEN nullif(regexp_extract(line, '\bpayload=(.*)$', 1), '') END AS payload,
    CASE
        WHEN signal IN ('write', 'received_change') THEN NULL
        WHEN health.realtime <> '' THEN health.realtime || ' ' || health.db || ' ' || health.polling
        WHEN signal = 'health' THEN regexp_extract(line, 'realtime=(\w+)', 1) || ' ' || regexp_extract(line, 'db=(\w+)', 1)
                                     || ' ' || regexp_extract(line, 'polling=(\w+)', 1)
        WHEN signal = 'sub_state' THEN regexp_extract(line, '^subscription state ([A-Z_]+)', 1)
    END AS state
FROM shaped
WHERE signal IS NOT NULL OR level IN ('error', 'critical')
