"""recorder.codec: Phoenix/Realtime frames in every encoding, bad input, round trips, batch decoding."""

from __future__ import annotations

import base64
import dataclasses
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder import store
from recorder.codec import (
    CAPTURE_SCHEMA,
    EncodeError,
    Frame,
    decode,
    decode_capture,
    encode,
)
from recorder.errors import DecodeError
from recorder.store import FRAMES_SCHEMA, StoreWriter

# ---- builders ---------------------------------------------------------------------------------


def a_frame(**overrides) -> Frame:
    fields = {
        "topic": "realtime:room1",
        "event": "broadcast",
        "payload": {"event": "cursor", "payload": {"x": 1}, "type": "broadcast"},
        "ref": None,
        "join_ref": None,
    }
    fields.update(overrides)
    return Frame(**fields)


def a_user_broadcast(
    event: str = "message", payload: object = None, meta: object = ..., **overrides
) -> Frame:
    inner = {
        "type": "broadcast",
        "event": event,
        "payload": {"content": "oi"} if payload is None else payload,
    }
    if meta is not ...:
        inner["meta"] = meta
    return a_frame(payload=inner, **overrides)


def kind4(topic: bytes, event: bytes, metadata: bytes, encoding: int, body: bytes) -> bytes:
    return bytes((4, len(topic), len(event), len(metadata), encoding)) + topic + event + metadata + body


def kind3(
    join_ref: bytes, ref: bytes, topic: bytes, event: bytes, metadata: bytes, encoding: int, body: bytes
):
    head = bytes((3, len(join_ref), len(ref), len(topic), len(event), len(metadata), encoding))
    return head + join_ref + ref + topic + event + metadata + body


TS0 = 1_764_300_000_000_000  # 2025-11-28 03:20:00 UTC, in microseconds


def a_capture_row(raw: bytes | str | None = None, **overrides) -> dict:
    row = {
        "ts": TS0,
        "session_id": "s1",
        "direction": "in",
        "kind": "text",
        "vsn": "1.0.0",
        "raw": raw.encode() if isinstance(raw, str) else raw,
        "close_code": None,
        "info": None,
        "source": "proxy",
    }
    row.update(overrides)
    return row


def a_capture(rows: list[dict]) -> pa.Table:
    for seq, row in enumerate(rows):
        row.setdefault("seq", seq)
    columns = {name: [row[name] for row in rows] for name in CAPTURE_SCHEMA.names}
    columns["ts"] = pa.array(columns["ts"], pa.int64()).cast(CAPTURE_SCHEMA.field("ts").type)
    return pa.table(columns, schema=CAPTURE_SCHEMA)


# ---- real frames (realtime-protocol.md §2-§4) ---------------------------------------------------

JOIN = (
    '{"event":"phx_join","payload":{"config":{"broadcast":{"ack":false,"self":false},'
    '"presence":{"key":"","enabled":false},"private":false,"postgres_changes":[{"event":"*",'
    '"schema":"public","table":"todos"}]},"access_token":"eyJ…"},"topic":"realtime:room1","ref":"1","join_ref":"1"}'
)
JOIN_REPLY = (
    '{"event":"phx_reply","payload":{"response":{"postgres_changes":[{"event":"*","id":38606455,'
    '"schema":"public","table":"todos"}]},"status":"ok"},"ref":"1","topic":"realtime:room1"}'
)
SYSTEM = (
    '{"event":"system","payload":{"channel":"room1","extension":"postgres_changes",'
    '"message":"Subscribed to PostgreSQL","status":"ok"},"ref":null,"topic":"realtime:room1"}'
)
HEARTBEAT = '{"event":"heartbeat","payload":{},"topic":"phoenix","ref":null,"join_ref":null}'
HEARTBEAT_REPLY = '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"2","topic":"phoenix"}'
BROADCAST_OUT = (
    '{"event":"broadcast","payload":{"type":"broadcast","event":"evt","payload":{"a":1}},'
    '"topic":"realtime:room1","ref":"3","join_ref":"1"}'
)
BROADCAST_IN = (
    '{"event":"broadcast","payload":{"event":"cursor","payload":{"x":1},"type":"broadcast"},'
    '"ref":null,"topic":"realtime:room1"}'
)
PHX_CLOSE = '{"event":"phx_close","payload":{},"ref":"1","topic":"realtime:room1"}'
# Database payloads keep Postgres spacing inside record/columns.
POSTGRES_UPDATE = (
    '{"event":"postgres_changes","payload":{"data":{"columns":[{"name": "id", "type": "int8"}, '
    '{"name": "created_at", "type": "timestamptz"}, {"name": "text", "type": "text"}],'
    '"commit_timestamp":"2025-11-19T00:22:40.877Z","errors":null,"old_record":{"id": 46},'
    '"record":{"id": 46, "text": "content", "created_at": "2025-11-03T09:32:55+00:00"},'
    '"schema":"public","table":"test","type":"UPDATE"},"ids":[104868189]},"ref":null,"topic":"realtime:chat-room"}'
)
POSTGRES_401 = (
    '{"event":"postgres_changes","payload":{"data":{"columns":[],"commit_timestamp":null,'
    '"errors":["Error 401: Unauthorized"],"record":{},"schema":"public","table":"todos","type":"INSERT"},'
    '"ids":[38606455]},"ref":null,"topic":"realtime:room1"}'
)

