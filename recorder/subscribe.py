"""``rt-record subscribe``: our own recording Realtime client, for when the bot cannot be pointed at a proxy.

It connects and joins like realtime-py (same URL, same join payload), heartbeats with numeric
refs like realtime-js (a heartbeat still unanswered when the next one is due closes the socket
with 1000 "heartbeat timeout" and reconnects), reconnects with capped exponential backoff and
full jitter, rejoins every channel, and records every frame both ways plus ``open``/``close``/
``error`` rows through :class:`~recorder.capture.FrameRecorder` (writer and source ``subscribe``).

Layers: pure helpers (URL, topic, join payload, ``--postgres-changes`` specs, backoff),
:class:`SubscriberProtocol` (the client side of the protocol, sans I/O), :func:`subscribe`
(the asyncio shell) and :func:`subscribe_command` (click, thin).

Lifecycle rows (``kind`` open/close/error, ``payload`` = their info JSON):

* ``open`` (out): ``url`` (apikey redacted), ``vsn``, ``attempt`` (1-based, all attempts of the
  run), ``failed_attempts`` (consecutive failures just before), ``gap_s`` (seconds since the
  previous connection ended, null for the first) and ``previous_session``;
* ``close``: direction ``in`` when the server closed or the link dropped (code 1006 when no
  close frame came), ``out`` when we did (stop, heartbeat timeout); info ``code``, ``reason``,
  ``clean``, ``duration_s``;
* ``error``: a failed connection attempt (its own session with this one row; ``in`` when the
  server refused the handshake, ``out`` for network errors), a join or heartbeat timeout
  (``in``: the reply that never came).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from recorder.capture import FrameRecorder, Session
from recorder.clikit import format_option, store_option, until_signalled
from recorder.codec import IN, OUT, V1, VERSIONS, Frame, decode, encode
from recorder.errors import ConfigError, InputError, StoreError
from recorder.proxy import describe_connect_error
from recorder.redact import REDACTED, redact_text, redact_url

__all__ = [
    "ChannelSpec",
    "SubscribeError",
    "SubscribeStats",
    "SubscriberProtocol",
    "backoff_delay",
    "channel_topic",
    "join_payload",
    "parse_postgres_changes",
    "subscribe",
    "subscribe_command",
    "websocket_url",
]

PHOENIX = "phoenix"
TOPIC_PREFIX = "realtime:"
CHANGE_EVENTS = ("*", "INSERT", "UPDATE", "DELETE")
FILTER_OPS = (
    "eq",
    "neq",
    "lt",
    "lte",
    "gt",
    "gte",
    "like",
    "ilike",
    "in",
    "is",
    "match",
    "imatch",
    "isdistinct",
)
_FILTER_RE = re.compile(r"^[^=,]+=(not\.)?(" + "|".join(FILTER_OPS) + r")\..*$")
MAX_FRAME_BYTES = 2**24  # well above the server's 5 MB frame limit: a frame is never refused by us
_SPEC_HELP = (
    "expected EVENT:SCHEMA.TABLE[:FILTER] with EVENT one of *, INSERT, UPDATE, DELETE "
    "(e.g. '*:public.orders' or 'UPDATE:public.orders:id=eq.42')"
)


class SubscribeError(InputError):
    """The recording client gave up: the server could not be reached or refused every attempt."""


# ---- pure helpers -------------------------------------------------------------------------------


def channel_topic(channel: str) -> str:
    """``room1`` or ``realtime:room1`` -> ``realtime:room1``; raises ConfigError for an empty name."""
    name = channel.removeprefix(TOPIC_PREFIX)
    if not name.strip():
        raise ConfigError(
            f"--channel {channel!r}: the channel name is empty (e.g. 'room1' or 'realtime:room1')"
        )
    return TOPIC_PREFIX + name


def parse_postgres_changes(spec: str) -> dict:
    """``'EVENT:SCHEMA.TABLE[:FILTER]'`` -> a binding as realtime-py sends it (keys that are set only).

    >>> parse_postgres_changes("UPDATE:public.orders:id=eq.42")
    {'event': 'UPDATE', 'schema': 'public', 'table': 'orders', 'filter': 'id=eq.42'}
    >>> parse_postgres_changes("*:public.*")
    {'event': '*', 'schema': 'public'}

    ``SCHEMA.`` may be left out (``public``); the filter may itself contain ``:``. Raises
    :class:`ConfigError` with one line saying what is wrong.
    """
    parts = spec.split(":", 2)
    if len(parts) < 2:
        raise ConfigError(f"--postgres-changes {spec!r}: {_SPEC_HELP}")
    event, target = parts[0].strip().upper(), parts[1].strip()
    if event not in CHANGE_EVENTS:
        raise ConfigError(f"--postgres-changes {spec!r}: unknown event {parts[0]!r}; {_SPEC_HELP}")
    schema, dot, table = target.rpartition(".")
    if not dot:
        schema = "public"
    if not schema or not table or any(c.isspace() for c in target):
        raise ConfigError(f"--postgres-changes {spec!r}: bad table {target!r}; {_SPEC_HELP}")
    binding = {"event": event, "schema": schema}
    if table != "*":
        binding["table"] = table
    if len(parts) == 3:
        filter_ = parts[2].strip()
        if any(not _FILTER_RE.match(c) for c in re.split(r",(?![^()]*\))", filter_)):
            raise ConfigError(
                f"--postgres-changes {spec!r}: bad filter {filter_!r}; expected COLUMN=OP.VALUE with OP one of "
                f"{', '.join(FILTER_OPS)} (e.g. 'id=eq.42', 'status=in.(open,paid)')"
            )
        binding["filter"] = filter_
    return binding


def websocket_url(url: str, apikey: str, vsn: str = V1) -> str:
    """The URL realtime-py connects to: ``URL/websocket?<URL's params>&apikey=<key>&vsn=<vsn>``.

    ``http(s)://`` becomes ``ws(s)://``; a URL already ending in ``/websocket`` is kept.

    >>> websocket_url("https://abc.supabase.co/realtime/v1", "KEY")
    'wss://abc.supabase.co/realtime/v1/websocket?apikey=KEY&vsn=1.0.0'
    """
    if vsn not in VERSIONS:
        raise ConfigError(f"--vsn {vsn!r}: expected one of {', '.join(VERSIONS)}")
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"--url {redact_url(url)!r}: expected ws(s)://HOST/realtime/v1 (or http(s)://), "
            "e.g. wss://PROJECT.supabase.co/realtime/v1"
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/websocket"):
        path += "/websocket"
    params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("apikey", "vsn")]
    query = urlencode([*params, ("apikey", apikey), ("vsn", vsn)])
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def join_payload(bindings: Sequence[dict], access_token: str | None) -> dict:
    """The ``phx_join`` payload realtime-py 2.34 sends with its default channel options."""
    payload: dict = {
        "config": {
            "broadcast": {"ack": False, "self": False},
            "presence": {"key": "", "enabled": False},
            "private": False,
            "postgres_changes": [dict(b) for b in bindings],
        }
    }
    if access_token:
        payload["access_token"] = access_token
    return payload


def backoff_delay(failures: int, first: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with full jitter: uniform in [0, min(cap, first * 2**(failures-1))]."""
    exponent = min(max(failures, 1) - 1, 62)
    return rng() * min(cap, first * 2.0**exponent)


