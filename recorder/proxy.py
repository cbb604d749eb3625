"""``rt-record proxy``: a recording WebSocket proxy between a Realtime client and its server.

The application connects to the proxy instead of Supabase; each client connection gets its
own upstream connection (the client's request path and query string unchanged, its headers
minus hop-by-hop ones) and one recorder :class:`~recorder.capture.Session`: an ``open`` row,
every frame both ways (raw, redacted, decoded later in batches), ``error`` rows and one
``close`` row saying who ended the connection and with which code.

Hot path. Frames are relayed as the websockets parser produces them, without the message
queue behind ``recv()``: each data frame is checked (UTF-8 for text), handed to the recorder
(a tuple appended in memory; the store is written on the recorder's own thread) and
serialised on the other leg; everything relayed from one read is written with one syscall.
Reading a leg pauses while the other leg's write buffer is full. Text frames stay byte-exact:
the payload bytes go to the other leg as they were received (``Protocol.send_text`` takes
bytes on websockets 13, 14 and 15; ``send(..., text=True)`` only exists from 14).

Close codes are passed through both ways (1005, no status, as an empty close frame). A leg
that drops without a close frame (1006) ends the other with 1011 towards the client or 1001
towards the server; a leg the proxy fails (1002, 1007 invalid UTF-8, 1009 too big, 1011
keepalive timeout) ends the other with the same code. Upstream refusals of the handshake
(401, 403, 404, 429, ...) reach the client with their status and body; an unreachable
upstream (refused, TLS failure, timeout) is accepted and closed with 1014, a broken upstream
handshake with 1011, each with a reason and an ``error`` row.

Rows of one session (``payload`` of lifecycle rows is their info JSON):

* ``open`` (out): ``url`` (the upstream URL, secrets redacted), ``vsn``, ``client`` address,
  ``subprotocol``, ``user_agent``; then every frame, ``in`` server -> client, ``out`` client ->
  server, in the order they crossed the proxy (frames a leg sent after the other had closed
  are recorded too and counted as ``undelivered`` in the close row);
* ``error``: the upstream refused the handshake (``in``, ``phase`` connect, ``status``; the
  session has no other row) or could not be reached (``out``, followed by a ``close`` row with
  the 1011/1014 the client got); a leg lost without a close frame; a leg the proxy failed;
* ``close``: ``direction`` is the side that ended the connection (``out`` the client side,
  ``in`` the server side), ``close_code`` its code (1006 when lost); info ``by`` (``client``,
  ``server``, ``proxy`` or ``network``), ``leg``, ``reason``, ``clean``, ``relayed_code`` and
  ``relayed_reason`` (what the other side got), ``frames_in``, ``frames_out``, ``undelivered``,
  ``duration_s``, and ``why`` ``proxy stopped`` after SIGINT/SIGTERM.

Built on ``websockets.asyncio`` (13 to 15); besides the documented API it relies on the
connection's sans-I/O ``protocol`` and on ``process_event``/``data_received``/``send_data``,
which are the same in all three.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import os
import ssl as ssl_module
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qsl, urlsplit

import click
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import CONNECTING, OPEN

from recorder.capture import FrameRecorder, Session
from recorder.clikit import format_option, store_option, until_signalled
from recorder.codec import IN, OUT, V1, VERSIONS
from recorder.errors import ConfigError, StoreError
from recorder.redact import redact_text, redact_url

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ProxyStats",
    "RecordingProxy",
    "parse_listen",
    "proxy_command",
    "run_proxy",
    "upstream_origin",
]

DEFAULT_MAX_SIZE = 16 * 2**20  # Realtime allows 5 MB frames; leave room on both legs
MAX_REASON_BYTES = 123  # a close frame's reason (RFC 6455 §5.5: 125 bytes of payload)
WRITE_LIMIT = 2**17  # per-leg write buffer above which the other leg stops being read

# Request headers the proxy does not forward: hop-by-hop (RFC 9110 §7.6.1) and those each leg's
# own handshake sets (Host names the upstream; extensions and key are negotiated per leg).
_NOT_FORWARDED = frozenset(
    {
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length", "user-agent",
        "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
# Headers of an upstream refusal passed on to the client with its status and body.
_REFUSAL_HEADERS = ("content-type", "retry-after", "www-authenticate")

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_DATA = frozenset({_TEXT, _BINARY, _CONT})


# ---- pure helpers -------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); port 0 picks a free one.

    >>> parse_listen("8765"), parse_listen("0.0.0.0:0"), parse_listen("[::1]:9000")
    (('127.0.0.1', 8765), ('0.0.0.0', 0), ('::1', 9000))
    """
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8765")
    return host or "127.0.0.1", int(port)


