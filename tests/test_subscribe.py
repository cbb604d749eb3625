"""``rt-record subscribe``: the recording client against the mock server on 127.0.0.1 port 0, the store it
writes (read back through ``analyzer.connect``), its reconnects, and the CLI as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

import pytest
from realtime import AsyncRealtimeClient

from analyzer import connect as connect_store
from recorder.codec import IN, OUT, V2, Frame
from recorder.errors import ConfigError
from recorder.mockserver import MockRealtimeServer, binding_id
from recorder.redact import redact_bytes
from recorder.subscribe import (
    ChannelLost,
    ChannelSpec,
    HeartbeatAnswered,
    Joined,
    JoinFailed,
    SubscribeError,
    SubscriberProtocol,
    backoff_delay,
    channel_topic,
    join_payload,
    parse_postgres_changes,
    subscribe,
    websocket_url,
)
from tests.support import a_jwt as _a_jwt
from tests.support import run

ROOT = Path(__file__).resolve().parents[1]
SIGNATURE = "fakeSigSubscribe-Zq7w3"

def a_jwt(role: str = "anon", signature: str = SIGNATURE) -> str:
    return _a_jwt(role, signature)


ORDERS = {"event": "*", "schema": "public", "table": "orders"}


def query_frames(store: Path, where: str = "true") -> list[dict]:
    """Rows of the ``frames`` view, sessions in the order they started, then by seq."""
    con = connect_store(store)
    try:
        cur = con.execute(
            f"""SELECT *, min(ts) OVER (PARTITION BY session_id) AS session_start FROM frames
                WHERE {where} ORDER BY session_start, session_id, seq"""
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def sessions_of(rows: list[dict]) -> list[list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["session_id"], []).append(row)
    return list(out.values())


class Recording:
    """A ``subscribe()`` task with its stop event and a way to await the frames the client has seen."""

    def __init__(self, server: MockRealtimeServer, store: Path, channels=("orders",), **kwargs) -> None:
        self.stop = asyncio.Event()
        self.seen: list[tuple[str, Frame | None]] = []
        self.said: list[str] = []
        self._changed = asyncio.Event()
        kwargs.setdefault("postgres_changes", ["*:public.orders"])
        kwargs.setdefault("heartbeat", 0.1)
        kwargs.setdefault("backoff", (0.02, 0.1))
        self.task = asyncio.create_task(
            subscribe(
                server.url,
                a_jwt(),
                list(channels),
                str(store),
                stop=self.stop,
                say=self.said.append,
                on_frame=self._on_frame,
                **kwargs,
            )
        )

    def _on_frame(self, direction: str, data, frame: Frame | None) -> None:
        self.seen.append((direction, frame))
        self._changed.set()

    def count(self, direction: str, event: str, topic: str | None = None) -> int:
        return sum(
            1
            for d, f in self.seen
            if d == direction and f and f.event == event and (topic in (None, f.topic))
        )

    async def wait_seen(
        self, direction: str, event: str, count: int, *, topic: str | None = None, timeout=5.0
    ):
        async def until():
            while self.count(direction, event, topic) < count:
                if self.task.done():
                    self.task.result()
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def finish(self):
        self.stop.set()
        return await self.task


def assert_no_secret(store: Path) -> None:
    """Neither the key nor its signature in any byte of any file under the store (WAL included)."""
    files = [p for p in store.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert SIGNATURE.encode() not in data, path
        assert a_jwt().encode() not in data, path


def assert_matches_server_log(session: list[dict], conn) -> None:
    """The session's frames are exactly what the server received (out) and sent (in), in order."""
    frames = [r for r in session if r["kind"] in ("text", "binary")]
    for direction, logged in ((OUT, conn.received), (IN, conn.sent)):
        rows = [r for r in frames if r["direction"] == direction]
        expected = [redact_bytes(f.data.encode() if isinstance(f.data, str) else f.data) for f in logged]
        assert [bytes(r["raw"]) for r in rows] == expected, direction
        assert [(r["topic"], r["event"], r["ref"]) for r in rows] == [
            (f.topic, f.event, f.ref) for f in logged
        ]


