"""Generate a realistic Python-logging file for the ingestion benchmark (realtime-py and bot lines).

About 5 % of records are multi-line (tracebacks, pydantic reports). Deterministic for a seed.
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta

SINGLE = [
    ("realtime._async.client", "DEBUG", "send: {\"event\":\"heartbeat\",\"payload\":{},\"topic\":\"phoenix\",\"ref\":null,\"join_ref\":null}"),
    ("realtime._async.client", "DEBUG", "WebSocket connection established successfully"),
    ("realtime._async.channel", "DEBUG", "Rejoining channel after reconnection: realtime:public:orders"),
    ("realtime._async.client", "ERROR", "WebSocket connection closed with code: 1006, reason: "),
    ("realtime._async.client", "DEBUG", "Initiating auto-reconnect sequence..."),
    ("realtime._async.channel", "INFO", "channel realtime:public:orders error: {'channel': 'public:orders', 'extension': 'system', 'message': 'Too many messages per second', 'status': 'error'}"),
    ("realtime._async.channel", "ERROR", "join push error for channel realtime:room1: {'reason': 'ClientJoinRateLimitReached: Too many joins per second'}"),
    ("realtime._async.timer", "DEBUG", "Scheduling callback to run after 1 seconds."),
    ("bot.realtime", "INFO", "subscription state SUBSCRIBED for realtime:public:orders"),
    ("bot.realtime", "WARNING", "received postgres_changes with empty record for public.orders"),
    ("bot.handlers", "INFO", "order 4711 inserted by admin 12345, notifying 3 admins"),
    ("bot.health", "INFO", "health check ok: realtime connected, last event 12.4 s ago, polling fallback off"),
    ("bot.db", "ERROR", "database query failed: connection to server at \"db.example.supabase.co\" failed: timeout expired"),
    ("notification", "INFO", "sent notification to admin 12345: New order #4711 (total 42.50 EUR)"),
]

MULTI = [
    ("realtime._async.client", "ERROR",
     "Unrecognized message format 'not json at all'\n"
     "1 validation error for union[SystemMessage,ReplyMessage,HeartbeatMessage,BroadcastMessage,PresenceStateMessage,PresenceDiffMessage,PostgresChangesMessage,ChannelErrorMessage,ChannelCloseMessage]\n"
     "  Invalid JSON: expected ident at line 1 column 2 [type=json_invalid, input_value='not json at all', input_type=str]\n"
     "    For further information visit https://errors.pydantic.dev/2.14/v/json_invalid"),
    ("bot.handlers", "ERROR",
     "callback failed for realtime:public:orders\n"
     "Traceback (most recent call last):\n"
     "  File \"/app/bot/handlers.py\", line 88, in on_change\n"
     "    order = payload[\"data\"][\"record\"][\"id\"]\n"
     "            ~~~~~~~~~~~~~~~~~^^^^^^^^^^\n"
     "KeyError: 'record'"),
]


def generate(path: str, lines: int, seed: int = 1) -> int:
    """Write at least ``lines`` physical lines to ``path``; return the byte size."""
    rnd = random.Random(seed)
    t = datetime(2026, 11, 24, 8, 0, 0)
    written = 0
    size = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        buf = []
        while written < lines:
            t += timedelta(milliseconds=rnd.randint(1, 40))
            if rnd.random() < 0.05:
                name, level, msg = rnd.choice(MULTI)
            else:
                name, level, msg = rnd.choice(SINGLE)
            stamp = t.strftime("%Y-%m-%d %H:%M:%S") + f",{t.microsecond // 1000:03d}"
            rec = f"{stamp} - {name} - {level} - {msg}\n"
            buf.append(rec)
            written += rec.count("\n")
            if len(buf) >= 10000:
                chunk = "".join(buf)
                fh.write(chunk)
                size += len(chunk.encode())
                buf = []
        chunk = "".join(buf)
        fh.write(chunk)
        size += len(chunk.encode())
    return size


if __name__ == "__main__":
    print(generate(sys.argv[1], int(sys.argv[2])))
