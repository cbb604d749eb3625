"""A scriptable mock Supabase Realtime server: for tests today, the core of ``rt-replay serve`` later.

Two layers, like the codec underneath (realtime-protocol.md §1-§4):

* :class:`RealtimeHub`: the server side of the protocol **without I/O**. It takes a client
  frame (str or bytes) and returns :class:`Send` instructions (recipient, frame, wire data,
  delay): join replies with binding ids, heartbeat and leave replies, broadcast fan-out,
  presence, and the scripted pushes (postgres_changes, broadcast, presence, system). It never
  awaits, never opens a socket and never reads a clock.
* :class:`MockRealtimeServer`: a thin asyncio shell on ``websockets.asyncio.server`` (works with
  websockets 13, 14 and 15) that accepts connections on ``/realtime/v1/websocket`` and
  ``/socket/websocket``, feeds the hub, sends what it returns, keeps a per-connection log of
  every frame both ways, and offers awaitable helpers so tests need no sleeps::

      async with MockRealtimeServer() as server:
          client = AsyncRealtimeClient(server.url, token=jwt)
          ...
          await server.wait_joined("room1")
          await server.insert("orders", {"id": 1})

Directions in logs are the store's: ``out`` client -> server (what the server received),
``in`` server -> client (what it sent).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from recorder.codec import IN, OUT, V1, V2, VERSIONS, Decoded, Frame, decode, encode

__all__ = [
    "CHANNEL_FROM_TOPIC",
    "LoggedFrame",
    "MockConnection",
    "MockRealtimeServer",
    "RealtimeHub",
    "Send",
    "binding_id",
    "columns_of",
    "full_topic",
]

PHOENIX = "phoenix"
TOPIC_PREFIX = "realtime:"
SOCKET_PATHS = ("/realtime/v1/websocket", "/socket/websocket")
SUBSCRIBED_TO_POSTGRES = "Subscribed to PostgreSQL"
MAX_FRAME_BYTES = 5_000_000  # the server's WebSocket frame limit (realtime-protocol.md §2.3)
CHANGE_TYPES = ("INSERT", "UPDATE", "DELETE")


class _FromTopic:
    def __repr__(self) -> str:
        return "CHANNEL_FROM_TOPIC"


CHANNEL_FROM_TOPIC = _FromTopic()
"""Default ``channel`` of a system message: the topic without ``realtime:`` (as the server sends it)."""


def full_topic(topic: str) -> str:
    """``room1`` -> ``realtime:room1``; a topic that already has the prefix (or is ``phoenix``) is kept."""
    if topic.startswith(TOPIC_PREFIX) or topic == PHOENIX:
        return topic
    return TOPIC_PREFIX + topic


def binding_id(binding: dict) -> int:
    """The server id of a postgres_changes binding: a hash of its parameters (like ``:erlang.phash2``).

    Identical bindings get identical ids, on any connection; never 0 (realtime-py ignores id 0).
    """
    key = [binding.get(k) for k in ("event", "schema", "table", "filter", "select")]
    return zlib.crc32(json.dumps(key, separators=(",", ":"), sort_keys=True).encode()) % (2**27 - 1) + 1


_PG_TYPES = (
    (bool, "bool"),
    (int, "int8"),
    (float, "float8"),
    (str, "text"),
    (dict, "jsonb"),
    (list, "jsonb"),
)


def columns_of(record: dict) -> list[dict]:
    """``columns`` of a postgres_changes payload guessed from a record's Python values."""
    columns = []
    for name, value in record.items():
        pg_type = next((t for py, t in _PG_TYPES if isinstance(value, py)), "text")
        columns.append({"name": name, "type": pg_type})
    return columns


