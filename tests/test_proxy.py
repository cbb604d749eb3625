"""``rt-record proxy``: real sockets on 127.0.0.1 port 0, real subprocesses for the CLI and kill -9.

What is checked: frames byte-exact both ways and stored exactly once, in order, per session;
close codes passed through both ways; handshake refusals, unreachable and TLS-failing
upstreams; plain HTTP; 10 MB frames and the size limit; invalid UTF-8; malformed JSON; a
client vanishing mid-frame; many concurrent clients; secrets never reaching the store; the
official realtime-py client against the mock server; an unwritable store; kill -9.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from analyzer import connect as connect_store
from recorder.errors import ConfigError
from recorder.mockserver import MockRealtimeServer
from recorder.proxy import parse_listen, run_proxy, upstream_origin
from recorder.redact import redact_bytes
from recorder.store import WalReader

ROOT = Path(__file__).resolve().parents[1]
PATH = "/realtime/v1/websocket?apikey=anon-key&vsn=1.0.0"


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


SIGNATURE = "ProxyPlantedSignature_0123456789-xyz"
JWT = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'role': 'anon', 'exp': 2079000000, 'iss': 'supabase'})}.{SIGNATURE}"


def run(coro, timeout: float = 20.0):
    """Run one async test body with a hard timeout (no pytest-asyncio here)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---- builders ----------------------------------------------------------------------------------------------


def a_change(n: int, table: str = "orders") -> str:
    """A postgres_changes text frame as the server sends it (vsn 1.0.0)."""
    return (
        f'{{"event":"postgres_changes","payload":{{"data":{{"record":{{"id":{n},"note":"caf\u00e9 \u2713"}},'
        f'"type":"INSERT","table":"{table}","schema":"public"}},"ids":[1]}},"ref":null,"topic":"realtime:{table}"}}'
    )


class Upstream:
    """A websockets server standing in for Realtime: logs what each connection received and how it ended.

    ``script(ws)`` runs per connection (default: echo every message back).
    """

    def __init__(self, script=None, **kwargs) -> None:
        self.script = script or self.echo
        self.kwargs = {"max_size": None, **kwargs}
        self.received: list[list] = []
        self.requests: list = []
        self.closes: list[tuple[int | None, str | None]] = []
        self.ended = asyncio.Event()

    @staticmethod
    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async def _handler(self, ws) -> None:
        self.requests.append(ws.request)
        log: list = []
        self.received.append(log)
        original_recv = ws.recv

        async def recv(*args, **kwargs):
            message = await original_recv(*args, **kwargs)
            log.append(message)
            return message

        ws.recv = recv
        try:
            await self.script(ws)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            rcvd = ws.protocol.close_rcvd
            self.closes.append((rcvd.code, rcvd.reason) if rcvd else (None, None))
            self.ended.set()

    async def __aenter__(self) -> Upstream:
        self.server = await serve(self._handler, "127.0.0.1", 0, **self.kwargs)
        self.port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def wait_closed(self, count: int = 1, timeout: float = 5.0) -> None:
        async def until():
            while len(self.closes) < count:
                self.ended.clear()
                await self.ended.wait()

        await asyncio.wait_for(until(), timeout)