def upstream_origin(url: str) -> str:
    """``scheme://host[:port]`` of the real server; its path is not used (each client's is forwarded).

    ``https``/``http`` are read as ``wss``/``ws``.

    >>> upstream_origin("wss://abc.supabase.co/realtime/v1")
    'wss://abc.supabase.co'
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as err:
        raise ConfigError(f"--upstream {shown!r}: {err}") from None
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"--upstream {shown!r}: expected ws(s)://HOST[:PORT][/realtime/v1], e.g. wss://PROJECT.supabase.co"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"--upstream {shown!r}: give only the server (ws(s)://HOST[:PORT]); each client's own path, "
            "query string and apikey are forwarded unchanged"
        )
    return f"{scheme}://{parts.netloc.rpartition('@')[2]}"


def vsn_of(path: str) -> str | None:
    """The serializer version a request asks for (``vsn`` query parameter, absent: 1.0.0).

    None for a version the codec does not know: the recorder then detects it per frame.
    """
    params = dict(parse_qsl(path.partition("?")[2], keep_blank_values=True))
    vsn = params.get("vsn", V1)
    return vsn if vsn in VERSIONS else None


def forwarded_headers(headers: Headers) -> list[tuple[str, str]]:
    """The client's request headers the upstream handshake carries (``x-api-key``, Authorization, ...)."""
    named = {token.strip().lower() for value in headers.get_all("Connection") for token in value.split(",")}
    return [(k, v) for k, v in headers.raw_items() if k.lower() not in _NOT_FORWARDED and k.lower() not in named]


def close_reason(text: str) -> str:
    """``text`` cut to what fits in a close frame (123 UTF-8 bytes), secrets redacted."""
    data = redact_text(text).encode()
    if len(data) <= MAX_REASON_BYTES:
        return data.decode()
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


def describe_connect_error(err: BaseException) -> str:
    """One line saying why the upstream could not be reached."""
    if isinstance(err, InvalidStatus):
        response = err.response
        text = f"HTTP {response.status_code}"
        try:
            body = json.loads(response.body or b"")
            if isinstance(body, dict) and body.get("error"):
                text += f": {body['error']}"
        except ValueError:
            pass
        return redact_text(text)
    if isinstance(err, ssl_module.SSLError):
        return redact_text(f"TLS failure: {err.reason or err}")
    if isinstance(err, TimeoutError):
        return "timed out during the opening handshake"
    if isinstance(err, OSError) and err.errno:
        text = os.strerror(err.errno)
        detail = str(err)
        return redact_text(text if text.lower() in detail.lower() else f"{text} ({detail})")
    return redact_text(str(err) or type(err).__name__)


# ---- statistics ------------------------------------------------------------------------------------


@dataclass
class ProxyStats:
    """What one :func:`run_proxy` run did; ``as_dict()`` is the ``--format json`` summary."""

    listen: str = ""
    upstream: str = ""
    connections: int = 0  # client connections relayed to the upstream
    refused: int = 0  # the upstream refused the handshake (status passed on to the client)
    unreachable: int = 0  # the upstream could not be reached (client closed with 1011/1014)
    rejected: int = 0  # requests the proxy answered itself (not a WebSocket handshake, ...)
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    undelivered: int = 0  # frames received from one leg after the other had closed
    sessions: int = 0
    recorded: int = 0
    unrecorded: int = 0
    failure: str | None = None
    closes: dict[str, int] = field(default_factory=dict)  # "server 1000", "client 1006", ...

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        closes = ", ".join(f"{n} by {what}" for what, n in sorted(self.closes.items()))
        text = (
            f"{self.connections} connection(s) relayed, {self.refused} refused by the upstream, "
            f"{self.unreachable} with the upstream unreachable, {self.rejected} rejected; "
            f"{self.frames_in} frames in, {self.frames_out} out; {self.recorded} rows recorded"
        )
        if self.unrecorded or self.failure:
            text += f", {self.unrecorded} NOT recorded ({self.failure})"
        if self.undelivered:
            text += f"; {self.undelivered} frames arrived after the other side had closed"
        return text + (f"; closes: {closes}" if closes else "")