V2_JOIN = '["1","1","realtime:room1","phx_join",{"config":{"private":false},"access_token":"eyJ…"}]'
V2_HEARTBEAT = '[null,"26","phoenix","heartbeat",{}]'
V2_REPLY = '["1","1","realtime:room1","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]'
V2_SYSTEM = (
    '["1",null,"realtime:room1","system",{"channel":"room1","extension":"postgres_changes",'
    '"message":"Subscribed to PostgreSQL","status":"ok"}]'
)
V2_CHANGE = '[null,null,"realtime:room1","postgres_changes",{"data":{"type":"INSERT"},"ids":[38606455]}]'
V2_BROADCAST = '[null,null,"realtime:room1","broadcast",{"event":"x","payload":{"a":1},"type":"broadcast"}]'

DB_META = b'{"id":"006554ce-d22d-469c-877a-88bef47214a3"}'
DB_ROW = b'{"id":"513e1a7c-5f1e-4a8f-9d7e-0c2b1a8f3e11","content":"oi","room":"chat-room"}'
KIND4_EXAMPLE = kind4(b"realtime:chat-room", b"message", DB_META, 1, DB_ROW)


def test_kind4_example_header_matches_the_docs():
    assert KIND4_EXAMPLE[:5] == bytes.fromhex("04 12 07 2D 01")


@pytest.mark.parametrize(
    ("wire", "direction", "topic", "event", "ref", "join_ref"),
    [
        (JOIN, "out", "realtime:room1", "phx_join", "1", "1"),
        (JOIN_REPLY, "in", "realtime:room1", "phx_reply", "1", None),
        (SYSTEM, "in", "realtime:room1", "system", None, None),
        (HEARTBEAT, "out", "phoenix", "heartbeat", None, None),
        (HEARTBEAT_REPLY, "in", "phoenix", "phx_reply", "2", None),
        (BROADCAST_OUT, "out", "realtime:room1", "broadcast", "3", "1"),
        (BROADCAST_IN, "in", "realtime:room1", "broadcast", None, None),
        (PHX_CLOSE, "in", "realtime:room1", "phx_close", "1", None),
        (POSTGRES_401, "in", "realtime:room1", "postgres_changes", None, None),
    ],
)
def test_vsn1_frames_decode_and_encode_back_byte_for_byte(wire, direction, topic, event, ref, join_ref):
    decoded = decode(wire, direction=direction)

    assert decoded.error is None
    assert decoded.vsn == "1.0.0"
    frame = decoded.frame
    assert (frame.topic, frame.event, frame.ref, frame.join_ref) == (topic, event, ref, join_ref)
    assert frame.binary_kind is None
    assert frame.payload == json.loads(wire)["payload"]
    assert decoded.payload_json == json.dumps(
        json.loads(wire)["payload"], separators=(",", ":"), ensure_ascii=False
    )
    assert encode(frame, direction=direction) == wire


def test_join_payload_and_reply_binding_ids():
    join = decode(JOIN, direction="out").frame
    reply = decode(JOIN_REPLY).frame

    assert join.payload["config"]["postgres_changes"] == [
        {"event": "*", "schema": "public", "table": "todos"}
    ]
    assert join.payload["access_token"] == "eyJ…"
    assert reply.payload["status"] == "ok"
    assert reply.payload["response"]["postgres_changes"][0]["id"] == 38606455


def test_postgres_changes_payload_is_compacted_and_keeps_key_order():
    decoded = decode(POSTGRES_UPDATE)

    data = decoded.frame.payload["data"]
    assert data["record"] == {"id": 46, "text": "content", "created_at": "2025-11-03T09:32:55+00:00"}
    assert data["old_record"] == {"id": 46}
    assert decoded.frame.payload["ids"] == [104868189]
    assert (
        '"record":{"id":46,"text":"content","created_at":"2025-11-03T09:32:55+00:00"}' in decoded.payload_json
    )
    assert ": " not in decoded.payload_json and ", " not in decoded.payload_json
    assert decode(encode(decoded.frame)).frame == decoded.frame


def test_key_order_does_not_matter():
    shuffled = '{"topic":"realtime:room1","ref":"7","payload":{"b":1,"a":2},"join_ref":"3","event":"x"}'

    frame = decode(shuffled).frame

    assert frame == Frame("realtime:room1", "x", {"b": 1, "a": 2}, "7", "3")
    assert decode(shuffled).payload_json == '{"b":1,"a":2}'


@pytest.mark.parametrize(
    ("wire", "join_ref", "ref", "topic", "event"),
    [
        (V2_JOIN, "1", "1", "realtime:room1", "phx_join"),
        (V2_HEARTBEAT, None, "26", "phoenix", "heartbeat"),
        (V2_REPLY, "1", "1", "realtime:room1", "phx_reply"),
        (V2_SYSTEM, "1", None, "realtime:room1", "system"),
        (V2_CHANGE, None, None, "realtime:room1", "postgres_changes"),
        (V2_BROADCAST, None, None, "realtime:room1", "broadcast"),
    ],
)
def test_vsn2_arrays_decode_and_encode_back_byte_for_byte(wire, join_ref, ref, topic, event):
    decoded = decode(wire)

    assert decoded.vsn == "2.0.0"
    assert decoded.error is None
    frame = decoded.frame
    assert (frame.join_ref, frame.ref, frame.topic, frame.event) == (join_ref, ref, topic, event)
    assert frame.payload == json.loads(wire)[4]
    assert encode(frame, vsn="2.0.0") == wire