class Proxy:
    """``run_proxy`` in a task on port 0; ``lines`` holds what it said, ``stats`` its result."""

    def __init__(self, upstream: str, store: Path, **kwargs) -> None:
        self.upstream, self.store, self.kwargs = upstream, str(store), kwargs
        self.lines: list[str] = []
        self.stop = asyncio.Event()
        self.stats = None

    async def __aenter__(self) -> Proxy:
        ready = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(
            run_proxy("127.0.0.1:0", self.upstream, self.store, stop=self.stop, ready=ready.set_result,
                      say=self.lines.append, **self.kwargs)
        )
        await asyncio.wait({ready, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            self.task.result()
        self.url = ready.result()
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        self.stats = await self.task


def frames(store: Path, where: str = "true") -> list[dict]:
    """Rows of the ``frames`` view, in session and sequence order."""
    con = connect_store(store)
    try:
        cur = con.execute(f"SELECT * FROM frames WHERE {where} ORDER BY session_id, seq")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def sessions(store: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in frames(store):
        out.setdefault(row["session_id"], []).append(row)
    return out


def assert_gap_free(store: Path) -> dict[str, list[dict]]:
    by_session = sessions(store)
    for sid, rows in by_session.items():
        assert [r["seq"] for r in rows] == list(range(len(rows))), sid
    return by_session


def payloads(rows: list[dict], direction: str) -> list[bytes]:
    return [r["raw"] for r in rows if r["direction"] == direction and r["kind"] in ("text", "binary")]


def info(row: dict) -> dict:
    return json.loads(row["payload"])


def store_bytes(store: Path) -> list[tuple[str, str]]:
    """Every file under the store as text: raw bytes, decoded Parquet values, decoded WAL rows."""
    out = []
    for path in store.rglob("*"):
        if not path.is_file():
            continue
        out.append((str(path), path.read_bytes().decode("latin-1")))
        if path.suffix == ".parquet":
            out.append((str(path), json.dumps(pq.read_table(path).to_pylist(), default=repr)))
        if path.name.startswith("wal-"):
            for _lsn, meta, rows in WalReader(path):
                out.append((str(path), json.dumps(meta) + json.dumps(rows().to_pylist(), default=repr)))
    return out


# ---- pure helpers ------------------------------------------------------------------------------------------


def test_listen_and_upstream_parsing() -> None:
    assert parse_listen("8765") == ("127.0.0.1", 8765)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("host:", "host:70000", "x:y"):
        with pytest.raises(ConfigError, match="--listen"):
            parse_listen(bad)
    assert upstream_origin("wss://abc.supabase.co") == "wss://abc.supabase.co"
    assert upstream_origin("wss://abc.supabase.co/realtime/v1") == "wss://abc.supabase.co"
    assert upstream_origin("https://abc.supabase.co/realtime/v1/") == "wss://abc.supabase.co"
    assert upstream_origin("ws://localhost:4000") == "ws://localhost:4000"
    for bad in ("ftp://x", "wss://", f"wss://x.supabase.co/realtime/v1?apikey={JWT}"):
        with pytest.raises(ConfigError, match="--upstream") as err:
            upstream_origin(bad)
        assert SIGNATURE not in str(err.value)


# ---- relaying --------------------------------------------------------------------------------------------------


def test_frames_are_byte_exact_both_ways_and_stored_once_in_order(tmp_path) -> None:
    sent_by_client = [
        a_change(1),
        "caf\u00e9 \u2603 \U0001f600 \u00fc",  # non-ASCII text
        "",  # empty text frame
        b"\x00\x01\x02\xff\xfe binary",
        b"",
        '{"not": "phoenix"}',
        "x" * 70_000,  # larger than one read
    ]

    async def script(ws):
        await ws.send("server speaks first \u00e9")
        async for message in ws:
            await ws.send(message)

    async def body():
        async with Upstream(script) as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(proxy.url + PATH, max_size=None) as ws:
                got = [await ws.recv()]
                for message in sent_by_client:
                    await ws.send(message)
                    got.append(await ws.recv())
            await up.wait_closed()
        assert got == ["server speaks first \u00e9", *sent_by_client]
        assert [type(m) for m in got[1:]] == [type(m) for m in sent_by_client]  # text stays text
        assert up.received[0] == sent_by_client
        assert up.requests[0].path == PATH  # path and query string unchanged
        return proxy

    proxy = run(body())
    (rows,) = assert_gap_free(tmp_path / "store").values()
    as_bytes = [m.encode() if isinstance(m, str) else m for m in sent_by_client]
    assert payloads(rows, "out") == as_bytes
    assert payloads(rows, "in") == ["server speaks first \u00e9".encode(), *as_bytes]
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "open" and kinds[-1] == "close" and "error" not in kinds
    assert [r["kind"] for r in rows if r["direction"] == "out" and r["kind"] in ("text", "binary")] == [
        "text", "text", "text", "binary", "binary", "text", "text"
    ]
    # in and out alternate exactly as they crossed the proxy
    assert [r["direction"] for r in rows[1:-1]] == ["in"] + ["out", "in"] * len(sent_by_client)
    opened = info(rows[0])
    assert opened["url"] == f"{proxy.stats.upstream}{PATH}".replace("anon-key", "REDACTED")
    assert opened["vsn"] == "1.0.0"
    closed = rows[-1]
    assert (closed["direction"], closed["close_code"]) == ("out", 1000)
    assert info(closed)["by"] == "client" and info(closed)["relayed_code"] == 1000
    change = rows[2]
    assert (change["topic"], change["event"], change["decode_error"]) == ("realtime:orders", "postgres_changes", None)
    assert proxy.stats.frames_out == len(sent_by_client) and proxy.stats.frames_in == len(sent_by_client) + 1


def test_fragmented_messages_are_relayed_and_recorded_whole(tmp_path) -> None:
    async def body():
        async with Upstream() as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(proxy.url + PATH) as ws:
                await ws.send(["caf", "\u00e9 ", "\u2713" * 3])  # three frames, one text message
                assert await ws.recv() == "caf\u00e9 \u2713\u2713\u2713"
                await ws.send([b"\x00\x01", b"", b"\x02"])
                assert await ws.recv() == b"\x00\x01\x02"
            await up.wait_closed()
            assert up.received[0] == ["caf\u00e9 \u2713\u2713\u2713", b"\x00\x01\x02"]
        return proxy

    proxy = run(body())
    rows = frames(tmp_path / "store", "kind IN ('text', 'binary')")
    assert [(r["direction"], r["kind"], r["raw"]) for r in rows] == [
        ("out", "text", "caf\u00e9 \u2713\u2713\u2713".encode()), ("in", "text", "caf\u00e9 \u2713\u2713\u2713".encode()),
        ("out", "binary", b"\x00\x01\x02"), ("in", "binary", b"\x00\x01\x02"),
    ]
    assert proxy.stats.frames_out == 2 and proxy.stats.bytes_out == len("caf\u00e9 \u2713\u2713\u2713".encode()) + 3


def test_compression_per_leg_keeps_messages_identical(tmp_path) -> None:
    messages = [a_change(n) for n in range(20)] + [os.urandom(3000), "\u00e9" * 5000]

    async def body():
        async with Upstream(compression="deflate") as up, Proxy(up.url, tmp_path / "store", compression=True) as proxy:
            async with connect(proxy.url + PATH, compression="deflate") as ws:
                assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
                for message in messages:
                    await ws.send(message)
                    assert await ws.recv() == message
            await up.wait_closed()
            assert "permessage-deflate" in up.requests[0].headers["Sec-WebSocket-Extensions"]
            assert up.received[0] == messages
        return proxy

    run(body())
    as_bytes = [m.encode() if isinstance(m, str) else m for m in messages]
    assert payloads(frames(tmp_path / "store"), "in") == as_bytes


def test_vsn_defaults_to_1_0_0_and_is_taken_from_the_query(tmp_path) -> None:
    async def body():
        async with Upstream() as up, Proxy(up.url, tmp_path / "store") as proxy:
            for path in ("/socket/websocket", "/socket/websocket?vsn=2.0.0"):
                async with connect(proxy.url + path) as ws:
                    await ws.send('[null,"1","phoenix","heartbeat",{}]')
                    await ws.recv()

    run(body())
    opens = [info(r) for r in frames(tmp_path / "store", "kind = 'open'")]
    assert sorted(o["vsn"] for o in opens) == ["1.0.0", "2.0.0"]


def test_close_codes_pass_through_both_ways(tmp_path) -> None:
    async def script(ws):
        async for message in ws:
            if message.startswith("close "):
                _, code, reason = message.split(" ", 2)
                await ws.close(int(code), reason)
                return
            await ws.send(message)

    async def body():
        async with Upstream(script) as up, Proxy(up.url, tmp_path / "store") as proxy:
            # the server closes: the client sees the server's code and reason
            for code, reason in ((1011, "internal"), (1000, ""), (4001, "custom \u00e9"), (1012, "")):
                async with connect(proxy.url + PATH) as ws:
                    await ws.send(f"close {code} {reason}")
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()
                    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, reason)
            # the client closes: the server sees the client's code and reason
            for number, (code, reason) in enumerate(((1000, ""), (1001, "bye"), (4000, "heartbeat timeout")), 5):
                ws = await connect(proxy.url + PATH)
                await ws.close(code, reason)
                await up.wait_closed(number)
                assert up.closes[-1] == (code, reason)
            # a close frame without a status code stays without one
            ws = await connect(proxy.url + PATH)
            await ws.close(None)
            await up.wait_closed(8)
            assert up.closes[-1] == (1005, "")
        return proxy

    proxy = run(body())
    closes = [(r["direction"], r["close_code"], info(r)["by"], info(r)["relayed_code"])
              for r in frames(tmp_path / "store", "kind = 'close'")]
    assert sorted(closes) == sorted(
        [("in", c, "server", c) for c in (1011, 1000, 4001, 1012)]
        + [("out", c, "client", c) for c in (1000, 1001, 4000)]
        + [("out", 1005, "client", 1005)]
    )
    assert proxy.stats.closes["server 1011"] == 1 and proxy.stats.closes["client 1005"] == 1


def test_many_concurrent_clients_each_get_their_own_gap_free_session(tmp_path) -> None:
    clients, per_client = 25, 40

    async def one(proxy: Proxy, n: int) -> list:
        async with connect(proxy.url + f"/realtime/v1/websocket?apikey=k&client={n}&vsn=1.0.0") as ws:
            for i in range(per_client):
                await ws.send(f"client {n} frame {i}")
            return [await ws.recv() for _ in range(per_client)]

    async def body():
        async with Upstream() as up, Proxy(up.url, tmp_path / "store") as proxy:
            results = await asyncio.gather(*(one(proxy, n) for n in range(clients)))
            await up.wait_closed(clients)
        for n, got in enumerate(results):
            assert got == [f"client {n} frame {i}" for i in range(per_client)]

    run(body())
    by_session = assert_gap_free(tmp_path / "store")
    assert len(by_session) == clients
    for rows in by_session.values():
        n = info(rows[0])["url"].split("client=")[1].split("&")[0]
        expected = [f"client {n} frame {i}".encode() for i in range(per_client)]
        assert payloads(rows, "out") == expected and payloads(rows, "in") == expected
        assert rows[-1]["kind"] == "close"


def test_headers_subprotocol_and_path_are_forwarded(tmp_path) -> None:
    async def body():
        async with Upstream(subprotocols=["realtime-b"]) as up, Proxy(up.url + "/realtime/v1", tmp_path / "s") as proxy:
            async with connect(
                proxy.url + "/realtime/v1/websocket?log_level=info&apikey=abc&vsn=1.0.0",
                additional_headers={"x-api-key": "hdr-key", "Authorization": "Bearer tok", "X-Client-Info": "bot/1"},
                user_agent_header="my-bot/2.0",
                subprotocols=["realtime-a", "realtime-b"],
            ) as ws:
                assert ws.subprotocol == "realtime-b"
                await ws.send("hi")
                assert await ws.recv() == "hi"
        request = up.requests[0]
        assert request.path == "/realtime/v1/websocket?log_level=info&apikey=abc&vsn=1.0.0"
        headers = request.headers
        assert headers["x-api-key"] == "hdr-key" and headers["Authorization"] == "Bearer tok"
        assert headers["X-Client-Info"] == "bot/1" and headers["User-Agent"] == "my-bot/2.0"
        assert headers["Host"] == f"127.0.0.1:{up.port}"

    run(body())


def test_a_stalled_client_pauses_reading_from_the_server(tmp_path) -> None:
    count, chunk = 600, b"x" * 65536
    progress = []

    async def script(ws):
        await ws.recv()
        for i in range(count):
            await ws.send(chunk)
            progress.append(i)

    async def body():
        async with Upstream(script) as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(proxy.url + PATH, max_size=None, max_queue=1) as ws:
                await ws.send("go")
                await asyncio.sleep(0.5)
                assert len(progress) < count / 2  # the proxy stopped reading: the server is blocked
                for _ in range(count):
                    assert await ws.recv() == chunk
                assert len(progress) == count
        return proxy

    proxy = run(body())
    assert proxy.stats.frames_in == count


def test_stopping_while_an_upstream_handshake_is_pending_answers_503_at_once(tmp_path) -> None:
    async def body():
        async with MockRealtimeServer() as server:
            server.refuse_handshakes(401, delay=2)
            proxy = Proxy(server.url, tmp_path / "store")
            await proxy.__aenter__()
            attempt = asyncio.ensure_future(connect(proxy.url + PATH))
            await asyncio.sleep(0.3)  # the proxy is now waiting for the upstream's answer
            started = time.monotonic()
            await proxy.__aexit__(None, None, None)
            assert time.monotonic() - started < 3
            with pytest.raises(InvalidStatus) as refused:
                await attempt
            assert refused.value.response.status_code == 503

    run(body())
    (row,) = frames(tmp_path / "store")
    assert row["kind"] == "error" and "stopped" in info(row)["error"]


# ---- refusals and failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, "API key is missing"), (403, "Realtime was disabled for this tenant"), (404, "Tenant not found"),
     (429, "Too many connected users")],
)
def test_upstream_refusal_reaches_the_client_with_status_and_body(tmp_path, status, error) -> None:
    async def body():
        async with MockRealtimeServer() as server, Proxy(server.url, tmp_path / "store") as proxy:
            server.refuse_handshakes(status, error, times=1)
            with pytest.raises(InvalidStatus) as refused:
                await connect(proxy.url + f"/realtime/v1/websocket?apikey={JWT}&vsn=1.0.0")
            response = refused.value.response
            assert response.status_code == status
            assert json.loads(response.body) == {"error": error}
            assert response.headers["Content-Type"] == "application/json"
            # the proxy keeps serving
            async with connect(proxy.url + f"/realtime/v1/websocket?apikey={JWT}&vsn=1.0.0") as ws:
                await ws.send('{"event":"heartbeat","payload":{},"ref":"1","topic":"phoenix"}')
                assert json.loads(await ws.recv())["event"] == "phx_reply"
        return proxy

    proxy = run(body())
    errors = frames(tmp_path / "store", "kind = 'error'")
    assert len(errors) == 1 and errors[0]["direction"] == "in"
    assert info(errors[0])["status"] == status and error in info(errors[0])["error"]
    assert proxy.stats.refused == 1 and proxy.stats.connections == 1
    assert any(f"HTTP {status}" in line for line in proxy.lines)
    assert not any(SIGNATURE in line for line in proxy.lines)