def _flag(value: object, default: bool = False) -> bool:
    """A join config boolean; recent servers also accept the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    return default


_FILTER_OPS: dict[str, Callable[[object, str], bool]] = {
    "eq": lambda v, arg: _text(v) == arg,
    "neq": lambda v, arg: _text(v) != arg,
    "lt": lambda v, arg: _compare(v, arg) < 0,
    "lte": lambda v, arg: _compare(v, arg) <= 0,
    "gt": lambda v, arg: _compare(v, arg) > 0,
    "gte": lambda v, arg: _compare(v, arg) >= 0,
    "in": lambda v, arg: _text(v) in [a.strip().strip('"') for a in arg.strip("()").split(",")],
    "is": lambda v, arg: _text(v) == arg if arg != "null" else v is None,
}


def _text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compare(value: object, arg: str) -> int:
    try:
        a, b = float(value), float(arg)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        a, b = _text(value), arg  # type: ignore[assignment]
    return (a > b) - (a < b)


def filter_matches(spec: str | None, row: dict) -> bool:
    """Whether ``row`` passes a binding's PostgREST-like ``filter`` (``id=eq.1``, comma = AND).

    Operators the mock does not know match every row (the mock never hides changes by mistake).
    """
    if not spec:
        return True
    for condition in re.split(r",(?![^()]*\))", spec):  # commas inside in.(a,b) do not split
        column, _, rest = condition.partition("=")
        negate = rest.startswith("not.")
        op, _, arg = rest.removeprefix("not.").partition(".")
        check = _FILTER_OPS.get(op)
        if check is None or column not in row:
            continue
        if check(row[column], arg) == negate:
            return False
    return True


@dataclass(frozen=True)
class Send:
    """One frame the server sends: to connection ``conn_id``, after ``delay`` seconds.

    ``joined`` names the topic whose join this frame completes (the last frame of a successful
    join: reply, presence_state, "Subscribed to PostgreSQL").
    """

    conn_id: int
    frame: Frame
    data: str | bytes
    delay: float = 0.0
    joined: str | None = None


@dataclass
class Channel:
    """A joined channel of one connection, as the server keeps it."""

    conn_id: int
    topic: str
    join_ref: str | None
    bindings: list[dict]  # as echoed in the join reply, with "id"
    broadcast_self: bool = False
    broadcast_ack: bool = False
    presence_enabled: bool = False
    presence_key: str = ""
    private: bool = False
    access_token: str | None = None

    @property
    def name(self) -> str:
        return self.topic.removeprefix(TOPIC_PREFIX)


@dataclass
class Rule:
    """A scripted deviation: ``kind`` "join" (reject / delay / drop) or "heartbeat" (drop)."""

    kind: str
    action: str
    topic: str | None = None  # None: every topic
    remaining: int | None = None  # None: for ever
    reason: str = ""
    seconds: float = 0.0


class RealtimeHub:
    """The Realtime server protocol over many connections, without I/O.

    Each method returns the :class:`Send` list the shell must deliver, in order. Frames are
    encoded per recipient: vsn 1.0.0 server frames carry no ``join_ref``; vsn 2.0.0 gets arrays,
    and user broadcasts as binary kind 4.
    """

    def __init__(self) -> None:
        self.vsns: dict[int, str] = {}
        self.channels: dict[tuple[int, str], Channel] = {}
        self.rules: list[Rule] = []
        self.presences: dict[tuple[int, str], tuple[str, dict]] = {}  # (conn, topic) -> (key, meta)
        self._phx_refs = itertools.count(1)

    # ---- connections ---------------------------------------------------------------------

    def open(self, conn_id: int, vsn: str = V1) -> None:
        if vsn not in VERSIONS:
            raise ValueError(f"unknown vsn {vsn!r} (known: {', '.join(VERSIONS)})")
        self.vsns[conn_id] = vsn

    def close(self, conn_id: int) -> list[Send]:
        """Forget a connection's channels; other subscribers see its presences leave."""
        sends: list[Send] = []
        for key in [k for k in self.channels if k[0] == conn_id]:
            sends += self._untrack(*key)
            del self.channels[key]
        self.vsns.pop(conn_id, None)
        return sends

    def joined(self, topic: str | None = None) -> list[Channel]:
        """Channels currently joined, optionally only those of ``topic``."""
        if topic is None:
            return list(self.channels.values())
        topic = full_topic(topic)
        return [c for c in self.channels.values() if c.topic == topic]

    # ---- rules -----------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        if rule.topic is not None:
            rule.topic = full_topic(rule.topic)
        self.rules.append(rule)
        return rule

    def _take_rule(self, kind: str, topic: str) -> Rule | None:
        for rule in self.rules:
            if rule.kind == kind and rule.topic in (None, topic):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.rules.remove(rule)
                return rule
        return None

    # ---- encoding --------------------------------------------------------------------------

    def _send(
        self,
        conn_id: int,
        topic: str,
        event: str,
        payload: object,
        *,
        ref: str | None = None,
        join_ref: str | None = None,
        binary: bool = False,
    ) -> Send:
        vsn = self.vsns[conn_id]
        if vsn == V1:
            join_ref = None  # Phoenix's V1 serializer drops it
        frame = Frame(topic, event, payload, ref, join_ref)
        return Send(conn_id, frame, encode(frame, vsn=vsn, binary=binary and vsn == V2, direction=IN))

    def _reply(self, conn_id: int, request: Frame, status: str, response: object) -> Send:
        return self._send(
            conn_id,
            request.topic or "",
            "phx_reply",
            {"response": response, "status": status},
            ref=request.ref,
            join_ref=request.join_ref,
        )

    # ---- client frames ---------------------------------------------------------------------

    def receive(self, conn_id: int, data: str | bytes) -> tuple[Decoded, list[Send]]:
        """Handle one frame from connection ``conn_id``: what it decoded to and what to send back.

        Undecodable frames are dropped without an answer (the real server logs
        ``MalformedWebSocketMessage`` and keeps the socket open).
        """
        decoded = decode(data, vsn=self.vsns[conn_id], direction=OUT)
        frame = decoded.frame
        if frame is None or frame.topic is None:
            return decoded, []
        if frame.topic == PHOENIX:
            if frame.event != "heartbeat":
                return decoded, []
            rule = self._take_rule("heartbeat", PHOENIX)
            if rule is not None and rule.action == "drop":
                return decoded, []
            return decoded, [self._reply(conn_id, frame, "ok", {})]
        handler = {
            "phx_join": self._join,
            "phx_leave": self._leave,
            "broadcast": self._client_broadcast,
            "presence": self._client_presence,
            "access_token": self._access_token,
        }.get(frame.event or "")
        if handler is None:
            return decoded, []
        return decoded, handler(conn_id, frame)

    def _join(self, conn_id: int, frame: Frame) -> list[Send]:
        topic = frame.topic or ""
        if not topic.startswith(TOPIC_PREFIX):
            return [self._reply(conn_id, frame, "error", {"reason": "unmatched topic"})]
        if topic == TOPIC_PREFIX:
            return [
                self._reply(
                    conn_id, frame, "error", {"reason": "TopicNameRequired: You must provide a topic name"}
                )
            ]
        rule = self._take_rule("join", topic)
        if rule is not None and rule.action == "drop":
            return []
        delay = rule.seconds if rule is not None else 0.0
        if rule is not None and rule.action == "reject":
            reply = self._reply(conn_id, frame, "error", {"reason": rule.reason})
            return [_delayed(reply, delay)]
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
        broadcast = config.get("broadcast") if isinstance(config.get("broadcast"), dict) else {}
        presence = config.get("presence") if isinstance(config.get("presence"), dict) else {}
        requested = config.get("postgres_changes")
        bindings = []
        for binding in requested if isinstance(requested, list) else []:
            if isinstance(binding, dict):
                bindings.append(dict(sorted({**binding, "id": binding_id(binding)}.items())))
        key = (conn_id, topic)
        if key in self.channels:  # a duplicate join replaces the channel (unverified: no phx_close here)
            self._untrack(*key)
        token = payload.get("access_token", payload.get("user_token"))
        channel = Channel(
            conn_id,
            topic,
            frame.join_ref or frame.ref,
            bindings,
            broadcast_self=_flag(broadcast.get("self")),
            broadcast_ack=_flag(broadcast.get("ack")),
            presence_enabled=_flag(presence.get("enabled")),
            presence_key=presence.get("key") or f"presence-{conn_id}",
            private=_flag(config.get("private")),
            access_token=token if isinstance(token, str) else None,
        )
        self.channels[key] = channel
        sends = [self._reply(conn_id, frame, "ok", {"postgres_changes": bindings})]
        if channel.presence_enabled:
            sends.append(self._channel_push(channel, "presence_state", self._presence_state(topic)))
        if bindings:
            sends.append(
                self._channel_push(
                    channel,
                    "system",
                    _system_payload(channel.name, SUBSCRIBED_TO_POSTGRES, "ok", "postgres_changes"),
                )
            )
        sends[-1] = Send(sends[-1].conn_id, sends[-1].frame, sends[-1].data, joined=topic)
        return [_delayed(s, delay) for s in sends]

    def _leave(self, conn_id: int, frame: Frame) -> list[Send]:
        sends = [self._reply(conn_id, frame, "ok", {})]
        channel = self.channels.get((conn_id, frame.topic or ""))
        if channel is not None:
            sends += self._untrack(conn_id, channel.topic)
            sends.append(self._close_channel(channel, "phx_close"))
        return sends

    def _client_broadcast(self, conn_id: int, frame: Frame) -> list[Send]:
        channel = self.channels.get((conn_id, frame.topic or ""))
        payload = frame.payload
        if channel is None or not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            return []
        sends = [self._reply(conn_id, frame, "ok", {})] if channel.broadcast_ack else []
        exclude = None if channel.broadcast_self else conn_id
        meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else None
        return sends + self.broadcast(
            channel.topic, payload["event"], payload.get("payload"), meta=meta, exclude=exclude
        )

    def _client_presence(self, conn_id: int, frame: Frame) -> list[Send]:
        channel = self.channels.get((conn_id, frame.topic or ""))
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        if channel is None:
            return []
        if payload.get("event") == "track":
            meta = payload.get("payload")
            if not isinstance(meta, dict):
                return [
                    self._reply(conn_id, frame, "error", {"reason": "Presence track payload must be a map"})
                ]
            channel.presence_enabled = True
            sends = [self._reply(conn_id, frame, "ok", {})]
            sends += self._untrack(conn_id, channel.topic)
            meta = {**meta, "phx_ref": self._phx_ref()}
            self.presences[conn_id, channel.topic] = (channel.presence_key, meta)
            return sends + self.presence_diff(channel.topic, joins={channel.presence_key: {"metas": [meta]}})
        if payload.get("event") == "untrack":
            return [self._reply(conn_id, frame, "ok", {}), *self._untrack(conn_id, channel.topic)]
        return [self._reply(conn_id, frame, "error", {"reason": "unknown presence event"})]

    def _access_token(self, conn_id: int, frame: Frame) -> list[Send]:
        channel = self.channels.get((conn_id, frame.topic or ""))
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        if channel is not None and isinstance(payload.get("access_token"), str):
            channel.access_token = payload["access_token"]
        return []

    # ---- presence ----------------------------------------------------------------------------

    def _phx_ref(self) -> str:
        return f"F{next(self._phx_refs):015d}"

    def _presence_state(self, topic: str) -> dict:
        state: dict[str, dict] = {}
        for (_, t), (key, meta) in self.presences.items():
            if t == topic:
                state.setdefault(key, {"metas": []})["metas"].append(meta)
        return state

    def _untrack(self, conn_id: int, topic: str) -> list[Send]:
        tracked = self.presences.pop((conn_id, topic), None)
        if tracked is None:
            return []
        key, meta = tracked
        return self.presence_diff(topic, leaves={key: {"metas": [meta]}})

    # ---- server pushes -------------------------------------------------------------------------

    def _channel_push(self, channel: Channel, event: str, payload: object) -> Send:
        """A message the channel process pushes: join_ref and a null ref (vsn 2.0.0)."""
        return self._send(channel.conn_id, channel.topic, event, payload, join_ref=channel.join_ref)

    def _close_channel(self, channel: Channel, event: str) -> Send:
        self.channels.pop((channel.conn_id, channel.topic), None)
        return self._send(
            channel.conn_id, channel.topic, event, {}, ref=channel.join_ref, join_ref=channel.join_ref
        )

    def postgres_change(
        self,
        table: str,
        type: str = "INSERT",
        *,
        schema: str = "public",
        record: dict | None = None,
        old_record: dict | None = None,
        columns: list | None = None,
        commit_timestamp: str | None = None,
        errors: list | None = None,
    ) -> list[Send]:
        """A change of ``schema.table`` sent to every channel with a matching binding.

        ``ids`` are the ids of the channel's matching bindings (event ``*`` or ``type``, same
        schema and table, filter passing on ``record``, or ``old_record`` for DELETE). The data
        keys are in the server's order; INSERT has no ``old_record``, DELETE no ``record``.
        """
        type = type.upper()
        if type not in CHANGE_TYPES:
            raise ValueError(f"change type {type!r}: expected one of {', '.join(CHANGE_TYPES)}")
        data: dict = {"columns": columns if columns is not None else [], "commit_timestamp": commit_timestamp}
        data["errors"] = errors
        if type != "INSERT":
            data["old_record"] = old_record if old_record is not None else {}
        if type != "DELETE":
            data["record"] = record if record is not None else {}
        data.update(schema=schema, table=table, type=type)
        row = (old_record if type == "DELETE" else record) or {}
        sends = []
        for channel in list(self.channels.values()):
            ids = []
            for b in channel.bindings:
                if (
                    b.get("schema", "public") == schema
                    and b.get("table") in (None, "*", table)
                    and b.get("event") in ("*", type)
                    and filter_matches(b.get("filter"), row)
                    and b["id"] not in ids
                ):
                    ids.append(b["id"])
            if ids:
                sends.append(
                    self._send(channel.conn_id, channel.topic, "postgres_changes", {"data": data, "ids": ids})
                )
        return sends

    def broadcast(
        self,
        topic: str,
        event: str,
        payload: object,
        *,
        meta: dict | None = None,
        binary: bool | None = None,
        exclude: int | None = None,
    ) -> list[Send]:
        """A user broadcast to every channel joined on ``topic`` (but connection ``exclude``).

        vsn 2.0.0 receivers get binary kind 4 unless ``binary`` is False; vsn 1.0.0 receivers
        get the JSON form, and nothing when the payload is raw bytes (as the real server).
        """
        topic = full_topic(topic)
        message: dict = {"event": event}
        if meta is not None:
            message["meta"] = meta
        message.update(payload=payload, type="broadcast")
        sends = []
        for channel in self.joined(topic):
            if channel.conn_id == exclude:
                continue
            v2 = self.vsns[channel.conn_id] == V2
            if isinstance(payload, bytes | bytearray) and not v2:
                continue
            sends.append(
                self._send(channel.conn_id, topic, "broadcast", message, binary=v2 and binary is not False)
            )
        return sends

    def presence_state(self, topic: str, state: dict) -> list[Send]:
        """``presence_state`` (``{key: {"metas": [...]}}``) to every channel joined on ``topic``."""
        return [self._channel_push(c, "presence_state", state) for c in self.joined(topic)]

    def presence_diff(self, topic: str, joins: dict | None = None, leaves: dict | None = None) -> list[Send]:
        """``presence_diff`` to every channel on ``topic`` with presence enabled."""
        topic = full_topic(topic)
        payload = {"joins": joins or {}, "leaves": leaves or {}}
        return [
            self._send(c.conn_id, topic, "presence_diff", payload)
            for c in self.joined(topic)
            if c.presence_enabled
        ]

    def system(
        self,
        topic: str,
        message: str,
        *,
        status: str = "ok",
        extension: str = "system",
        channel: object = CHANNEL_FROM_TOPIC,
    ) -> list[Send]:
        """A ``system`` message to every channel on ``topic``; ``channel=None`` leaves the key out."""
        sends = []
        for c in self.joined(topic):
            name = c.name if channel is CHANNEL_FROM_TOPIC else channel
            sends.append(self._channel_push(c, "system", _system_payload(name, message, status, extension)))
        return sends

    def push(self, topic: str, event: str, payload: object, *, ref: str | None = None) -> list[Send]:
        """Any event with any payload to every channel on ``topic`` (for bad-input tests)."""
        topic = full_topic(topic)
        return [self._send(c.conn_id, topic, event, payload, ref=ref) for c in self.joined(topic)]

    def close_channel(self, topic: str, *, error: bool = False) -> list[Send]:
        """End the channels of ``topic``: ``phx_close`` (or ``phx_error``: the clients rejoin)."""
        sends = []
        for c in self.joined(topic):
            sends += self._untrack(c.conn_id, c.topic)
            sends.append(self._close_channel(c, "phx_error" if error else "phx_close"))
        return sends


