"""``rt-replay serve``: a playback server that replays one recorded session to any Realtime client,
at the original spacing or faster, with seeded, reproducible faults.

Layers, like the mock server it builds on (:mod:`recorder.mockserver`):

* :func:`list_sessions` / :func:`load_recording`: the store's ``frames`` of one session, read
  once and grouped per topic: the recorded join reply and the server frames pushed after it,
  each with its offset (seconds after that join reply) and the bytes that crossed the wire.
* :data:`FAULTS` (a registry of small parse/apply functions), :func:`parse_fault` and
  :func:`plan_replay`: a pure function of (recording, faults, seed) saying, per topic, which
  recorded pushes are dropped, duplicated, corrupted or delayed.
* :class:`ReplayHub`: the server protocol without I/O. A :class:`~recorder.mockserver.RealtimeHub`
  (heartbeats, leaves, client broadcasts and presence are answered live) whose joins are
  answered from the recording, plus one timeline per connection that says which frames are
  due at a given clock value (:meth:`ReplayHub.due`, :meth:`ReplayHub.next_deadline`).
* :class:`ReplayServer`: the thin asyncio shell on ``websockets.asyncio.server`` (13 to 15);
  :func:`serve_replay` runs it for a store until stopped (the CLI and notebooks call it).

Replay model. When a client joins a recorded topic it gets the recorded join reply, rewritten to
its own ``ref``/``join_ref`` and encoded in its ``vsn`` (the recorded bytes as they are when
nothing needs rewriting), then the recorded pushes of that topic at their recorded offsets
divided by ``speed`` (``math.inf``: as fast as the socket takes them). Heartbeats are answered
live. Each connection gets its own replay, except that a connection ended by an injected
``disconnect``/``close`` fault leaves its replay *parked*: the next connection with the same
apikey that joins one of its topics within :data:`PARK_SECONDS` resumes it on the same clock,
and frames that fell due while nobody was connected are lost (counted ``lost``), as a real
server does not buffer them. A rejoin on the same connection continues the topic's replay.

Faults (``--fault SPEC``, ``NAME=VALUE[,KEY:VALUE...]``; the registry is :data:`FAULTS`)::

    drop=P                          a payload frame is not sent, with probability P
    duplicate=P                     a payload frame is sent twice, with probability P
    corrupt=P[,as:json|null|missing]
                                    a payload frame is replaced, with probability P, by the frame cut
                                    in the middle (not JSON), one with "record": null (a broadcast:
                                    "payload": null) or one without its record (payload)
    delay=200ms, delay=50ms..300ms  every push arrives that much later (order kept)
    disconnect=after:30s            the TCP connection is dropped without a close frame (the client
                                    sees 1006) 30 s of recorded time into the replay
    close=1011[,after:30s]          a close frame with that code after the last recorded frame
                                    (or at after:)
    reject-join=Unauthorized[,times:N]
                                    joins are refused with the server's reason for that code

``after:`` counts recorded time from the first join reply: at ``--speed 10`` ``after:30s`` comes
3 s into the replay; at max speed it comes after the frames recorded before it.

Payload frames are ``postgres_changes`` and ``broadcast``; join replies, heartbeat replies and
system messages are never dropped, duplicated or corrupted. Frame faults take ``topic:NAME`` to
act on one topic only. The same seed gives the same faults: a topic's plan depends only on the
recording, the fault specs, the seed and the topic name.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import click
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from recorder.clikit import format_option, store_option, until_signalled
from recorder.codec import IN, OUT, V1, V2, VERSIONS, Decoded, EncodeError, Frame, decode, encode
from recorder.errors import ConfigError, InputError, StoreError
from recorder.mockserver import MAX_FRAME_BYTES, PHOENIX, TOPIC_PREFIX, RealtimeHub, Send, _json_response
from recorder.store import FRAMES_SCHEMA, open_store

__all__ = [
    "CORRUPTIONS",
    "FAULTS",
    "Cut",
    "Fault",
    "PlanItem",
    "RecordedPush",
    "RecordedTopic",
    "Recording",
    "ReplayHub",
    "ReplayServer",
    "ReplayStats",
    "SessionInfo",
    "list_sessions",
    "load_recording",
    "parse_duration",
    "parse_fault",
    "parse_speed",
    "plan_replay",
    "serve_command",
    "serve_replay",
    "serve_replay_until_signalled",
]

DATA_EVENTS = frozenset({"postgres_changes", "broadcast"})
# Pushes that carry the channel's join_ref (vsn 2.0.0 join_ref field; phx_close/phx_error also as ref).
_JOIN_REF_EVENTS = frozenset({"system", "presence_state", "phx_close", "phx_error"})
_REF_IS_JOIN_REF = frozenset({"phx_close", "phx_error"})
PARK_SECONDS = 60.0  # how long a replay cut by a fault waits for its client to come back
BATCH = 512  # frames sent per step at high speed before other tasks get a turn
_TOPIC_IN_RAW = re.compile(rb'"topic"\s*:\s*"((?:[^"\\]|\\.){1,255})"')


# ---- small parsers ---------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|min)\s*$")


def parse_duration(text: str, what: str = "duration") -> float:
    """``200ms``, ``1.5s``, ``2m`` -> seconds; ConfigError naming ``what`` otherwise.

    >>> parse_duration("200ms"), parse_duration("1.5s"), parse_duration("2m")
    (0.2, 1.5, 120.0)
    """
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"{what} {text!r}: expected a duration like 200ms, 1.5s or 2m")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}[unit]


def parse_speed(text: str | float) -> float:
    """``--speed``: ``1`` (original spacing), ``N`` (N times faster) or ``max`` (``math.inf``)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        word = str(text).strip().lower()
        if word in ("max", "inf"):
            return math.inf
        word = word.removesuffix("x")  # "10x" reads as 10
        try:
            value = float(word)
        except ValueError:
            value = math.nan
    if not (value > 0):  # also refuses NaN
        raise ConfigError(f"--speed {text!r}: expected 1 (original timing), a factor such as 10, or max")
    return value


def _speed_text(speed: float) -> str:
    return "max" if math.isinf(speed) else f"{speed:g}x"