def test_upstream_path_not_found_is_passed_on(tmp_path) -> None:
    async def body():
        async with MockRealtimeServer() as server, Proxy(server.url, tmp_path / "store") as proxy:
            with pytest.raises(InvalidStatus) as refused:
                await connect(proxy.url + "/wrong/path?apikey=x")
            assert refused.value.response.status_code == 404

    run(body())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_upstream_refusing_tcp_gives_the_client_a_1014_close_and_an_error_row(tmp_path) -> None:
    async def body():
        async with Proxy(f"ws://127.0.0.1:{_closed_port()}", tmp_path / "store") as proxy:
            started = time.monotonic()
            async with connect(proxy.url + PATH) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert time.monotonic() - started < 3
            assert closed.value.rcvd.code == 1014
            assert "cannot connect to the upstream" in closed.value.rcvd.reason
            assert len(closed.value.rcvd.reason.encode()) <= 123
        return proxy

    proxy = run(body())
    (rows,) = sessions(tmp_path / "store").values()
    assert [(r["kind"], r["close_code"]) for r in rows] == [("error", None), ("close", 1014)]
    assert "refused" in info(rows[0])["error"].lower()
    assert proxy.stats.unreachable == 1
    assert any("cannot connect to the upstream" in line for line in proxy.lines)


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: the wss tests make their certificate with it (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


def test_wss_upstream_works_and_a_tls_failure_closes_the_client_with_1014(tmp_path, tls_cert) -> None:
    cert, key = tls_cert
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=cert)

    async def body():
        async with Upstream(ssl=server_ctx) as up:
            wss = f"wss://127.0.0.1:{up.port}"
            async with Proxy(wss, tmp_path / "ok", ssl=trusting) as proxy:
                async with connect(proxy.url + PATH) as ws:
                    await ws.send("over tls")
                    assert await ws.recv() == "over tls"
            async with Proxy(wss, tmp_path / "bad") as proxy:  # default trust: self-signed is refused
                async with connect(proxy.url + PATH) as ws:
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()
                assert closed.value.rcvd.code == 1014
                assert "TLS" in closed.value.rcvd.reason
        return proxy

    proxy = run(body())
    (row,) = frames(tmp_path / "bad", "kind = 'error'")
    assert "TLS failure" in info(row)["error"] and "CERTIFICATE_VERIFY_FAILED" in info(row)["error"]
    assert any("TLS failure" in line for line in proxy.lines)
    assert payloads(frames(tmp_path / "ok"), "in") == [b"over tls"]