# ---- the two legs -------------------------------------------------------------------------------------


class _Leg:
    """One side of a relayed connection (mixed into the websockets connection classes).

    Data frames never reach the websockets message queue: before relaying starts they are
    held, then each goes straight to ``peer`` (see the module docstring).
    """

    side = ""  # "client" or "server": who is at the other end of this leg
    direction = ""  # direction of the frames this leg receives

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.peer: _Leg | None = None
        self.session: Session | None = None
        self.held: list[Frame] | None = []  # frames received before relaying started
        self.message: list | None = None  # message in progress: [opcode, decoder, parts, all delivered]
        self.violation: str | None = None  # why the proxy failed this leg
        self.frames = 0
        self.nbytes = 0
        self.undelivered = 0
        self.deadline_timer: asyncio.TimerHandle | None = None

    def start_relay(self, peer: _Leg, session: Session) -> None:
        self.peer, self.session = peer, session
        held, self.held = self.held, None
        for frame in held or ():
            self.relay(frame)
        self.flush_peer()

    # -- websockets hooks --

    def process_event(self, event) -> None:
        if isinstance(event, Frame) and event.opcode in _DATA:
            if self.held is None:
                self.relay(event)
            else:
                self.held.append(event)
        else:
            super().process_event(event)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.flush_peer()
        if self.close_deadline is not None:
            self.arm_close_deadline()

    def send_data(self) -> None:
        # Coalesce the frames relayed from one read into one write (websockets writes one per frame).
        chunks = self.protocol.data_to_send()
        if not chunks:
            return
        if b"" not in chunks:
            self.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            return
        for chunk in chunks:  # b"" is the end of the stream, as in websockets' own send_data
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                try:
                    self.transport.write_eof()
                except (OSError, RuntimeError):
                    pass
            else:
                self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.peer is not None and not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
        peer = self.peer
        if peer is not None and not peer.transport.is_closing():
            peer.transport.resume_reading()  # so that it can read its close handshake

    # -- relaying --

    def relay(self, frame: Frame) -> None:
        if self.violation is not None:  # failed by the proxy: nothing more is taken from this leg
            return
        opcode, data = frame.opcode, frame.data
        peer = self.peer
        if opcode is _TEXT and frame.fin:  # the common case: a whole text message in one frame
            try:
                text = str(data, "utf-8")
            except UnicodeDecodeError as err:
                self.fail(1007, f"invalid UTF-8 in a text frame from the {self.side}: {err.reason} at position {err.start}")
                return
            self.session.frame(self.direction, text)
            self.frames += 1
            self.nbytes += len(data)
            if peer.protocol.state is OPEN:
                peer.protocol.send_text(data)
            else:
                self.undelivered += 1
            return
        self.relay_other(frame, opcode, data, peer)

    def relay_other(self, frame: Frame, opcode: Opcode, data, peer: _Leg) -> None:
        """Binary frames and fragmented messages (forwarded fragment by fragment, recorded whole)."""
        if opcode is _CONT:
            message = self.message
            opcode_first, decoder, parts, _ = message
        else:
            decoder = codecs.getincrementaldecoder("utf-8")() if opcode is _TEXT else None
            opcode_first, parts = opcode, []
            message = self.message = [opcode, decoder, parts, True]
        if decoder is not None:
            try:
                parts.append(decoder.decode(data, final=frame.fin))
            except UnicodeDecodeError as err:
                self.fail(1007, f"invalid UTF-8 in a text message from the {self.side}: {err.reason}")
                return
        else:
            parts.append(bytes(data))
        if peer.protocol.state is OPEN:
            if opcode is _CONT:
                peer.protocol.send_continuation(data, frame.fin)
            elif opcode is _TEXT:
                peer.protocol.send_text(data, frame.fin)
            else:
                peer.protocol.send_binary(data, frame.fin)
        else:
            message[3] = False
        if not frame.fin:
            return
        self.message = None
        whole = "".join(parts) if opcode_first is _TEXT else b"".join(parts)
        self.session.frame(self.direction, whole)
        self.frames += 1
        self.nbytes += len(whole.encode()) if opcode_first is _TEXT else len(whole)
        if not message[3]:
            self.undelivered += 1

    def flush_peer(self) -> None:
        peer = self.peer
        if peer is None:
            return
        try:
            peer.send_data()
        except Exception as exc:  # the peer's socket failed: it is closing, its own callbacks report it
            peer.set_recv_exc(exc)
            peer.transport.abort()

    def fail(self, code: int, reason: str) -> None:
        """Fail this leg (RFC 6455 §7.1.7) with ``code``; the handler then closes the other leg."""
        self.violation = reason
        if self.protocol.state is OPEN:
            self.protocol.fail(code, close_reason(reason))
            self.send_data()
        self.arm_close_deadline(self.close_timeout)

    def arm_close_deadline(self, delay: float | None = None) -> None:
        """Abort the TCP connection if the closing handshake is not over in time."""
        if self.deadline_timer is not None:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay if delay is not None else self.close_deadline
        if when is None:
            return
        self.deadline_timer = loop.call_at(when, self.transport.abort)

    def outcome(self) -> tuple[str, int, str]:
        """(who ended this leg: the endpoint, ``proxy`` or ``lost``; close code; reason)."""
        proto = self.protocol
        rcvd, sent = proto.close_rcvd, proto.close_sent
        if rcvd is not None and (sent is None or proto.close_rcvd_then_sent):
            return self.side, rcvd.code, rcvd.reason
        if sent is not None:
            return "proxy", sent.code, sent.reason
        return "lost", 1006, ""