def _iso(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts is not None else "?"


# ---- the recording ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    """One recorded WebSocket connection, as :func:`list_sessions` sees it."""

    session_id: str
    start: datetime | None
    end: datetime | None
    frames: int  # text and binary frames, both directions
    changes: int  # server postgres_changes and broadcast frames
    topics: tuple[str, ...]
    vsn: str | None
    source: str | None

    def describe(self) -> str:
        """``3f2a9c… (2026-11-24T08:00:00Z, 120 frames, 100 changes, realtime:orders)``"""
        topics = ", ".join(self.topics) or "no topics"
        return (
            f"{self.session_id} ({_iso(self.start)}, {self.frames} frames, {self.changes} changes, {topics})"
        )


@dataclass
class RecordedPush:
    """A server frame of one topic, as recorded: ``offset`` seconds after the topic's join reply."""

    offset: float
    event: str | None
    vsn: str
    data: str | bytes  # the frame as it crossed the wire: str for text frames, bytes for binary
    join_ref_bound: bool = False  # carries the channel's join_ref: rewritten per connection
    decode_error: str | None = None
    _frame: Frame | None = field(default=None, repr=False)
    _encoded: dict = field(default_factory=dict, repr=False)

    @property
    def frame(self) -> Frame | None:
        """The decoded frame (None when it could not be decoded: it is then sent only as recorded)."""
        if self._frame is None and self.decode_error is None:
            decoded = decode(self.data, vsn=self.vsn, direction=IN)
            if decoded.frame is None:
                self.decode_error = decoded.error
            self._frame = decoded.frame
        return self._frame


@dataclass
class RecordedTopic:
    """A topic of the recorded session: the client's join, the server's answer and what followed."""

    topic: str
    join: Frame | None = None  # the recorded client join that got ``reply``
    reply: RecordedPush | None = None  # None: the join was never answered (the client timed out)
    pushes: list[RecordedPush] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        frame = self.reply.frame if self.reply is not None else None
        return bool(frame and isinstance(frame.payload, dict) and frame.payload.get("status") == "ok")

    @property
    def bindings(self) -> list:
        """postgres_changes the recorded client asked for (as sent, without server ids)."""
        payload = self.join.payload if self.join is not None and isinstance(self.join.payload, dict) else {}
        config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
        requested = config.get("postgres_changes")
        return requested if isinstance(requested, list) else []


@dataclass
class Recording:
    """One session of a store, ready to replay."""

    session: SessionInfo
    vsn: str
    topics: dict[str, RecordedTopic]
    why: str = "as asked"  # why this session was chosen
    skipped: dict[str, int] = field(default_factory=dict)  # server frames not replayed, by reason
    ended: str | None = None  # how the recorded connection ended

    def describe(self) -> str:
        pushes = sum(len(t.pushes) for t in self.topics.values())
        return f"session {self.session.describe()}: {pushes} pushes to replay ({self.why})"


def _frames_dataset(store: str | Path):
    opened = open_store(store)
    files = [str(p) for p in opened.part_files("frames")]
    if not files:
        return opened, None
    return opened, ds.dataset(files, format="parquet", schema=FRAMES_SCHEMA)


def _read(dataset, store: str | Path, **kwargs) -> pa.Table:
    try:
        return dataset.to_table(**kwargs)
    except (pa.ArrowException, OSError) as err:
        raise StoreError(f"{store}: cannot read the recorded frames: {str(err).splitlines()[0]}") from None


def list_sessions(store: str | Path) -> list[SessionInfo]:
    """Every recorded session of ``store``, oldest first (a session is one WebSocket connection).

    Raises StoreError when ``store`` is not a store.
    """
    _, dataset = _frames_dataset(store)
    if dataset is None:
        return []
    table = _read(dataset, store, columns=["session_id", "ts", "direction", "kind", "vsn", "topic", "event", "source"])
    if table.num_rows == 0:
        return []
    is_frame = pc.is_in(table["kind"], pa.array(["text", "binary"]))
    is_change = pc.and_(
        pc.equal(table["direction"], IN), pc.is_in(table["event"], pa.array(sorted(DATA_EVENTS)))
    )
    is_change = pc.fill_null(is_change, False)
    topic = pc.if_else(
        pc.or_(pc.equal(table["topic"], PHOENIX), pc.invert(pc.fill_null(is_frame, False))),
        pa.scalar(None, pa.string()),
        table["topic"],
    )
    work = pa.table(
        {
            "session_id": table["session_id"],
            "ts": table["ts"],
            "frame": pc.cast(is_frame, pa.int64()),
            "change": pc.cast(is_change, pa.int64()),
            "topic": topic,
            "vsn": pc.if_else(is_frame, table["vsn"], pa.scalar(None, pa.string())),
            "source": table["source"],
        }
    )
    grouped = work.group_by("session_id").aggregate(
        [
            ("ts", "min"),
            ("ts", "max"),
            ("frame", "sum"),
            ("change", "sum"),
            ("topic", "distinct"),
            ("vsn", "max"),
            ("source", "max"),
        ]
    )
    sessions = []
    for row in grouped.to_pylist():
        topics = tuple(sorted(t for t in row["topic_distinct"] if t))
        sessions.append(
            SessionInfo(
                session_id=row["session_id"],
                start=row["ts_min"],
                end=row["ts_max"],
                frames=int(row["frame_sum"] or 0),
                changes=int(row["change_sum"] or 0),
                topics=topics,
                vsn=row["vsn_max"],
                source=row["source_max"],
            )
        )
    far = datetime.max.replace(tzinfo=UTC)
    sessions.sort(key=lambda s: (s.start or far, s.session_id))
    return sessions


def _sessions_line(sessions: Sequence[SessionInfo], limit: int = 10) -> str:
    shown = "; ".join(s.describe() for s in sessions[:limit])
    more = f"; ... and {len(sessions) - limit} more" if len(sessions) > limit else ""
    return shown + more


def choose_session(sessions: Sequence[SessionInfo], wanted: str | None, store: str | Path) -> tuple[SessionInfo, str]:
    """The session to replay and why: ``wanted`` (an id or a unique prefix), else the one with the
    most postgres_changes/broadcast frames (then the most frames, then the earliest)."""
    if not sessions:
        raise InputError(
            f"{store}: no recorded sessions to replay (the store has no frames); record one first, "
            "e.g. rt-record proxy --listen 127.0.0.1:8765 --upstream wss://PROJECT.supabase.co --store "
            f"{store}"
        )
    if wanted is not None:
        exact = [s for s in sessions if s.session_id == wanted]
        matches = exact or [s for s in sessions if wanted and s.session_id.startswith(wanted)]
        if len(matches) == 1:
            return matches[0], "as asked"
        if len(matches) > 1:
            raise InputError(
                f"--session {wanted!r} matches {len(matches)} sessions in {store}: {_sessions_line(matches)}"
            )
        raise InputError(
            f"unknown session {wanted!r} in {store}; the sessions are: {_sessions_line(sessions)}"
        )
    far = datetime.max.replace(tzinfo=UTC).timestamp()
    best = max(sessions, key=lambda s: (s.changes, s.frames, -(s.start.timestamp() if s.start else far)))
    if best.frames == 0:
        raise InputError(
            f"{store}: no session has frames to replay (only failed connection attempts); "
            f"the sessions are: {_sessions_line(sessions)}"
        )
    if len(sessions) == 1:
        return best, "the only session in the store"
    why = (
        f"chosen: the most postgres_changes/broadcast frames of the {len(sessions)} sessions; "
        "another one with --session ID"
    )
    return best, why


def load_recording(store: str | Path, session: str | None = None) -> Recording:
    """Read one session of ``store`` and group its server frames per topic (see the module doc).

    ``session`` is a session id or a unique prefix of one; None picks the session with the most
    server ``postgres_changes``/``broadcast`` frames (``Recording.why`` says so). Raises
    InputError with one line listing the sessions when ``session`` is unknown or the store has
    none, StoreError when ``store`` is not a store.
    """
    sessions = list_sessions(store)
    info, why = choose_session(sessions, session, store)
    _, dataset = _frames_dataset(store)
    table = _read(dataset, store, filter=pc.field("session_id") == info.session_id)
    table = table.sort_by([("seq", "ascending")])
    recording = _group(table, info)
    recording.why = why
    return recording


def _text_of(raw: bytes | None, kind: str) -> str | bytes | None:
    if raw is None:
        return None
    if kind == "binary":
        return bytes(raw)
    return bytes(raw).decode("utf-8", "replace")


def _group(table: pa.Table, info: SessionInfo) -> Recording:
    """Build the per-topic replay of one session's rows (ordered by seq)."""
    cols = {
        name: table[name].to_pylist()
        for name in ("direction", "kind", "vsn", "topic", "event", "ref", "decode_error", "raw", "close_code")
    }
    micros = pc.cast(table["ts"], pa.int64()).to_pylist()
    session_vsn = next((v for v, k in zip(cols["vsn"], cols["kind"], strict=True) if k in ("text", "binary") and v), V1)
    topics: dict[str, RecordedTopic] = {}
    pending_joins: dict[tuple[str, str | None], Frame] = {}
    leaving: set[str] = set()
    reply_at: dict[str, int] = {}
    skipped: dict[str, int] = {}
    ended = None

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for i in range(table.num_rows):
        kind, direction = cols["kind"][i], cols["direction"][i]
        if kind == "close":
            ended = f"closed by the {'server' if direction == IN else 'client'} with code {cols['close_code'][i]}"
            continue
        if kind not in ("text", "binary"):
            continue
        vsn = cols["vsn"][i] or session_vsn
        data = _text_of(cols["raw"][i], kind)
        topic, event = cols["topic"][i], cols["event"][i]
        if direction == OUT:
            if topic is None or data is None:
                continue
            if event == "phx_join":
                frame = decode(data, vsn=vsn, direction=OUT).frame
                if frame is not None:
                    pending_joins[(topic, frame.ref)] = frame
                    topics.setdefault(topic, RecordedTopic(topic))
            elif event == "phx_leave":
                leaving.add(topic)
            continue
        if data is None:
            skip("no bytes recorded")
            continue
        error = cols["decode_error"][i]
        if topic is None and error is not None:
            found = _TOPIC_IN_RAW.search(data.encode("utf-8", "replace") if isinstance(data, str) else data)
            topic = found.group(1).decode("utf-8", "replace") if found else None
            if topic is None:
                skip("undecodable, no topic")
                continue
        if topic == PHOENIX:
            continue  # heartbeat replies are answered live
        rec = topics.get(topic)
        if rec is None:
            skip("topic never joined in the session")
            continue
        push = RecordedPush(0.0, event, vsn, data, decode_error=error)
        if event == "phx_reply":
            join = pending_joins.pop((topic, cols["ref"][i]), None)
            if join is None:
                continue  # a reply to a leave, a broadcast ack, ...: answered live
            if rec.reply is None or (not rec.accepted and _is_ok(push)):
                rec.join, rec.reply = join, push
                reply_at[topic] = micros[i]
            continue
        if event == "phx_close" and topic in leaving:
            leaving.discard(topic)  # the end of the recorded client's own leave
            continue
        if topic not in reply_at or not rec.accepted:
            skip("before the join reply")
            continue
        push.offset = max(0.0, (micros[i] - reply_at[topic]) / 1e6)
        push.join_ref_bound = event in _JOIN_REF_EVENTS
        rec.pushes.append(push)
    for rec in topics.values():
        if rec.reply is None:  # never answered: keep the join for the binding check
            rec.join = next((f for (t, _), f in pending_joins.items() if t == rec.topic), None)
    return Recording(info, session_vsn, topics, skipped=skipped, ended=ended)


def _is_ok(push: RecordedPush) -> bool:
    frame = push.frame
    return bool(frame and isinstance(frame.payload, dict) and frame.payload.get("status") == "ok")


# ---- faults ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One parsed ``--fault`` spec; which fields are set depends on ``kind``."""

    kind: str
    spec: str
    probability: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)  # min, max seconds (equal: a fixed delay)
    after: float | None = None  # seconds of recorded time into the replay
    code: int | None = None
    reason: str | None = None  # reject-join: the reason, with {name} for the channel name
    variant: str | None = None  # corrupt: json, null or missing (None: any that fits the frame)
    times: int | None = None  # reject-join: how many joins (None: all)
    topic: str | None = None  # act on this topic only