def test_a_plain_http_request_gets_a_4xx_and_the_proxy_keeps_running(tmp_path) -> None:
    async def body():
        async with Upstream() as up, Proxy(up.url, tmp_path / "store") as proxy:
            url = proxy.url.replace("ws://", "http://") + "/realtime/v1/websocket?apikey=secret-ish"

            def get():
                try:
                    urllib.request.urlopen(url, timeout=5)
                except urllib.error.HTTPError as err:
                    return err.code, err.read().decode()
                return None

            status, text = await asyncio.to_thread(get)
            assert status == 426 and "WebSocket" in text
            host, port = parse_listen(proxy.url.removeprefix("ws://"))
            for request, expected in (
                (b"POST /realtime/v1/api/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 405),
                (b"GET /realtime/v1/websocket HTTP/1.0\r\n\r\n", 505),
                (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello
            ):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                answer = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                assert answer.startswith(f"HTTP/1.1 {expected} ".encode()), answer
                assert b"WebSocket connections only" in answer
            with pytest.raises(ssl.SSLError):  # a wss:// client gets a clear failure, not a hang
                await connect(proxy.url.replace("ws://", "wss://") + PATH, open_timeout=5)
            async with connect(proxy.url + PATH) as ws:
                await ws.send("still here")
                assert await ws.recv() == "still here"
        return proxy

    proxy = run(body())
    assert proxy.stats.rejected == 5 and proxy.stats.connections == 1
    assert any("426" in line and "not a WebSocket handshake" in line for line in proxy.lines)
    assert any("405 to POST /realtime/v1/api/broadcast" in line for line in proxy.lines)
    assert any("400 to a TLS handshake" in line for line in proxy.lines)
    assert not any("secret-ish" in line or "Traceback" in line for line in proxy.lines)


# ---- big, bad and broken frames ---------------------------------------------------------------------------


def test_ten_megabyte_frames_pass_and_a_frame_over_the_limit_closes_1009(tmp_path) -> None:
    big_text = "\u00e9" * (5 * 2**20)  # 10 MiB of UTF-8
    big_binary = os.urandom(10 * 2**20)

    async def body():
        async with Upstream() as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(proxy.url + PATH, max_size=None) as ws:
                await ws.send(big_text)
                assert await ws.recv() == big_text
                await ws.send(big_binary)
                assert await ws.recv() == big_binary
        async with Upstream() as up, Proxy(up.url, tmp_path / "small", max_size=2**20) as small:
            async with connect(small.url + PATH, max_size=None) as ws:
                await ws.send(b"x" * (2**20 + 1))
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd.code == 1009
            await up.wait_closed()
            assert up.closes[0][0] == 1009  # the server is told with the same code
        return proxy

    run(body(), timeout=40)
    rows = frames(tmp_path / "store", "kind IN ('text', 'binary')")
    assert [len(r["raw"]) for r in rows] == [len(big_text.encode())] * 2 + [len(big_binary)] * 2
    assert rows[0]["raw"] == big_text.encode() and rows[3]["raw"] == big_binary
    (rows,) = sessions(tmp_path / "small").values()
    assert [r["kind"] for r in rows] == ["open", "error", "close"]
    assert rows[-1]["close_code"] == 1009 and info(rows[-1])["by"] == "proxy"
    assert rows[-1]["direction"] == "out" and "limit" in info(rows[1])["error"]


def _send_invalid_utf8(ws) -> None:
    """A text frame carrying invalid UTF-8 (websockets' own send() would refuse to build one)."""
    ws.protocol.send_text(b"bad \xff\xfe text")
    ws.send_data()


def test_invalid_utf8_from_the_client_closes_both_legs_1007(tmp_path) -> None:
    async def body():
        async with Upstream() as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(proxy.url + PATH) as ws:
                await ws.send("fine")
                assert await ws.recv() == "fine"
                _send_invalid_utf8(ws)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd.code == 1007
            await up.wait_closed()
            assert up.closes[0][0] == 1007
            assert up.received[0] == ["fine"]  # the bad frame was not passed on

    run(body())
    (rows,) = sessions(tmp_path / "store").values()
    assert [r["kind"] for r in rows] == ["open", "text", "text", "error", "close"]
    assert "invalid UTF-8" in info(rows[3])["error"] and rows[3]["direction"] == "out"
    assert (rows[4]["close_code"], info(rows[4])["by"], info(rows[4])["relayed_code"]) == (1007, "proxy", 1007)


def test_invalid_utf8_from_the_server_closes_the_client_1007(tmp_path) -> None:
    async def script(ws):
        await ws.recv()
        _send_invalid_utf8(ws)
        await ws.wait_closed()

    async def body():
        async with Upstream(script) as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(proxy.url + PATH) as ws:
                await ws.send("go")
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd.code == 1007
            await up.wait_closed()
            assert up.closes[0][0] == 1007

    run(body())
    (rows,) = sessions(tmp_path / "store").values()
    assert [(r["kind"], r["direction"]) for r in rows] == [
        ("open", "out"), ("text", "out"), ("error", "in"), ("close", "in")
    ]
    assert rows[-1]["close_code"] == 1007


def test_malformed_json_is_forwarded_unchanged_and_stored_with_a_decode_error(tmp_path) -> None:
    malformed = ['{"event":"phx_join","topic":', "not json at all", '["1","1","realtime:x"]']

    async def body():
        async with Upstream() as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(proxy.url + PATH) as ws:
                for text in malformed:
                    await ws.send(text)
                    assert await ws.recv() == text

    run(body())
    rows = frames(tmp_path / "store", "kind = 'text'")
    assert [r["raw"].decode() for r in rows] == [t for t in malformed for _ in (0, 1)]
    assert all(r["decode_error"] for r in rows) and all(r["topic"] is None for r in rows)


def test_a_client_vanishing_mid_frame_closes_the_upstream_and_is_recorded(tmp_path) -> None:
    async def body():
        async with Upstream() as up, Proxy(up.url, tmp_path / "store") as proxy:
            ws = await connect(proxy.url + PATH)
            await ws.send("before")
            assert await ws.recv() == "before"
            sock = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # the first bytes of a masked 1000-byte text frame, then a TCP reset
            ws.transport.write(bytes([0x81, 0xFE]) + struct.pack("!H", 1000) + b"mask" + b"partial")
            await asyncio.sleep(0.05)
            ws.transport.abort()
            await up.wait_closed()
            assert up.closes[0] == (1001, "rt-record proxy: client connection lost")
        return proxy

    proxy = run(body())
    (rows,) = sessions(tmp_path / "store").values()
    assert [r["kind"] for r in rows] == ["open", "text", "text", "error", "close"]
    assert "client connection lost" in info(rows[3])["error"]
    assert (rows[4]["direction"], rows[4]["close_code"], info(rows[4])["by"]) == ("out", 1006, "network")
    assert proxy.stats.closes == {"network 1006": 1}


def test_the_server_vanishing_closes_the_client_1011(tmp_path) -> None:
    async def script(ws):
        await ws.recv()
        ws.transport.abort()

    async def body():
        async with Upstream(script) as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(proxy.url + PATH) as ws:
                await ws.send("go")
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1011, "rt-record proxy: upstream connection lost"
            )

    run(body())
    (rows,) = sessions(tmp_path / "store").values()
    assert [(r["kind"], r["direction"]) for r in rows][-2:] == [("error", "in"), ("close", "in")]
    assert rows[-1]["close_code"] == 1006


# ---- secrets ------------------------------------------------------------------------------------------------------


def test_no_secret_reaches_any_byte_of_the_store(tmp_path) -> None:
    join = (
        '{"event":"phx_join","payload":{"config":{"broadcast":{"ack":false,"self":false},"postgres_changes":[]},'
        f'"access_token":"{JWT}"}},"topic":"realtime:room1","ref":"1","join_ref":"1"}}'
    )
    broadcast = (
        '{"event":"broadcast","payload":{"event":"token","payload":{"note":"here is a key",'
        f'"value":"{JWT}"}},"type":"broadcast"}},"ref":null,"topic":"realtime:room1"}}'
    )

    async def script(ws):
        await ws.recv()
        await ws.send(broadcast)
        await ws.wait_closed()

    async def body():
        async with Upstream(script) as up, Proxy(up.url, tmp_path / "store") as proxy:
            async with connect(
                proxy.url + f"/realtime/v1/websocket?apikey={JWT}&vsn=1.0.0", additional_headers={"x-api-key": JWT}
            ) as ws:
                await ws.send(join)
                assert await ws.recv() == broadcast  # the client gets the real bytes
        assert up.received[0] == [join]  # and so does the server
        assert up.requests[0].headers["x-api-key"] == JWT
        return proxy

    proxy = run(body(), timeout=20)
    store = tmp_path / "store"
    leaks = [name for name, text in store_bytes(store) if SIGNATURE in text]
    assert leaks == []
    assert not any(SIGNATURE in line for line in proxy.lines)
    rows = frames(store)
    assert "apikey=eyJ" in info(rows[0])["url"] and SIGNATURE not in info(rows[0])["url"]
    text = [r for r in rows if r["kind"] == "text"]
    assert [(r["direction"], r["event"]) for r in text] == [("out", "phx_join"), ("in", "broadcast")]
    assert text[0]["raw"] == redact_bytes(join.encode()) != join.encode()


# ---- the official client ------------------------------------------------------------------------------------


def test_official_client_through_the_proxy_to_the_mock_server(tmp_path) -> None:
    changes_wanted = 5

    async def body():
        async with MockRealtimeServer() as server, Proxy(server.url, tmp_path / "store") as proxy:
            client = AsyncRealtimeClient(proxy.url + "/realtime/v1", token=JWT, auto_reconnect=False)
            await client.connect()
            got: list = []
            arrived = asyncio.Event()

            def on_change(payload):
                got.append(payload)
                if len(got) == changes_wanted:
                    arrived.set()

            states: list = []
            channel = client.channel("room1")
            channel.on_postgres_changes("*", schema="public", table="orders", callback=on_change)
            await channel.subscribe(lambda state, err: states.append(state))
            conn = await server.wait_joined("room1")
            assert states == [RealtimeSubscribeStates.SUBSCRIBED]
            for n in range(changes_wanted):
                await server.insert("orders", {"id": n, "note": f"order {n} \u00e9"})
            await asyncio.wait_for(arrived.wait(), 5)
            assert [c["data"]["record"]["id"] for c in got] == list(range(changes_wanted))
            await client.close()
            await server.wait_closed()
            assert conn.path == "/realtime/v1/websocket" and conn.query["apikey"] == JWT
        return conn, proxy

    conn, proxy = run(body())
    (rows,) = assert_gap_free(tmp_path / "store").values()
    # exactly the frames each side sent, in order, redacted
    assert payloads(rows, "out") == [redact_bytes(f.data.encode()) for f in conn.received]
    assert payloads(rows, "in") == [redact_bytes(f.data.encode()) for f in conn.sent]
    text = [r for r in rows if r["kind"] == "text"]
    assert all(r["decode_error"] is None for r in text)
    events = [(r["direction"], r["event"]) for r in text if r["topic"] == "realtime:room1"]
    assert events == [("out", "phx_join"), ("in", "phx_reply"), ("in", "system")] + [
        ("in", "postgres_changes")
    ] * changes_wanted
    assert json.loads(text[0]["payload"])["access_token"].endswith(".REDACTED")
    assert info(rows[0])["url"].endswith("apikey=" + json.loads(text[0]["payload"])["access_token"] + "&vsn=1.0.0")
    assert all(SIGNATURE not in (r["payload"] or "") and SIGNATURE.encode() not in (r["raw"] or b"") for r in rows)
    assert rows[-1]["kind"] == "close" and info(rows[-1])["by"] == "client"
    assert [name for name, text in store_bytes(tmp_path / "store") if SIGNATURE in text] == []


# ---- the command, in real subprocesses --------------------------------------------------------------------------


def start_cli(store: Path, upstream: str, *extra: str, preexec_fn=None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", "proxy", "--listen", "127.0.0.1:0", "--upstream", upstream,
         "--store", str(store), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn,
    )
    line = proc.stderr.readline()
    assert "listening on ws://127.0.0.1:" in line, line + proc.stderr.read()
    return proc, line.split("listening on ")[1].split(",")[0]


def test_cli_help_has_a_real_example() -> None:
    r = subprocess.run([sys.executable, "-m", "recorder.cli", "proxy", "--help"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0
    assert "rt-record proxy --listen 127.0.0.1:8765 --upstream wss://abc.supabase.co --store ./store" in r.stdout


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "proxy", "--listen", "127.0.0.1:99999", "--upstream", "wss://x",
         "--store", str(tmp_path / "s")], capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--listen" in r.stderr
    assert not (tmp_path / "s").exists()


def test_cli_listen_address_in_use_is_one_line_and_exit_2(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "recorder.cli", "proxy", "--listen", f"127.0.0.1:{port}", "--upstream",
             "wss://x.supabase.co", "--store", str(tmp_path / "s")], capture_output=True, text=True, cwd=ROOT,
        )
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"rt-record: error: --listen 127.0.0.1:{port}: cannot listen there:")