class _ClientLeg(_Leg, ServerConnection):
    """The leg facing the application (the proxy is its server)."""

    side = "client"
    direction = OUT

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.upstream: _UpstreamLeg | None = None
        self.upstream_url = ""
        self.refusal: tuple[int, str] | None = None  # (close code, reason) when the upstream failed
        self.handled = False
        self.answered = False  # the proxy answered a request websockets cannot parse
        self.number = 0

    proxy: RecordingProxy  # set on the per-run subclass

    def data_received(self, data: bytes) -> None:
        if self.request is None and self.protocol.state is CONNECTING:
            if self.answered or self.answer_non_websocket(data):
                return
        super().data_received(data)

    def answer_non_websocket(self, data: bytes) -> bool:
        """Answer what is not ``GET ... HTTP/1.1`` with a 4xx and hang up (websockets would hang up
        without an answer, or wait for a line that never comes); True when answered."""
        line, sep, _ = bytes(data[:8192]).partition(b"\r\n")
        tls = data[:1] == b"\x16"
        if not sep and not tls:
            return False  # too short to judge: websockets decides
        method, _, rest = line.partition(b" ")
        version = rest.rpartition(b" ")[2]
        if method == b"GET" and version == b"HTTP/1.1":
            return False
        if not tls and version.startswith(b"HTTP/") and method.isalpha() and method.isupper():
            status, phrase = (505, "HTTP Version Not Supported") if method == b"GET" else (405, "Method Not Allowed")
            shown = redact_text(line.decode("utf-8", "replace")[:200])
        else:
            status, phrase = 400, "Bad Request"
            shown = "a TLS handshake (the proxy listens without TLS: use ws://)" if tls else "non-HTTP data"
        body = (
            b"rt-record proxy relays WebSocket connections only: point a Realtime client at "
            b"ws://HOST:PORT/realtime/v1 (GET with Upgrade: websocket, HTTP/1.1).\n"
        )
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nAllow: GET\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()
        self.answered = True
        self.proxy.stats.rejected += 1
        self.proxy.say(f"{_peer_name(self)}: answered HTTP {status} to {shown}: not a WebSocket handshake")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.handled and self.upstream is not None:
            # The client went away during its handshake, after the upstream was opened: do not leak it.
            self.session.error(OUT, "client disconnected during the opening handshake", phase="handshake")
            asyncio.get_running_loop().create_task(self.upstream.close(1001, "client handshake failed"))
            self.upstream = None


class _UpstreamLeg(_Leg, ClientConnection):
    """The leg facing the real Realtime server (the proxy is its client)."""

    side = "server"
    direction = IN


# ---- the proxy ----------------------------------------------------------------------------------------