# ---- pure pieces -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "binding"),
    [
        ("*:public.orders", {"event": "*", "schema": "public", "table": "orders"}),
        ("insert:orders", {"event": "INSERT", "schema": "public", "table": "orders"}),
        (
            "UPDATE:shop.orders:id=eq.42",
            {"event": "UPDATE", "schema": "shop", "table": "orders", "filter": "id=eq.42"},
        ),
        ("DELETE:public.*", {"event": "DELETE", "schema": "public"}),
        (
            "*:public.orders:status=in.(open,paid),created_at=gt.2026-11-24T08:00:00",
            {
                "event": "*",
                "schema": "public",
                "table": "orders",
                "filter": "status=in.(open,paid),created_at=gt.2026-11-24T08:00:00",
            },
        ),
    ],
)
def test_parse_postgres_changes(spec: str, binding: dict) -> None:
    assert parse_postgres_changes(spec) == binding


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("orders", "expected EVENT:SCHEMA.TABLE[:FILTER]"),
        ("UPSERT:public.orders", "unknown event 'UPSERT'"),
        ("*:public.", "bad table 'public.'"),
        ("*:", "bad table ''"),
        ("*:public.orders:id==1", "bad filter 'id==1'"),
        ("*:public.orders:id=approx.1", "bad filter"),
    ],
)
def test_parse_postgres_changes_errors_are_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_postgres_changes(spec)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"--postgres-changes {spec!r}: ")


def test_websocket_url_is_the_one_realtime_py_connects_to() -> None:
    for url in (
        "ws://127.0.0.1:4000/realtime/v1",
        "https://abc.supabase.co/realtime/v1",
        "http://h:8000/realtime/v1",
    ):
        official = AsyncRealtimeClient(url, token="a key/with+chars").endpoint_url()
        assert websocket_url(url, "a key/with+chars") == official
    assert websocket_url("wss://h/socket/websocket?log_level=info", "k", V2) == (
        "wss://h/socket/websocket?log_level=info&apikey=k&vsn=2.0.0"
    )
    with pytest.raises(ConfigError, match=r"expected ws\(s\)://HOST/realtime/v1"):
        websocket_url("ftp://h/realtime/v1", "k")