def test_cli_records_frames_visible_within_a_second_and_stops_cleanly_on_sigterm(tmp_path) -> None:
    store = tmp_path / "store"

    async def body():
        async with Upstream() as up:
            proc, url = await asyncio.to_thread(start_cli, store, up.url, "--format", "json")
            try:
                ws = await connect(url + PATH)
                await ws.send(a_change(1))
                assert await ws.recv() == a_change(1)
                acked = time.monotonic()
                while True:  # a reader sees it about one second after it was acknowledged
                    if store.joinpath("store.json").exists() and len(frames(store, "kind = 'text'")) == 2:
                        break
                    assert time.monotonic() - acked < 2.5, "frames not visible to readers"
                    await asyncio.sleep(0.1)
                proc.send_signal(signal.SIGTERM)  # with the connection still open
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == 1001
                await up.wait_closed()
                assert up.closes[0][0] == 1001
                out, err = await asyncio.to_thread(proc.communicate, timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
            return proc.returncode, out, err

    code, out, err = run(body(), timeout=40)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["connections"], summary["frames_in"], summary["frames_out"]) == (1, 1, 1)
    assert summary["unrecorded"] == 0 and summary["failure"] is None and summary["recorded"] == 4
    (rows,) = assert_gap_free(store).values()
    assert [r["kind"] for r in rows] == ["open", "text", "text", "close"]
    assert info(rows[-1])["why"] == "proxy stopped" and rows[-1]["close_code"] == 1001