# ---- the protocol, sans I/O ------------------------------------------------------------------------


@dataclass
class ChannelSpec:
    """A channel to join and its postgres_changes bindings; ``state`` and refs are per connection."""

    topic: str
    bindings: list[dict] = field(default_factory=list)
    state: str = "closed"  # closed, joining, joined, errored
    join_ref: str | None = None
    failures: int = 0  # consecutive failed joins/losses: drives the rejoin backoff
    ids: list = field(default_factory=list)


@dataclass(frozen=True)
class Joined:
    topic: str
    ids: list


@dataclass(frozen=True)
class JoinFailed:
    topic: str
    reason: str


@dataclass(frozen=True)
class ChannelLost:
    topic: str
    event: str  # phx_close or phx_error


@dataclass(frozen=True)
class HeartbeatAnswered:
    ref: str
    rtt: float  # seconds


@dataclass(frozen=True)
class SystemErrorMessage:
    topic: str
    message: str


class SubscriberProtocol:
    """The client side of one recording run: refs, joins, heartbeats; no I/O, no clock.

    Refs are one counter for the whole run (as realtime-py), so a ref never repeats across
    reconnects; a join's ``join_ref`` is its own ref; heartbeats take a ref too (as realtime-js)
    so their replies can be matched.
    """

    def __init__(self, channels: Sequence[ChannelSpec], access_token: str | None) -> None:
        self.channels = {c.topic: c for c in channels}
        self.access_token = access_token
        self.ref = 0
        self.heartbeat_pending: tuple[str, float] | None = None  # (ref, sent at)

    def next_ref(self) -> str:
        self.ref += 1
        return str(self.ref)

    def connected(self) -> list[Frame]:
        """A new connection: every channel is joined again."""
        self.heartbeat_pending = None
        for channel in self.channels.values():
            channel.state = "closed"
        return [self.join(topic) for topic in self.channels]

    def join(self, topic: str) -> Frame:
        channel = self.channels[topic]
        ref = self.next_ref()
        channel.state, channel.join_ref = "joining", ref
        return Frame(topic, "phx_join", join_payload(channel.bindings, self.access_token), ref, ref)

    def heartbeat(self, now: float) -> Frame:
        ref = self.next_ref()
        self.heartbeat_pending = (ref, now)
        return Frame(PHOENIX, "heartbeat", {}, ref, None)

    def join_timed_out(self, topic: str, join_ref: str) -> bool:
        """Whether the join ``join_ref`` of ``topic`` is still unanswered (it then counts as failed)."""
        channel = self.channels[topic]
        if channel.state != "joining" or channel.join_ref != join_ref:
            return False
        channel.state = "errored"
        channel.failures += 1
        return True

    def receive(self, frame: Frame, now: float) -> list:
        """What a server frame means for the run: a list of Joined, JoinFailed, ChannelLost, ... events."""
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        if frame.topic == PHOENIX:
            pending = self.heartbeat_pending
            if frame.event == "phx_reply" and pending is not None and frame.ref == pending[0]:
                self.heartbeat_pending = None
                return [HeartbeatAnswered(pending[0], now - pending[1])]
            return []
        channel = self.channels.get(frame.topic or "")
        if channel is None:
            return []
        if frame.event == "phx_reply" and channel.state == "joining" and frame.ref == channel.join_ref:
            response = payload.get("response")
            response = response if isinstance(response, dict) else {}
            if payload.get("status") == "ok":
                channel.state, channel.failures = "joined", 0
                changes = response.get("postgres_changes") or []
                channel.ids = [b.get("id") for b in changes if isinstance(b, dict)]
                return [Joined(channel.topic, channel.ids)]
            channel.state = "errored"
            channel.failures += 1
            reason = (
                response.get("reason") if isinstance(response.get("reason"), str) else json.dumps(response)
            )
            return [JoinFailed(channel.topic, reason)]
        if frame.event in ("phx_close", "phx_error") and channel.state in ("joined", "joining"):
            if channel.join_ref in (frame.ref, frame.join_ref) or (
                frame.ref is None and frame.join_ref is None
            ):
                channel.state = "errored"
                channel.failures += 1
                return [ChannelLost(channel.topic, frame.event)]
        if frame.event == "system" and payload.get("status") == "error":
            return [SystemErrorMessage(channel.topic, str(payload.get("message")))]
        return []