def test_binary_kind4_from_the_docs_decodes_like_realtime_js():
    decoded = decode(KIND4_EXAMPLE)

    assert decoded.error is None
    assert decoded.vsn == "2.0.0"
    frame = decoded.frame
    assert frame.binary_kind == 4
    assert (frame.topic, frame.event, frame.ref, frame.join_ref) == (
        "realtime:chat-room",
        "broadcast",
        None,
        None,
    )
    assert frame.payload == {
        "type": "broadcast",
        "event": "message",
        "payload": json.loads(DB_ROW),
        "meta": {"id": "006554ce-d22d-469c-877a-88bef47214a3"},
    }
    assert json.loads(decoded.payload_json) == frame.payload
    assert decoded.payload_json.startswith('{"type":"broadcast","event":"message","payload":{"id":"513e')
    assert encode(frame, vsn="2.0.0", binary=True) == KIND4_EXAMPLE


def test_binary_kind4_equals_the_same_broadcast_sent_as_json():
    binary = decode(KIND4_EXAMPLE).frame
    text = decode(
        '{"event":"broadcast","payload":{"event":"message","meta":{"id":"006554ce-d22d-469c-877a-88bef47214a3"},'
        '"payload":' + DB_ROW.decode() + ',"type":"broadcast"},"ref":null,"topic":"realtime:chat-room"}'
    ).frame

    assert binary == text
    assert (binary.binary_kind, text.binary_kind) == (4, None)


def test_binary_kind4_raw_payload_without_metadata():
    wire = kind4(b"realtime:files", b"chunk", b"", 0, b"\x00\xff\x10")

    decoded = decode(wire)

    assert decoded.frame.payload == {"type": "broadcast", "event": "chunk", "payload": b"\x00\xff\x10"}
    assert json.loads(decoded.payload_json) == {
        "type": "broadcast",
        "event": "chunk",
        "payload": {"$binary": base64.b64encode(b"\x00\xff\x10").decode()},
    }
    assert encode(decoded.frame, vsn="2.0.0", binary=True) == wire


def test_binary_kind3_user_broadcast_push_from_a_client():
    wire = kind3(b"1", b"12", b"realtime:room1", b"cursor", b'{"id":"abc"}', 1, b'{"x":3}')

    decoded = decode(wire, direction="out")

    frame = decoded.frame
    assert frame.binary_kind == 3
    assert (frame.topic, frame.event, frame.ref, frame.join_ref) == ("realtime:room1", "broadcast", "12", "1")
    assert frame.payload == {
        "type": "broadcast",
        "event": "cursor",
        "payload": {"x": 3},
        "meta": {"id": "abc"},
    }
    assert encode(frame, vsn="2.0.0", binary=True, direction="out") == wire


def test_binary_kind0_push_layout_depends_on_direction():
    from_server = bytes((0, 1, 5, 3)) + b"1" + b"topic" + b"evt" + b"\x01\x02"
    from_client = bytes((0, 1, 2, 5, 3)) + b"1" + b"17" + b"topic" + b"evt" + b"\x01\x02"

    server = decode(from_server, direction="in").frame
    client = decode(from_client, direction="out").frame

    assert server == Frame("topic", "evt", b"\x01\x02", ref=None, join_ref="1")
    assert client == Frame("topic", "evt", b"\x01\x02", ref="17", join_ref="1")
    assert decode(from_server).payload_json == '{"$binary":"AQI="}'
    assert encode(server, vsn="2.0.0", binary=True, direction="in") == from_server
    assert encode(client, vsn="2.0.0", binary=True, direction="out") == from_client
    assert "direction" in decode(from_server, direction="sideways").error


def test_binary_kind1_reply_and_kind2_broadcast():
    reply_wire = bytes((1, 1, 1, 5, 2)) + b"1" + b"4" + b"topic" + b"ok" + b"\xde\xad"
    broadcast_wire = bytes((2, 5, 3)) + b"topic" + b"evt" + b"\xbe\xef"

    reply = decode(reply_wire)
    broadcast = decode(broadcast_wire)

    assert reply.frame == Frame("topic", "phx_reply", {"response": b"\xde\xad", "status": "ok"}, "4", "1")
    assert json.loads(reply.payload_json) == {"response": {"$binary": "3q0="}, "status": "ok"}
    assert broadcast.frame == Frame("topic", "evt", b"\xbe\xef")
    assert (reply.frame.binary_kind, broadcast.frame.binary_kind) == (1, 2)
    assert encode(reply.frame, vsn="2.0.0", binary=True) == reply_wire
    assert encode(broadcast.frame, vsn="2.0.0", binary=True) == broadcast_wire