def _system_payload(channel: str | None, message: str, status: str, extension: str) -> dict:
    payload = {"channel": channel} if channel is not None else {}
    payload.update(extension=extension, message=message, status=status)
    return payload


def _delayed(send: Send, delay: float) -> Send:
    if not delay:
        return send
    return Send(send.conn_id, send.frame, send.data, delay, send.joined)


# ---- the asyncio shell ---------------------------------------------------------------------------


@dataclass
class LoggedFrame:
    """A frame one connection received (``out``) or sent (``in``), decoded with the connection's vsn."""

    direction: str
    data: str | bytes
    frame: Frame | None
    error: str | None = None
    ts: float = field(default_factory=time.monotonic)
    delivered: bool = True  # False when the connection closed before the frame could be sent

    @property
    def topic(self) -> str | None:
        return self.frame.topic if self.frame else None

    @property
    def event(self) -> str | None:
        return self.frame.event if self.frame else None

    @property
    def ref(self) -> str | None:
        return self.frame.ref if self.frame else None

    @property
    def payload(self) -> object:
        return self.frame.payload if self.frame else None


class MockConnection:
    """One accepted WebSocket connection and its frame log."""

    def __init__(
        self, server: MockRealtimeServer, conn_id: int, ws: ServerConnection, vsn: str, path: str, query: dict
    ):
        self.server = server
        self.id = conn_id
        self.ws = ws
        self.vsn = vsn
        self.path = path
        self.query = query
        self.apikey: str | None = query.get("apikey")
        self.log: list[LoggedFrame] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def __repr__(self) -> str:
        state = f"closed {self.close_code}" if self.closed.is_set() else "open"
        return f"<MockConnection {self.id} vsn={self.vsn} {state}, {len(self.log)} frames>"

    @property
    def received(self) -> list[LoggedFrame]:
        """Frames the client sent (direction ``out``), in order."""
        return [f for f in self.log if f.direction == OUT]

    @property
    def sent(self) -> list[LoggedFrame]:
        """Frames the server sent (direction ``in``) that reached the socket, in order."""
        return [f for f in self.log if f.direction == IN and f.delivered]

    def frames(
        self, direction: str | None = None, *, event: str | None = None, topic: str | None = None
    ) -> list:
        topic = full_topic(topic) if topic else None
        return [
            f
            for f in self.log
            if (direction is None or f.direction == direction)
            and (event is None or f.event == event)
            and (topic is None or f.topic == topic)
            and f.delivered
        ]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame; code 1006 aborts the TCP connection without one."""
        if code == 1006:
            self.abort()
        else:
            await self.ws.close(code, reason)
        await self.closed.wait()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        self.ws.transport.abort()

    def _log(self, direction: str, data: str | bytes, decoded: Decoded) -> LoggedFrame:
        entry = LoggedFrame(direction, data, decoded.frame, decoded.error)
        self.log.append(entry)
        return entry


@dataclass
class Refusal:
    status: int
    error: str
    remaining: int | None
    delay: float


class MockRealtimeServer:
    """A mock Supabase Realtime server on ``host:port`` (port 0: any free port).

    ``url`` is what the official client is given (``ws://127.0.0.1:PORT/realtime/v1``); it
    connects to ``url + "/websocket?apikey=…&vsn=1.0.0"``. ``/socket/websocket`` (the Realtime
    server without a gateway) works too. Without an ``apikey`` the handshake is refused with
    HTTP 401 ``{"error": "API key is missing"}`` unless ``require_apikey`` is False.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        require_apikey: bool = True,
        ping_interval: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.require_apikey = require_apikey
        self.ping_interval = ping_interval
        self.hub = RealtimeHub()
        self.connections: list[MockConnection] = []
        self.joins: list[tuple[str, MockConnection]] = []  # (topic, connection) per completed join
        self.handshakes: list[tuple[str, int | None]] = []  # (path, refusal status or None)
        self._refusals: list[Refusal] = []
        self._ids = itertools.count(1)
        self._by_id: dict[int, MockConnection] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._server = None

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> MockRealtimeServer:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            max_size=MAX_FRAME_BYTES,
            close_timeout=2,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MockRealtimeServer:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL a Supabase client is given: ``ws://HOST:PORT/realtime/v1``."""
        return f"ws://{self.host}:{self.port}/realtime/v1"

    @property
    def socket_url(self) -> str:
        """The Realtime server's own socket path: ``ws://HOST:PORT/socket``."""
        return f"ws://{self.host}:{self.port}/socket"

    @property
    def active(self) -> list[MockConnection]:
        return [c for c in self.connections if not c.closed.is_set()]

    # ---- handshake and frames -------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request):
        path, _, query = request.path.partition("?")
        if path.rstrip("/") not in SOCKET_PATHS:
            self.handshakes.append((path, 404))
            self._notify()
            return _json_response(connection, 404, "Not Found")
        params = dict(parse_qsl(query, keep_blank_values=True))
        refusal = self._take_refusal()
        status, error = None, None
        if refusal is not None:
            if refusal.delay:
                await asyncio.sleep(refusal.delay)
            status, error = refusal.status, refusal.error
        elif self.require_apikey and not (request.headers.get("x-api-key") or params.get("apikey")):
            status, error = 401, "API key is missing"
        elif params.get("vsn", V1) not in VERSIONS:
            status, error = 400, f"unsupported vsn {params['vsn']}"
        self.handshakes.append((path, status))
        self._notify()
        if status is not None:
            return _json_response(connection, status, error)
        return None

    def _take_refusal(self) -> Refusal | None:
        if not self._refusals:
            return None
        refusal = self._refusals[0]
        if refusal.remaining is not None:
            refusal.remaining -= 1
            if refusal.remaining <= 0:
                self._refusals.pop(0)
        return refusal

    async def _handle(self, ws: ServerConnection) -> None:
        path, _, query = ws.request.path.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        header_key = ws.request.headers.get("x-api-key")
        if header_key:
            params["apikey"] = header_key
        conn = MockConnection(self, next(self._ids), ws, params.get("vsn", V1), path, params)
        self.connections.append(conn)
        self._by_id[conn.id] = conn
        self.hub.open(conn.id, conn.vsn)
        self._notify()
        try:
            async for message in ws:
                decoded, sends = self.hub.receive(conn.id, message)
                conn._log(OUT, message, decoded)
                self._notify()
                await self._deliver(sends)
        except ConnectionClosed:
            pass
        finally:
            conn.close_code = ws.protocol.close_code
            conn.close_reason = ws.protocol.close_reason
            sends = self.hub.close(conn.id)
            conn.closed.set()
            self._notify()
            await self._deliver(sends)

    async def _deliver(self, sends: Iterable[Send]) -> None:
        later: dict[float, list[Send]] = {}
        for send in sends:
            if send.delay:
                later.setdefault(send.delay, []).append(send)
            else:
                await self._send_one(send)
        for delay, batch in later.items():
            task = asyncio.create_task(self._deliver_later(delay, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver_later(self, delay: float, sends: list[Send]) -> None:
        await asyncio.sleep(delay)
        for send in sends:
            await self._send_one(send)

    async def _send_one(self, send: Send) -> None:
        conn = self._by_id.get(send.conn_id)
        if conn is None or conn.closed.is_set():
            return
        entry = conn._log(IN, send.data, Decoded(send.frame, conn.vsn))
        try:
            await conn.ws.send(send.data)
        except ConnectionClosed:
            entry.delivered = False
        else:
            if send.joined is not None:
                self.joins.append((send.joined, conn))
        self._notify()

    # ---- waiting -----------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self, predicate: Callable[[], object], *, timeout: float = 5.0, what: str = "a condition"
    ):
        """Wait until ``predicate()`` is true (checked after every frame and connection change).

        Returns the predicate's value; raises TimeoutError naming ``what`` and the server state.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while not (value := predicate()):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"mock server: no {what} after {timeout} s; {self.describe()}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return value

    async def wait_connected(self, count: int = 1, *, timeout: float = 5.0) -> MockConnection:
        """The ``count``-th accepted connection, once it exists."""
        await self.wait_for(
            lambda: len(self.connections) >= count, timeout=timeout, what=f"connection #{count}"
        )
        return self.connections[count - 1]

    async def wait_joined(self, topic: str, count: int = 1, *, timeout: float = 5.0) -> MockConnection:
        """The connection of the ``count``-th successful join of ``topic`` (reply and follow-ups sent)."""
        topic = full_topic(topic)

        def joined():
            done = [conn for t, conn in self.joins if t == topic]
            return done[count - 1] if len(done) >= count else None

        return await self.wait_for(joined, timeout=timeout, what=f"join #{count} of {topic}")

    async def wait_received(
        self,
        event: str,
        *,
        topic: str | None = None,
        count: int = 1,
        conn: MockConnection | None = None,
        timeout: float = 5.0,
    ) -> list[LoggedFrame]:
        """Frames with ``event`` (and ``topic``) the server received, once there are ``count``."""

        def found():
            conns = [conn] if conn is not None else self.connections
            frames = [f for c in conns for f in c.frames(OUT, event=event, topic=topic)]
            return frames if len(frames) >= count else None

        return await self.wait_for(found, timeout=timeout, what=f"{count} received {event!r} frame(s)")

    async def wait_closed(self, count: int = 1, *, timeout: float = 5.0) -> MockConnection:
        """The ``count``-th connection to have closed."""

        def closed():
            done = [c for c in self.connections if c.closed.is_set()]
            return done[count - 1] if len(done) >= count else None

        return await self.wait_for(closed, timeout=timeout, what=f"closed connection #{count}")

    def describe(self) -> str:
        """One line: connections, joins and the last frames, for timeout messages."""
        parts = [f"{len(self.connections)} connection(s), joins {[t for t, _ in self.joins]}"]
        for conn in self.connections[-3:]:
            tail = ", ".join(f"{f.direction} {f.event or f.error}" for f in conn.log[-6:])
            parts.append(f"{conn!r}: ...{tail}")
        return "; ".join(parts)

    # ---- scripting -----------------------------------------------------------------------------------

    async def _run(self, sends: list[Send]) -> int:
        await self._deliver(sends)
        return len(sends)

    async def postgres_change(
        self,
        table: str,
        type: str = "INSERT",
        *,
        schema: str = "public",
        record: dict | None = None,
        old_record: dict | None = None,
        columns: list | None = None,
        commit_timestamp: object = "now",
        errors: list | None = None,
    ) -> int:
        """Send a change to every subscriber of ``schema.table``; returns how many frames were sent.

        ``columns`` default to :func:`columns_of` the record; ``commit_timestamp`` "now" is the
        current UTC time in the server's form (``2026-11-24T08:00:00.123Z``), None is sent as null
        (the shape of error 401/400 rows).
        """
        row = record if record is not None else old_record or {}
        if commit_timestamp == "now":
            commit_timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        sends = self.hub.postgres_change(
            table,
            type,
            schema=schema,
            record=record,
            old_record=old_record,
            columns=columns if columns is not None else columns_of(row),
            commit_timestamp=commit_timestamp,  # type: ignore[arg-type]
            errors=errors,
        )
        return await self._run(sends)

    async def insert(self, table: str, record: dict, **kwargs) -> int:
        return await self.postgres_change(table, "INSERT", record=record, **kwargs)

    async def update(self, table: str, record: dict, old_record: dict | None = None, **kwargs) -> int:
        return await self.postgres_change(table, "UPDATE", record=record, old_record=old_record, **kwargs)

    async def delete(self, table: str, old_record: dict, **kwargs) -> int:
        return await self.postgres_change(table, "DELETE", old_record=old_record, **kwargs)

    async def broadcast(
        self, topic: str, event: str, payload: object, *, meta: dict | None = None, binary: bool | None = None
    ) -> int:
        """A user broadcast to the subscribers of ``topic`` (kind 4 binary for vsn 2.0.0)."""
        return await self._run(self.hub.broadcast(topic, event, payload, meta=meta, binary=binary))

    async def presence_state(self, topic: str, state: dict) -> int:
        return await self._run(self.hub.presence_state(topic, state))

    async def presence_diff(self, topic: str, joins: dict | None = None, leaves: dict | None = None) -> int:
        return await self._run(self.hub.presence_diff(topic, joins, leaves))

    async def system(
        self,
        topic: str,
        message: str,
        *,
        status: str = "ok",
        extension: str = "system",
        channel: object = CHANNEL_FROM_TOPIC,
    ) -> int:
        return await self._run(
            self.hub.system(topic, message, status=status, extension=extension, channel=channel)
        )

    async def push(self, topic: str, event: str, payload: object, *, ref: str | None = None) -> int:
        return await self._run(self.hub.push(topic, event, payload, ref=ref))

    async def close_channel(self, topic: str, *, error: bool = False) -> int:
        return await self._run(self.hub.close_channel(topic, error=error))

    async def send_raw(self, data: str | bytes, conn: MockConnection | None = None) -> int:
        """Send ``data`` as is (a text frame for str, binary for bytes) to ``conn`` or every open connection."""
        targets = [conn] if conn is not None else self.active
        for c in targets:
            decoded = decode(data, vsn=c.vsn, direction=IN)
            entry = c._log(IN, data, decoded)
            try:
                await c.ws.send(data)
            except ConnectionClosed:
                entry.delivered = False
        self._notify()
        return len(targets)

    async def close_connections(
        self, code: int = 1000, reason: str = "", conn: MockConnection | None = None
    ) -> int:
        """Close ``conn`` or every open connection with ``code`` (1006: abort, no close frame)."""
        targets = [conn] if conn is not None else self.active
        await asyncio.gather(*(c.close(code, reason) for c in targets))
        return len(targets)

    # ---- rules (synchronous: they apply to what happens next) ------------------------------------------

    def reject_joins(
        self, reason: str, topic: str | None = None, *, times: int | None = None, delay: float = 0.0
    ) -> Rule:
        """Answer joins of ``topic`` (None: any) with ``{"status":"error","response":{"reason": reason}}``."""
        return self.hub.add_rule(Rule("join", "reject", topic, times, reason=reason, seconds=delay))

    def delay_joins(self, seconds: float, topic: str | None = None, *, times: int | None = None) -> Rule:
        """Send the join reply (and what follows it) ``seconds`` late."""
        return self.hub.add_rule(Rule("join", "delay", topic, times, seconds=seconds))

    def drop_joins(self, topic: str | None = None, *, times: int | None = None) -> Rule:
        """Never answer joins (the client's join times out); the channel is not joined."""
        return self.hub.add_rule(Rule("join", "drop", topic, times))

    def drop_heartbeats(self, *, times: int | None = None) -> Rule:
        """Leave heartbeats unanswered (a half-dead link, as seen by the client)."""
        return self.hub.add_rule(Rule("heartbeat", "drop", PHOENIX, times))

    def refuse_handshakes(
        self,
        status: int = 401,
        error: str = "API key is missing",
        *,
        times: int | None = None,
        delay: float = 0.0,
    ) -> Refusal:
        """Refuse WebSocket upgrades with HTTP ``status`` and body ``{"error": error}`` (§1.2)."""
        refusal = Refusal(status, error, times, delay)
        self._refusals.append(refusal)
        return refusal

    def clear_rules(self) -> None:
        self.hub.rules.clear()
        self._refusals.clear()


def _json_response(connection: ServerConnection, status: int, error: str):
    response = connection.respond(status, json.dumps({"error": error}))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response