@dataclass(frozen=True)
class PlanItem:
    """One recorded push as the replay will send it (or drop it)."""

    offset: float  # recorded seconds after the topic's join reply
    push: RecordedPush
    delay: float = 0.0  # extra seconds on the wall clock (delay fault)
    corrupt: str | None = None  # a CORRUPTIONS name
    drop: bool = False
    copy: bool = False  # the second copy of a duplicated frame


@dataclass(frozen=True)
class FaultKind:
    """A registry entry: how to read the spec value and options, and what the fault does to a push.

    ``apply`` (frame faults only) takes the fault, one planned item and the topic's random
    generator and returns the items that replace it.
    """

    usage: str
    parse: Callable[[str, str, dict[str, str]], Fault]
    options: tuple[str, ...] = ()
    apply: Callable[[Fault, PlanItem, random.Random], list[PlanItem]] | None = None


def _probability(name: str, value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        p = math.nan
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"--fault {name}={value}: {name} takes a probability between 0 and 1 (e.g. {name}=0.1)")
    return p


def _parse_drop(spec: str, value: str, opts: dict[str, str]) -> Fault:
    return Fault("drop", spec, probability=_probability("drop", value), topic=_topic_opt(opts))


def _parse_duplicate(spec: str, value: str, opts: dict[str, str]) -> Fault:
    return Fault("duplicate", spec, probability=_probability("duplicate", value), topic=_topic_opt(opts))


def _parse_corrupt(spec: str, value: str, opts: dict[str, str]) -> Fault:
    variant = opts.get("as")
    if variant is not None and variant not in CORRUPTIONS:
        raise ConfigError(
            f"--fault {spec}: unknown corruption {variant!r} (known: {', '.join(CORRUPTIONS)})"
        )
    return Fault(
        "corrupt", spec, probability=_probability("corrupt", value), variant=variant, topic=_topic_opt(opts)
    )


def _parse_delay(spec: str, value: str, opts: dict[str, str]) -> Fault:
    low, sep, high = value.partition("..")
    what = f"--fault {spec}: delay"
    lo = parse_duration(low, what)
    hi = parse_duration(high, what) if sep else lo
    if hi < lo:
        raise ConfigError(f"--fault {spec}: the delay range must go from the smaller to the larger value")
    return Fault("delay", spec, delay=(lo, hi), topic=_topic_opt(opts))


def _parse_after(spec: str, text: str) -> float:
    after = parse_duration(text.removeprefix("after:"), f"--fault {spec}: after")
    return after


def _parse_disconnect(spec: str, value: str, opts: dict[str, str]) -> Fault:
    if not value.startswith("after:"):
        raise ConfigError(f"--fault {spec}: disconnect takes after:DURATION, e.g. disconnect=after:30s")
    return Fault("disconnect", spec, after=_parse_after(spec, value), code=1006)


def _parse_close(spec: str, value: str, opts: dict[str, str]) -> Fault:
    if not value.isdigit() or not (1000 <= int(value) <= 4999) or int(value) in (1004, 1005, 1015):
        raise ConfigError(
            f"--fault {spec}: close takes a WebSocket close code such as 1000, 1001, 1011 or 1012 "
            "(1000-4999 but 1004, 1005, 1015; 1006 drops the connection without a close frame)"
        )
    after = _parse_after(spec, opts["after"]) if "after" in opts else None
    return Fault("close", spec, code=int(value), after=after)


# The reasons the real server gives (realtime-protocol.md §3.2); {name} is the channel name.
JOIN_REFUSALS = {
    "Unauthorized": "Unauthorized: You do not have permissions to read from this Channel topic: {name}",
    "ClientJoinRateLimitReached": "ClientJoinRateLimitReached: Too many joins per second",
    "ChannelRateLimitReached": "ChannelRateLimitReached: Too many channels",
    "ConnectionRateLimitReached": "ConnectionRateLimitReached: Too many connected users",
    "DatabaseConnectionRateLimitReached": "DatabaseConnectionRateLimitReached: Too many database connections attempts per second",
    "InvalidJWTToken": "InvalidJWTToken: Token has expired 42 seconds ago",
    "MalformedJWT": "MalformedJWT: The token provided is not a valid JWT",
    "JwtSignatureError": "JwtSignatureError: Failed to validate JWT signature",
    "PrivateOnly": "PrivateOnly: This project only allows private channels",
    "TenantNotFound": "TenantNotFound: Tenant with the given ID does not exist",
    "RealtimeDisabledForTenant": "RealtimeDisabledForTenant: Realtime disabled for this tenant",
    "IncreaseConnectionPool": "IncreaseConnectionPool: Please increase your connection pool size",
    "DatabaseLackOfConnections": "DatabaseLackOfConnections: Database can't accept more connections, Realtime won't connect",
    "UnableToConnectToProject": "UnableToConnectToProject: Realtime was unable to connect to the project database",
    "InitializingProjectConnection": "InitializingProjectConnection: Connecting to the project database",
    "RealtimeRestarting": "RealtimeRestarting: Realtime is restarting, please standby",
}