def test_cli_keeps_forwarding_when_the_store_cannot_be_written(tmp_path) -> None:
    store = tmp_path / "store"
    count = 3000

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    async def body():
        async with Upstream() as up:
            proc, url = await asyncio.to_thread(start_cli, store, up.url, "--format", "json", preexec_fn=limit)
            try:
                async with connect(url + PATH) as ws:
                    for i in range(count):
                        await ws.send(f"{i} {os.urandom(60).hex()}")
                        if i % 500 == 0:
                            await asyncio.sleep(0.06)  # let the recorder append a few batches
                    got = [await ws.recv() for _ in range(count)]
                    assert [int(m.split()[0]) for m in got] == list(range(count))
                proc.send_signal(signal.SIGINT)
                out, err = await asyncio.to_thread(proc.communicate, timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
            return proc.returncode, out, err

    code, out, err = run(body(), timeout=40)
    assert code == 2
    assert err.count("RECORDING STOPPED") == 1
    assert err.strip().splitlines()[-1].startswith("rt-record: error: recording failed:")
    summary = json.loads(out)
    assert summary["frames_in"] == summary["frames_out"] == count
    assert summary["unrecorded"] > 0 and summary["recorded"] + summary["unrecorded"] == 2 * count + 2


STREAMER = """
import asyncio, sys
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

async def handler(ws):
    await ws.recv()
    n = 0
    try:
        while True:
            await ws.send(f"frame {n}")
            n += 1
            if n % 5 == 0:
                await asyncio.sleep(0.002)
    except ConnectionClosed:
        pass

async def main():
    async with serve(handler, "127.0.0.1", 0) as server:
        print(next(iter(server.sockets)).getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"""


def test_kill_minus_nine_loses_nothing_acknowledged_and_duplicates_nothing(tmp_path) -> None:
    store = tmp_path / "store"
    streamer = subprocess.Popen([sys.executable, "-c", STREAMER], stdout=subprocess.PIPE, text=True)
    try:
        upstream = f"ws://127.0.0.1:{streamer.stdout.readline().strip()}"

        async def traffic(url: str, seconds: float) -> list[str]:
            got: list[str] = []
            try:
                async with connect(url + PATH) as ws:
                    await ws.send("start")
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        got.append(await ws.recv())
            except ConnectionClosed:
                pass
            return got

        proc, url = start_cli(store, upstream, "--quiet")
        try:
            task_result: list = []

            async def killer():
                clients = [asyncio.ensure_future(traffic(url, 30)) for _ in range(3)]
                await asyncio.sleep(1.5)
                os.kill(proc.pid, signal.SIGKILL)
                task_result.extend(await asyncio.gather(*clients))

            run(killer(), timeout=30)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert all(len(got) > 100 for got in task_result)

        proc, url = start_cli(store, upstream, "--format", "json")  # recovers the write-ahead log
        got_after = run(traffic(url, 0.3))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        streamer.kill()
        streamer.wait()

    rows = frames(store)
    keys = [(r["session_id"], r["seq"]) for r in rows]
    assert len(keys) == len(set(keys)), "a row was stored twice"
    by_session = assert_gap_free(store)
    assert len(by_session) == 4
    received = [[m.encode() for m in got] for got in task_result]
    killed = [rows for rows in by_session.values() if rows[-1]["kind"] != "close"]
    assert len(killed) == 3
    for session_rows in killed:
        stored = payloads(session_rows, "in")
        assert stored, "nothing acknowledged before the kill"
        # the store and what that client received agree frame by frame, in order (the shorter is a
        # prefix of the longer: frames still in flight at the kill are in one of them only)
        assert any(got[: len(stored)] == stored[: len(got)] for got in received)
    (last,) = [rows for rows in by_session.values() if rows[-1]["kind"] == "close"]
    stored = payloads(last, "in")  # the proxy may have relayed more than the client read before closing
    assert got_after and stored[: len(got_after)] == [m.encode() for m in got_after]