# ---- the asyncio shell ---------------------------------------------------------------------------------


@dataclass
class SubscribeStats:
    """What one run did; ``heartbeat_rtt_ms`` holds every heartbeat round trip."""

    attempts: int = 0
    connections: int = 0
    failed_attempts: int = 0
    frames_in: int = 0
    frames_out: int = 0
    joins: int = 0
    join_errors: int = 0
    join_timeouts: int = 0
    channel_losses: int = 0
    heartbeats: int = 0
    heartbeat_replies: int = 0
    heartbeat_timeouts: int = 0
    heartbeat_rtt_ms: list[float] = field(default_factory=list)
    sessions: int = 0
    recorded: int = 0
    unrecorded: int = 0
    failure: str | None = None

    def rtt_summary(self) -> dict:
        rtts = self.heartbeat_rtt_ms
        if not rtts:
            return {"count": 0, "min": None, "mean": None, "max": None, "last": None}
        return {
            "count": len(rtts),
            "min": round(min(rtts), 3),
            "mean": round(sum(rtts) / len(rtts), 3),
            "max": round(max(rtts), 3),
            "last": round(rtts[-1], 3),
        }

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "heartbeat_rtt_ms"}
        out["heartbeat_rtt_ms"] = self.rtt_summary()
        return out

    def summary(self) -> str:
        rtt = self.rtt_summary()
        rtt_text = (
            f", heartbeat rtt mean {rtt['mean']:.1f} ms max {rtt['max']:.1f} ms" if rtt["count"] else ""
        )
        return (
            f"{self.connections} connection(s) in {self.attempts} attempt(s), {self.joins} join(s), "
            f"{self.frames_in} frames in, {self.frames_out} out, {self.recorded} rows recorded"
            f"{f', {self.unrecorded} NOT recorded' if self.unrecorded else ''}{rtt_text}"
        )