def _parse_reject_join(spec: str, value: str, opts: dict[str, str]) -> Fault:
    if value in JOIN_REFUSALS:
        reason = JOIN_REFUSALS[value]
    elif ":" in value or " " in value:
        reason = value  # a reason written out, e.g. "Unauthorized: my own text"
    else:
        raise ConfigError(
            f"--fault {spec}: unknown refusal {value!r}; use a server error code ({', '.join(JOIN_REFUSALS)}) "
            "or a whole reason such as 'Code: message'"
        )
    times = None
    if "times" in opts:
        if not opts["times"].isdigit() or int(opts["times"]) < 1:
            raise ConfigError(f"--fault {spec}: times takes a whole number of joins, e.g. times:2")
        times = int(opts["times"])
    return Fault("reject-join", spec, reason=reason, times=times, topic=_topic_opt(opts))


def _topic_opt(opts: dict[str, str]) -> str | None:
    topic = opts.get("topic")
    if topic is None:
        return None
    return topic if topic.startswith(TOPIC_PREFIX) else TOPIC_PREFIX + topic


def _apply_drop(fault: Fault, item: PlanItem, rng: random.Random) -> list[PlanItem]:
    return [replace(item, drop=True)] if rng.random() < fault.probability else [item]


def _apply_duplicate(fault: Fault, item: PlanItem, rng: random.Random) -> list[PlanItem]:
    return [item, replace(item, copy=True)] if rng.random() < fault.probability else [item]


def _apply_corrupt(fault: Fault, item: PlanItem, rng: random.Random) -> list[PlanItem]:
    if rng.random() >= fault.probability:
        return [item]
    fits = [name for name, corruption in CORRUPTIONS.items() if corruption.fits(item.push)]
    variant = fault.variant if fault.variant in fits else None
    if variant is None:
        variant = rng.choice(fits) if fault.variant is None else "json"
    return [replace(item, corrupt=variant)]


def _apply_delay(fault: Fault, item: PlanItem, rng: random.Random) -> list[PlanItem]:
    lo, hi = fault.delay
    return [replace(item, delay=item.delay + (lo if hi == lo else rng.uniform(lo, hi)))]


FAULTS: dict[str, FaultKind] = {
    "drop": FaultKind("drop=P[,topic:NAME]", _parse_drop, ("topic",), _apply_drop),
    "duplicate": FaultKind("duplicate=P[,topic:NAME]", _parse_duplicate, ("topic",), _apply_duplicate),
    "corrupt": FaultKind(
        "corrupt=P[,as:json|null|missing][,topic:NAME]", _parse_corrupt, ("as", "topic"), _apply_corrupt
    ),
    "delay": FaultKind("delay=DURATION[..DURATION][,topic:NAME]", _parse_delay, ("topic",), _apply_delay),
    "disconnect": FaultKind("disconnect=after:DURATION", _parse_disconnect),
    "close": FaultKind("close=CODE[,after:DURATION]", _parse_close, ("after",)),
    "reject-join": FaultKind("reject-join=CODE|REASON[,times:N][,topic:NAME]", _parse_reject_join, ("times", "topic")),
}
"""Fault kinds by name: add one by adding a parse function (and ``apply`` for frame faults)."""


def parse_fault(spec: str) -> Fault:
    """One ``--fault`` spec: ``NAME=VALUE[,KEY:VALUE...]``; ConfigError with one line otherwise.

    >>> parse_fault("drop=0.1").probability
    0.1
    >>> parse_fault("close=1011,after:2s").after
    2.0
    """
    name, sep, rest = spec.strip().partition("=")
    kind = FAULTS.get(name.strip())
    if kind is None or not sep:
        known = ", ".join(f.usage for f in FAULTS.values())
        what = f"unknown fault {name.strip()!r}" if kind is None else f"{name} needs a value"
        raise ConfigError(f"--fault {spec!r}: {what} (known: {known})")
    value, *pairs = [p.strip() for p in rest.split(",")]
    opts: dict[str, str] = {}
    for pair in pairs:
        key, colon, val = pair.partition(":")
        if not colon or key not in kind.options or not val:
            allowed = ", ".join(f"{o}:..." for o in kind.options) or "none"
            raise ConfigError(f"--fault {spec!r}: unknown option {pair!r} (options of {name}: {allowed})")
        opts[key] = val
    if not value:
        raise ConfigError(f"--fault {spec!r}: {name} needs a value ({kind.usage})")
    return kind.parse(spec.strip(), value, opts)