def test_binary_kind_is_chosen_when_the_frame_has_none():
    assert encode(a_user_broadcast(), vsn="2.0.0", binary=True)[0] == 4
    assert encode(a_user_broadcast(ref="1", join_ref="1"), vsn="2.0.0", binary=True, direction="out")[0] == 3
    assert encode(a_frame(payload=b"x"), vsn="2.0.0", binary=True)[0] == 2
    assert encode(a_frame(payload=b"x", join_ref="1"), vsn="2.0.0", binary=True)[0] == 0
    reply = a_frame(event="phx_reply", payload={"response": b"", "status": "ok"}, ref="1")
    assert encode(reply, vsn="2.0.0", binary=True)[0] == 1


@pytest.mark.parametrize(
    ("data", "vsn"),
    [
        ('{"event":"e","payload":{},"ref":null,"topic":"t"}', "1.0.0"),
        ('  \n{"event":"e","payload":{},"ref":null,"topic":"t"}', "1.0.0"),
        ('[null,null,"t","e",{}]', "2.0.0"),
        ('\t [null,null,"t","e",{}]', "2.0.0"),
        (kind4(b"t", b"e", b"", 1, b"{}"), "2.0.0"),
        ("garbage", "1.0.0"),
    ],
)
def test_vsn_is_detected_when_not_given(data, vsn):
    assert decode(data).vsn == vsn


def test_vsn1_server_frames_have_no_join_ref_and_clients_send_all_five_keys():
    frame = a_frame(ref="5", join_ref=None, payload={"k": 1})

    assert encode(frame) == '{"event":"broadcast","payload":{"k":1},"ref":"5","topic":"realtime:room1"}'
    assert encode(frame, direction="out") == (
        '{"event":"broadcast","payload":{"k":1},"topic":"realtime:room1","ref":"5","join_ref":null}'
    )
    with_join_ref = encode(a_frame(ref="5", join_ref="2", payload={}))
    assert (
        with_join_ref
        == '{"event":"broadcast","join_ref":"2","payload":{},"ref":"5","topic":"realtime:room1"}'
    )


def test_numeric_refs_become_strings():
    v1 = decode('{"event":"heartbeat","payload":{},"ref":26,"topic":"phoenix","join_ref":3}').frame
    v2 = decode('[1,2,"phoenix","heartbeat",{}]').frame
    long = decode('[123456789012345678901234,-1.5,"phoenix","heartbeat",{}]').frame

    assert (v1.ref, v1.join_ref) == ("26", "3")
    assert (v2.join_ref, v2.ref) == ("1", "2")
    assert (long.join_ref, long.ref) == ("123456789012345678901234", "-1.5")


def test_integers_beyond_64_bits_stay_exact():
    wire = '{"event":"e","payload":{"big":123456789012345678901234567890,"neg":-98765432109876543210},"ref":null,"topic":"t"}'

    decoded = decode(wire)

    assert decoded.frame.payload == {"big": 123456789012345678901234567890, "neg": -98765432109876543210}
    assert decoded.payload_json == '{"big":123456789012345678901234567890,"neg":-98765432109876543210}'
    assert decode(encode(decoded.frame)).frame == decoded.frame


def test_integers_beyond_64_bits_stay_exact_in_binary_frames_and_batches():
    body = b'{"n":123456789012345678901234567890}'
    wire = kind4(b"t", b"e", b"", 1, body)
    capture = a_capture([a_capture_row(b'[null,null,"t","e",' + body + b"]", vsn="2.0.0")])

    assert decode(wire).frame.payload["payload"] == {"n": 123456789012345678901234567890}
    assert decode_capture(capture)["payload"].to_pylist() == [body.decode()]


def test_text_that_looks_like_an_exponent_is_left_alone():
    decoded = decode('[null,null,"t","e",{"s":"time+zone 1e+5","n":1e+21,"id":12345678901234567890123}]')

    assert decoded.frame.payload == {"s": "time+zone 1e+5", "n": 1e21, "id": 12345678901234567890123}


