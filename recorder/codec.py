"""The Phoenix/Supabase Realtime frame codec (vsn 1.0.0 and 2.0.0, text and binary frames), sans I/O,
and the batch decoder that turns captured raw frames into rows of the store's ``frames`` table.

Wire forms (realtime-protocol.md §2)::

    vsn 1.0.0 text    {"event":…,"payload":…,"ref":…,"topic":…}          server; client adds join_ref
    vsn 2.0.0 text    [join_ref, ref, topic, event, payload]
    vsn 2.0.0 binary  kind byte, one size byte per field, fields, payload  (kinds 0-4)

:func:`decode` never raises on frame data: what cannot be decoded comes back with ``frame``
None and ``error`` saying why, so the recorder keeps the raw frame. :func:`encode` is its
inverse and raises :class:`EncodeError` for a frame the asked wire form cannot carry;
``decode(encode(f, ...), ...) == f`` for every frame it accepts.

Binary payloads are ``bytes`` in a :class:`Frame`, and ``{"$binary": "<base64>"}`` in JSON text.
Binary kinds become the frame Phoenix and realtime-js would hand to an application:

    kind 0 push        event, payload bytes (server pushes carry no ref)
    kind 1 reply       event "phx_reply", payload {"response": bytes, "status": status}
    kind 2 broadcast   event, payload bytes, no refs
    kind 3/4 user broadcast (push / from server)
                       event "broadcast", payload {"type": "broadcast", "event": user_event,
                       "payload": JSON value (encoding 1) or bytes (encoding 0), "meta": metadata}
                       ("meta" only when the metadata field is not empty)

A size byte of 0 for ``ref``/``join_ref`` reads as None (Phoenix writes a nil ref as "").
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from recorder.errors import DecodeError
from recorder.store import FRAMES_SCHEMA, TS, register_staging

V1 = "1.0.0"
V2 = "2.0.0"
VERSIONS = (V1, V2)
IN = "in"  # server -> client
OUT = "out"  # client -> server

PUSH, REPLY, BROADCAST, USER_BROADCAST_PUSH, USER_BROADCAST = range(5)
MAX_FIELD_BYTES = 255
RAW_ENCODING, JSON_ENCODING = 0, 1


class EncodeError(DecodeError, ValueError):
    """A :class:`Frame` that the asked wire form cannot carry; ``str(err)`` names the field and why."""


@dataclass(frozen=True)
class Frame:
    """One Phoenix message, whatever encoding carried it.

    ``payload`` is a decoded JSON value, or ``bytes`` for a raw binary payload (alone, as the
    ``response`` of a binary reply, or as the inner ``payload`` of a user broadcast).
    ``binary_kind`` is the binary layout (0-4) that carried the frame, None for text frames.
    It is a detail of the wire form, not of the message, so it takes no part in equality: a
    kind 4 user broadcast equals the same broadcast sent as JSON text.
    """

    topic: str | None
    event: str | None
    payload: object
    ref: str | None = None
    join_ref: str | None = None
    binary_kind: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Decoded:
    """What :func:`decode` made of one WebSocket frame.

    ``vsn`` is the version used (detected when not given); ``payload_json`` the payload as
    compact JSON text; ``error`` a short reason when ``frame`` is None.
    """

    frame: Frame | None
    vsn: str
    payload_json: str | None = None
    error: str | None = None


class _Undecodable(Exception):
    """Internal: carries the one-line reason a frame could not be decoded."""


# ---- JSON -------------------------------------------------------------------------------------

# orjson reads integers beyond the 64-bit range as floats (lossy). Such a float is at least 2**63,
# so it prints as "…e+NN": only a frame whose decoded JSON shows "e+" and whose text holds a digit
# run that long is parsed again with the exact (slower) stdlib parser. The regex is too slow to run
# on every frame.
_LONG_INT_TEXT = re.compile(r"[0-9]{20}|-[0-9]{19}")
_LONG_INT_BYTES = re.compile(rb"[0-9]{20}|-[0-9]{19}")


def _has_long_int(text: str | bytes) -> bool:
    pattern = _LONG_INT_BYTES if isinstance(text, bytes) else _LONG_INT_TEXT
    return pattern.search(text) is not None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is too large for a double")
    return value


def _loads(text: str | bytes, exact: bool = False, what: str = "text frame") -> object:
    """Parse JSON text; raise :class:`_Undecodable` saying what is wrong with ``what``.

    ``exact`` keeps integers beyond 64 bits exact (stdlib parser) when the text holds one.
    """
    if not (exact and _has_long_int(text)):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as err:
            if not _has_long_int(text):  # orjson also fails on integers too long for a double
                raise _Undecodable(_json_failure(text, err, what)) from None
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        _dumps(value)  # orjson refuses lone surrogates, which the stdlib parser lets through
    except (ValueError, TypeError, RecursionError) as err:
        raise _Undecodable(_json_failure(text, err, what)) from None
    return value


def _json_failure(text: str | bytes, err: Exception, what: str) -> str:
    if isinstance(err, UnicodeDecodeError):
        return f"invalid UTF-8 in {what} at byte {err.start}"
    if isinstance(text, bytes):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"invalid UTF-8 in {what} at byte {bad.start}"
    if not text:
        return f"empty {what}"
    return f"invalid JSON{'' if what == 'text frame' else ' in ' + what}: {err}"


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$binary": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _dumps(value: object) -> bytes:
    """Compact JSON (key order kept, UTF-8, bytes as ``{"$binary": …}``); ints of any size exact.

    Raises ValueError/TypeError/RecursionError for what JSON cannot carry.
    """
    try:
        return orjson.dumps(value, default=_json_default)
    except orjson.JSONEncodeError as err:
        if "64-bit" in str(err):
            try:
                return orjson.dumps(_long_ints_as_fragments(value), default=_json_default)
            except orjson.JSONEncodeError as again:
                err = again
        if "Recursion" not in str(err):
            raise
    # orjson writes at most 254 levels of nesting; the server accepts deeper JSON
    text = json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
    )
    return text.encode("utf-8")


def _long_ints_as_fragments(value: object) -> object:
    if type(value) is int and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value))
    if isinstance(value, dict):
        return {k: _long_ints_as_fragments(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_long_ints_as_fragments(v) for v in value]
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return "an object"


# ---- decode -----------------------------------------------------------------------------------


def _name(value: object, key: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise _Undecodable(f"{key} is {_json_type(value)}, expected a string")


def _ref(value: object, key: str) -> str | None:
    if value is None or type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return repr(value)
    raise _Undecodable(f"{key} is {_json_type(value)}, expected a string, a number or null")


def _parse_text(text: str | bytes, vsn: str, exact: bool) -> tuple:
    """(topic, event, payload, ref, join_ref, None) of a text frame of version ``vsn``."""
    if vsn == V1:
        obj = _loads(text, exact)
        if type(obj) is not dict:
            raise _Undecodable(f"expected a vsn 1.0.0 JSON object, got {_json_type(obj)}")
        try:
            topic, event, payload, ref = obj["topic"], obj["event"], obj["payload"], obj["ref"]
        except KeyError:
            missing = next(k for k in ("topic", "event", "payload", "ref") if k not in obj)
            raise _Undecodable(f"missing key {missing!r}") from None
        join_ref = obj.get("join_ref")
    elif vsn == V2:
        obj = _loads(text, exact)
        if type(obj) is not list or len(obj) != 5:
            raise _Undecodable(
                f"expected a vsn 2.0.0 array of 5 [join_ref, ref, topic, event, payload], got {_json_type(obj)}"
            )
        join_ref, ref, topic, event, payload = obj
    else:
        raise _Undecodable(f"unknown vsn {vsn!r} (known: {', '.join(VERSIONS)})")
    return (
        _name(topic, "topic"),
        _name(event, "event"),
        payload,
        _ref(ref, "ref"),
        _ref(join_ref, "join_ref"),
        None,
    )


def _text_vsn(text: str | bytes) -> str:
    first = text[:1]
    if first in (b"[", "["):
        return V2
    if first in (b"{", "{"):
        return V1
    return V2 if text.lstrip()[:1] in (b"[", "[") else V1


# Field names after the kind byte, per (kind, direction); kinds 3/4 add a payload encoding byte.
_LAYOUTS = {
    (PUSH, IN): ("join_ref", "topic", "event"),
    (PUSH, OUT): ("join_ref", "ref", "topic", "event"),
    (REPLY, None): ("join_ref", "ref", "topic", "status"),
    (BROADCAST, None): ("topic", "event"),
    (USER_BROADCAST_PUSH, None): ("join_ref", "ref", "topic", "user_event", "metadata"),
    (USER_BROADCAST, None): ("topic", "user_event", "metadata"),
}


def _parse_binary(data: bytes, direction: str | None, exact: bool) -> tuple:
    """(topic, event, payload, ref, join_ref, kind) of a vsn 2.0.0 binary frame."""
    if not data:
        raise _Undecodable("empty binary frame")
    kind = data[0]
    if kind == PUSH:
        if direction not in (IN, OUT):
            raise _Undecodable(f"cannot read a kind 0 push without knowing its direction (got {direction!r})")
        names = _LAYOUTS[PUSH, direction]
    elif kind in (REPLY, BROADCAST, USER_BROADCAST_PUSH, USER_BROADCAST):
        names = _LAYOUTS[kind, None]
    else:
        raise _Undecodable(f"unknown binary kind {kind} (known: 0-4)")
    user = kind >= USER_BROADCAST_PUSH
    header = 1 + len(names) + user
    if len(data) < header:
        raise _Undecodable(
            f"truncated binary header: kind {kind} needs {header} bytes, frame has {len(data)}"
        )
    values = {}
    pos = header
    for i, name in enumerate(names):
        end = pos + data[1 + i]
        if end > len(data):
            raise _Undecodable(f"truncated binary frame: {name} runs to byte {end}, frame has {len(data)}")
        if name == "metadata":
            values[name] = data[pos:end]
        else:
            try:
                values[name] = data[pos:end].decode("utf-8")
            except UnicodeDecodeError:
                raise _Undecodable(f"invalid UTF-8 in binary frame {name}") from None
        pos = end
    body = data[pos:]
    ref = values.get("ref") or None
    join_ref = values.get("join_ref") or None
    topic = values["topic"]
    if kind == REPLY:
        return topic, "phx_reply", {"response": body, "status": values["status"]}, ref, join_ref, kind
    if not user:
        return topic, values["event"], body, ref, join_ref, kind
    encoding = data[header - 1]
    if encoding == RAW_ENCODING:
        inner = body
    elif encoding == JSON_ENCODING:
        inner = _loads(body, exact, "user payload")
    else:
        raise _Undecodable(f"unknown user payload encoding {encoding} (0 raw, 1 JSON)")
    payload = {"type": "broadcast", "event": values["user_event"], "payload": inner}
    if values["metadata"]:
        payload["meta"] = _loads(values["metadata"], exact, "metadata")
    return topic, "broadcast", payload, ref, join_ref, kind


def _decode_frame(data: str | bytes, text: bool, vsn: str, direction: str | None) -> tuple:
    """(topic, event, payload, ref, join_ref, kind, payload_json) or :class:`_Undecodable`."""
    fields = _parse_text(data, vsn, False) if text else _parse_binary(data, direction, False)
    payload_json = _payload_json(fields[2])
    if _maybe_lossy(payload_json, fields[3], fields[4]) and _has_long_int(data):
        fields = _parse_text(data, vsn, True) if text else _parse_binary(data, direction, True)
        payload_json = _payload_json(fields[2])
    return (*fields, payload_json)


def _payload_json(payload: object) -> bytes:
    try:
        return _dumps(payload)
    except (ValueError, TypeError, RecursionError) as err:
        raise _Undecodable(f"payload cannot be written back as JSON: {err}") from None


def _check_binary_vsn(vsn: str) -> None:
    if vsn not in VERSIONS:
        raise _Undecodable(f"unknown vsn {vsn!r} (known: {', '.join(VERSIONS)})")
    if vsn != V2:
        raise _Undecodable(
            f"a binary frame on a vsn {vsn} connection (binary frames exist only in vsn 2.0.0)"
        )


def _maybe_lossy(payload_json: bytes, ref: str | None, join_ref: str | None) -> bool:
    return (
        b"e+" in payload_json
        or (ref is not None and "e+" in ref)
        or (join_ref is not None and "e+" in join_ref)
    )


def decode(data: str | bytes, *, vsn: str | None = None, direction: str = IN) -> Decoded:
    """Decode one WebSocket frame: ``str`` is a text frame, ``bytes`` a binary frame.

    ``vsn`` None detects the version (a text frame starting with ``[`` is 2.0.0, ``{`` 1.0.0;
    binary frames exist only in 2.0.0). ``direction`` ("in" server → client, "out" client →
    server) decides the layout of binary kind 0. Never raises for frame data::

        >>> decode('[null,null,"realtime:room1","broadcast",{"x":1}]').frame.topic
        'realtime:room1'
        >>> decode('["1","2"]').error
        'expected a vsn 2.0.0 array of 5 [join_ref, ref, topic, event, payload], got an array of 2'
    """
    if isinstance(data, str):
        text = True
        used = vsn or _text_vsn(data)
    elif isinstance(data, bytes | bytearray | memoryview):
        text = False
        data = bytes(data)
        used = vsn or V2
    else:
        raise TypeError(f"decode() takes str (text frame) or bytes (binary frame), not {type(data).__name__}")
    try:
        if not text:
            _check_binary_vsn(used)
        topic, event, payload, ref, join_ref, kind, payload_json = _decode_frame(data, text, used, direction)
    except _Undecodable as err:
        return Decoded(None, used, None, str(err))
    return Decoded(
        Frame(topic, event, payload, ref, join_ref, kind), used, payload_json.decode("utf-8"), None
    )


# ---- encode -----------------------------------------------------------------------------------


def _check_json(value: object, path: str, allow_bytes: bool) -> None:
    """Refuse what would not read back equal: tuples, NaN, non-str keys, bytes in text frames."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):
            raise EncodeError(f"{path} is {value!r}, which JSON cannot carry")
        return
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise EncodeError(f"{path} has key {k!r}; JSON object keys must be str")
            _check_json(v, f"{path}[{k!r}]", allow_bytes)
        return
    if kind is list:
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]", allow_bytes)
        return
    if kind is bytes:
        if allow_bytes:
            return
        raise EncodeError(
            f"{path} is raw bytes, which a text frame cannot carry (send it with vsn 2.0.0, binary=True)"
        )
    raise EncodeError(
        f"{path} is a {kind.__name__}; payloads hold dict, list, str, int, float, bool, None or bytes"
    )


def _check_str(value: object, name: str, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if type(value) is not str:
        raise EncodeError(f"{name} must be a str{'' if required else ' or None'}, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EncodeError(f"{name} holds a lone surrogate, which UTF-8 cannot carry") from None


def _field_bytes(value: str | None, name: str) -> bytes:
    if value is None:
        return b""
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError(f"{name} holds a lone surrogate, which UTF-8 cannot carry") from None
    if len(raw) > MAX_FIELD_BYTES:
        raise EncodeError(
            f"{name} is {len(raw)} bytes in UTF-8; a binary frame allows at most {MAX_FIELD_BYTES}"
        )
    return raw


def _ref_bytes(value: str | None, name: str) -> bytes:
    if value == "":
        raise EncodeError(f"{name} '' cannot go in a binary frame: an empty {name} reads back as None")
    return _field_bytes(value, name)


def _is_user_broadcast(frame: Frame) -> bool:
    p = frame.payload
    return (
        frame.event == "broadcast"
        and type(p) is dict
        and p.get("type") == "broadcast"
        and type(p.get("event")) is str
        and "payload" in p
        and set(p) <= {"type", "event", "payload", "meta"}
    )


def _infer_kind(frame: Frame, direction: str) -> int:
    payload = frame.payload
    if _is_user_broadcast(frame):
        return USER_BROADCAST if direction == IN else USER_BROADCAST_PUSH
    if type(payload) is bytes:
        if direction == IN and frame.ref is None and frame.join_ref is None:
            return BROADCAST
        return PUSH
    if direction == IN and frame.event == "phx_reply" and type(payload) is dict:
        if type(payload.get("response")) is bytes:
            return REPLY
    raise EncodeError(
        "no binary kind carries this frame: its payload is JSON and it is not a user broadcast "
        "(send it as text, binary=False)"
    )


def _encode_binary(frame: Frame, direction: str) -> bytes:
    kind = frame.binary_kind if frame.binary_kind is not None else _infer_kind(frame, direction)
    _check_str(frame.topic, "topic", required=True)
    _check_str(frame.event, "event", required=True)
    payload = frame.payload
    if kind in (PUSH, BROADCAST):
        if type(payload) is not bytes:
            raise EncodeError(f"binary kind {kind} carries a bytes payload, got {type(payload).__name__}")
        topic, event = _field_bytes(frame.topic, "topic"), _field_bytes(frame.event, "event")
        if kind == BROADCAST:
            _no_refs(frame, kind)
            return bytes((BROADCAST, len(topic), len(event))) + topic + event + payload
        join_ref = _ref_bytes(frame.join_ref, "join_ref")
        if direction == IN:
            if frame.ref is not None:
                raise EncodeError("a server push (binary kind 0, direction 'in') carries no ref")
            return bytes((PUSH, len(join_ref), len(topic), len(event))) + join_ref + topic + event + payload
        ref = _ref_bytes(frame.ref, "ref")
        head = bytes((PUSH, len(join_ref), len(ref), len(topic), len(event)))
        return head + join_ref + ref + topic + event + payload
    if kind == REPLY:
        if frame.event != "phx_reply":
            raise EncodeError(f"binary kind 1 is a reply: event must be 'phx_reply', got {frame.event!r}")
        if type(payload) is not dict or set(payload) != {"response", "status"}:
            raise EncodeError("binary kind 1 payload must be {'response': bytes, 'status': str}")
        if type(payload["response"]) is not bytes:
            raise EncodeError(
                f"binary kind 1 response must be bytes, got {type(payload['response']).__name__}"
            )
        _check_str(payload["status"], "status", required=True)
        join_ref, ref = _ref_bytes(frame.join_ref, "join_ref"), _ref_bytes(frame.ref, "ref")
        topic, status = _field_bytes(frame.topic, "topic"), _field_bytes(payload["status"], "status")
        head = bytes((REPLY, len(join_ref), len(ref), len(topic), len(status)))
        return head + join_ref + ref + topic + status + payload["response"]
    if kind in (USER_BROADCAST_PUSH, USER_BROADCAST):
        if not _is_user_broadcast(frame):
            raise EncodeError(
                f"binary kind {kind} is a user broadcast: event must be 'broadcast' and payload "
                "{'type': 'broadcast', 'event': str, 'payload': JSON or bytes, 'meta'?: JSON}"
            )
        inner = payload["payload"]
        if type(inner) is bytes:
            encoding, body = RAW_ENCODING, inner
        else:
            _check_json(inner, "payload['payload']", allow_bytes=False)
            encoding, body = JSON_ENCODING, _dumps_checked(inner)
        metadata = b""
        if "meta" in payload:
            _check_json(payload["meta"], "payload['meta']", allow_bytes=False)
            metadata = _dumps_checked(payload["meta"])
            if len(metadata) > MAX_FIELD_BYTES:
                raise EncodeError(
                    f"metadata is {len(metadata)} bytes as JSON; a binary frame allows at most {MAX_FIELD_BYTES}"
                )
        topic, user_event = _field_bytes(frame.topic, "topic"), _field_bytes(payload["event"], "user_event")
        if kind == USER_BROADCAST:
            _no_refs(frame, kind)
            head = bytes((USER_BROADCAST, len(topic), len(user_event), len(metadata), encoding))
            return head + topic + user_event + metadata + body
        join_ref, ref = _ref_bytes(frame.join_ref, "join_ref"), _ref_bytes(frame.ref, "ref")
        head = bytes(
            (
                USER_BROADCAST_PUSH,
                len(join_ref),
                len(ref),
                len(topic),
                len(user_event),
                len(metadata),
                encoding,
            )
        )
        return head + join_ref + ref + topic + user_event + metadata + body
    raise EncodeError(f"unknown binary kind {kind!r} (known: 0-4)")


def _no_refs(frame: Frame, kind: int) -> None:
    if frame.ref is not None or frame.join_ref is not None:
        raise EncodeError(
            f"binary kind {kind} carries no ref or join_ref (got {frame.ref!r}, {frame.join_ref!r})"
        )


def _dumps_checked(value: object) -> bytes:
    try:
        return _dumps(value)
    except (ValueError, TypeError, RecursionError) as err:  # lone surrogates, nesting too deep
        raise EncodeError(f"payload cannot be written as JSON: {err}") from None


def encode(frame: Frame, *, vsn: str = V1, binary: bool = False, direction: str = IN) -> str | bytes:
    """The wire form of ``frame``: text (``str``) or, with ``binary=True``, a binary frame (``bytes``).

    vsn 1.0.0 writes the key order of each side: server ("in") ``event, payload, ref, topic``
    (``join_ref`` only when set), client ("out") ``event, payload, topic, ref, join_ref`` as
    realtime-py does. vsn 2.0.0 text is ``[join_ref, ref, topic, event, payload]``. Binary
    frames use ``frame.binary_kind``, or when None the kind that fits (kind 4/3 for a user
    broadcast, 2 for bytes without refs, 0 for bytes with refs, 1 for a reply with a bytes
    response). Raises :class:`EncodeError` when the form cannot carry the frame, e.g.::

        >>> encode(Frame("realtime:room1", "broadcast", {"x": 1}))
        '{"event":"broadcast","payload":{"x":1},"ref":null,"topic":"realtime:room1"}'
    """
    if vsn not in VERSIONS:
        raise EncodeError(f"unknown vsn {vsn!r} (known: {', '.join(VERSIONS)})")
    if direction not in (IN, OUT):
        raise EncodeError(f"direction must be 'in' or 'out', got {direction!r}")
    for name in ("topic", "event", "ref", "join_ref"):
        _check_str(getattr(frame, name), name)
    if binary and vsn != V2:
        raise EncodeError(f"binary frames exist only in vsn 2.0.0, not {vsn}")
    try:
        _check_json(frame.payload, "payload", allow_bytes=binary)
    except RecursionError:
        raise EncodeError("payload is nested too deeply to write as JSON") from None
    if binary:
        return _encode_binary(frame, direction)
    f = frame
    if vsn == V2:
        message: object = [f.join_ref, f.ref, f.topic, f.event, f.payload]
    elif direction == OUT:
        message = {
            "event": f.event,
            "payload": f.payload,
            "topic": f.topic,
            "ref": f.ref,
            "join_ref": f.join_ref,
        }
    elif f.join_ref is None:
        message = {"event": f.event, "payload": f.payload, "ref": f.ref, "topic": f.topic}
    else:
        message = {
            "event": f.event,
            "join_ref": f.join_ref,
            "payload": f.payload,
            "ref": f.ref,
            "topic": f.topic,
        }
    return _dumps_checked(message).decode("utf-8")


# ---- batch decoding for the store -------------------------------------------------------------

CAPTURE_SCHEMA = pa.schema(
    [
        ("ts", TS),
        ("session_id", pa.string()),
        ("seq", pa.int64()),
        ("direction", pa.string()),
        ("kind", pa.string()),  # text, binary, open, close, error
        ("vsn", pa.string()),
        ("raw", pa.binary()),  # frame bytes as they crossed the wire (text as UTF-8)
        ("close_code", pa.int32()),
        ("info", pa.string()),  # JSON text for lifecycle rows
        ("source", pa.string()),
    ]
)
"""What a proxy records on its hot path: the raw frame and a few envelope fields, decoded later."""

LIFECYCLE_KINDS = ("open", "close", "error")


def decode_capture(table: pa.Table) -> pa.Table:
    """Turn captured rows (:data:`CAPTURE_SCHEMA`) into ``frames`` rows (``FRAMES_SCHEMA``).

    Frames that cannot be decoded keep their raw bytes and get ``decode_error``; lifecycle rows
    (open/close/error) get their ``info`` JSON as ``payload``. ``vsn`` is the version used to
    decode (detected per frame where the capture left it null).
    """
    if table.schema != CAPTURE_SCHEMA:
        table = table.select(CAPTURE_SCHEMA.names).cast(CAPTURE_SCHEMA)
    # Slices keep the Python objects alive at once few: the cyclic GC then stays cheap.
    decoded = [
        _decode_rows(table.slice(start, _BATCH_ROWS)) for start in range(0, table.num_rows, _BATCH_ROWS)
    ]
    columns = {
        name: pa.chunked_array([d[name] for d in decoded], pa.string())
        for name in ("vsn", "topic", "event", "ref", "join_ref", "payload", "decode_error")
    }
    lifecycle = pc.is_in(table["kind"], pa.array(LIFECYCLE_KINDS))
    columns["payload"] = pc.if_else(lifecycle, table["info"], columns["payload"])
    columns["payload_bytes"] = pc.binary_length(table["raw"]).cast(pa.int64())
    return pa.Table.from_arrays(
        [columns[name] if name in columns else table[name] for name in FRAMES_SCHEMA.names],
        schema=FRAMES_SCHEMA,
    )


_BATCH_ROWS = 16_384


def _decode_rows(table: pa.Table) -> dict[str, pa.Array]:
    n = table.num_rows
    kinds = table["kind"].to_pylist()
    raws = table["raw"].to_pylist()
    vsns = table["vsn"].to_pylist()
    directions = table["direction"].to_pylist()
    used_vsns = list(vsns)
    topics: list = [None] * n
    events: list = [None] * n
    refs: list = [None] * n
    join_refs: list = [None] * n
    payloads: list = [None] * n
    errors: list = [None] * n
    for i in range(n):
        kind = kinds[i]
        raw = raws[i]
        try:
            if kind == "text":
                if raw is None:
                    raise _Undecodable("no frame bytes recorded")
                vsn = vsns[i]
                if vsn is None:
                    vsn = used_vsns[i] = _text_vsn(raw)
                fast = _decode_plain_text(raw, vsn)
                if fast is not None:
                    topics[i], events[i], refs[i], join_refs[i], payloads[i] = fast
                    continue
                topic, event, _, ref, join_ref, _, payload_json = _decode_frame(raw, True, vsn, None)
            elif kind == "binary":
                if raw is None:
                    raise _Undecodable("no frame bytes recorded")
                vsn = vsns[i]
                if vsn is None:
                    vsn = used_vsns[i] = V2
                _check_binary_vsn(vsn)
                topic, event, _, ref, join_ref, _, payload_json = _decode_frame(
                    raw, False, vsn, directions[i]
                )
            elif kind in LIFECYCLE_KINDS:
                continue
            else:
                raise _Undecodable(
                    f"unknown capture kind {kind!r} (known: text, binary, {', '.join(LIFECYCLE_KINDS)})"
                )
        except _Undecodable as err:
            errors[i] = str(err)
            continue
        topics[i], events[i], refs[i], join_refs[i], payloads[i] = topic, event, ref, join_ref, payload_json
    return {
        "vsn": pa.array(used_vsns, pa.string()),
        "topic": pa.array(topics, pa.string()),
        "event": pa.array(events, pa.string()),
        "ref": pa.array(refs, pa.string()),
        "join_ref": pa.array(join_refs, pa.string()),
        "payload": pa.array(payloads, pa.string()),
        "decode_error": pa.array(errors, pa.string()),
    }


def _decode_plain_text(raw: bytes, vsn: str) -> tuple | None:
    """(topic, event, ref, join_ref, payload_json) of a well-formed text frame, the common case.

    None for anything unusual (invalid JSON, numeric refs, missing keys, long integers, deep
    nesting): :func:`_decode_frame` then gives the exact result or the reason.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if vsn == V1 and type(obj) is dict:
        try:
            topic, event, payload, ref = obj["topic"], obj["event"], obj["payload"], obj["ref"]
        except KeyError:
            return None
        join_ref = obj.get("join_ref")
    elif vsn == V2 and type(obj) is list and len(obj) == 5:
        join_ref, ref, topic, event, payload = obj
    else:
        return None
    if not (
        type(topic) is str
        and type(event) is str
        and (ref is None or type(ref) is str)
        and (join_ref is None or type(join_ref) is str)
    ):
        return None
    try:
        payload_json = orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return None
    if b"e+" in payload_json:
        return None
    return topic, event, ref, join_ref, payload_json


register_staging("frames_capture", "frames", CAPTURE_SCHEMA, decode_capture)