# ---- corruptions (what corrupt=P does to a frame) --------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    """``fits(push)``: can this push be corrupted this way; ``frame(frame)``: the corrupted frame
    (None: corrupt the encoded text instead, see :func:`_truncate`)."""

    fits: Callable[[RecordedPush], bool]
    frame: Callable[[Frame], Frame] | None = None


def _change_data(frame: Frame) -> dict | None:
    payload = frame.payload
    data = payload.get("data") if isinstance(payload, dict) else None
    return data if isinstance(data, dict) else None


def _record_key(data: dict) -> str:
    return "old_record" if data.get("type") == "DELETE" or "record" not in data else "record"


def _fits_payload(push: RecordedPush) -> bool:
    frame = push.frame
    if frame is None:
        return False
    if frame.event == "postgres_changes":
        return _change_data(frame) is not None
    return frame.event == "broadcast" and isinstance(frame.payload, dict) and "payload" in frame.payload


def _with_record(frame: Frame, missing: bool) -> Frame:
    payload = dict(frame.payload)  # type: ignore[arg-type]
    if frame.event == "postgres_changes":
        data = dict(_change_data(frame) or {})
        key = _record_key(data)
        if missing:
            data.pop(key, None)
        else:
            data[key] = None
        payload["data"] = data
    elif missing:
        payload.pop("payload", None)
    else:
        payload["payload"] = None
    return replace(frame, payload=payload, binary_kind=None)


CORRUPTIONS: dict[str, Corruption] = {
    # a frame cut in the middle: not JSON any more (realtime-py: "Unrecognized message format")
    "json": Corruption(lambda push: True),
    # "record": null in a change (old_record for DELETE), "payload": null in a broadcast
    "null": Corruption(_fits_payload, lambda frame: _with_record(frame, missing=False)),
    # the record (or the broadcast's payload) left out
    "missing": Corruption(_fits_payload, lambda frame: _with_record(frame, missing=True)),
}


def _truncate(data: str | bytes) -> str | bytes:
    return data[: max(1, len(data) // 2)]


# ---- the plan --------------------------------------------------------------------------------------


def plan_replay(recording: Recording, faults: Sequence[Fault], seed: int | str) -> dict[str, list[PlanItem]]:
    """Per topic, the recorded pushes with the frame faults applied, in sending order.

    Pure: the same recording, faults and seed give the same plan (each topic draws from its own
    generator seeded with ``seed`` and the topic name, so topics do not disturb each other).
    """
    frame_faults = [f for f in faults if FAULTS[f.kind].apply is not None]
    plans: dict[str, list[PlanItem]] = {}
    for topic, rec in sorted(recording.topics.items()):
        rng = random.Random(f"{seed}/{topic}")
        items: list[PlanItem] = []
        for push in rec.pushes:
            planned = [PlanItem(push.offset, push)]
            data = push.event in DATA_EVENTS
            for fault in frame_faults:
                if fault.topic not in (None, topic):
                    continue
                if fault.kind != "delay" and not data:
                    continue
                apply = FAULTS[fault.kind].apply
                assert apply is not None
                planned = [out for item in planned for out in (apply(fault, item, rng) if not item.drop else [item])]
            items.extend(planned)
        plans[topic] = items
    return plans


# ---- the protocol without I/O ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cut:
    """The end of a connection decided by a fault: ``code`` 1006 drops it without a close frame."""

    code: int
    reason: str
    fault: str  # the spec
    after: float | None  # recorded seconds into the replay; None: after the last frame


@dataclass
class ConnectionStats:
    """What one connection got."""

    id: int
    vsn: str
    peer: str = ""
    topics: list[str] = field(default_factory=list)
    joins: int = 0
    refused_joins: int = 0
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    delayed: int = 0
    lost: int = 0  # due while the client was away (resumed replay)
    undeliverable: int = 0  # cannot be carried in the client's vsn (raw binary to vsn 1.0.0, ...)
    resumed: bool = False
    ended: str | None = None


@dataclass
class ReplayStats:
    """What a replay server did; ``as_dict()`` is the ``--format json`` output."""

    session_id: str = ""
    speed: str = "1x"
    seed: int | str = 0
    faults: list[str] = field(default_factory=list)
    listen: str = ""
    connections: list[ConnectionStats] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.connections)

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "connections"}
        for name in ("joins", "refused_joins", "sent", "dropped", "duplicated", "corrupted", "delayed", "lost"):
            out[name] = self.total(name)
        out["connections"] = [asdict(c) for c in self.connections]
        return out

    def summary(self) -> str:
        faults = f", faults {' '.join(self.faults)} (seed {self.seed})" if self.faults else ""
        injected = [
            f"{self.total(n)} {n}"
            for n in ("dropped", "duplicated", "corrupted", "delayed", "lost", "refused_joins")
            if self.total(n)
        ]
        cuts = sum(1 for c in self.connections if c.ended and c.ended.startswith("cut"))
        if cuts:
            injected.append(f"{cuts} connection(s) cut")
        return (
            f"rt-replay serve: session {self.session_id} at {self.speed}{faults}: "
            f"{len(self.connections)} connection(s), {self.total('joins')} join(s), {self.total('sent')} frames sent"
            + (f"; {', '.join(injected)}" if injected else "")
        )


class _Cursor:
    """Where one topic's replay stands on one timeline."""

    __slots__ = ("topic", "items", "pos", "vstart", "start_wall", "join_ref", "order")

    def __init__(self, topic: str, items: list[PlanItem], vstart: float, start_wall: float, join_ref, order: int):
        self.topic = topic
        self.items = items
        self.pos = 0
        self.vstart = vstart  # recorded-time position of the topic's join reply on the timeline
        self.start_wall = start_wall
        self.join_ref = join_ref
        self.order = order


class _Timeline:
    """One replay: the joined topics' plans merged on one clock.

    Virtual time is recorded seconds since the first join reply; at a finite speed it runs at
    ``speed`` times the wall clock from ``origin``; at max speed it jumps from frame to frame.
    """

    def __init__(self, speed: float, cuts: list[Cut], identity: str) -> None:
        self.speed = speed
        self.identity = identity
        self.origin: float | None = None
        self.vclock = 0.0
        self.last_wall = -math.inf
        self.heap: list[tuple[float, int, _Cursor]] = []
        self.cursors: dict[str, _Cursor] = {}
        self.dormant: dict[str, _Cursor] = {}  # topics left, or not yet rejoined after a resume
        self.cuts = sorted(cuts, key=lambda c: math.inf if c.after is None else c.after)
        self.cut_done: Cut | None = None

    def vnow(self, now: float) -> float:
        if self.origin is None:
            return 0.0
        return self.vclock if math.isinf(self.speed) else (now - self.origin) * self.speed

    def start(self, topic: str, items: list[PlanItem], join_ref, now: float, stats: ConnectionStats) -> None:
        if self.origin is None:
            self.origin = now
        cursor = self.cursors.get(topic)
        if cursor is not None:  # a rejoin on the same connection: the replay goes on
            cursor.join_ref = join_ref
            return
        cursor = self.dormant.pop(topic, None)
        if cursor is None:
            cursor = _Cursor(topic, items, self.vnow(now), now, join_ref, len(self.cursors) + len(self.dormant))
        else:
            cursor.join_ref = join_ref
            if not math.isinf(self.speed):  # what fell due while nobody listened is gone
                while cursor.pos < len(cursor.items) and self._wall(cursor, cursor.pos) < now:
                    if not cursor.items[cursor.pos].drop:
                        stats.lost += 1
                    cursor.pos += 1
        self.cursors[topic] = cursor
        if cursor.pos < len(cursor.items):
            heapq.heappush(self.heap, (cursor.vstart + cursor.items[cursor.pos].offset, cursor.order, cursor))

    def stop(self, topic: str) -> None:
        cursor = self.cursors.pop(topic, None)
        if cursor is None:
            return
        self.heap = [h for h in self.heap if h[2] is not cursor]
        heapq.heapify(self.heap)
        self.dormant[topic] = cursor

    def park(self) -> None:
        for topic in list(self.cursors):
            self.stop(topic)

    def _wall(self, cursor: _Cursor, pos: int) -> float:
        item = cursor.items[pos]
        if math.isinf(self.speed):
            return cursor.start_wall + item.delay if item.delay else -math.inf
        assert self.origin is not None
        return self.origin + (cursor.vstart + item.offset) / self.speed + item.delay

    def _cut_ready(self, now: float, head_vdue: float | None) -> bool:
        if not self.cuts or self.origin is None:
            return False
        cut = self.cuts[0]
        if cut.after is None:
            return head_vdue is None and bool(self.cursors)
        if math.isinf(self.speed):
            return head_vdue is None or cut.after <= head_vdue
        return now >= self.origin + cut.after / self.speed

    def next_item(self) -> tuple[float, _Cursor, float] | None:
        """(virtual due, cursor, wall due) of the next frame, or None."""
        if not self.heap:
            return None
        vdue, _, cursor = self.heap[0]
        return vdue, cursor, max(self._wall(cursor, cursor.pos), self.last_wall)

    def pop(self) -> PlanItem:
        vdue, order, cursor = self.heap[0]
        wall = max(self._wall(cursor, cursor.pos), self.last_wall)
        item = cursor.items[cursor.pos]
        cursor.pos += 1
        if cursor.pos < len(cursor.items):
            heapq.heapreplace(self.heap, (cursor.vstart + cursor.items[cursor.pos].offset, order, cursor))
        else:
            heapq.heappop(self.heap)
        self.vclock = max(self.vclock, vdue)
        self.last_wall = max(self.last_wall, wall)
        return item

    def next_deadline(self, now: float) -> float | None:
        head = self.next_item()
        candidates = [head[2]] if head is not None else []
        if self.cuts and self.origin is not None:
            cut = self.cuts[0]
            if cut.after is not None and not math.isinf(self.speed):
                candidates.append(self.origin + cut.after / self.speed)
            elif self._cut_ready(now, head[0] if head else None):
                candidates.append(-math.inf)
        return min(candidates) if candidates else None