def test_deeply_nested_payloads():
    nested_300 = "[" * 300 + "]" * 300
    decoded = decode(f'[null,null,"t","e",{nested_300}]')
    assert decoded.error is None
    assert decoded.payload_json == nested_300

    too_deep = decode(f'[null,null,"t","e",{"[" * 5000 + "]" * 5000}]')
    assert too_deep.frame is None
    assert too_deep.error.startswith("invalid JSON")


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kwargs", "error"),
    [
        ("not json", {}, "invalid JSON: "),
        ("", {}, "empty text frame"),
        ('{"event":"e","payload":{},"ref":null,"topic":', {}, "invalid JSON: "),
        ('{"event":"e","payload":NaN,"ref":null,"topic":"t"}', {}, "invalid JSON: "),
        ('{"event":"e","payload":{"s":"\\ud800"},"ref":null,"topic":"t"}', {}, "invalid JSON: "),
        ("\ud800", {}, "invalid JSON: "),
        ('{"event":"e","payload":{},"ref":null}', {}, "missing key 'topic'"),
        ('{"event":"e","payload":{},"topic":"t"}', {}, "missing key 'ref'"),
        ('"just text"', {"vsn": "1.0.0"}, "expected a vsn 1.0.0 JSON object, got a string"),
        ('{"event":"e","payload":{},"ref":null,"topic":5}', {}, "topic is a number, expected a string"),
        (
            '{"event":["e"],"payload":{},"ref":null,"topic":"t"}',
            {},
            "event is an array of 1, expected a string",
        ),
        ('{"event":"e","payload":{},"ref":{"n":1},"topic":"t"}', {}, "ref is an object"),
        ('[null,null,"t","e"]', {}, "expected a vsn 2.0.0 array of 5 [join_ref, ref, topic, event, payload]"),
        ('[null,null,"t","e",{},1]', {}, "got an array of 6"),
        ('{"event":"e","payload":{},"ref":null,"topic":"t"}', {"vsn": "2.0.0"}, "got an object"),
        ("[]", {"vsn": "3.0.0"}, "unknown vsn '3.0.0' (known: 1.0.0, 2.0.0)"),
        (KIND4_EXAMPLE, {"vsn": "3.0.0"}, "unknown vsn '3.0.0' (known: 1.0.0, 2.0.0)"),
        (b"", {}, "empty binary frame"),
        (b"\x07abc", {}, "unknown binary kind 7 (known: 0-4)"),
        (b"\x04\x12\x07", {}, "truncated binary header: kind 4 needs 5 bytes, frame has 3"),
        (b"\x01\x01\x01", {}, "truncated binary header"),
        (b"\x04\x12\x07\x2d\x01realtime:", {}, "truncated binary frame: topic runs to byte 23"),
        (b"\x02\x01\x01\xff", {}, "invalid UTF-8 in binary frame topic"),
        (kind4(b"t", b"e", b"", 7, b"{}"), {}, "unknown user payload encoding 7"),
        (kind4(b"t", b"e", b"", 1, b"{oops"), {}, "invalid JSON in user payload: "),
        (kind4(b"t", b"e", b"", 1, b"\xff"), {}, "invalid UTF-8 in user payload at byte 0"),
        (kind4(b"t", b"e", b"{bad", 1, b"{}"), {}, "invalid JSON in metadata: "),
        (KIND4_EXAMPLE, {"vsn": "1.0.0"}, "binary frames exist only in vsn 2.0.0"),
        (bytes((0, 0, 1, 1)) + b"te", {"direction": None}, "without knowing its direction"),
    ],
)
def test_undecodable_frames_say_why(data, kwargs, error):
    decoded = decode(data, **kwargs)

    assert decoded.frame is None
    assert decoded.payload_json is None
    assert error in decoded.error


def test_ten_megabyte_frames():
    big = "x" * 10_000_000
    ok = decode(f'[null,null,"realtime:room1","broadcast",{{"blob":"{big}"}}]')
    assert ok.frame.payload["blob"] == big
    assert len(ok.payload_json) == 10_000_011

    broken = decode('{"event":"e","payload":"' + big)
    assert broken.frame is None and broken.error.startswith("invalid JSON")


# ---- encode errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "direction", "field"),
    [
        (a_frame(topic="t" * 256, payload=b""), "in", "topic"),
        (a_frame(event="é" * 128, payload=b""), "in", "event"),  # 256 bytes in UTF-8
        (a_frame(join_ref="1" * 256, payload=b""), "in", "join_ref"),
        (a_frame(ref="1" * 256, payload=b"", join_ref="1"), "out", "ref"),
        (a_user_broadcast(event="e" * 300), "in", "user_event"),
        (a_user_broadcast(meta={"id": "x" * 250}), "in", "metadata"),
        (a_frame(event="phx_reply", payload={"response": b"", "status": "s" * 256}, ref="1"), "in", "status"),
    ],
)
def test_binary_fields_longer_than_255_bytes_are_refused_by_name(frame, direction, field):
    with pytest.raises(EncodeError, match=rf"^{field} is \d+ bytes .*at most 255"):
        encode(frame, vsn="2.0.0", binary=True, direction=direction)


def test_binary_fields_of_exactly_255_bytes_fit():
    frame = a_frame(topic="t" * 255, event="é" * 127 + "x", payload=b"")

    wire = encode(frame, vsn="2.0.0", binary=True)

    assert decode(wire).frame == frame