class RecordingProxy:
    """Accepts client connections, relays each to ``upstream`` and records both directions.

    Use :func:`run_proxy`; this class holds the state of one run.
    """

    def __init__(
        self,
        upstream: str,
        recorder: FrameRecorder,
        *,
        say: Callable[[str], None],
        max_size: int | None,
        compression: bool,
        open_timeout: float,
        close_timeout: float,
        ping_interval: float | None,
        ping_timeout: float | None,
        ssl: ssl_module.SSLContext | None,
    ) -> None:
        self.origin = upstream_origin(upstream)
        self.recorder = recorder
        self.say = say
        self.max_size = max_size
        self.compression = "deflate" if compression else None
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.ssl = ssl
        self.stats = ProxyStats(upstream=self.origin)
        self.stopping = asyncio.Event()
        self.count = 0
        self.logger = _websockets_logger(say)
        self.client_leg = type("ClientLeg", (_ClientLeg,), {"proxy": self})

    async def listen(self, host: str, port: int):
        """The websockets server accepting clients (relaying starts in :meth:`handle`)."""
        return await serve(
            self.handle,
            host,
            port,
            process_request=self.process_request,
            process_response=self.process_response,
            select_subprotocol=self.select_subprotocol,
            create_connection=self.client_leg,
            logger=self.logger,
            compression=self.compression,
            open_timeout=self.open_timeout + 5,  # covers the upstream handshake made inside ours
            close_timeout=self.close_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_size=self.max_size,
            write_limit=WRITE_LIMIT,
        )

    # -- handshake --

    async def process_request(self, conn: _ClientLeg, request):
        """Open the upstream leg before answering the client, so refusals can be passed on."""
        if "websocket" not in ",".join(request.headers.get_all("Upgrade")).lower():
            return None  # websockets answers 426 Upgrade Required; reported in process_response
        self.count += 1
        conn.number = self.count
        url = self.origin + request.path
        conn.upstream_url = url
        shown = redact_url(url)
        vsn = vsn_of(request.path)
        session = conn.session = self.recorder.session(vsn)
        peer = _peer_name(conn)
        kwargs = {"ssl": self.ssl} if self.ssl is not None and url.startswith("wss:") else {}
        offered = [p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]
        attempt = asyncio.ensure_future(
            connect(
                url,
                additional_headers=forwarded_headers(request.headers),
                user_agent_header=_first(request.headers, "User-Agent"),
                subprotocols=[p for p in offered if p] or None,
                compression=self.compression,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                max_size=self.max_size,
                write_limit=WRITE_LIMIT,
                create_connection=_UpstreamLeg,
                logger=self.logger,
                **kwargs,
            )
        )
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({attempt, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not attempt.done():
            attempt.cancel()
            session.error(OUT, "proxy stopped while connecting to the upstream", phase="connect", url=shown)
            self.stats.rejected += 1
            return conn.respond(503, "rt-record proxy is shutting down\n")
        try:
            upstream = attempt.result()
        except InvalidStatus as err:
            response = err.response
            message = f"upstream refused the WebSocket handshake: {describe_connect_error(err)}"
            session.error(IN, message, phase="connect", url=shown, status=response.status_code, client=peer)
            self.stats.refused += 1
            self.say(f"#{conn.number} {peer}: {message} ({shown}); answered the client with the same status")
            return _refusal_response(response)
        except Exception as err:  # unreachable (refused, DNS, TLS, timeout) or a broken handshake
            reason = describe_connect_error(err)
            code = 1011 if isinstance(err, InvalidHandshake) else 1014
            message = f"cannot connect to the upstream: {reason}"
            session.error(OUT, message, phase="connect", url=shown, client=peer)
            conn.refusal = (code, close_reason(f"rt-record proxy: {message}"))
            self.stats.unreachable += 1
            self.say(f"#{conn.number} {peer}: {message} ({shown}); closing the client with {code}")
            return None
        conn.upstream = upstream
        return None

    def select_subprotocol(self, conn: _ClientLeg, offered):
        upstream = conn.upstream
        return upstream.subprotocol if upstream is not None and upstream.subprotocol in offered else None

    async def process_response(self, conn: _ClientLeg, request, response):
        if response.status_code == 101:
            return None
        if conn.upstream is not None:  # our own handshake with the client failed
            conn.session.error(OUT, f"client handshake failed: HTTP {response.status_code}", phase="handshake")
            await conn.upstream.close(1001, "client handshake failed")
            conn.upstream = None
        if conn.session is None:
            self.stats.rejected += 1
            self.say(
                f"{_peer_name(conn)}: answered HTTP {response.status_code} {response.reason_phrase} to "
                f"GET {redact_url(request.path)}: not a WebSocket handshake"
            )
        return None

    # -- one connection --

    async def handle(self, conn: _ClientLeg) -> None:
        conn.handled = True
        session = conn.session
        if conn.refusal is not None:
            code, reason = conn.refusal
            await conn.close(code, reason)
            session.closed(IN, code, reason, by="proxy", clean=conn.protocol.close_rcvd is not None)
            self._count_close("proxy", code)
            return
        upstream = conn.upstream
        if upstream is None:  # cannot happen: process_request either sets it or refuses
            await conn.close(1011, "rt-record proxy: no upstream connection")
            return
        opened_at = time.monotonic()
        peer = _peer_name(conn)
        session.opened(
            conn.upstream_url,
            client=peer,
            subprotocol=upstream.subprotocol,
            user_agent=_first(conn.request.headers, "User-Agent"),
        )
        self.stats.connections += 1
        self.say(f"#{conn.number} {peer}: connected to {redact_url(conn.upstream_url)}")
        try:
            upstream.start_relay(conn, session)
            conn.start_relay(upstream, session)
            await self._until_one_ends(conn, upstream, session, opened_at)
        except Exception as exc:  # a bug must not take the proxy down: end this connection, say why
            session.error(OUT, f"proxy internal error: {type(exc).__name__}: {exc}")
            self.say(f"#{conn.number}: internal error {type(exc).__name__}: {exc}; connection dropped")
            conn.transport.abort()
            upstream.transport.abort()
        finally:
            self._add_counts(conn, upstream)

    async def _until_one_ends(self, conn: _ClientLeg, upstream: _UpstreamLeg, session: Session, opened_at: float):
        client_done = asyncio.ensure_future(conn.wait_closed())
        server_done = asyncio.ensure_future(upstream.wait_closed())
        await asyncio.wait({client_done, server_done}, return_when=asyncio.FIRST_COMPLETED)
        first, other = (conn, upstream) if client_done.done() else (upstream, conn)
        by, code, reason = first.outcome()
        stopping = self.stopping.is_set() and by == "proxy"
        if by == "lost":
            by = "network"
            exc = first.recv_exc
            session.error(first.direction, f"{first.side} connection lost without a close frame{f': {exc}' if exc else ''}")
        elif by == "proxy" and not stopping:
            why = first.violation or reason or f"close code {code}"
            session.error(first.direction, f"proxy closed the {first.side} connection: {why}", code=code)
        relay_code, relay_reason = _relayed_close(
            "lost" if by == "network" else by, code, reason, towards=other.side, stopping=stopping
        )
        await other.close(relay_code, relay_reason)
        for task in (client_done, server_done):
            task.cancel()  # done by now (close() waits for the connection to end); tidy either way
        other_by, other_code, _ = other.outcome()
        session.closed(
            first.direction,
            code,
            reason,
            by=by,
            leg=first.side,
            why="proxy stopped" if stopping else None,
            clean=first.protocol.close_rcvd is not None and first.protocol.close_sent is not None,
            relayed_code=other_code,
            relayed_reason=relay_reason if other_by == "proxy" else None,
            frames_in=upstream.frames,
            frames_out=conn.frames,
            undelivered=conn.undelivered + upstream.undelivered,
            duration_s=round(time.monotonic() - opened_at, 6),
        )
        self._count_close(by, code)
        shown_reason = f" {redact_text(reason)!r}" if reason else ""
        self.say(
            f"#{conn.number}: closed by the {by} ({first.side} leg) with {code}{shown_reason}; "
            f"the {other.side} got {other_code}; {upstream.frames} frames in, {conn.frames} out"
        )

    def _count_close(self, by: str, code: int) -> None:
        key = f"{by} {code}"
        self.stats.closes[key] = self.stats.closes.get(key, 0) + 1

    def _add_counts(self, conn: _ClientLeg, upstream: _UpstreamLeg) -> None:
        s = self.stats
        s.frames_in += upstream.frames
        s.frames_out += conn.frames
        s.bytes_in += upstream.nbytes
        s.bytes_out += conn.nbytes
        s.undelivered += conn.undelivered + upstream.undelivered


class _SayHandler(logging.Handler):
    """websockets' warnings and errors as one line each through ``say`` (no tracebacks)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(getattr(record, "websocket", None), "answered", False):
            return  # the proxy already answered that request and said so
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text += f": {exc}" + (f" ({exc.__cause__})" if exc.__cause__ else "")
        self.say(redact_text(f"websockets: {text}"))


def _websockets_logger(say: Callable[[str], None]) -> logging.Logger:
    # Not registered with logging.getLogger: one per run, collected with it. WARNING keeps
    # websockets' per-frame debug code paths off.
    logger = logging.Logger("rt-record.proxy.websockets", logging.WARNING)
    logger.addHandler(_SayHandler(say))
    return logger


def _first(headers: Headers, name: str) -> str | None:
    values = headers.get_all(name)
    return values[0] if values else None


def _peer_name(conn: ServerConnection) -> str:
    try:
        address = conn.remote_address
    except Exception:
        return "?"
    if isinstance(address, tuple) and len(address) >= 2:
        return f"[{address[0]}]:{address[1]}" if ":" in str(address[0]) else f"{address[0]}:{address[1]}"
    return str(address)


def _refusal_response(upstream: Response) -> Response:
    headers = Headers()
    for name in _REFUSAL_HEADERS:
        for value in upstream.headers.get_all(name):
            headers[name] = value
    body = upstream.body or b""
    headers["Content-Length"] = str(len(body))
    headers["Connection"] = "close"
    return Response(upstream.status_code, upstream.reason_phrase, headers, body)


def _relayed_close(by: str, code: int, reason: str, *, towards: str, stopping: bool) -> tuple[int | None, str]:
    """The close the other leg gets when one leg ended ``by`` someone with ``code``."""
    if stopping:
        return 1001, "rt-record proxy stopped"
    if by == "lost":
        gone = "client" if towards == "server" else "upstream"
        return (1011 if towards == "client" else 1001), f"rt-record proxy: {gone} connection lost"
    if code == 1005:
        return None, ""  # no status code: an empty close frame
    if code == 1015 or not (1000 <= code <= 1014 or 3000 <= code <= 4999) or code in (1004, 1006):
        return 1011, close_reason(f"rt-record proxy: the {'upstream' if towards == 'client' else 'client'} closed with {code}")
    return code, reason


async def run_proxy(
    listen: str | tuple[str, int],
    upstream: str,
    store: str,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
    say: Callable[[str], None] | None = None,
    max_size: int | None = DEFAULT_MAX_SIZE,
    compression: bool = False,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    ssl: ssl_module.SSLContext | None = None,
    writer: str = "proxy",
) -> ProxyStats:
    """Run the recording proxy until ``stop`` is set; return what it did.

    ``listen`` is ``HOST:PORT`` (port 0: any free port) or a tuple; ``upstream`` is the real
    server (``wss://PROJECT.supabase.co``, a trailing ``/realtime/v1`` allowed). ``ready(url)``
    is called with ``ws://HOST:PORT`` once the proxy accepts connections. ``say`` gets one
    line per connection and the warnings (secrets redacted). ``compression`` offers/accepts
    permessage-deflate on both legs (off by default: it costs CPU on the hot path; messages
    are byte-identical either way). ``ssl`` is the context for a ``wss://`` upstream.

    When the store cannot be written the proxy keeps forwarding, says so once, and the
    returned stats count the rows that were not recorded (``unrecorded``, ``failure``).
    On stop: no new connections, open ones closed with 1001 on both legs, rows committed.

    Example (a notebook, or a test with :class:`recorder.mockserver.MockRealtimeServer`)::

        stop = asyncio.Event()
        task = asyncio.create_task(run_proxy("127.0.0.1:0", server.url, "store", stop=stop, ready=print))
        ...  # point the client at the printed URL + "/realtime/v1"
        stop.set(); stats = await task

    Raises ConfigError for a bad ``listen``/``upstream`` or an address that cannot be bound,
    StoreError when the store cannot be opened (both before anything is accepted).
    """
    say = say or (lambda msg: None)
    stop = stop or asyncio.Event()
    host, port = parse_listen(listen) if isinstance(listen, str) else listen
    upstream_origin(upstream)  # validate before touching the store
    recorder = FrameRecorder(store, writer, "proxy", say=say).start()
    proxy = None
    try:
        proxy = RecordingProxy(
            upstream, recorder, say=say, max_size=max_size, compression=compression,
            open_timeout=open_timeout, close_timeout=close_timeout, ping_interval=ping_interval,
            ping_timeout=ping_timeout, ssl=ssl,
        )
        try:
            server = await proxy.listen(host, port)
        except OSError as err:
            raise ConfigError(f"--listen {host}:{port}: cannot listen there: {err.strerror or err}") from None
        try:
            bound = next(iter(server.sockets)).getsockname()
            shown_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            proxy.stats.listen = f"ws://{shown_host}:{bound[1]}"
            if ready is not None:
                ready(proxy.stats.listen)
            await stop.wait()
            proxy.stopping.set()
        finally:
            server.close()
            await server.wait_closed()
    finally:
        captured = await asyncio.to_thread(recorder.close)
    stats = proxy.stats
    stats.sessions, stats.recorded, stats.unrecorded = captured.sessions, captured.recorded, captured.unrecorded
    stats.failure = captured.failure
    return stats


async def run_proxy_until_signalled(**kwargs) -> ProxyStats:
    """:func:`run_proxy` with SIGINT/SIGTERM setting ``stop`` (graceful: close 1001, commit, exit 0)."""
    return await until_signalled(run_proxy, **kwargs)


# ---- the command ---------------------------------------------------------------------------------------


@click.command("proxy")
@click.option("--listen", required=True, metavar="HOST:PORT",
              help="Address the application connects to (HOST defaults to 127.0.0.1; port 0 picks a free port, printed).")
@click.option("--upstream", required=True, metavar="URL",
              help="The real server: wss://PROJECT.supabase.co (a trailing /realtime/v1 is fine). "
              "Each client's own path and query string are forwarded unchanged.")
@store_option()
@click.option("--max-size", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_SIZE / 2**20,
              show_default=True, help="Largest message in MiB on either leg; a bigger one closes both legs with 1009.")
@click.option("--compression/--no-compression", default=False, show_default=True,
              help="Negotiate permessage-deflate on each leg (messages stay byte-identical; costs CPU).")
@click.option("--quiet", is_flag=True, help="No per-connection lines and no summary (warnings still shown).")
@format_option(("text", "json"), "text")
def proxy_command(listen, upstream, store, max_size, compression, quiet, fmt):
    """Relay a Realtime client to its server and record every frame both ways into a store.

    Point the application at the proxy instead of Supabase (same path, same apikey); the
    proxy opens one upstream connection per client connection and passes frames, close
    codes and handshake refusals through unchanged. Secrets are redacted before anything
    is written. Stop with Ctrl-C or SIGTERM: connections are closed with 1001 and
    everything recorded is committed.

    \b
    Example:
      rt-record proxy --listen 127.0.0.1:8765 --upstream wss://abc.supabase.co --store ./store
      # then, in the bot: AsyncRealtimeClient("ws://127.0.0.1:8765/realtime/v1", token=KEY)
    """
    parse_listen(listen)
    upstream_origin(upstream)

    def say(msg: str) -> None:
        if not quiet or msg.startswith("RECORDING STOPPED"):
            click.echo(f"rt-record proxy: {msg}", err=True)

    def ready(url: str) -> None:
        click.echo(f"rt-record proxy: listening on {url}, forwarding to {upstream_origin(upstream)}, "
                   f"recording into {store}", err=True)

    stats = asyncio.run(
        run_proxy_until_signalled(
            listen=listen, upstream=upstream, store=store, ready=ready, say=say,
            max_size=int(max_size * 2**20), compression=compression,
        )
    )
    if fmt == "json":
        click.echo(json.dumps(stats.as_dict(), indent=2))
    elif not quiet:
        click.echo(stats.summary())
    if stats.failure is not None:
        raise StoreError(f"recording failed: {stats.failure} ({stats.unrecorded} rows not recorded)")
    return 0