class ReplayHub(RealtimeHub):
    """The replay server's protocol over many connections, without I/O (clock values are passed in).

    Joins of recorded topics are answered from the recording; everything else a client sends is
    handled by :class:`RealtimeHub` (heartbeat, leave, broadcast, presence, access_token).
    ``due(conn_id, now)`` gives the frames to send now and, when a fault ends the connection,
    the :class:`Cut`; ``next_deadline(conn_id, now)`` when to ask again.
    """

    def __init__(
        self,
        recording: Recording,
        *,
        speed: float = 1.0,
        faults: Sequence[Fault] = (),
        seed: int | str = 0,
        say: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.recording = recording
        self.speed = speed
        self.faults = list(faults)
        self.seed = seed
        self.say = say or (lambda msg: None)
        self.plans = plan_replay(recording, self.faults, seed)
        self.cuts = [
            Cut(f.code or 1006, "" if f.code == 1006 else "rt-replay fault", f.spec, f.after)
            for f in self.faults
            if f.kind in ("disconnect", "close")
        ]
        self.refusals = [[f, f.times] for f in self.faults if f.kind == "reject-join"]
        self.timelines: dict[int, _Timeline] = {}
        self.identities: dict[int, str] = {}
        self.parked: dict[str, tuple[_Timeline, float]] = {}
        self.stats: dict[int, ConnectionStats] = {}
        self._now = 0.0

    # ---- connections ---------------------------------------------------------------------

    def open(self, conn_id: int, vsn: str = V1, identity: str = "", now: float = 0.0, peer: str = "") -> None:
        super().open(conn_id, vsn)
        self.identities[conn_id] = identity
        self.stats[conn_id] = ConnectionStats(conn_id, vsn, peer)

    def close(self, conn_id: int, now: float = 0.0, ended: str | None = None) -> list[Send]:
        """Forget the connection; a replay it was cut from by a fault is parked for its client."""
        timeline = self.timelines.pop(conn_id, None)
        stats = self.stats.get(conn_id)
        if stats is not None and ended is not None:
            stats.ended = ended
        if timeline is not None and timeline.cut_done is not None:
            timeline.park()
            self.parked[timeline.identity] = (timeline, now + PARK_SECONDS)
        self.identities.pop(conn_id, None)
        return super().close(conn_id)

    def _timeline(self, conn_id: int) -> _Timeline:
        timeline = self.timelines.get(conn_id)
        if timeline is None:
            identity = self.identities.get(conn_id, "")
            parked = self.parked.pop(identity, None)
            if parked is not None and parked[1] >= self._now:
                timeline = parked[0]
                timeline.cut_done = None
                self.stats[conn_id].resumed = True
            else:
                timeline = _Timeline(self.speed, list(self.cuts), identity)
            self.timelines[conn_id] = timeline
        return timeline

    # ---- client frames -------------------------------------------------------------------

    def receive(self, conn_id: int, data: str | bytes, now: float = 0.0) -> tuple[Decoded, list[Send]]:
        """Handle one client frame at clock value ``now``: what it decoded to and what to send back."""
        self._now = now
        decoded, sends = super().receive(conn_id, data)
        frame = decoded.frame
        if frame is not None and frame.event == "phx_leave" and conn_id in self.timelines:
            self.timelines[conn_id].stop(frame.topic or "")
        return decoded, sends

    def _join(self, conn_id: int, frame: Frame) -> list[Send]:
        topic = frame.topic or ""
        stats = self.stats[conn_id]
        if not topic.startswith(TOPIC_PREFIX) or topic == TOPIC_PREFIX:
            return super()._join(conn_id, frame)  # "unmatched topic", TopicNameRequired
        rec = self.recording.topics.get(topic)
        if rec is None:
            recorded = ", ".join(self.recording.topics) or "none"
            reason = (
                f"UnknownTopic: {topic} is not in recorded session {self.recording.session.session_id} "
                f"(recorded topics: {recorded})"
            )
            stats.refused_joins += 1
            self.say(f"connection {conn_id}: join of {topic} refused: not in the recording (recorded topics: {recorded})")
            return [self._reply(conn_id, frame, "error", {"reason": reason})]
        refusal = self._take_refusal(topic)
        if refusal is not None:
            reason = (refusal.reason or "").replace("{name}", topic.removeprefix(TOPIC_PREFIX))
            stats.refused_joins += 1
            self.say(f"connection {conn_id}: join of {topic} refused by fault {refusal.spec}")
            return [self._reply(conn_id, frame, "error", {"reason": reason})]
        if rec.reply is None:
            self.say(f"connection {conn_id}: join of {topic} left unanswered, as in the recording")
            return []
        stats.joins += 1
        if topic not in stats.topics:
            stats.topics.append(topic)
        reply = self._recorded_reply(conn_id, frame, rec.reply)
        if not rec.accepted:
            stats.refused_joins += 1
            self.say(f"connection {conn_id}: join of {topic} refused, as in the recording")
            return [reply]
        super()._join(conn_id, frame)  # the channel exists for leave, broadcast and presence
        self._check_bindings(conn_id, frame, rec)
        timeline = self._timeline(conn_id)
        join_ref = frame.join_ref or frame.ref
        timeline.start(topic, self.plans.get(topic, []), join_ref, self._now, stats)
        return [reply]

    def _take_refusal(self, topic: str) -> Fault | None:
        for entry in self.refusals:
            fault, left = entry
            if fault.topic not in (None, topic) or left == 0:
                continue
            if left is not None:
                entry[1] = left - 1
            return fault
        return None

    def _recorded_reply(self, conn_id: int, request: Frame, reply: RecordedPush) -> Send:
        vsn = self.vsns[conn_id]
        recorded = reply.frame
        if recorded is None:  # an undecodable recorded reply goes out as it was
            return Send(conn_id, Frame(request.topic, "phx_reply", None), reply.data)
        same_refs = recorded.ref == request.ref and (vsn == V1 or recorded.join_ref == request.join_ref)
        if vsn == reply.vsn and same_refs:
            return Send(conn_id, recorded, reply.data)
        return self._send(
            conn_id, request.topic or "", "phx_reply", recorded.payload, ref=request.ref, join_ref=request.join_ref
        )

    def _check_bindings(self, conn_id: int, frame: Frame, rec: RecordedTopic) -> None:
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
        asked = config.get("postgres_changes")
        asked = asked if isinstance(asked, list) else []
        if _bindings_key(asked) != _bindings_key(rec.bindings):
            self.say(
                f"connection {conn_id}: {frame.topic} joined with postgres_changes {json.dumps(asked)}, the "
                f"recording has {json.dumps(rec.bindings)}: the recorded reply will not match (realtime-py: "
                "binding mismatch)"
            )

    # ---- pushes --------------------------------------------------------------------------

    def due(self, conn_id: int, now: float, limit: int = BATCH) -> tuple[list[str | bytes], Cut | None]:
        """Frames due on connection ``conn_id`` at clock ``now`` (at most ``limit``), and the cut
        that ends it now, if any (send the frames first)."""
        timeline = self.timelines.get(conn_id)
        if timeline is None or timeline.cut_done is not None:
            return [], None
        stats = self.stats[conn_id]
        vsn = self.vsns[conn_id]
        out: list[str | bytes] = []
        while len(out) < limit:
            head = timeline.next_item()
            ready = timeline._cut_ready(now, head[0] if head else None)
            if head is not None and head[2] <= now:
                cut = timeline.cuts[0] if ready else None
                if cut is None or cut.after is None or head[0] < cut.after:
                    cursor = head[1]
                    item = timeline.pop()
                    if item.drop:
                        stats.dropped += 1
                        continue
                    data = self._data(item, vsn, cursor)
                    if data is None:
                        stats.undeliverable += 1
                        continue
                    out.append(data)
                    stats.sent += 1
                    stats.corrupted += item.corrupt is not None
                    stats.duplicated += item.copy
                    stats.delayed += item.delay > 0
                    continue
            if ready:
                cut = timeline.cuts.pop(0)
                timeline.cut_done = cut
                return out, cut
            break
        return out, None

    def next_deadline(self, conn_id: int, now: float) -> float | None:
        """Clock value at which :meth:`due` has something for ``conn_id``; None: nothing pending."""
        timeline = self.timelines.get(conn_id)
        if timeline is None or timeline.cut_done is not None:
            return None
        return timeline.next_deadline(now)

    def _data(self, item: PlanItem, vsn: str, cursor: _Cursor) -> str | bytes | None:
        push = item.push
        if item.corrupt is None and vsn == push.vsn and not push.join_ref_bound:
            return push.data  # the recorded bytes
        bound = push.join_ref_bound and (vsn == V2 or push.event in _REF_IS_JOIN_REF)
        if item.corrupt is None and vsn == push.vsn and not bound:
            return push.data  # e.g. a vsn 1.0.0 system message: no join_ref on the wire
        key = (vsn, item.corrupt, cursor.join_ref if bound else None)
        cached = push._encoded.get(key, False)
        if cached is not False:
            return cached
        data = self._encode(push, vsn, item.corrupt, cursor.join_ref if bound else None, bound)
        if len(push._encoded) < 64:
            push._encoded[key] = data
        return data

    def _encode(self, push: RecordedPush, vsn: str, corrupt: str | None, join_ref, bound: bool) -> str | bytes | None:
        frame = push.frame
        if frame is None:  # undecodable as recorded: only the recorded bytes can go, and only as they are
            if vsn != push.vsn:
                return None
            return _truncate(push.data) if corrupt is not None else push.data
        corruption = CORRUPTIONS.get(corrupt) if corrupt else None
        if corruption is not None and corruption.frame is not None:
            frame = corruption.frame(frame)
        if bound:
            ref = join_ref if frame.event in _REF_IS_JOIN_REF else frame.ref
            frame = replace(frame, ref=ref, join_ref=join_ref if vsn == V2 else None)
        elif vsn == V1:
            frame = replace(frame, join_ref=None)
        binary = vsn == V2 and isinstance(push.data, bytes) and corrupt in (None, "json")
        try:
            data = encode(frame, vsn=vsn, binary=binary, direction=IN)
        except EncodeError:
            return None  # e.g. a raw binary broadcast for a vsn 1.0.0 client (the real server skips it too)
        return _truncate(data) if corrupt == "json" else data


def _bindings_key(bindings: Iterable) -> list:
    out = []
    for b in bindings:
        if isinstance(b, dict):
            out.append(sorted((k, json.dumps(v, sort_keys=True)) for k, v in b.items() if k != "id"))
        else:
            out.append([("?", json.dumps(b))])
    return out


# ---- the asyncio shell -------------------------------------------------------------------------------


class _Conn:
    __slots__ = ("id", "ws", "wake", "cut")

    def __init__(self, conn_id: int, ws: ServerConnection) -> None:
        self.id = conn_id
        self.ws = ws
        self.wake = asyncio.Event()
        self.cut: Cut | None = None


class ReplayServer:
    """The replay server on ``host:port`` (port 0: any free port), for tests and notebooks::

        recording = load_recording("store")
        async with ReplayServer(recording, speed=math.inf, faults=[parse_fault("drop=0.1")], seed=1) as server:
            client = AsyncRealtimeClient(server.url, token=KEY)   # ws://127.0.0.1:PORT/realtime/v1
            ...
        print(server.stats.summary())

    Any request path ending in ``/websocket`` is accepted (``/realtime/v1/websocket``,
    ``/socket/websocket``); ``vsn`` comes from the query string (default 1.0.0); no apikey is
    checked (it only tells a returning client's parked replay apart).
    """

    def __init__(
        self,
        recording: Recording,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        faults: Sequence[Fault] = (),
        seed: int | str = 0,
        say: Callable[[str], None] | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> None:
        self.host = host
        self.port = port
        self.say = say or (lambda msg: None)
        self.hub = ReplayHub(recording, speed=speed, faults=faults, seed=seed, say=self.say)
        self.stats = ReplayStats(
            session_id=recording.session.session_id,
            speed=_speed_text(speed),
            seed=seed,
            faults=[f.spec for f in faults],
        )
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._server = None
        self._stopping = False

    async def start(self) -> ReplayServer:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,  # permessage-deflate costs more CPU per frame than the replay itself
            max_size=MAX_FRAME_BYTES,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=2,
        )
        bound = next(iter(self._server.sockets)).getsockname()
        self.port = bound[1]
        self.stats.listen = f"ws://{self._shown_host(bound[0])}:{self.port}"
        return self

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @staticmethod
    def _shown_host(host: str) -> str:
        return f"[{host}]" if ":" in host else host

    @property
    def url(self) -> str:
        """What a Supabase client is given: ``ws://HOST:PORT/realtime/v1``."""
        return f"ws://{self._shown_host(self.host)}:{self.port}/realtime/v1"

    # ---- handshake and frames ------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request):
        path, _, query = request.path.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        if not path.rstrip("/").endswith("/websocket"):
            return _json_response(connection, 404, f"Not Found: connect to /realtime/v1/websocket, not {path}")
        if params.get("vsn", V1) not in VERSIONS:
            return _json_response(connection, 400, f"unsupported vsn {params['vsn']} (known: {', '.join(VERSIONS)})")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        _, _, query = ws.request.path.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        vsn = params.get("vsn", V1)
        identity = ws.request.headers.get("x-api-key") or params.get("apikey") or ""
        conn = _Conn(next(self._ids), ws)
        peer = _peer(ws)
        self._conns[conn.id] = conn
        self.hub.open(conn.id, vsn, identity, loop.time(), peer)
        self.stats.connections.append(self.hub.stats[conn.id])
        self.say(f"connection {conn.id} from {peer} (vsn {vsn})")
        pusher = asyncio.create_task(self._push(conn))
        try:
            async for message in ws:
                _, sends = self.hub.receive(conn.id, message, loop.time())
                # The join reply is written before the pusher can run again: no await comes
                # between receive() starting a topic's timeline and the reply reaching the socket.
                await self._deliver(sends)
                conn.wake.set()
        except ConnectionClosed:
            pass
        finally:
            if conn.cut is None:  # a pusher that cut the connection is finishing its close: let it
                pusher.cancel()
            await asyncio.gather(pusher, return_exceptions=True)
            ended = self._ended(conn)
            stats = self.hub.stats[conn.id]
            self.say(
                f"connection {conn.id} {ended}; {stats.sent} frames sent"
                + (f", {stats.lost} lost while away" if stats.lost else "")
            )
            sends = self.hub.close(conn.id, loop.time(), ended)
            del self._conns[conn.id]
            await self._deliver(sends)

    def _ended(self, conn: _Conn) -> str:
        if conn.cut is not None:
            how = "dropped (1006)" if conn.cut.code == 1006 else f"closed with {conn.cut.code}"
            return f"cut by fault {conn.cut.fault}: {how}"
        code = conn.ws.protocol.close_code
        if self._stopping:
            return f"closed at server stop ({code})"
        return f"closed by the client ({code})"

    async def _deliver(self, sends: Iterable[Send]) -> None:
        for send in sends:
            target = self._conns.get(send.conn_id)
            if target is None:
                continue
            try:
                await target.ws.send(send.data)
            except ConnectionClosed:
                pass

    async def _push(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        hub, ws = self.hub, conn.ws
        try:
            while True:
                frames, cut = hub.due(conn.id, loop.time())
                if frames:
                    await _send_all(ws, frames)
                if cut is not None:
                    conn.cut = cut
                    await self._cut(conn, cut)
                    return
                if frames:
                    if len(frames) >= BATCH:
                        await asyncio.sleep(0)  # let the reader answer heartbeats in a long burst
                    continue
                conn.wake.clear()
                deadline = hub.next_deadline(conn.id, loop.time())
                timer = loop.call_at(deadline, conn.wake.set) if deadline is not None else None
                try:
                    await conn.wake.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
        except ConnectionClosed:
            return
        except Exception as err:  # a bug must not leave the client waiting in silence
            self.say(f"connection {conn.id}: replay failed: {err!r}; closing with 1011")
            await ws.close(1011, "rt-replay internal error")

    async def _cut(self, conn: _Conn, cut: Cut) -> None:
        self.say(f"connection {conn.id}: fault {cut.fault}: " + ("dropping the connection (1006)"
                 if cut.code == 1006 else f"closing with {cut.code}"))
        if cut.code == 1006:
            transport = conn.ws.transport
            for _ in range(100):  # let what was sent reach the client first; abort() discards the buffer
                if transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.01)
            transport.abort()
        else:
            await conn.ws.close(cut.code, cut.reason)


async def _send_all(ws: ServerConnection, frames: list[str | bytes]) -> None:
    """Send ``frames`` in order, in one write.

    What ``ws.send`` does for each frame (the connection's sans-I/O protocol serialises it, then
    the bytes go to the transport), without its per-call overhead, which at max speed costs more
    than the replay itself. The protocol API used here is the same in websockets 13, 14 and 15.
    """
    protocol = ws.protocol
    if len(frames) == 1 or protocol.state is not State.OPEN:
        for data in frames:
            await ws.send(data)  # also raises ConnectionClosed the documented way
        return
    for data in frames:
        if isinstance(data, str):
            protocol.send_text(data.encode())
        else:
            protocol.send_binary(data)
    ws.transport.write(b"".join(protocol.data_to_send()))
    await ws.drain()


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
    except (TypeError, ValueError):
        return "?"
    return f"{host}:{port}"


# ---- running it --------------------------------------------------------------------------------------


async def serve_replay(
    store: str | Path,
    listen: str | tuple[str, int] = "127.0.0.1:0",
    *,
    session: str | None = None,
    speed: str | float = 1.0,
    faults: Sequence[str | Fault] = (),
    seed: int | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> ReplayStats:
    """Replay one session of ``store`` to any client on ``listen`` until ``stop`` is set.

    ``listen`` is ``HOST:PORT`` (host 127.0.0.1 when left out; port 0: any free port);
    ``speed`` ``1``, a factor or ``max``; ``faults`` ``--fault`` specs; ``seed`` makes the
    faults reproducible (None: a random seed, said on start so the run can be repeated).
    ``ready(url)`` gets ``ws://HOST:PORT/realtime/v1`` once clients can connect; ``say`` one
    line per event (session chosen, connections, joins, faults). Options are checked and the
    session is loaded before anything listens: ConfigError/InputError/StoreError with one line.

    Example::

        stop = asyncio.Event()
        task = asyncio.create_task(serve_replay("store", "127.0.0.1:0", speed="max",
                                                faults=["corrupt=0.1"], seed=7, stop=stop, ready=print))
    """
    from recorder.proxy import parse_listen

    say = say or (lambda msg: None)
    host, port = parse_listen(listen) if isinstance(listen, str) else listen
    speed_value = parse_speed(speed)
    parsed = [f if isinstance(f, Fault) else parse_fault(f) for f in faults]
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    recording = load_recording(store, session)
    say(f"replaying {recording.describe()}")
    if recording.ended:
        say(f"the recorded connection was {recording.ended}: not replayed (--fault close=CODE does that)")
    if recording.skipped:
        say("not replayed: " + ", ".join(f"{n} {why}" for why, n in sorted(recording.skipped.items())))
    if parsed:
        say(f"faults: {' '.join(f.spec for f in parsed)} (seed {seed}; run again with --seed {seed})")
    stop = stop or asyncio.Event()
    server = ReplayServer(recording, host=host, port=port, speed=speed_value, faults=parsed, seed=seed, say=say)
    await server.start()
    try:
        if ready is not None:
            ready(server.url)
        await stop.wait()
    finally:
        await server.stop()
    return server.stats


async def serve_replay_until_signalled(**kwargs) -> ReplayStats:
    """:func:`serve_replay` with SIGINT/SIGTERM setting ``stop``."""
    return await until_signalled(serve_replay, **kwargs)


# ---- the command (added to the rt-replay group by analyzer/replay_cli.py) -------------------------------


@click.command("serve")
@store_option()
@click.option("--listen", required=True, metavar="HOST:PORT",
              help="Address to listen on (HOST defaults to 127.0.0.1; port 0 picks a free port, printed).")
@click.option("--session", metavar="ID", help="Session to replay (an id or a unique prefix; default: the one "
              "with the most postgres_changes/broadcast frames). An unknown id lists the sessions.")
@click.option("--speed", default="1", show_default=True, metavar="1|N|max",
              help="1: original spacing; N: N times faster; max: as fast as the client reads.")
@click.option("--fault", "faults", multiple=True, metavar="SPEC",
              help="Inject a fault, repeatable: " + "; ".join(k.usage for k in FAULTS.values()) + ".")
@click.option("--seed", type=int, help="Seed of the faults: the same seed gives the same faults (default: random, printed).")
@click.option("--quiet", is_flag=True, help="No line per connection (the listening line and errors still shown).")
@format_option(("text", "json"), "text")
def serve_command(store, listen, session, speed, faults, seed, quiet, fmt):
    """Replay one recorded session to any Realtime client, with optional faults.

    A client joining a recorded topic gets the recorded join reply (with its own refs) and then
    the recorded pushes at their original spacing divided by --speed; heartbeats are answered
    live; each connection gets its own replay. Faults are seeded and reproducible. Stop with
    Ctrl-C or SIGTERM; a summary goes to stdout.

    \b
    Faults:
      drop=P  duplicate=P  corrupt=P[,as:json|null|missing]   payload frames (P from 0 to 1)
      delay=200ms  delay=50ms..300ms                           every push, order kept
      disconnect=after:30s      drop the TCP connection (the client sees 1006)
      close=1011[,after:30s]    close with that code after the last frame (or at after:)
      reject-join=Unauthorized[,times:N]   refuse joins with the server's reason for that code
    Frame faults take topic:NAME to act on one topic. A connection cut by a fault leaves its
    replay to the client's next connection, which resumes it.

    \b
    Examples:
      rt-replay serve --store ./store --listen 127.0.0.1:4000
      rt-replay serve --store ./store --listen 127.0.0.1:4000 --speed max --fault corrupt=0.01 --seed 7
      rt-replay serve --store ./store --listen 4000 --fault disconnect=after:30s --fault reject-join=Unauthorized,times:2
      # then, in the bot: AsyncRealtimeClient("ws://127.0.0.1:4000/realtime/v1", token=KEY)
    """

    def say(msg: str) -> None:
        if not quiet or msg.startswith("faults: "):  # the seed line is what makes a run repeatable
            click.echo(f"rt-replay serve: {msg}", err=True)

    def ready(url: str) -> None:
        click.echo(f"rt-replay serve: listening on {url}, speed {speed}", err=True)

    stats = asyncio.run(
        serve_replay_until_signalled(
            store=store, listen=listen, session=session, speed=speed, faults=list(faults), seed=seed,
            ready=ready, say=say,
        )
    )
    if fmt == "json":
        click.echo(json.dumps(stats.as_dict(), indent=2))
    else:
        click.echo(stats.summary())
    return 0
