"""Log presets on realistic lines: the incident-day fixtures and inline lines, recorded with the
real ``rt-record logs`` CLI and read back through ``analyzer.connect``; parser details at the
library level (``LinePreset.parse``, ``detect_preset``, ``compile_logging_format``).

Expected values are written out; offsets are found in the files' bytes, never taken from the parser.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from recorder.errors import ConfigError
from recorder.logfiles import BLOCK_BYTES, PARALLEL_MIN_BYTES
from recorder.logpresets import (
    Context,
    JsonPreset,
    PythonPreset,
    RealtimeServerPreset,
    SupabaseExportPreset,
    compile_logging_format,
    detect_preset,
    error_code_of,
    make_preset,
)
from recorder.redact import redact_text
from recorder.store import WalReader

ROOT = Path(__file__).resolve().parents[1]
FIX = "fixtures/logs"
PY_HEAD = (b"2026-11-24 ",)  # every record of the python-format fixtures starts so
FILE_ID = re.compile(r"^[0-9a-f]+-[0-9a-f]+-[0-9a-f]{16}$")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def record_at(data: bytes, head: str, starts: tuple[bytes, ...] = PY_HEAD) -> tuple[int, str]:
    """Offset and text of the record whose first line begins with ``head``; it runs until the next
    line that begins with one of ``starts`` (plain byte search, independent of the presets)."""
    needle = head.encode()
    off = 0 if data.startswith(needle) else data.index(b"\n" + needle) + 1
    end = off
    while True:
        nl = data.find(b"\n", end)
        end = len(data) if nl < 0 else nl + 1
        if end >= len(data) or data.startswith(starts, end):
            break
    return off, data[off:end].decode().removesuffix("\n")


def parse(preset, data: bytes, *, tz: str = "UTC", date: str | None = None) -> list[dict]:
    """A whole file through ``LinePreset.parse`` (one block, at EOF); rows as dicts."""
    ctx = Context("t", "t.log", "id", tz, date)
    block = preset.parse(data, 0, ctx, eof=True, emit_last=True)
    assert block.consumed == len(data)
    return block.table.to_pylist()


def pick(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def one(rows: list[dict], **match) -> dict:
    found = pick(rows, **match)
    assert len(found) == 1, (match, len(found))
    return found[0]


def summary_line(path: str, records: int, tail: str = "", preset: str = "python") -> str:
    """The text summary ``rt-record logs`` prints for a file (``path`` relative to the repository)."""
    size = (ROOT / path).stat().st_size
    return f"{path}: {records} records, {size} bytes, preset {preset}{tail}"


# ---- the incident day, as `make run` records it -----------------------------------------------


@pytest.fixture(scope="module")
def incident(tmp_path_factory, rt_record, query_logs):
    """The `make run` commands (plus the docker and JSON-lines files) into one store."""
    store = tmp_path_factory.mktemp("incident") / "store"
    runs = {
        "python": rt_record("logs", f"{FIX}/realtime.log", f"{FIX}/bot.log", f"{FIX}/notification.log",
                            "--tz", "UTC", "--store", store),
        "server": rt_record("logs", f"{FIX}/server.log", "--preset", "realtime-server", "--date", "2026-11-24",
                            "--store", store),
        "exports": rt_record("logs", f"{FIX}/realtime_logs_export.json", f"{FIX}/realtime_logs_export.csv",
                             "--source", "supabase", "--store", store),
        "auto": rt_record("logs", f"{FIX}/server_docker.log", f"{FIX}/app.jsonl", "--tz", "UTC", "--store", store),
    }
    rows = query_logs(store)
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    return runs, by_source, store


def read(fixture_logs: Path, name: str) -> bytes:
    return (fixture_logs / name).read_bytes()


def test_make_run_commands_succeed_with_one_summary_line_per_file(incident):
    runs, _, _ = incident
    assert {name: run.returncode for name, run in runs.items()} == {"python": 0, "server": 0, "exports": 0, "auto": 0}
    assert runs["python"].stdout.splitlines() == [
        summary_line(f"{FIX}/realtime.log", 625),
        summary_line(f"{FIX}/bot.log", 227),
        summary_line(f"{FIX}/notification.log", 10),
    ]
    assert runs["server"].stdout.splitlines() == [summary_line(f"{FIX}/server.log", 24, preset="realtime-server")]
    assert runs["exports"].stdout.splitlines() == [
        summary_line(f"{FIX}/realtime_logs_export.json", 9, preset="supabase-export"),
        summary_line(f"{FIX}/realtime_logs_export.csv", 9, preset="supabase-export"),
    ]
    assert runs["auto"].stdout.splitlines() == [
        summary_line(f"{FIX}/server_docker.log", 24, preset="realtime-server"),
        summary_line(f"{FIX}/app.jsonl", 9, preset="json"),
    ]


def test_auto_detection_says_which_preset_it_picked_per_file(incident):
    runs, _, _ = incident
    assert runs["python"].stderr.splitlines() == [
        f"{FIX}/realtime.log: preset python (auto-detected, fit 1.00)",
        f"{FIX}/bot.log: preset python (auto-detected, fit 1.00)",
        f"{FIX}/notification.log: preset python (auto-detected, fit 0.37)",
    ]
    assert runs["server"].stderr == ""  # --preset given: nothing to say
    assert runs["auto"].stderr.splitlines() == [
        f"{FIX}/server_docker.log: preset realtime-server (auto-detected, fit 0.48)",
        f"{FIX}/app.jsonl: preset json (auto-detected, fit 1.00)",
    ]


@pytest.mark.parametrize(
    ("name", "preset"),
    [
        ("realtime.log", "python"),
        ("bot.log", "python"),
        ("notification.log", "python"),
        ("app.jsonl", "json"),
        ("server.log", "realtime-server"),
        ("server_docker.log", "realtime-server"),
        ("realtime_logs_export.json", "supabase-export"),
        ("realtime_logs_export.csv", "supabase-export"),
    ],
)
def test_detect_preset_picks_the_right_preset_for_each_fixture(fixture_logs, name, preset):
    picked, score = detect_preset(read(fixture_logs, name)[: 64 << 10])
    assert picked.name == preset
    assert score > 0.3


def test_source_defaults_to_the_file_stem_and_file_is_the_path_as_given(incident):
    _, by_source, _ = incident
    files = {source: sorted({r["file"] for r in rows}) for source, rows in by_source.items()}
    assert files == {
        "realtime": [f"{FIX}/realtime.log"],
        "bot": [f"{FIX}/bot.log"],
        "notification": [f"{FIX}/notification.log"],
        "server": [f"{FIX}/server.log"],
        "server_docker": [f"{FIX}/server_docker.log"],
        "app": [f"{FIX}/app.jsonl"],
        "supabase": [f"{FIX}/realtime_logs_export.csv", f"{FIX}/realtime_logs_export.json"],
    }
    for rows in by_source.values():
        for file in {r["file"] for r in rows}:
            ids = {r["file_id"] for r in rows if r["file"] == file}
            assert len(ids) == 1 and FILE_ID.match(ids.pop())


def test_every_fixture_byte_is_in_exactly_one_record(incident, fixture_logs):
    _, by_source, _ = incident
    for source in ("realtime", "bot", "notification", "server", "server_docker", "app"):
        rows = sorted(by_source[source], key=lambda r: r["offset"])
        data = read(fixture_logs, Path(rows[0]["file"]).name)
        bounds = [r["offset"] for r in rows] + [len(data)]
        assert bounds[0] == 0
        texts = [data[a:b].decode().removesuffix("\n") for a, b in zip(bounds, bounds[1:], strict=False)]
        assert [r["raw"] for r in rows] == [redact_text(text) for text in texts]
        assert all(r["parsed"] for r in rows)


# -- realtime.log: realtime-py 2.34 at DEBUG


def test_realtime_log_planted_key_is_redacted_in_message_and_raw(incident, fixture_logs):
    _, by_source, store = incident
    data = read(fixture_logs, "realtime.log")
    first = min(by_source["realtime"], key=lambda r: r["offset"])
    signature = "EbLEXyEpeSPqXAWZTNdwj9KX4tq1Ieo6AYs9TNFC5x0"
    assert signature.encode() in data
    redacted_url = (
        "ws://kong:8000/realtime/v1/websocket?apikey=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJyb2xlIjoiYW5vbiIsImlzcyI6InN1cGFiYXNlIiwiaWF0IjoxNzYzOTQyNDAwLCJleHAiOjE5MjE3MDg4MDB9.REDACTED&vsn=1.0.0"
    )
    assert first == {
        "ts": utc(2026, 11, 24, 8, 0, 3, 118000),
        "source": "realtime",
        "file": f"{FIX}/realtime.log",
        "file_id": first["file_id"],
        "offset": 0,
        "level": "debug",
        "logger": "realtime._async.client",
        "message": f"Attempting to connect to WebSocket at {redacted_url}",
        "error_code": None,
        "project": None,
        "raw": f"2026-11-24 08:00:03,118 - realtime._async.client - DEBUG - Attempting to connect to WebSocket at {redacted_url}",
        "parsed": True,
    }
    assert not [r for r in by_source["realtime"] if signature in r["raw"] or signature in r["message"]]
    # nor in any byte the recorder wrote: parts and write-ahead log, decoded
    for path in store.rglob("*"):
        if path.name.startswith("wal-"):
            for _lsn, _meta, rows in WalReader(path):
                assert signature not in json.dumps(rows().to_pylist(), default=str)
        elif path.is_file():
            assert signature.encode() not in path.read_bytes()


def test_realtime_log_heartbeats_and_join_sends(incident, fixture_logs):
    _, by_source, _ = incident
    rows = by_source["realtime"]
    data = read(fixture_logs, "realtime.log")
    beat = 'send: {"event":"heartbeat","payload":{},"topic":"phoenix","ref":null,"join_ref":null}'
    beats = pick(rows, message=beat)
    assert len(beats) == data.count(b" - DEBUG - " + beat.encode()) == 176
    assert {(r["level"], r["logger"]) for r in beats} == {("debug", "realtime._async.client")}
    first_join = [r for r in rows if r["message"].startswith('send: {"event":"phx_join"')][0]
    # realtime-py 2.34 writes "<redacted>" itself; the recorder's scrubbing still rewrites the field
    assert first_join["message"] == (
        'send: {"event":"phx_join","payload":{"config":{"broadcast":{"ack":false,"self":false},'
        '"presence":{"key":"","enabled":false},"private":false,"postgres_changes":[{"event":"*",'
        '"schema":"public","table":"orders"}]},"access_token":"REDACTED"},"topic":"realtime:public:orders",'
        '"ref":"1","join_ref":"1"}'
    )
    assert first_join["ts"] == utc(2026, 11, 24, 8, 0, 3, 163000)


def test_realtime_log_abnormal_closes_keep_the_trailing_space(incident, fixture_logs):
    _, by_source, _ = incident
    data = read(fixture_logs, "realtime.log")
    closes = pick(by_source["realtime"], message="WebSocket connection closed with code: 1006, reason: ")
    expected = []
    for ts, stamp in [
        (utc(2026, 11, 24, 8, 14, 37, 905000), "08:14:37,905"),
        (utc(2026, 11, 24, 8, 33, 16, 870000), "08:33:16,870"),
        (utc(2026, 11, 24, 8, 45, 12, 330000), "08:45:12,330"),
    ]:
        off, text = record_at(data, f"2026-11-24 {stamp} - realtime._async.client - ERROR - WebSocket connection closed")
        expected.append((ts, off, "error", text))
    assert [(r["ts"], r["offset"], r["level"], r["raw"]) for r in closes] == expected
    assert expected[0][3].endswith("reason: ")


def test_realtime_log_unrecognized_message_keeps_the_pydantic_report(incident, fixture_logs):
    _, by_source, _ = incident
    data = read(fixture_logs, "realtime.log")
    head = "2026-11-24 08:21:09,447 - realtime._async.client - ERROR - "
    off, text = record_at(data, head + "Unrecognized message format")
    row = one(by_source["realtime"], offset=off)
    lines = row["message"].splitlines()
    assert row["raw"] == text
    assert row["message"] == text.removeprefix(head)
    assert (row["ts"], row["level"], row["logger"], row["error_code"]) == (
        utc(2026, 11, 24, 8, 21, 9, 447000), "error", "realtime._async.client", None
    )
    assert len(lines) == 2 + 29 * 3
    assert lines[0].startswith("Unrecognized message format '{\"event\":\"postgres_changes\"")
    assert lines[1] == (
        "29 validation errors for union[SystemMessage,ReplyMessage,HeartbeatMessage,BroadcastMessage,"
        "PresenceStateMessage,PresenceDiffMessage,PostgresChangesMessage,ChannelErrorMessage,ChannelCloseMessage]"
    )
    assert lines[-3:] == [
        "ChannelCloseMessage.event",
        "  Input should be <ChannelEvents.close: 'phx_close'> [type=literal_error, input_value='postgres_changes', input_type=str]",
        "    For further information visit https://errors.pydantic.dev/2.14/v/literal_error",
    ]


def test_realtime_log_join_errors_carry_the_error_code_of_the_reason(incident):
    _, by_source, _ = incident
    channel = pick(by_source["realtime"], logger="realtime._async.channel", level="error")
    assert [(r["ts"], r["message"], r["error_code"]) for r in channel] == [
        (
            utc(2026, 11, 24, 8, 33, 17, 6000),
            "join push error for channel realtime:public:orders: {'reason': 'ClientJoinRateLimitReached: Too many joins per second'}",
            "ClientJoinRateLimitReached",
        ),
        (
            utc(2026, 11, 24, 8, 33, 47, 35000),
            "join push error for channel realtime:public:orders: {'reason': 'Unauthorized: You do not have "
            "permissions to read from this Channel topic: public:orders'}",
            "Unauthorized",
        ),
        (utc(2026, 11, 24, 8, 33, 59, 38000), "join push timeout for channel realtime:public:orders", None),
    ]


def test_realtime_log_gives_up_and_asyncio_reports_the_lost_task(incident, fixture_logs):
    _, by_source, _ = incident
    rows = by_source["realtime"]
    failed = pick(rows, logger="realtime._async.client", level="error")
    err = "[Errno 111] Connect call failed ('172.18.0.6', 8000)"
    assert [r["message"] for r in failed[-6:]] == [f"Connection attempt failed: {err}"] * 5 + [
        f"Connection failed permanently after 5 attempts. Error: {err}"
    ]
    assert failed[-1]["ts"] == utc(2026, 11, 24, 8, 45, 27, 352000)
    data = read(fixture_logs, "realtime.log")
    off, text = record_at(data, "2026-11-24 08:46:03,517 - asyncio - ERROR - Task exception was never retrieved")
    task = one(rows, logger="asyncio")
    assert (task["offset"], task["ts"], task["level"], task["raw"]) == (
        off, utc(2026, 11, 24, 8, 46, 3, 517000), "error", text
    )
    lines = task["message"].split("\n")
    assert lines[0] == "Task exception was never retrieved"
    assert lines[1].startswith("future: <Task finished name='Task-3471' coro=<AsyncRealtimeClient._listen() done")
    assert "\n\nDuring handling of the above exception, another exception occurred:\n\n" in task["message"]
    assert lines[-1] == f"ConnectionRefusedError: {err}"
    assert len(lines) == 39


# -- bot.log and notification.log


def test_bot_log_writes_errors_health_checks_and_traceback(incident, fixture_logs):
    _, by_source, _ = incident
    rows = by_source["bot"]
    data = read(fixture_logs, "bot.log")
    off, text = record_at(data, "2026-11-24 08:12:40,402 - bot.orders - INFO - inserted order 4711")
    assert one(rows, offset=off) == {
        "ts": utc(2026, 11, 24, 8, 12, 40, 402000),
        "source": "bot",
        "file": f"{FIX}/bot.log",
        "file_id": rows[0]["file_id"],
        "offset": off,
        "level": "info",
        "logger": "bot.orders",
        "message": "inserted order 4711 into public.orders (customer 205, total 64.00)",
        "error_code": None,
        "project": None,
        "raw": text,
        "parsed": True,
    }
    empty = one(rows, level="warning", logger="bot.realtime", ts=utc(2026, 11, 24, 8, 26, 31, 209000))
    assert empty["message"] == "received postgres_changes with empty record for public.orders (UPDATE, old_record id=4706)"
    db = pick(rows, logger="bot.db", level="error")
    assert [r["ts"] for r in db] == [utc(2026, 11, 24, 8, 41, 2, 114000), utc(2026, 11, 24, 8, 41, 32, 560000)]
    assert db[0]["message"] == (
        "database connectivity error on insert into public.orders: {'code': 'PGRST001', 'details': "
        "'connection to server at \"db\" (172.18.0.3), port 5432 failed: Connection refused', 'hint': None, "
        "'message': 'Database client error. Retrying the connection.'}"
    )
    checks = [r for r in rows if r["message"].startswith("health check: ")]
    assert len(checks) == 179
    gaps = [(b["ts"] - a["ts"]).total_seconds() for a, b in zip(checks, checks[1:], strict=False)]
    assert all(29.5 < gap < 30.5 for gap in gaps), gaps
    assert sum(1 for r in checks if "realtime=disconnected" in r["message"]) == 34
    crash = one(rows, logger="bot.handlers", level="error")
    assert crash["message"].split("\n") == [
        "error while handling postgres_changes for public.orders",
        "Traceback (most recent call last):",
        '  File "/srv/orderbot/orderbot/realtime.py", line 84, in on_change',
        '    await self.handle_order_update(payload["data"]["record"])',
        '  File "/srv/orderbot/orderbot/realtime.py", line 117, in handle_order_update',
        '    status = record["status"]',
        "             ~~~~~~^^^^^^^^^^",
        "KeyError: 'status'",
    ]


def test_notification_log_levels_codes_and_traceback(incident):
    _, by_source, _ = incident
    rows = by_source["notification"]
    assert [(r["ts"].strftime("%H:%M:%S.%f")[:-3], r["level"], r["error_code"]) for r in rows] == [
        ("08:13:10.421", "warning", None),
        ("08:13:28.902", "warning", None),
        # "(ClientJoinRateLimitReached, Unauthorized, timeout)" lists codes; it is not one
        ("08:33:59.078", "error", None),
        ("08:41:32.610", "error", None),
        ("08:42:02.750", "info", None),
        ("08:46:00.190", "error", None),
        ("08:55:30.215", "critical", None),
        ("08:55:40.880", "error", None),
        ("08:56:40.902", "info", None),
        ("09:02:15.126", "info", None),
    ]
    failed = rows[7]["message"].split("\n")
    assert (failed[0], failed[-1], len(failed)) == (
        "delivery to admin 60919342 failed, will retry in 60 s", "telegram.error.TimedOut: Timed out", 20
    )


# -- server.log / server_docker.log

SERVER_ROWS = [
    # (time, level, error_code, project, first line of the message)
    ((2026, 11, 24, 8, 0, 1, 318000), "info", None, "realtime-dev", "Starting replication for Broadcast Changes"),
    ((2026, 11, 24, 8, 0, 1, 324000), "info", None, "realtime-dev",
     "Initializing connection with the status: %Realtime.Tenants.ReplicationConnection{"),
    ((2026, 11, 24, 8, 0, 1, 337000), "info", None, "realtime-dev",
     "Checking if replication slot supabase_realtime_messages_replication_slot_ exists"),
    ((2026, 11, 24, 8, 0, 1, 345000), "info", None, "realtime-dev",
     "Create replication slot supabase_realtime_messages_replication_slot_ using plugin pgoutput"),
    ((2026, 11, 24, 8, 0, 1, 359000), "info", None, "realtime-dev",
     "Check publication supabase_realtime_messages_publication for table realtime.messages exists"),
    ((2026, 11, 24, 8, 0, 1, 364000), "info", None, "realtime-dev",
     "Publication supabase_realtime_messages_publication exists, validating contents"),
    ((2026, 11, 24, 8, 0, 1, 376000), "info", None, "realtime-dev",
     "#PID<0.4325.0> Starting stream replication for slot supabase_realtime_messages_replication_slot_ using "
     "publication supabase_realtime_messages_publication and protocol version 2"),
    ((2026, 11, 24, 8, 12, 40, 617000), "error", "UnableToBroadcastChanges", "realtime-dev",
     "UnableToBroadcastChanges: :payload_missing"),
    ((2026, 11, 24, 8, 12, 59, 92000), "error", "UnableToBroadcastChanges", "realtime-dev",
     "UnableToBroadcastChanges: :payload_missing"),
    ((2026, 11, 24, 8, 30, 5, 551000), "warning", None, "realtime-dev",
     "Unexpected relation on schema 'public' and table 'todos'"),
    ((2026, 11, 24, 8, 30, 5, 553000), "warning", None, "realtime-dev",
     "Unexpected relation on schema 'public' and table 'todos'"),
    ((2026, 11, 24, 8, 33, 17, 3000), "error", "ClientJoinRateLimitReached", "realtime-dev",
     "ClientJoinRateLimitReached: Too many joins per second"),
    ((2026, 11, 24, 8, 33, 47, 31000), "error", "Unauthorized", "realtime-dev",
     "Unauthorized: You do not have permissions to read from this Channel topic: public:orders"),
    ((2026, 11, 24, 8, 41, 1, 702000), "warning", None, "realtime-dev",
     "Disconnecting broadcast changes handler in the step : :streaming"),
    ((2026, 11, 24, 8, 42, 9, 130000), "info", None, "realtime-dev", "Starting replication for Broadcast Changes"),
    ((2026, 11, 24, 8, 42, 9, 136000), "info", None, "realtime-dev",
     "Initializing connection with the status: %Realtime.Tenants.ReplicationConnection{"),
    ((2026, 11, 24, 8, 42, 9, 149000), "info", None, "realtime-dev",
     "Checking if replication slot supabase_realtime_messages_replication_slot_ exists"),
    ((2026, 11, 24, 8, 42, 9, 157000), "info", None, "realtime-dev",
     "Create replication slot supabase_realtime_messages_replication_slot_ using plugin pgoutput"),
    ((2026, 11, 24, 8, 42, 9, 171000), "info", None, "realtime-dev",
     "Check publication supabase_realtime_messages_publication for table realtime.messages exists"),
    ((2026, 11, 24, 8, 42, 9, 176000), "info", None, "realtime-dev",
     "Publication supabase_realtime_messages_publication exists, validating contents"),
    ((2026, 11, 24, 8, 42, 9, 188000), "info", None, "realtime-dev",
     "#PID<0.5109.0> Starting stream replication for slot supabase_realtime_messages_replication_slot_ using "
     "publication supabase_realtime_messages_publication and protocol version 2"),
    ((2026, 11, 24, 9, 12, 44, 31000), "info", None, "realtime-dev", "Sent 200 in 4ms"),
    # the clock runs backwards across midnight: the next line is on the next day
    ((2026, 11, 24, 23, 59, 59, 904000), "info", None, None, "GET /api/tenants/realtime-dev/health"),
    ((2026, 11, 25, 0, 0, 0, 107000), "info", None, "realtime-dev", "Sent 200 in 203ms"),
]

STRUCT = """Initializing connection with the status: %Realtime.Tenants.ReplicationConnection{
  tenant_id: "realtime-dev",
  opts: [],
  step: :disconnected,
  publication_name: "supabase_realtime_messages_publication",
  replication_slot_name: "supabase_realtime_messages_replication_slot_",
  output_plugin: "pgoutput",
  proto_version: 2,
  relations: %{},
  buffer: [],
  monitored_pid: #PID<0.4318.0>,
  latency_committed_at: nil,
  query_timeout: 30000
}"""


def server_view(rows: list[dict]) -> list[tuple]:
    return [(r["ts"], r["level"], r["error_code"], r["project"], r["message"].split("\n")[0]) for r in rows]


def test_server_log_with_date_gives_exact_times_codes_and_projects(incident, fixture_logs):
    _, by_source, _ = incident
    rows = by_source["server"]
    assert server_view(rows) == [(utc(*t), *rest) for t, *rest in SERVER_ROWS]
    assert {r["logger"] for r in rows} == {"realtime-server"}
    data = read(fixture_logs, "server.log")
    off, text = record_at(data, "08:00:01.324 ", starts=tuple(f"{h:02d}:".encode() for h in range(24)))
    struct = one(rows, offset=off)
    assert (struct["message"], struct["raw"]) == (STRUCT, text)
    assert text.startswith("08:00:01.324 project=realtime-dev external_id=realtime-dev [info] Initializing")
    missing = pick(rows, error_code="UnableToBroadcastChanges")[0]
    assert missing["raw"] == (
        "08:12:40.617 project=realtime-dev external_id=realtime-dev error_code=UnableToBroadcastChanges "
        "[error] UnableToBroadcastChanges: :payload_missing"
    )
    assert missing["offset"] == data.index(b"08:12:40.617 ")


def test_server_docker_log_takes_the_date_from_the_stamp_and_strips_it_from_messages(incident, fixture_logs):
    _, by_source, _ = incident
    docker, plain = by_source["server_docker"], by_source["server"]
    view = [(r["ts"], r["level"], r["logger"], r["error_code"], r["project"], r["message"]) for r in docker]
    assert view == [(r["ts"], r["level"], r["logger"], r["error_code"], r["project"], r["message"]) for r in plain]
    struct = one(docker, ts=utc(2026, 11, 24, 8, 0, 1, 324000))
    assert struct["message"] == STRUCT
    raw_lines = struct["raw"].split("\n")
    assert len(raw_lines) == 14
    assert all(re.match(r"2026-11-24T08:00:01\.324\d{6}Z ", line) for line in raw_lines)
    data = read(fixture_logs, "server_docker.log")
    assert [r["offset"] for r in docker[-2:]] == [
        data.index(b"2026-11-24T23:59:59.904"), data.index(b"2026-11-25T00:00:00.107")
    ]


def test_server_log_without_date_is_recorded_with_ts_null_and_counted(tmp_path, rt_record, query_logs):
    store = tmp_path / "store"
    run = rt_record("logs", f"{FIX}/server.log", "--preset", "realtime-server", "--store", store)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.splitlines() == [
        summary_line(f"{FIX}/server.log", 24, " (24 without a time (try --date or --tz))", preset="realtime-server")
    ]
    rows = query_logs(store)
    assert len(rows) == 24 and {r["ts"] for r in rows} == {None}
    assert [r["level"] for r in rows[:2]] == ["info", "info"] and rows[7]["error_code"] == "UnableToBroadcastChanges"
    again = rt_record("logs", f"{FIX}/server.log", "--preset", "realtime-server", "--store", tmp_path / "s2",
                      "--format", "json")
    assert json.loads(again.stdout) == [
        {"path": f"{FIX}/server.log", "source": "server", "preset": "realtime-server", "detected": False,
         "records": 24, "unparsed": 0, "no_time": 24, "bytes": 4312, "notes": []}
    ]


def test_server_lines_date_rollover_and_docker_stamps(a_server_line):
    lines = [
        a_server_line("a", time="22:00:00.000"),
        a_server_line("b", time="23:59:59.900"),
        a_server_line("c", time="00:00:00.100"),
        a_server_line("d", time="13:00:00.000"),
        a_server_line("e", time="00:00:01.000"),  # backwards by more than 12 h: another day
        a_server_line("f", time="00:00:00.500"),  # a little backwards: lines out of order, same day
    ]
    rows = parse(RealtimeServerPreset(), ("\n".join(lines) + "\n").encode(), date="2026-11-24")
    assert [r["ts"] for r in rows] == [
        utc(2026, 11, 24, 22), utc(2026, 11, 24, 23, 59, 59, 900000), utc(2026, 11, 25, 0, 0, 0, 100000),
        utc(2026, 11, 25, 13), utc(2026, 11, 26, 0, 0, 1), utc(2026, 11, 26, 0, 0, 0, 500000),
    ]
    docker = [
        # docker stamps the line when it reads it: a few ms later, possibly after midnight
        a_server_line("late", time="23:59:59.998", docker="2026-11-25T00:00:00.001234567Z"),
        # and the container clock may run a little ahead of the host's
        a_server_line("early", time="00:00:00.001", docker="2026-11-24T23:59:59.999999999Z"),
    ]
    rows = parse(RealtimeServerPreset(), ("\n".join(docker) + "\n").encode())
    assert [r["ts"] for r in rows] == [utc(2026, 11, 24, 23, 59, 59, 998000), utc(2026, 11, 25, 0, 0, 0, 1000)]
    # Docker Desktop shows its local date: --tz says which zone that is
    desktop = b"2023-11-22 22:36:15 04:36:15.061 [info] Running migrations\n"
    assert parse(RealtimeServerPreset(), desktop, tz="America/Chicago")[0]["ts"] == utc(2023, 11, 23, 4, 36, 15, 61000)


def test_server_state_carries_the_day_across_blocks(a_server_line):
    data = ("\n".join([a_server_line("x", time="23:59:59.900"), a_server_line("y", time="00:00:00.100"),
                       a_server_line("z", time="00:00:00.200")]) + "\n").encode()
    preset = RealtimeServerPreset()
    cut = data.index(b"00:00:00.100")
    ctx = Context("t", "t.log", "id", "UTC", "2026-11-24")
    first = preset.parse(data[:cut], 0, ctx, eof=False, emit_last=True)
    ctx2 = Context("t", "t.log", "id", "UTC", "2026-11-24", first.state)
    second = preset.parse(data[cut:], cut, ctx2, eof=True, emit_last=True)
    ts = first.table["ts"].to_pylist() + second.table["ts"].to_pylist()
    assert ts == [utc(2026, 11, 24, 23, 59, 59, 900000), utc(2026, 11, 25, 0, 0, 0, 100000),
                  utc(2026, 11, 25, 0, 0, 0, 200000)]
    assert second.table["offset"].to_pylist() == [cut, data.index(b"00:00:00.200")]


# -- Studio exports

EXPORT_ROWS = [
    ((2026, 11, 24, 8, 42, 9, 130352), "info", None, "Starting replication for Broadcast Changes"),
    ((2026, 11, 24, 8, 41, 1, 702986), "warning", None, "Disconnecting broadcast changes handler in the step : :streaming"),
    ((2026, 11, 24, 8, 33, 47, 31134), "error", "Unauthorized",
     "Unauthorized: You do not have permissions to read from this Channel topic: public:orders"),
    ((2026, 11, 24, 8, 33, 17, 3524), "error", "ClientJoinRateLimitReached",
     "ClientJoinRateLimitReached: Too many joins per second"),
    ((2026, 11, 24, 8, 30, 5, 553402), "warning", None, "Unexpected relation on schema 'public' and table 'todos'"),
    ((2026, 11, 24, 8, 30, 5, 551596), "warning", None, "Unexpected relation on schema 'public' and table 'todos'"),
    ((2026, 11, 24, 8, 12, 59, 92711), "error", "UnableToBroadcastChanges", "UnableToBroadcastChanges: :payload_missing"),
    ((2026, 11, 24, 8, 12, 40, 617203), "error", "UnableToBroadcastChanges", "UnableToBroadcastChanges: :payload_missing"),
    ((2026, 11, 24, 8, 0, 1, 318546), "info", None, "Starting replication for Broadcast Changes"),
]


@pytest.mark.parametrize("name", ["realtime_logs_export.json", "realtime_logs_export.csv"])
def test_studio_export_rows_are_exact(incident, fixture_logs, name):
    _, by_source, _ = incident
    rows = [r for r in by_source["supabase"] if r["file"].endswith(name)]
    assert [(r["ts"], r["level"], r["error_code"], r["message"]) for r in rows] == [
        (utc(*t), *rest) for t, *rest in EXPORT_ROWS
    ]
    assert {(r["logger"], r["project"], r["parsed"]) for r in rows} == {("realtime-server", "realtime-dev", True)}
    data = read(fixture_logs, name)
    if name.endswith(".json"):
        assert not data.endswith(b"\n")
        starts = [m.start() + 3 for m in re.finditer(rb"\n  \{", data)]
        assert json.loads(rows[0]["raw"])["timestamp"] == 1795509729130352
    else:
        assert data.startswith(b"id,timestamp,event_message,error_code,metadata\r\n") and not data.endswith(b"\r\n")
        starts = [m.end() for m in re.finditer(rb"\r\n", data)]
        assert rows[0]["raw"] == (
            '45cd8731-79d4-43df-91d4-632bf5a40b95,1795509729130352,Starting replication for Broadcast Changes,null,'
            '"[{""level"":""info"",""external_id"":""realtime-dev"",""project"":""realtime-dev""}]"'
        )
    assert [r["offset"] for r in rows] == starts


def test_csv_export_rows_end_at_newlines_only_and_offsets_count_bytes():
    """A form feed or U+2028 left unquoted by Studio stays inside its row; invalid UTF-8 keeps offsets exact."""
    data = (
        b'id,timestamp,event_message,metadata\r\n'
        b'a,1795509729130352,"multi\nline, with \xe2\x80\xa8 separator",null\r\n'
        b'b\xff,1795509729130353,form \x0c feed and \xc3\xa9,"[{""level"":""error"",""error_code"":""Unauthorized""}]"\r\n'
        b"c,1795509729130354,last,null"
    )
    table, consumed = SupabaseExportPreset().parse_whole(data, Context("s", "f", "id"))
    rows = table.to_pylist()
    assert consumed == len(data)
    assert [(r["offset"], r["message"], r["level"], r["error_code"], r["parsed"]) for r in rows] == [
        (data.index(b"a,"), "multi\nline, with \u2028 separator", None, None, True),
        (data.index(b"b\xff"), "form \x0c feed and \u00e9", "error", "Unauthorized", True),
        (data.index(b"c,"), "last", None, None, True),
    ]
    assert rows[1]["raw"].startswith("b\ufffd,1795509729130353,")


def test_json_export_offsets_survive_invalid_utf8_and_lone_surrogates():
    data = (
        b'[\n  {\n    "id": "a\xff\xfe",\n    "timestamp": 1795509729130352,\n    "event_message": "x\\ud800y"\n  },\n'
        b'  {\n    "id": "b",\n    "timestamp": "2026-11-24T08:00:00.5Z",\n    "event_message": "\xe2\x82 after"\n  },\n'
        b"  oops\n]"
    )
    table, _ = SupabaseExportPreset().parse_whole(data, Context("s", "f", "id"))
    rows = table.to_pylist()
    assert [(r["offset"], r["ts"], r["message"], r["parsed"]) for r in rows] == [
        (data.index(b'{\n    "id": "a'), utc(2026, 11, 24, 8, 42, 9, 130352), "x\ufffdy", True),
        (data.index(b'{\n    "id": "b'), utc(2026, 11, 24, 8, 0, 0, 500000), "\ufffd after", True),
        (data.index(b"oops"), None, "oops\n]", False),
    ]


# -- JSON lines


def test_app_jsonl_rows_from_python_json_logger_and_structlog(incident):
    _, by_source, _ = incident
    rows = by_source["app"]
    assert [(r["ts"], r["level"], r["logger"], r["message"].split("\n")[0]) for r in rows] == [
        (utc(2026, 11, 24, 8, 0, 0, 214000), "info", "bot.main", "orderbot 1.8.2 starting"),
        (utc(2026, 11, 24, 8, 0, 3, 200000), "info", "bot.realtime", "subscription state SUBSCRIBED for realtime:public:orders"),
        (utc(2026, 11, 24, 8, 12, 40, 402117), "info", "bot.orders", "order inserted"),
        (utc(2026, 11, 24, 8, 13, 10, 405332), "warning", "bot.orders", "no realtime event for order"),
        (utc(2026, 11, 24, 8, 26, 31, 209000), "warning", "bot.realtime", "received postgres_changes with empty record for public.orders"),
        (utc(2026, 11, 24, 8, 41, 2, 114000), "error", "bot.db", "database connectivity error on insert into public.orders"),
        (utc(2026, 11, 24, 8, 33, 59, 40118), "error", "bot.realtime", "consecutive subscription failures"),
        (utc(2026, 11, 24, 9, 5, 41, 379004), "error", "bot.handlers", "handler failed"),
        (utc(2026, 11, 24, 9, 30, 0, 2000), "info", "bot.health", "health check: realtime=connected subscription=SUBSCRIBED db=ok polling=off"),
    ]
    exc = rows[5]["message"].split("\n")
    assert exc[1] == "Traceback (most recent call last):"
    assert exc[-1].startswith("postgrest.exceptions.APIError: {'code': 'PGRST001'")
    assert rows[7]["message"].split("\n")[-1] == "KeyError: 'status'"
    assert rows[2]["raw"] == (
        '{"order_id": 4711, "table": "public.orders", "event": "order inserted", "logger": "bot.orders", '
        '"level": "info", "timestamp": "2026-11-24T08:12:40.402117Z"}'
    )


def test_json_lines_with_bad_lines(a_json_line):
    lines = [
        "not json: printed by something else",  # garbage before the first record
        a_json_line("first", levelname="WARNING"),
        "Traceback (most recent call last):",  # not JSON: continues the record before it
        "{broken json",  # looks like JSON, is not: kept unparsed
        json.dumps({"msg": "numbers", "level": "warn", "ts": 1795509729.5, "error_code": "TenantNotFound"}),
        json.dumps({"message": "zone", "time": "2026-11-24T09:00:00+01:00", "project": "abc"}),
        json.dumps({"message": "lone \ud800 surrogate"}),
        json.dumps({"message": "absurd time", "ts": 10**400}),
    ]
    data = ("\n".join(lines) + "\n").encode()  # json.dumps writes the lone surrogate as the escape \ud800
    rows = parse(JsonPreset(), data, tz="Europe/Berlin")
    offsets = [0, data.index(b'{"asctime"'), data.index(b"{broken"), data.index(b'{"msg"'), data.index(b'{"message": "zone'),
               data.index(b'{"message": "lone'), data.index(b'{"message": "absurd')]
    assert [(r["offset"], r["ts"], r["level"], r["message"], r["error_code"], r["project"], r["parsed"]) for r in rows] == [
        (offsets[0], None, None, "not json: printed by something else", None, None, False),
        (offsets[1], utc(2026, 11, 24, 7, 0, 0, 123000), "warning", "first\nTraceback (most recent call last):", None, None, True),
        (offsets[2], None, None, "{broken json", None, None, False),
        (offsets[3], utc(2026, 11, 24, 8, 42, 9, 500000), "warning", "numbers", "TenantNotFound", None, True),
        (offsets[4], utc(2026, 11, 24, 8), None, "zone", None, "abc", True),
        (offsets[5], None, None, "lone \ufffd surrogate", None, None, True),
        (offsets[6], None, None, "absurd time", None, None, True),
    ]


# ---- python logging lines: time zones, levels, --pattern ------------------------------------


def test_tz_conversion_and_dst_gap_and_overlap_are_null_never_guessed(a_log_line):
    lines = [
        a_log_line("winter", ts="2026-11-24 09:12:40,402"),
        a_log_line("summer", ts="2026-07-01 12:00:00,000"),
        a_log_line("gap", ts="2026-03-29 02:30:00,000"),  # clocks jump 02:00 -> 03:00 in Berlin
        a_log_line("overlap", ts="2026-10-25 02:30:00,000"),  # 02:00-03:00 happens twice
        a_log_line("after", ts="2026-10-25 03:30:00,000"),
    ]
    rows = parse(PythonPreset(), ("\n".join(lines) + "\n").encode(), tz="Europe/Berlin")
    assert [(r["message"], r["ts"], r["parsed"]) for r in rows] == [
        ("winter", utc(2026, 11, 24, 8, 12, 40, 402000), True),
        ("summer", utc(2026, 7, 1, 10), True),
        ("gap", None, True),
        ("overlap", None, True),
        ("after", utc(2026, 10, 25, 2, 30), True),
    ]


def test_tz_and_dst_through_the_cli_count_records_without_a_time(tmp_path, rt_record, query_logs, a_log_line):
    path = tmp_path / "berlin.log"
    path.write_text("\n".join([a_log_line("ok", ts="2026-11-24 09:00:00,000"), a_log_line("gap", ts="2026-03-29 02:30:00,000"),
                               a_log_line("overlap", ts="2026-10-25 02:30:00,000")]) + "\n")
    run = rt_record("logs", path, "--tz", "Europe/Berlin", "--store", tmp_path / "store", "--quiet")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    rows = query_logs(tmp_path / "store")
    assert [(r["message"], r["ts"]) for r in rows] == [("ok", utc(2026, 11, 24, 8)), ("gap", None), ("overlap", None)]
    run = rt_record("logs", path, "--tz", "Europe/Berlin", "--store", tmp_path / "s2", "--format", "json")
    assert json.loads(run.stdout)[0]["no_time"] == 2
    run = rt_record("logs", path, "--tz", "Europe/Berlin", "--store", tmp_path / "s3")
    assert run.stdout == f"{path}: 3 records, {path.stat().st_size} bytes, preset python (2 without a time (try --date or --tz))\n"


@pytest.mark.parametrize(
    ("levelname", "level"),
    [
        ("DEBUG", "debug"), ("INFO", "info"), ("WARNING", "warning"), ("WARN", "warning"), ("Warning", "warning"),
        ("ERROR", "error"), ("error", "error"), ("EXCEPTION", "error"), ("CRITICAL", "critical"), ("FATAL", "critical"),
        ("NOTICE", "info"), ("TRACE", "debug"), ("VERBOSE", None),
    ],
)
def test_levels_are_normalised(a_log_line, levelname, level):
    (row,) = parse(PythonPreset(), (a_log_line("x", level=levelname) + "\n").encode())
    assert (row["level"], row["parsed"]) == (level, True)


def test_error_code_only_from_code_colon_or_error_code_field():
    assert [
        error_code_of(text)
        for text in [
            "UnableToBroadcastChanges: :payload_missing",
            "join push error for channel realtime:room1: {'reason': 'ClientJoinRateLimitReached: Too many joins per second'}",
            "upstream said error_code=TenantNotFound status=404",
            "UnknownErrorOnChannel: :invalid_token",
            "receive: '{\"errors\":[\"Error 401: Unauthorized\"]}'",
            "failed 3 times (ClientJoinRateLimitReached, Unauthorized, timeout)",
            "NotACode: x",
        ]
    ] == ["UnableToBroadcastChanges", "ClientJoinRateLimitReached", "TenantNotFound", "UnknownErrorOnChannel",
          None, None, None]


PATTERN_CASES = [
    (
        # logging.basicConfig() without a format: no time at all
        "%(levelname)s:%(name)s:%(message)s",
        [
            "WARNING:realtime._async.client:Warning: listen is deprecated.",
            "ERROR:realtime._async.client:Connection attempt failed: [Errno 111] Connect call failed ('127.0.0.1', 9001)",
            "ERROR:asyncio:Task exception was never retrieved",
            "future: <Task finished name='Task-7' coro=<AsyncRealtimeClient._listen() done>",
        ],
        [
            (None, "warning", "realtime._async.client", "Warning: listen is deprecated."),
            (None, "error", "realtime._async.client",
             "Connection attempt failed: [Errno 111] Connect call failed ('127.0.0.1', 9001)"),
            (None, "error", "asyncio",
             "Task exception was never retrieved\nfuture: <Task finished name='Task-7' coro=<AsyncRealtimeClient._listen() done>"),
        ],
    ),
    (
        "[%(asctime)s] %(levelname)-8s %(name)s: %(message)s",
        [
            "[2026-11-24 08:33:17,006] ERROR    realtime._async.channel: join push error for channel realtime:public:orders: "
            "{'reason': 'ClientJoinRateLimitReached: Too many joins per second'}",
            "[2026-11-24 08:33:17.250] INFO     bot.realtime: note: colons: inside",
            "[2026-11-24 08:33:18] WARNING  bot.realtime: no milliseconds",
        ],
        [
            ((2026, 11, 24, 8, 33, 17, 6000), "error", "realtime._async.channel",
             "join push error for channel realtime:public:orders: {'reason': 'ClientJoinRateLimitReached: Too many joins per second'}"),
            ((2026, 11, 24, 8, 33, 17, 250000), "info", "bot.realtime", "note: colons: inside"),
            ((2026, 11, 24, 8, 33, 18), "warning", "bot.realtime", "no milliseconds"),
        ],
    ),
    (
        # datefmt="%Y-%m-%d %H:%M:%S": the milliseconds come from %(msecs)
        "%(asctime)s.%(msecs)03d %(process)d %(threadName)s %(filename)s:%(lineno)d %(message)s",
        [
            "2026-11-24 08:45:27.352 4242 MainThread client.py:217 Connection failed permanently after 5 attempts.",
            "2026-11-24 08:45:28.007 4242 asyncio_0 worker.py:31 done",
        ],
        [
            ((2026, 11, 24, 8, 45, 27, 352000), None, None, "Connection failed permanently after 5 attempts."),
            ((2026, 11, 24, 8, 45, 28, 7000), None, None, "done"),
        ],
    ),
    (
        "%(message)s [%(name)s]",
        ["inserted order 4711 into public.orders [bot.orders]", "Traceback (most recent call last):",
         "received postgres_changes with empty record [bot.realtime]"],
        [
            (None, None, "bot.orders", "inserted order 4711 into public.orders\nTraceback (most recent call last):"),
            (None, None, "bot.realtime", "received postgres_changes with empty record"),
        ],
    ),
]


@pytest.mark.parametrize(("fmt", "lines", "expected"), PATTERN_CASES, ids=[c[0] for c in PATTERN_CASES])
def test_pattern_formats(fmt, lines, expected):
    data = ("\n".join(lines) + "\n").encode()
    rows = parse(make_preset("python", fmt), data)
    want = [(utc(*t) if t else None, level, logger, message) for t, level, logger, message in expected]
    assert [(r["ts"], r["level"], r["logger"], r["message"]) for r in rows] == want
    assert all(r["parsed"] for r in rows)
    assert rows[0]["offset"] == 0 and [r["raw"].split("\n")[0] for r in rows] == [
        line for line in lines if not line.startswith(("future:", "Traceback"))
    ]


def test_pattern_through_the_cli(tmp_path, rt_record, query_logs):
    path = tmp_path / "plain.log"
    fmt, lines, _ = PATTERN_CASES[1]
    path.write_text("\n".join(lines) + "\n")
    run = rt_record("logs", path, "--pattern", fmt, "--tz", "UTC", "--store", tmp_path / "store")
    assert run.returncode == 0
    assert run.stderr == f"{path}: preset python (auto-detected, fit 1.00)\n"
    rows = query_logs(tmp_path / "store")
    assert [(r["level"], r["logger"], r["error_code"]) for r in rows] == [
        ("error", "realtime._async.channel", "ClientJoinRateLimitReached"), ("info", "bot.realtime", None),
        ("warning", "bot.realtime", None),
    ]
    bad = rt_record("logs", path, "--pattern", "%(asctime)s %(levelname)s", "--store", tmp_path / "s2")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == "rt-record: error: --pattern '%(asctime)s %(levelname)s' has no %(message)s field\n"
    assert not (tmp_path / "s2").exists()


def test_compile_logging_format_rejects_what_it_cannot_read():
    with pytest.raises(ConfigError, match=r"has no %\(message\)s field"):
        compile_logging_format("%(asctime)s %(levelname)s")
    with pytest.raises(ConfigError, match=r"%\(color\) is not a logging attribute"):
        compile_logging_format("%(color)s %(message)s")
    assert compile_logging_format("%(levelname)s:%(name)s:%(message)s") == (
        r"^(?P<_p>(?P<levelname>[A-Za-z]+):(?P<name>\S+?):)", True
    )


# ---- bad input through the CLI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, rt_record, query_logs):
    """One file per kind of bad input, recorded in one CLI run."""
    folder = tmp_path_factory.mktemp("bad")
    head = "2026-11-24 08:00:00,000 - bot.main - INFO - "
    files = {
        "invalid_utf8.log": (head + "caf\xe9 ").encode("utf-8") + b"\xff\xfe broken \xe2\x82\n" + (head + "next\n").encode(),
        "nul.log": (head + "nul\x00inside\n").encode() + b"\x00\x00\x00\n" + (head + "after\n").encode(),
        "huge.log": (head + "x" * (1 << 20) + "\n" + head + "small\n").encode(),
        "empty.log": b"",
        "no_newline.log": (head + "first\n" + head + "last without newline").encode(),
        "crlf.log": (head + "crlf\r\n  continued\r\n" + head.replace("INFO", "ERROR") + "two\r\n").encode(),
        "bad_time.log": ("2026-13-45 25:61:00,000 - bot.main - ERROR - month 13\n" + head + "fine\n").encode(),
        "garbage.log": b"\x1b[32mstarting...\x1b[0m\nplain text\n" + (head + "first record\n").encode(),
        "lines.jsonl": b'{"message": "one", "level": "info", "time": "2026-11-24T08:00:00Z"}\nplain text line\n'
        b'{"message": "two", "level": "error", "time": "2026-11-24T08:00:01Z"}\n',
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    store = folder / "store"
    run = rt_record("logs", *[folder / name for name in files], "--tz", "UTC", "--store", store)
    rows = query_logs(store)
    return folder, files, run, {name: [r for r in rows if r["file"].endswith("/" + name)] for name in files}


def test_bad_inputs_summary(bad_inputs):
    folder, files, run, _ = bad_inputs
    assert run.returncode == 0, run.stderr
    sizes = {name: len(data) for name, data in files.items()}
    tails = {
        "invalid_utf8.log": (2, ""), "nul.log": (2, ""), "huge.log": (2, ""), "empty.log": (0, ""),
        "no_newline.log": (2, ""), "crlf.log": (2, ""), "bad_time.log": (2, " (1 without a time (try --date or --tz))"),
        "garbage.log": (3, " (2 unparsed)"), "lines.jsonl": (2, ""),
    }
    lines = []
    for name, (records, tail) in tails.items():
        preset = "-" if name == "empty.log" else "json" if name.endswith(".jsonl") else "python"
        lines.append(f"{folder / name}: {records} records, {sizes[name]} bytes, preset {preset}{tail}")
        if name == "garbage.log":
            lines.append(f"  note: first line the python preset could not parse: {chr(27) + '[32mstarting...' + chr(27) + '[0m'!r}")
    assert run.stdout.splitlines() == lines


def test_bad_inputs_rows(bad_inputs):
    _, files, _, rows = bad_inputs
    view = {name: [(r["offset"], r["level"], r["message"], r["parsed"]) for r in found] for name, found in rows.items()}
    nxt = files["invalid_utf8.log"].index(b"2026", 10)
    assert view["invalid_utf8.log"] == [(0, "info", "caf\u00e9 \ufffd\ufffd broken \ufffd", True), (nxt, "info", "next", True)]
    assert view["nul.log"] == [(0, "info", "nul\x00inside\n\x00\x00\x00", True), (files["nul.log"].index(b"2026", 10), "info", "after", True)]
    big = rows["huge.log"]
    assert [len(r["message"]) for r in big] == [1 << 20, 5] and big[1]["offset"] == (1 << 20) + 45
    assert view["empty.log"] == []
    assert view["no_newline.log"] == [
        (0, "info", "first", True), (files["no_newline.log"].index(b"2026", 10), "info", "last without newline", True)
    ]
    assert view["crlf.log"] == [(0, "info", "crlf\n  continued", True), (files["crlf.log"].index(b"2026", 10), "error", "two", True)]
    assert rows["crlf.log"][0]["raw"] == "2026-11-24 08:00:00,000 - bot.main - INFO - crlf\n  continued"
    assert [(r["ts"], r["level"], r["parsed"]) for r in rows["bad_time.log"]] == [(None, "error", True), (utc(2026, 11, 24, 8), "info", True)]
    garbage = files["garbage.log"]
    assert view["garbage.log"] == [
        (0, None, "\x1b[32mstarting...\x1b[0m", False),
        (garbage.index(b"plain"), None, "plain text", False),
        (garbage.index(b"2026"), "info", "first record", True),
    ]
    assert view["lines.jsonl"] == [
        (0, "info", "one\nplain text line", True),
        (files["lines.jsonl"].index(b'{"message": "two"'), "error", "two", True),
    ]


def test_missing_path_or_directory_exits_2_with_one_line(tmp_path, rt_record):
    (tmp_path / "logs").mkdir()
    missing = rt_record("logs", "nope.log", "--store", tmp_path / "store", cwd=tmp_path)
    assert (missing.returncode, missing.stdout, missing.stderr) == (2, "", "rt-record: error: nope.log: no such file\n")
    folder = rt_record("logs", "logs", "--store", tmp_path / "store", cwd=tmp_path)
    assert (folder.returncode, folder.stdout) == (2, "")
    assert folder.stderr == "rt-record: error: logs: is a directory (give the log files, e.g. logs/*.log)\n"
    assert not (tmp_path / "store").exists()  # checked before the store is touched


def test_recording_again_adds_nothing_and_source_can_be_named(tmp_path, rt_record, query_logs):
    store = tmp_path / "store"
    first = rt_record("logs", f"{FIX}/notification.log", "--tz", "UTC", "--source", "admins", "--store", store, "--quiet")
    again = rt_record("logs", f"{FIX}/notification.log", "--tz", "UTC", "--source", "admins", "--store", store)
    assert (first.returncode, again.returncode) == (0, 0)
    assert again.stdout == f"{FIX}/notification.log: 0 records, 0 bytes, preset python\n"
    rows = query_logs(store)
    assert len(rows) == 10 and {r["source"] for r in rows} == {"admins"}


def test_the_same_file_named_twice_in_one_command_is_recorded_once(tmp_path, rt_record, query_logs, fixture_logs):
    (tmp_path / "latest.log").symlink_to(fixture_logs / "notification.log")
    run = rt_record("logs", fixture_logs / "notification.log", tmp_path / "latest.log", "--tz", "UTC",
                    "--store", tmp_path / "store", "--quiet")
    assert run.returncode == 0
    rows = query_logs(tmp_path / "store")
    keys = [(r["file_id"], r["offset"]) for r in rows]
    assert len(keys) == len(set(keys)) == 10  # (file_id, offset) is the dedup key (design.md)


def test_a_file_parsed_in_parallel_halves_equals_one_block(tmp_path, rt_record, query_logs, a_log_line):
    """Blocks of a few MB are parsed as two halves on two threads (logfiles); rows must not change."""
    size = BLOCK_BYTES + 2 * PARALLEL_MIN_BYTES + 100_000  # several blocks, each cut in two
    lines = []
    for i in range(size // 64):
        lines.append(a_log_line(f"order {i} inserted", ts=f"2026-11-24 08:{i // 1000 % 60:02d}:{i % 60:02d},{i % 1000:03d}"))
        if i % 7 == 0:
            lines += ["Traceback (most recent call last):", "  File \"bot.py\", line 1", "KeyError: 'status'"]
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > size
    path = tmp_path / "big.log"
    path.write_bytes(data)
    run = rt_record("logs", path, "--tz", "UTC", "--store", tmp_path / "store", "--quiet")
    assert run.returncode == 0, run.stderr
    stored = query_logs(tmp_path / "store", order='"offset"')
    whole = pl.from_arrow(PythonPreset().parse(data, 0, Context("big", str(path), "id", "UTC"), eof=True, emit_last=True).table)
    assert [r["offset"] for r in stored] == whole["offset"].to_list()
    assert [r["raw"] for r in stored] == whole["raw"].to_list()
    assert [r["ts"] for r in stored] == whole["ts"].to_list()