def test_encode_errors_are_decode_errors_and_value_errors():
    assert issubclass(EncodeError, DecodeError)
    assert issubclass(EncodeError, ValueError)


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (a_frame(payload=b"raw"), {}, "payload is raw bytes, which a text frame cannot carry"),
        (a_frame(payload={"n": float("nan")}), {}, "payload['n'] is nan"),
        (a_frame(payload=(1, 2)), {}, "payload is a tuple"),
        (a_frame(payload={1: "x"}), {}, "payload has key 1"),
        (a_frame(topic=7), {}, "topic must be a str or None, got int"),
        (a_frame(event="\ud800"), {}, "event holds a lone surrogate"),
        (a_frame(payload={"s": "\udfff"}), {}, "payload cannot be written as JSON"),
        (a_frame(), {"vsn": "0.9"}, "unknown vsn '0.9'"),
        (a_frame(), {"direction": "up"}, "direction must be 'in' or 'out'"),
        (a_frame(payload=b"x"), {"binary": True}, "binary frames exist only in vsn 2.0.0"),
        (a_frame(payload={"a": 1}), {"vsn": "2.0.0", "binary": True}, "no binary kind carries this frame"),
        (a_frame(payload=b"x", join_ref=""), {"vsn": "2.0.0", "binary": True}, "join_ref '' cannot go"),
        (a_frame(payload=b"x", ref="1", binary_kind=0), {"vsn": "2.0.0", "binary": True}, "carries no ref"),
        (
            a_user_broadcast(ref="1", binary_kind=4),
            {"vsn": "2.0.0", "binary": True},
            "binary kind 4 carries no ref",
        ),
        (a_frame(payload={"a": 1}, binary_kind=4), {"vsn": "2.0.0", "binary": True}, "is a user broadcast"),
        (a_frame(payload=b"x", binary_kind=9), {"vsn": "2.0.0", "binary": True}, "unknown binary kind 9"),
        (
            a_frame(topic=None, payload=b"x"),
            {"vsn": "2.0.0", "binary": True},
            "topic must be a str, got NoneType",
        ),
        (
            a_user_broadcast(payload={"nested": b"x"}),
            {"vsn": "2.0.0", "binary": True},
            "payload['payload']['nested'] is raw bytes",
        ),
    ],
)
def test_frames_a_wire_form_cannot_carry_are_refused(frame, kwargs, message):
    with pytest.raises(EncodeError) as err:
        encode(frame, **kwargs)

    assert message in str(err.value)