def _describe_connect_error(err: BaseException) -> str:
    text = describe_connect_error(err)
    return f"server rejected WebSocket connection: {text}" if isinstance(err, InvalidStatus) else text


class _Run:
    """One ``subscribe()`` run: connection loop, per-connection tasks, recording."""

    def __init__(
        self,
        url,
        apikey,
        channels,
        recorder,
        *,
        vsn,
        heartbeat,
        join_timeout,
        backoff,
        max_attempts,
        open_timeout,
        close_timeout,
        stop,
        say,
        on_frame,
        rng,
        access_token,
    ):
        self.ws_url = websocket_url(url, apikey, vsn)
        self.apikey = apikey
        self.vsn = vsn
        self.heartbeat = heartbeat
        self.join_timeout = join_timeout
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.stop = stop
        self.say = say
        self.on_frame = on_frame
        self.rng = rng
        self.recorder = recorder
        self.proto = SubscriberProtocol(channels, access_token)
        self.stats = SubscribeStats()
        self.halt = asyncio.Event()  # stop requested, or recording failed
        self.gave_up: str | None = None
        self.ws: ClientConnection | None = None
        self.session: Session | None = None
        self.timers: set[asyncio.Task] = set()
        self.healthy = False

    def scrub(self, text: str) -> str:
        """Redact secrets from text we print or record; the key itself too, whatever its shape."""
        if len(self.apikey) >= 8:  # a shorter "key" would also match ordinary words
            text = text.replace(self.apikey, REDACTED)
        return redact_text(text)

    @property
    def shown_url(self) -> str:
        return self.scrub(redact_url(self.ws_url))

    # -- the connection loop --

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch_stop())
        try:
            await self._loop()
        finally:
            watcher.cancel()

    async def _watch_stop(self) -> None:
        await self.stop.wait()
        self.halt.set()

    async def _loop(self) -> None:
        failures = 0  # drives the reconnect backoff
        connect_failures = 0  # consecutive failed attempts, for max_attempts
        last_end: float | None = None
        previous: str | None = None
        while not self.halt.is_set():
            self.stats.attempts += 1
            attempt = self.stats.attempts
            try:
                ws = await self._until_halted(self._open())
            except (OSError, TimeoutError, WebSocketException) as err:
                failures += 1
                connect_failures += 1
                self.stats.failed_attempts += 1
                message = self.scrub(_describe_connect_error(err))
                give_up = bool(self.max_attempts) and connect_failures >= self.max_attempts
                delay = None if give_up else backoff_delay(failures, *self.backoff, rng=self.rng)
                session = self.recorder.session(self.vsn)
                session.error(
                    IN if isinstance(err, InvalidStatus) else OUT,
                    message,
                    phase="connect",
                    attempt=attempt,
                    url=self.shown_url,
                    retry_in_s=None if delay is None else round(delay, 3),
                )
                if give_up:
                    self.gave_up = (
                        f"cannot connect to {self.shown_url}: {message} "
                        f"(gave up after {connect_failures} attempt(s); each is recorded as an error row)"
                    )
                    return
                self.say(f"connect attempt {attempt} failed: {message}; retrying in {delay:.2f} s")
                await self._pause(delay)
                continue
            if ws is None:  # halted while connecting
                return
            failed_before, connect_failures = connect_failures, 0
            session = self.recorder.session(self.vsn)
            opened_at = time.time()
            session.opened(
                self.ws_url,
                attempt=attempt,
                failed_attempts=failed_before,
                gap_s=None if last_end is None else round(opened_at - last_end, 6),
                previous_session=previous,
            )
            self.stats.connections += 1
            self.say(f"connected to {self.shown_url} (attempt {attempt})")
            healthy = await self._connection(ws, session, opened_at)
            last_end, previous = time.time(), session.session_id
            if self.halt.is_set():
                return
            failures = 1 if healthy else failures + 1
            delay = backoff_delay(failures, *self.backoff, rng=self.rng)
            self.say(f"reconnecting in {delay:.2f} s")
            await self._pause(delay)

    async def _open(self) -> ClientConnection:
        # No websockets keepalive pings: the Phoenix heartbeat is the liveness check, and it is recorded.
        return await connect(
            self.ws_url,
            open_timeout=self.open_timeout,
            close_timeout=self.close_timeout,
            max_size=MAX_FRAME_BYTES,
            ping_interval=None,
        )

    async def _until_halted(self, coro):
        """The coroutine's result, or None when the run is halted first (the coroutine is cancelled)."""
        task = asyncio.create_task(coro)
        halted = asyncio.create_task(self.halt.wait())
        try:
            await asyncio.wait({task, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halted.cancel()
        if task.done():
            return task.result()
        task.cancel()
        try:
            ws = await task
        except (asyncio.CancelledError, Exception):
            return None
        await ws.close()  # the connection opened just as we were halted
        return None

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.halt.wait(), seconds)
        except TimeoutError:
            pass

    # -- one connection --

    async def _connection(self, ws: ClientConnection, session: Session, opened_at: float) -> bool:
        """Run one connection until it closes or the run halts; True when it was healthy."""
        self.ws, self.session, self.healthy = ws, session, False
        closing: str | None = None
        for frame in self.proto.connected():
            await self._send_join(frame)
        reader = asyncio.create_task(self._read())
        beat = asyncio.create_task(self._beat())
        halted = asyncio.create_task(self.halt.wait())
        try:
            await asyncio.wait({reader, beat, halted}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                closing = "stop" if halted.done() else "heartbeat timeout"
                if closing == "heartbeat timeout":
                    ref, _ = self.proto.heartbeat_pending or ("?", 0)
                    self.stats.heartbeat_timeouts += 1
                    session.error(
                        IN,
                        f"heartbeat timeout: no reply to heartbeat ref {ref} within {self.heartbeat} s",
                        ref=ref,
                    )
                    self.say(f"heartbeat timeout (ref {ref}): closing and reconnecting")
                await ws.close(1000, "heartbeat timeout" if closing == "heartbeat timeout" else "")
                await reader
            else:
                reader.result()  # a bug in frame handling must not pass silently
        finally:
            for task in (reader, beat, halted, *self.timers):
                task.cancel()
            self.timers.clear()
        self._record_close(ws, session, closing, opened_at)
        self.ws = self.session = None
        return self.healthy

    def _record_close(
        self, ws: ClientConnection, session: Session, closing: str | None, opened_at: float
    ) -> None:
        exc = ws.protocol.close_exc
        rcvd, sent = exc.rcvd, exc.sent
        clean = rcvd is not None and sent is not None
        duration = round(time.time() - opened_at, 6)
        if closing is not None:
            code, reason = (sent.code, sent.reason) if sent is not None else (1006, "")
            session.closed(OUT, code, reason, clean=clean, why=closing, duration_s=duration)
            return
        code, reason = (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "")
        session.closed(IN, code, reason, clean=clean, duration_s=duration)
        self.say(
            f"connection closed by the server or the network: code {code}{f' {reason}' if reason else ''}"
        )

    async def _read(self) -> None:
        ws, session = self.ws, self.session
        try:
            async for message in ws:
                session.frame(IN, message)
                self.stats.frames_in += 1
                decoded = decode(message, vsn=self.vsn, direction=IN)
                if self.on_frame is not None:
                    self.on_frame(IN, message, decoded.frame)
                if decoded.frame is not None:
                    for event in self.proto.receive(decoded.frame, time.monotonic()):
                        self._on_event(event)
                self._check_recording()
        except ConnectionClosed:
            pass

    async def _beat(self) -> None:
        """Send heartbeats; return when one is still unanswered as the next falls due."""
        while True:
            await asyncio.sleep(self.heartbeat)
            if self.proto.heartbeat_pending is not None:
                return
            self.stats.heartbeats += 1
            await self._send(self.proto.heartbeat(time.monotonic()))
            self._check_recording()

    async def _send(self, frame: Frame) -> None:
        ws, session = self.ws, self.session
        if ws is None or session is None:
            return
        data = encode(frame, vsn=self.vsn, direction=OUT)
        session.frame(OUT, data)  # before the write, so a fast reply can never be recorded first
        self.stats.frames_out += 1
        if self.on_frame is not None:
            self.on_frame(OUT, data, frame)
        try:
            await ws.send(data)
        except ConnectionClosed:
            session.error(OUT, f"{frame.event} ref {frame.ref} not sent: the connection was closing")

    async def _send_join(self, frame: Frame) -> None:
        await self._send(frame)
        self._later(self.join_timeout, self._check_join, frame.topic, frame.ref)

    def _later(self, delay: float, action: Callable, *args) -> None:
        """Run ``await action(*args)`` after ``delay`` s, unless the connection ends first."""

        async def run():
            await asyncio.sleep(delay)
            await action(*args)

        task = asyncio.create_task(run())
        self.timers.add(task)
        task.add_done_callback(self.timers.discard)

    async def _check_join(self, topic: str, join_ref: str) -> None:
        if self.session is None or not self.proto.join_timed_out(topic, join_ref):
            return
        self.stats.join_timeouts += 1
        self.session.error(
            IN,
            f"join timeout: no reply to phx_join ref {join_ref} within {self.join_timeout} s",
            topic=topic,
            ref=join_ref,
        )
        self._rejoin_later(topic, "join timed out")

    def _rejoin_later(self, topic: str, why: str) -> None:
        failures = self.proto.channels[topic].failures
        delay = backoff_delay(failures, *self.backoff, rng=self.rng)
        self.say(f"{topic}: {why}; rejoining in {delay:.2f} s")

        self._later(delay, self._rejoin, topic)

    async def _rejoin(self, topic: str) -> None:
        if self.ws is not None and self.proto.channels[topic].state == "errored":
            await self._send_join(self.proto.join(topic))

    def _on_event(self, event) -> None:
        if isinstance(event, HeartbeatAnswered):
            self.healthy = True
            self.stats.heartbeat_replies += 1
            self.stats.heartbeat_rtt_ms.append(event.rtt * 1000)
        elif isinstance(event, Joined):
            self.healthy = True
            self.stats.joins += 1
            self.say(f"joined {event.topic}" + (f" (postgres_changes ids {event.ids})" if event.ids else ""))
        elif isinstance(event, JoinFailed):
            self.stats.join_errors += 1
            self._rejoin_later(event.topic, f"join refused: {self.scrub(event.reason)}")
        elif isinstance(event, ChannelLost):
            self.stats.channel_losses += 1
            self._rejoin_later(event.topic, f"channel ended by the server ({event.event})")
        elif isinstance(event, SystemErrorMessage):
            self.say(f"{event.topic}: server error: {self.scrub(event.message)}")

    def _check_recording(self) -> None:
        if self.recorder.stats.failure is not None and not self.halt.is_set():
            self.halt.set()


async def subscribe(
    url: str,
    apikey: str,
    channels: Sequence[str | ChannelSpec],
    store: str,
    *,
    postgres_changes: Sequence[str | dict] = (),
    vsn: str = V1,
    heartbeat: float = 30.0,
    join_timeout: float = 10.0,
    backoff: tuple[float, float] = (1.0, 30.0),
    max_attempts: int | None = None,
    open_timeout: float = 10.0,
    close_timeout: float = 2.0,
    access_token: str | None = None,
    stop: asyncio.Event | None = None,
    say: Callable[[str], None] | None = None,
    on_frame: Callable[[str, str | bytes, Frame | None], None] | None = None,
    rng: Callable[[], float] = random.random,
) -> SubscribeStats:
    """Record ``channels`` of the Realtime server at ``url`` into ``store`` until ``stop`` is set.

    ``channels`` are names (``room1`` or ``realtime:room1``), each joined with every binding
    of ``postgres_changes`` (``'EVENT:SCHEMA.TABLE[:FILTER]'`` strings or binding dicts), or
    :class:`ChannelSpec` objects with their own bindings. ``access_token`` (default: the apikey)
    goes in every join, as realtime-py does. ``backoff`` is (first, cap) seconds; ``max_attempts``
    consecutive failed connection attempts end the run with :class:`SubscribeError` (None: retry
    for ever). ``on_frame(direction, data, frame)`` sees every frame as it is recorded.

    Example (a notebook, or a test against :class:`recorder.mockserver.MockRealtimeServer`)::

        stop = asyncio.Event()
        task = asyncio.create_task(subscribe("wss://abc.supabase.co/realtime/v1", key, ["orders"],
                                             "store", postgres_changes=["*:public.orders"], stop=stop))
        ...
        stop.set(); stats = await task

    Raises ConfigError for bad arguments, StoreError when the store cannot be written (also
    when recording fails during the run), SubscribeError when giving up.
    """
    say = say or (lambda msg: None)
    if heartbeat <= 0 or join_timeout <= 0:
        raise ConfigError("--heartbeat and --join-timeout must be positive numbers of seconds")
    first, cap = backoff
    if first <= 0 or cap < first:
        raise ConfigError(f"--backoff {first},{cap}: expected 0 < FIRST <= MAX seconds")
    bindings = [parse_postgres_changes(b) if isinstance(b, str) else dict(b) for b in postgres_changes]
    specs = []
    for channel in channels:
        if isinstance(channel, ChannelSpec):
            specs.append(ChannelSpec(channel_topic(channel.topic), [dict(b) for b in channel.bindings]))
        else:
            specs.append(ChannelSpec(channel_topic(channel), [dict(b) for b in bindings]))
    if not specs:
        raise ConfigError("no channel to join: give at least one --channel")
    if len({s.topic for s in specs}) != len(specs):
        raise ConfigError(f"--channel given twice: {', '.join(s.topic for s in specs)}")
    websocket_url(url, apikey, vsn)  # validate before touching the store
    recorder = FrameRecorder(store, "subscribe", "subscribe", say=say).start()
    run = _Run(
        url,
        apikey,
        specs,
        recorder,
        vsn=vsn,
        heartbeat=heartbeat,
        join_timeout=join_timeout,
        backoff=(first, cap),
        max_attempts=max_attempts,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        stop=stop or asyncio.Event(),
        say=say,
        on_frame=on_frame,
        rng=rng,
        access_token=access_token if access_token is not None else apikey,
    )
    try:
        await run.run()
    finally:
        captured = await asyncio.to_thread(recorder.close)
        stats = run.stats
        stats.sessions, stats.recorded, stats.unrecorded = (
            captured.sessions,
            captured.recorded,
            captured.unrecorded,
        )
        stats.failure = captured.failure
    if stats.failure is not None:
        raise StoreError(f"recording failed: {stats.failure} ({stats.unrecorded} rows not recorded)")
    if run.gave_up is not None:
        raise SubscribeError(run.gave_up)
    return stats


async def subscribe_until_signalled(**kwargs) -> SubscribeStats:
    """:func:`subscribe` with SIGINT/SIGTERM setting ``stop`` (a graceful stop: close 1000, commit)."""
    return await until_signalled(subscribe, **kwargs)


# ---- the command ---------------------------------------------------------------------------------------


def _parse_backoff(text: str) -> tuple[float, float]:
    try:
        first, cap = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--backoff {text!r}: expected FIRST,MAX in seconds, e.g. 1,30") from None
    return first, cap


def _frame_line(direction: str, data: str | bytes, frame: Frame | None) -> str:
    size = len(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)
    if frame is None:
        return f"{direction:<3} undecodable {'text' if isinstance(data, str) else 'binary'} frame ({size} B)"
    ref = f" ref={frame.ref}" if frame.ref is not None else ""
    return f"{direction:<3} {frame.event} {frame.topic}{ref} ({size} B)"


@click.command("subscribe")
@click.option(
    "--url", required=True, help="Realtime URL: wss://PROJECT.supabase.co/realtime/v1 (https:// works too)."
)
@click.option(
    "--apikey",
    required=True,
    envvar="SUPABASE_KEY",
    show_envvar=True,
    help="Project API key (anon/publishable); also sent as the join access_token. Never stored in clear.",
)
@click.option(
    "--channel",
    "channels",
    multiple=True,
    required=True,
    metavar="TOPIC",
    help="Channel to join: realtime:NAME or NAME. Repeat for more channels.",
)
@click.option(
    "--postgres-changes",
    "changes",
    multiple=True,
    metavar="EVENT:SCHEMA.TABLE[:FILTER]",
    help="Listen to row changes, e.g. '*:public.orders' or 'UPDATE:public.orders:id=eq.42'. "
    "Repeatable; every channel gets every binding.",
)
@store_option()
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds between heartbeats; an unanswered one closes the socket and reconnects.",
)
@click.option("--vsn", type=click.Choice(VERSIONS), default=V1, show_default=True, help="Protocol version.")
@click.option(
    "--join-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for a join reply before rejoining.",
)
@click.option(
    "--backoff",
    default="1,30",
    show_default=True,
    metavar="FIRST,MAX",
    help="Reconnect delay in seconds: random in [0, min(MAX, FIRST*2^n)] after n failures.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Give up (exit 2) after this many consecutive failed connection attempts; 0 retries for ever.",
)
@click.option("-v", "--verbose", is_flag=True, help="One line per frame on stderr.")
@click.option("--quiet", is_flag=True, help="No progress lines and no summary.")
@format_option(("text", "json"), "text")
def subscribe_command(
    url,
    apikey,
    channels,
    changes,
    store,
    heartbeat,
    vsn,
    join_timeout,
    backoff,
    max_attempts,
    verbose,
    quiet,
    fmt,
):
    """Join Realtime channels and record every frame both ways, with reconnects, into a store.

    For when the application cannot be pointed at `rt-record proxy`. Stop with Ctrl-C or
    SIGTERM: the socket is closed with 1000 and everything received is committed.

    \b
    Examples:
      rt-record subscribe --url wss://abc.supabase.co/realtime/v1 --apikey "$SUPABASE_KEY" \\
          --channel orders --postgres-changes '*:public.orders' --store ./store
      rt-record subscribe --url ws://localhost:8000/realtime/v1 --channel room1 \\
          --postgres-changes 'UPDATE:public.orders:status=eq.paid' --heartbeat 25 --store ./store
    """
    postgres_changes = [parse_postgres_changes(spec) for spec in changes]
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(f"rt-record subscribe: {msg}", err=True))
    on_frame = (lambda d, data, f: click.echo(_frame_line(d, data, f), err=True)) if verbose else None
    stats = asyncio.run(
        subscribe_until_signalled(
            url=url,
            apikey=apikey,
            channels=list(channels),
            store=store,
            postgres_changes=postgres_changes,
            vsn=vsn,
            heartbeat=heartbeat,
            join_timeout=join_timeout,
            backoff=_parse_backoff(backoff),
            max_attempts=max_attempts or None,
            say=say,
            on_frame=on_frame,
        )
    )
    if fmt == "json":
        click.echo(json.dumps(stats.as_dict(), indent=2))
    elif not quiet:
        click.echo(stats.summary())
    return 0