def test_channel_topic_and_join_payload() -> None:
    assert channel_topic("room1") == channel_topic("realtime:room1") == "realtime:room1"
    with pytest.raises(ConfigError, match="channel name is empty"):
        channel_topic("realtime:")
    assert json.dumps(join_payload([ORDERS], "tok"), separators=(",", ":")) == (
        '{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":false},"private":false,'
        '"postgres_changes":[{"event":"*","schema":"public","table":"orders"}]},"access_token":"tok"}'
    )


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    assert [backoff_delay(n, 1.0, 30.0, rng=lambda: 1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(3, 1.0, 30.0, rng=lambda: 0.0) == 0.0
    assert backoff_delay(10_000, 1.0, 30.0, rng=lambda: 0.5) == 15.0


def test_protocol_refs_joins_heartbeats_and_losses() -> None:
    proto = SubscriberProtocol([ChannelSpec("realtime:a", [ORDERS]), ChannelSpec("realtime:b")], "tok")
    joins = proto.connected()
    assert [(f.topic, f.ref, f.join_ref) for f in joins] == [
        ("realtime:a", "1", "1"),
        ("realtime:b", "2", "2"),
    ]
    beat = proto.heartbeat(now=10.0)
    assert (beat.topic, beat.event, beat.ref) == ("phoenix", "heartbeat", "3")
    assert proto.receive(Frame("phoenix", "phx_reply", {"status": "ok", "response": {}}, "3"), now=10.25) == [
        HeartbeatAnswered("3", 0.25)
    ]
    assert proto.heartbeat_pending is None
    ok = {"status": "ok", "response": {"postgres_changes": [{**ORDERS, "id": 5}]}}
    assert proto.receive(Frame("realtime:a", "phx_reply", ok, "1"), now=0) == [Joined("realtime:a", [5])]
    error = {"status": "error", "response": {"reason": "Unauthorized: no"}}
    assert proto.receive(Frame("realtime:b", "phx_reply", error, "2"), now=0) == [
        JoinFailed("realtime:b", "Unauthorized: no")
    ]
    assert proto.receive(Frame("realtime:a", "phx_close", {}, "1"), now=0) == [
        ChannelLost("realtime:a", "phx_close")
    ]
    assert proto.channels["realtime:a"].failures == 1
    assert proto.join("realtime:a").ref == "4"  # refs never repeat within a run
    assert proto.join_timed_out("realtime:a", "4") and not proto.join_timed_out("realtime:a", "4")


# ---- recording against the mock server ---------------------------------------------------------------------


def test_records_join_changes_and_heartbeats_exactly(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def body():
        async with MockRealtimeServer() as server:
            rec = Recording(server, store)
            conn = await server.wait_joined("orders")
            for i in range(5):
                await server.insert("orders", {"id": i, "status": "new"})
            await server.update("orders", {"id": 1, "status": "paid"}, {"id": 1})
            await rec.wait_seen(IN, "postgres_changes", 6)
            await server.wait_received("heartbeat", count=2)
            await rec.wait_seen(IN, "phx_reply", 3)  # join reply + two heartbeat replies
            stats = await rec.finish()
            await server.wait_closed()
            return conn, stats

    conn, stats = run(body())
    rows = query_frames(store)
    (session,) = sessions_of(rows)
    assert [r["seq"] for r in session] == list(range(len(session)))
    assert {r["source"] for r in session} == {"subscribe"}
    assert session[0]["kind"] == "open" and session[-1]["kind"] == "close"
    opened = json.loads(session[0]["payload"])
    assert opened["attempt"] == 1 and opened["gap_s"] is None and opened["previous_session"] is None
    assert SIGNATURE not in opened["url"] and "vsn=1.0.0" in opened["url"]
    closed = session[-1]
    assert (closed["direction"], closed["close_code"]) == (OUT, 1000)
    assert json.loads(closed["payload"])["why"] == "stop"
    assert_matches_server_log(session, conn)

    join = session[1]
    assert (join["direction"], join["event"], join["ref"], join["join_ref"]) == (OUT, "phx_join", "1", "1")
    payload = json.loads(join["payload"])
    assert payload["config"]["postgres_changes"] == [ORDERS]
    assert payload["access_token"].startswith("eyJ") and SIGNATURE not in payload["access_token"]
    changes = [r for r in session if r["event"] == "postgres_changes"]
    assert len(changes) == 6
    assert all(json.loads(r["payload"])["ids"] == [binding_id(ORDERS)] for r in changes)

    # heartbeat round trips: every out heartbeat ref N has a later in phx_reply ref N on topic phoenix
    beats = [r for r in session if r["event"] == "heartbeat"]
    assert len(beats) >= 2 and all(b["ref"].isdigit() for b in beats)
    for beat in beats[:2]:
        reply = [
            r
            for r in session
            if r["topic"] == "phoenix" and r["event"] == "phx_reply" and r["ref"] == beat["ref"]
        ]
        assert len(reply) == 1 and reply[0]["seq"] > beat["seq"] and reply[0]["direction"] == IN
    assert stats.heartbeat_replies >= 2 and stats.rtt_summary()["count"] == stats.heartbeat_replies
    assert (stats.connections, stats.joins, stats.frames_in, stats.frames_out) == (
        1,
        1,
        len(conn.sent),
        len(conn.received),
    )
    assert stats.recorded == len(rows) and stats.unrecorded == 0
    assert_no_secret(store)


def test_reconnects_after_server_close_and_abort_with_new_sessions(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def body():
        async with MockRealtimeServer() as server:
            rec = Recording(server, store, heartbeat=5.0, rng=lambda: 0.5)
            first = await server.wait_joined("orders")
            await server.insert("orders", {"id": 1})
            await rec.wait_seen(IN, "postgres_changes", 1)
            await server.close_connections(1011, "internal error")
            second = await server.wait_joined("orders", 2)
            await server.insert("orders", {"id": 2})
            await rec.wait_seen(IN, "postgres_changes", 2)
            await server.close_connections(1006)  # no close frame
            third = await server.wait_joined("orders", 3)
            await server.insert("orders", {"id": 3})
            await rec.wait_seen(IN, "postgres_changes", 3)
            stats = await rec.finish()
            await server.wait_closed(3)
            return [first, second, third], stats, rec.said

    conns, stats, said = run(body())
    sessions = sessions_of(query_frames(store))
    assert len(sessions) == 3 and len({s[0]["session_id"] for s in sessions}) == 3
    for session, conn in zip(sessions, conns, strict=True):
        assert [r["seq"] for r in session] == list(range(len(session)))
        assert_matches_server_log(session, conn)
        assert [
            json.loads(r["payload"])["data"]["record"] for r in session if r["event"] == "postgres_changes"
        ] == [{"id": conns.index(conn) + 1}]
    opens = [json.loads(s[0]["payload"]) for s in sessions]
    assert [o["attempt"] for o in opens] == [1, 2, 3]
    assert opens[0]["gap_s"] is None and all(o["gap_s"] >= 0 for o in opens[1:])
    assert [o["previous_session"] for o in opens[1:]] == [s[0]["session_id"] for s in sessions[:2]]
    closes = [(s[-1]["direction"], s[-1]["close_code"], json.loads(s[-1]["payload"])) for s in sessions]
    assert [(d, c) for d, c, _ in closes] == [(IN, 1011), (IN, 1006), (OUT, 1000)]
    assert closes[0][2]["reason"] == "internal error" and closes[0][2]["clean"] is True
    assert closes[1][2]["clean"] is False
    # rejoins carry new refs; the join_ref of each join is its own ref
    joins = [next(r for r in s if r["event"] == "phx_join") for s in sessions]
    assert len({j["ref"] for j in joins}) == 3 and all(j["ref"] == j["join_ref"] for j in joins)
    assert (stats.connections, stats.joins) == (3, 3)
    assert "connection closed by the server or the network: code 1011 internal error" in said
    assert_no_secret(store)


def test_heartbeat_timeout_closes_and_reconnects(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def body():
        async with MockRealtimeServer() as server:
            server.drop_heartbeats(times=1)
            rec = Recording(server, store, heartbeat=0.1)
            await server.wait_joined("orders", 2)
            stats = await rec.finish()
            return stats

    stats = run(body())
    first, second = sessions_of(query_frames(store))[:2]
    error = next(r for r in first if r["kind"] == "error")
    beat = next(r for r in first if r["event"] == "heartbeat")
    assert json.loads(error["payload"]) == {
        "error": f"heartbeat timeout: no reply to heartbeat ref {beat['ref']} within 0.1 s",
        "ref": beat["ref"],
    }
    assert (first[-1]["kind"], first[-1]["direction"], first[-1]["close_code"]) == ("close", OUT, 1000)
    assert json.loads(first[-1]["payload"])["reason"] == "heartbeat timeout"
    assert json.loads(second[0]["payload"])["attempt"] == 2
    assert stats.heartbeat_timeouts == 1


def test_join_refused_then_rejoined_and_join_timeout_rejoined(tmp_path: Path) -> None:
    store = tmp_path / "store"
    reason = "Unauthorized: You do not have permissions to read from this Channel topic: orders"

    async def body():
        async with MockRealtimeServer() as server:
            server.reject_joins(reason, "orders", times=1)
            server.drop_joins("second", times=1)
            rec = Recording(
                server, store, channels=["orders", "realtime:second"], join_timeout=0.2, heartbeat=5.0
            )
            await server.wait_joined("orders")
            await server.wait_joined("second")
            stats = await rec.finish()
            return stats, rec.said

    stats, said = run(body())
    (session,) = sessions_of(query_frames(store))
    orders = [(r["direction"], r["event"], r["ref"]) for r in session if r["topic"] == "realtime:orders"]
    assert [e for _, e, _ in orders[:4]] == ["phx_join", "phx_reply", "phx_join", "phx_reply"]
    assert orders[0][2] != orders[2][2]
    refused = next(r for r in session if r["event"] == "phx_reply" and r["topic"] == "realtime:orders")
    assert json.loads(refused["payload"]) == {"response": {"reason": reason}, "status": "error"}
    timeout = next(r for r in session if r["kind"] == "error")
    assert json.loads(timeout["payload"])["topic"] == "realtime:second"
    assert "join timeout: no reply to phx_join ref" in json.loads(timeout["payload"])["error"]
    assert (stats.join_errors, stats.join_timeouts, stats.joins) == (1, 1, 2)
    assert any(line.startswith(f"realtime:orders: join refused: {reason}; rejoining in") for line in said)


def test_unreachable_url_records_each_attempt_and_gives_up(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed

    async def body():
        with pytest.raises(SubscribeError) as err:
            await subscribe(
                f"ws://127.0.0.1:{port}/realtime/v1",
                a_jwt(),
                ["orders"],
                str(store),
                max_attempts=3,
                backoff=(0.01, 0.02),
            )
        return str(err.value)

    message = run(body())
    assert message.startswith(f"cannot connect to ws://127.0.0.1:{port}/realtime/v1/websocket?apikey=")
    assert "gave up after 3 attempt(s)" in message and SIGNATURE not in message
    rows = query_frames(store)
    assert [r["kind"] for r in rows] == ["error"] * 3 and len({r["session_id"] for r in rows}) == 3
    infos = [json.loads(r["payload"]) for r in rows]
    assert [i["attempt"] for i in infos] == [1, 2, 3]
    assert all("Connect call failed" in i["error"] and i["phase"] == "connect" for i in infos)
    assert infos[-1]["retry_in_s"] is None
    assert_no_secret(store)


def test_refused_handshakes_are_recorded_then_connection_succeeds(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def body():
        async with MockRealtimeServer() as server:
            server.refuse_handshakes(401, "Token has expired", times=2)
            rec = Recording(server, store)
            await server.wait_joined("orders")
            await rec.finish()

    run(body())
    rows = query_frames(store)
    errors = [r for r in rows if r["kind"] == "error"]
    assert [json.loads(r["payload"])["error"] for r in errors] == [
        "server rejected WebSocket connection: HTTP 401: Token has expired"
    ] * 2
    assert {r["direction"] for r in errors} == {IN}
    opened = json.loads(next(r for r in rows if r["kind"] == "open")["payload"])
    assert (opened["attempt"], opened["failed_attempts"]) == (3, 2)


def test_vsn2_recording_keeps_binary_frames(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def body():
        async with MockRealtimeServer() as server:
            rec = Recording(server, store, vsn=V2, heartbeat=5.0)
            conn = await server.wait_joined("orders")
            await server.broadcast("orders", "shipped", {"id": 1}, meta={"id": "m-1"})
            await server.insert("orders", {"id": 1})
            await rec.wait_seen(IN, "postgres_changes", 1)
            await rec.finish()
            await server.wait_closed()
            return conn

    conn = run(body())
    (session,) = sessions_of(query_frames(store))
    assert_matches_server_log(session, conn)
    (binary,) = [r for r in session if r["kind"] == "binary"]
    assert (binary["vsn"], binary["event"], binary["ref"]) == (V2, "broadcast", None)
    assert json.loads(binary["payload"]) == {
        "type": "broadcast",
        "event": "shipped",
        "payload": {"id": 1},
        "meta": {"id": "m-1"},
    }
    join = next(r for r in session if r["event"] == "phx_join")
    assert bytes(join["raw"]).startswith(b'["1","1","realtime:orders","phx_join",')


def test_bad_arguments_fail_before_touching_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def body(**kwargs):
        args = {"url": "ws://127.0.0.1:9/realtime/v1", "apikey": "k", "channels": ["a"], "store": str(store)}
        await subscribe(**{**args, **kwargs})

    with pytest.raises(ConfigError, match="unknown event"):
        run(body(postgres_changes=["NOPE:public.orders"]))
    with pytest.raises(ConfigError, match="--channel given twice"):
        run(body(channels=["a", "realtime:a"]))
    with pytest.raises(ConfigError, match="--backoff"):
        run(body(backoff=(5.0, 1.0)))
    with pytest.raises(ConfigError, match="--url"):
        run(body(url="nonsense"))
    assert not store.exists()


# ---- the CLI ---------------------------------------------------------------------------------------------


def test_cli_records_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def body():
        async with MockRealtimeServer() as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "recorder.cli",
                "subscribe",
                "--url",
                server.url,
                "--apikey",
                a_jwt(),
                "--channel",
                "realtime:orders",
                "--postgres-changes",
                "*:public.orders",
                "--store",
                str(store),
                "--heartbeat",
                "0.2",
                "--backoff",
                "0.02,0.1",
                "--verbose",
                "--format",
                "json",
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            lines = []

            async def read_until(text: str, count: int = 1):
                while sum(text in line for line in lines) < count:
                    line = await proc.stderr.readline()
                    assert line, "rt-record subscribe ended early:\n" + "".join(lines)
                    lines.append(line.decode())

            await asyncio.wait_for(read_until("joined realtime:orders"), 15)
            for i in range(3):
                await server.insert("orders", {"id": i})
            await asyncio.wait_for(read_until("in  postgres_changes realtime:orders", 3), 5)
            proc.send_signal(signal.SIGTERM)
            stdout, rest = await asyncio.wait_for(proc.communicate(), 10)
            return proc.returncode, json.loads(stdout), "".join(lines) + rest.decode()

    code, stats, stderr = run(body(), timeout=30)
    assert code == 0, stderr
    assert SIGNATURE not in stderr
    assert stats["connections"] == 1 and stats["joins"] == 1 and stats["unrecorded"] == 0
    rows = query_frames(store)
    assert stats["recorded"] == len(rows)
    assert len([r for r in rows if r["event"] == "postgres_changes"]) == 3
    assert (rows[-1]["kind"], rows[-1]["direction"], rows[-1]["close_code"]) == ("close", OUT, 1000)
    assert_no_secret(store)


def test_cli_bad_postgres_changes_is_one_line_exit_2(tmp_path: Path, rt_record) -> None:
    result = rt_record(
        "subscribe",
        "--url",
        "ws://127.0.0.1:9/realtime/v1",
        "--apikey",
        "k",
        "--channel",
        "orders",
        "--postgres-changes",
        "orders",
        "--store",
        tmp_path / "store",
    )
    assert result.returncode == 2
    assert result.stderr == (
        "rt-record: error: --postgres-changes 'orders': expected EVENT:SCHEMA.TABLE[:FILTER] with EVENT one of "
        "*, INSERT, UPDATE, DELETE (e.g. '*:public.orders' or 'UPDATE:public.orders:id=eq.42')\n"
    )
    assert not (tmp_path / "store").exists()


def test_cli_unreachable_gives_up_with_one_line_exit_2(tmp_path: Path, rt_record) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = rt_record(
        "subscribe",
        "--url",
        f"ws://127.0.0.1:{port}/realtime/v1",
        "--apikey",
        a_jwt(),
        "--channel",
        "orders",
        "--store",
        tmp_path / "store",
        "--max-attempts",
        "2",
        "--backoff",
        "0.01,0.02",
        "--quiet",
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"rt-record: error: cannot connect to ws://127.0.0.1:{port}/realtime/v1/websocket?apikey="
    )
    assert "Connect call failed" in line and "gave up after 2 attempt(s)" in line and SIGNATURE not in line
    assert len(query_frames(tmp_path / "store", "kind = 'error'")) == 2