# ---- properties ---------------------------------------------------------------------------------

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.text(max_size=40)  # at most 160 bytes in UTF-8: fits a binary field
refs = st.none() | st.text(min_size=1, max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
small_meta = st.dictionaries(st.text(max_size=6), st.text(max_size=6) | st.integers(-999, 999), max_size=3)
directions = st.sampled_from(["in", "out"])


@st.composite
def binary_frames(draw) -> tuple[Frame, str]:
    kind = draw(st.integers(0, 4))
    topic, event, raw = draw(names), draw(names), draw(st.binary(max_size=64))
    if kind == 0:
        direction = draw(directions)
        ref = draw(refs) if direction == "out" else None
        return Frame(topic, event, raw, ref, draw(refs), binary_kind=0), direction
    if kind == 1:
        payload = {"response": raw, "status": draw(names)}
        return Frame(topic, "phx_reply", payload, draw(refs), draw(refs), binary_kind=1), "in"
    if kind == 2:
        return Frame(topic, event, raw, binary_kind=2), "in"
    inner = {"type": "broadcast", "event": event, "payload": draw(st.binary(max_size=64) | json_values)}
    if draw(st.booleans()):
        inner["meta"] = draw(small_meta)
    if kind == 3:
        return Frame(topic, "broadcast", inner, draw(refs), draw(refs), binary_kind=3), "out"
    return Frame(topic, "broadcast", inner, binary_kind=4), "in"


@FAST
@given(data=st.binary(max_size=300), vsn=st.sampled_from([None, "1.0.0", "2.0.0", "9"]), direction=directions)
def test_decode_never_raises_on_any_bytes(data, vsn, direction):
    decoded = decode(data, vsn=vsn, direction=direction)

    assert (decoded.frame is None) == (decoded.error is not None)


@FAST
@given(
    kind=st.integers(0, 5),
    sizes=st.lists(st.integers(0, 12), min_size=0, max_size=7),
    tail=st.binary(max_size=40),
    direction=st.sampled_from(["in", "out", None]),
)
def test_decode_never_raises_on_binary_headers(kind, sizes, tail, direction):
    decoded = decode(bytes([kind, *sizes]) + tail, direction=direction)

    assert (decoded.frame is None) == (decoded.error is not None)


@FAST
@given(
    text=st.text(max_size=200) | st.from_regex(r"\A[\[{].*", fullmatch=True),
    vsn=st.sampled_from([None, "1.0.0", "2.0.0"]),
)
def test_decode_never_raises_on_any_text(text, vsn):
    decoded = decode(text, vsn=vsn)

    assert (decoded.frame is None) == (decoded.error is not None)
    if decoded.frame is not None:
        assert json.loads(decoded.payload_json) == decoded.frame.payload


@FAST
@given(
    frame=st.builds(
        Frame, topic=st.none() | names, event=st.none() | names, payload=json_values, ref=refs, join_ref=refs
    ),
    vsn=st.sampled_from(["1.0.0", "2.0.0"]),
    direction=directions,
)
def test_text_round_trip_is_exact(frame, vsn, direction):
    wire = encode(frame, vsn=vsn, direction=direction)

    decoded = decode(wire, vsn=vsn, direction=direction)

    assert isinstance(wire, str)
    assert decoded.frame == frame
    assert decoded.frame.binary_kind is None
    assert json.loads(decoded.payload_json) == frame.payload
    assert decode(wire, direction=direction).vsn == vsn  # detection agrees


@FAST
@given(case=binary_frames())
def test_binary_round_trip_is_exact(case):
    frame, direction = case

    wire = encode(frame, vsn="2.0.0", binary=True, direction=direction)
    decoded = decode(wire, direction=direction)

    assert isinstance(wire, bytes)
    assert decoded.frame == frame
    assert decoded.frame.binary_kind == frame.binary_kind
    assert encode(decoded.frame, vsn="2.0.0", binary=True, direction=direction) == wire


odd_values = st.sampled_from([None, "", "x" * 256, (1, 2), float("inf"), b"raw", {"b": b"x"}, 7, "\ud800"])


@st.composite
def nearly_valid_frames(draw) -> tuple[Frame, str]:
    """A frame some wire form carries, with one field often swapped for an odd value."""
    if draw(st.booleans()):
        frame, direction = draw(binary_frames())
    else:
        frame = draw(st.builds(Frame, topic=names, event=names, payload=json_values, ref=refs, join_ref=refs))
        direction = draw(directions)
    field = draw(st.sampled_from([None, "topic", "event", "payload", "ref", "join_ref", "binary_kind"]))
    if field == "binary_kind":
        frame = dataclasses.replace(frame, binary_kind=draw(st.none() | st.integers(0, 6)))
    elif field is not None:
        frame = dataclasses.replace(frame, **{field: draw(odd_values)})
    return frame, direction


@FAST
@given(
    case=nearly_valid_frames(),
    form=st.sampled_from([("1.0.0", False), ("2.0.0", False), ("2.0.0", True), ("1.0.0", True)]),
)
def test_every_frame_encode_accepts_reads_back_equal(case, form):
    frame, direction = case
    vsn, binary = form
    try:
        wire = encode(frame, vsn=vsn, binary=binary, direction=direction)
    except EncodeError:
        return

    assert decode(wire, vsn=vsn, direction=direction).frame == frame


@FAST
@given(
    field=st.sampled_from(["topic", "event", "join_ref"]),
    size=st.integers(250, 260),
    char=st.sampled_from("aé€𝄞"),
)
def test_binary_size_limit_is_255_utf8_bytes(field, size, char):
    value = (char * size).encode()[:size].decode(errors="ignore")
    frame = a_frame(payload=b"p", **{field: value})
    if len(value.encode()) <= 255:
        assert getattr(decode(encode(frame, vsn="2.0.0", binary=True)).frame, field) == value
    else:
        with pytest.raises(EncodeError, match=f"^{field} is {len(value.encode())} bytes"):
            encode(frame, vsn="2.0.0", binary=True)


# ---- batch decoding for the store -------------------------------------------------------------------


def test_decode_capture_fills_the_frames_schema():
    capture = a_capture(
        [
            a_capture_row(
                kind="open", raw=None, info='{"url":"ws://127.0.0.1/socket/websocket","vsn":"1.0.0"}'
            ),
            a_capture_row(JOIN, direction="out"),
            a_capture_row(JOIN_REPLY),
            a_capture_row(POSTGRES_UPDATE),
            a_capture_row(V2_SYSTEM, vsn="2.0.0"),
            a_capture_row(KIND4_EXAMPLE, kind="binary", vsn="2.0.0"),
            a_capture_row(b'{"event":"x","payload":"\xff","ref":null,"topic":"t"}'),
            a_capture_row("not json"),
            a_capture_row(V2_HEARTBEAT, vsn=None),
            a_capture_row(KIND4_EXAMPLE, kind="binary", vsn=None),
            a_capture_row(kind="close", raw=None, close_code=1011, info='{"code":1011,"reason":"internal"}'),
            a_capture_row(kind="error", raw=None, info='{"error":"connection reset"}'),
            a_capture_row(b"x", kind="ping"),
        ]
    )

    frames = decode_capture(capture)

    assert frames.schema == FRAMES_SCHEMA
    rows = frames.to_pylist()
    assert [r["topic"] for r in rows] == [
        None,
        "realtime:room1",
        "realtime:room1",
        "realtime:chat-room",
        "realtime:room1",
        "realtime:chat-room",
        None,
        None,
        "phoenix",
        "realtime:chat-room",
        None,
        None,
        None,
    ]
    assert [r["event"] for r in rows[1:6]] == [
        "phx_join",
        "phx_reply",
        "postgres_changes",
        "system",
        "broadcast",
    ]
    assert [(r["ref"], r["join_ref"]) for r in rows[1:6]] == [
        ("1", "1"),
        ("1", None),
        (None, None),
        (None, "1"),
        (None, None),
    ]
    assert [r["vsn"] for r in rows[:10]] == ["1.0.0"] * 4 + ["2.0.0"] * 2 + ["1.0.0"] * 2 + ["2.0.0"] * 2
    assert rows[0]["payload"] == '{"url":"ws://127.0.0.1/socket/websocket","vsn":"1.0.0"}'
    assert rows[3]["payload"] == decode(POSTGRES_UPDATE).payload_json
    assert json.loads(rows[5]["payload"])["meta"] == {"id": "006554ce-d22d-469c-877a-88bef47214a3"}
    assert rows[6]["decode_error"] == "invalid UTF-8 in text frame at byte 24"
    assert rows[6]["payload"] is None and rows[6]["raw"] == capture["raw"][6].as_py()
    assert rows[7]["decode_error"].startswith("invalid JSON")
    assert rows[10]["close_code"] == 1011 and rows[10]["payload"] == '{"code":1011,"reason":"internal"}'
    assert rows[11]["payload"] == '{"error":"connection reset"}'
    assert rows[12]["decode_error"] == "unknown capture kind 'ping' (known: text, binary, open, close, error)"
    assert [r["decode_error"] for r in rows if r["decode_error"]] == [
        rows[6]["decode_error"],
        rows[7]["decode_error"],
        rows[12]["decode_error"],
    ]
    assert [r["payload_bytes"] for r in rows] == [
        None if r is None else len(r) for r in capture["raw"].to_pylist()
    ]
    assert frames["raw"].equals(capture["raw"])
    assert frames["seq"].to_pylist() == list(range(13))
    assert frames["ts"].equals(capture["ts"])


def test_decode_capture_keeps_row_order_across_slices():
    n = 40_000
    capture = a_capture(
        [a_capture_row(f'[null,"{i}","t{i}","e",{{"i":{i}}}]', vsn="2.0.0") for i in range(n)]
    )

    frames = decode_capture(capture)

    assert frames.num_rows == n
    assert frames["topic"].to_pylist() == [f"t{i}" for i in range(n)]
    assert frames["ref"].to_pylist()[-1] == str(n - 1)
    assert frames["payload"].to_pylist()[12345] == '{"i":12345}'


def test_decode_capture_of_no_rows():
    assert decode_capture(CAPTURE_SCHEMA.empty_table()) == FRAMES_SCHEMA.empty_table()


def test_decode_capture_accepts_columns_in_any_order():
    capture = a_capture([a_capture_row(SYSTEM)])
    shuffled = capture.select(list(reversed(CAPTURE_SCHEMA.names)))

    assert decode_capture(shuffled)["event"].to_pylist() == ["system"]


@FAST
@given(
    cases=st.lists(
        st.one_of(
            st.tuples(st.binary(max_size=80), st.sampled_from(["text", "binary"]), directions),
            st.builds(
                lambda f, vsn, d: (encode(f, vsn=vsn, direction=d).encode(), "text", d),
                st.builds(Frame, topic=names, event=names, payload=json_values, ref=refs, join_ref=refs),
                st.sampled_from(["1.0.0", "2.0.0"]),
                directions,
            ),
            binary_frames().map(
                lambda c: (encode(c[0], vsn="2.0.0", binary=True, direction=c[1]), "binary", c[1])
            ),
        ),
        max_size=8,
    ),
    vsn=st.sampled_from([None, "1.0.0", "2.0.0"]),
)
def test_decode_capture_agrees_with_decode(cases, vsn):
    capture = a_capture([a_capture_row(raw, kind=kind, direction=d, vsn=vsn) for raw, kind, d in cases])

    rows = decode_capture(capture).to_pylist()

    for (raw, kind, direction), row in zip(cases, rows, strict=True):
        if kind == "text":
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                assert row["decode_error"].startswith("invalid UTF-8 in text frame")
                continue
        else:
            text = raw
        expected = decode(text, vsn=vsn, direction=direction)
        frame = expected.frame
        assert row["decode_error"] == expected.error
        assert row["vsn"] == expected.vsn
        assert row["payload"] == expected.payload_json
        assert (row["topic"], row["event"], row["ref"], row["join_ref"]) == (
            (frame.topic, frame.event, frame.ref, frame.join_ref) if frame else (None, None, None, None)
        )


def test_capture_table_is_registered_with_the_store():
    assert store.STAGING["frames_capture"] == ("frames", CAPTURE_SCHEMA, decode_capture)


def test_store_writer_commits_decoded_frames(tmp_path):
    day = 86_400_000_000
    capture = a_capture(
        [
            a_capture_row(kind="open", raw=None, info='{"url":"ws://x/socket/websocket","vsn":"1.0.0"}'),
            a_capture_row(JOIN, direction="out", ts=TS0 + 1),
            a_capture_row(JOIN_REPLY, ts=TS0 + 2),
            a_capture_row(b"\xff\xfe", ts=TS0 + 3),
            a_capture_row(POSTGRES_UPDATE, ts=TS0 + day),
        ]
    )
    path = tmp_path / "store"

    writer = StoreWriter(path, writer="t")
    writer.append("frames_capture", capture)
    writer.close()

    parts = sorted(path.glob("frames/date=*/part-*.parquet"))
    assert [p.parent.name for p in parts] == ["date=2025-11-28", "date=2025-11-29"]
    first = pq.read_table(parts[0])
    assert first.schema.remove_metadata() == FRAMES_SCHEMA
    assert first["event"].to_pylist() == [None, "phx_join", "phx_reply", None]
    assert first["decode_error"].to_pylist()[3] == "invalid UTF-8 in text frame at byte 0"
    assert first["raw"].to_pylist()[3] == b"\xff\xfe"
    rows = duckdb.sql(
        f"SELECT seq, event, ref, payload->>'$.data.record.text' AS text, payload_bytes "
        f"FROM read_parquet('{path}/frames/date=*/part-*.parquet') ORDER BY seq"
    ).fetchall()
    assert rows[-1] == (4, "postgres_changes", None, "content", len(POSTGRES_UPDATE))
    assert rows[1] == (1, "phx_join", "1", None, len(JOIN.encode()))


def test_docstring_examples_run():
    import doctest

    from recorder import codec

    assert doctest.testmod(codec).failed == 0
