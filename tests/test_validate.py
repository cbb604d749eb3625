"""The payload validator (``analyzer.validate``) and ``rt-replay validate`` / ``rt-replay schema``.

What is checked: every valid frame shape of realtime-protocol.md passes and the known bad ones fail
with an exact error path, message and kind, in both engines; both engines give identical verdicts
and paths on every recorded fixture and on a property-test corpus (mutated and random payloads,
tricky timestamps, deep nesting); bad schema files and bad stores are one clear line; the CLI end
to end on a store recorded from the official client through the proxy (exit codes 0/1/2/3, exact
counts, failures naming session and seq, verdicts queryable, the recording untouched).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.replay_cli import main as replay_main
from analyzer.validate import (
    ENGINES,
    ERROR_KINDS,
    MAX_DEPTH,
    VERDICTS_SCHEMA,
    Column,
    Engine,
    Issue,
    PayloadValidator,
    Router,
    SchemaFile,
    SchemaSet,
    _ColumnSharing,
    _MaybeDeep,
    json_depth,
    judge,
    load_schemas,
    parse_columns,
    read_columns_file,
    record_schema,
    validate_store,
    verdicts_sql,
    write_record_schema,
)
from recorder.errors import ConfigError, StoreError
from recorder.store import FRAMES_SCHEMA, StoreWriter, open_store

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "fixtures" / "scenarios"
SCHEMAS = load_schemas()
ENGINE_NAMES = ("fast", "reference")


@pytest.fixture(scope="module")
def validators() -> dict[str, PayloadValidator]:
    return {name: PayloadValidator(SCHEMAS, name) for name in ENGINE_NAMES}


_VALIDATORS: dict[str, PayloadValidator] = {}


def _validator(name: str) -> PayloadValidator:
    if name not in _VALIDATORS:
        _VALIDATORS[name] = PayloadValidator(SCHEMAS, name)
    return _VALIDATORS[name]


def verdict(event: str, payload) -> tuple[str, str, str] | None:
    """(error_path, error, error_kind) of one payload, after checking that both engines agree."""
    found = {name: _validator(name).check(event, payload) for name in ENGINE_NAMES}
    assert found["fast"] == found["reference"], found
    issue = found["fast"]
    return None if issue is None else (issue.pointer, issue.message, issue.kind)


# ---- builders -----------------------------------------------------------------------------------------


def a_change(change: str = "INSERT", /, **data) -> dict:
    """A postgres_changes payload as the server sends it (realtime-protocol.md §4.1)."""
    body = {
        "columns": [{"name": "id", "type": "int8"}, {"name": "note", "type": "text"}],
        "commit_timestamp": "2026-11-24T08:00:00.123Z",
        "errors": None,
        "schema": "public",
        "table": "orders",
        "type": change,
    }
    if change != "DELETE":
        body["record"] = {"id": 1, "note": "paid"}
    if change != "INSERT":
        body["old_record"] = {"id": 1}
    for key, value in data.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return {"data": body, "ids": [38606455]}


DROP = object()


def a_row(seq: int, payload: str | None, *, event: str = "postgres_changes", session: str = "s1", **kw) -> dict:
    """One row of the store's frames table (an incoming text frame unless told otherwise)."""
    row = {
        "ts": datetime(2026, 11, 24, 8, tzinfo=UTC) + timedelta(milliseconds=seq),
        "session_id": session, "seq": seq, "direction": "in", "kind": "text", "vsn": "1.0.0",
        "topic": "realtime:room1", "event": event, "ref": None, "join_ref": None, "payload": payload,
        "payload_bytes": len(payload or ""), "raw": None, "close_code": None, "decode_error": None,
        "source": "proxy",
    }  # fmt: skip
    row.update(kw)
    return row


def a_store(path: Path, rows: list[dict]) -> Path:
    with StoreWriter(path, writer="test") as w:
        if rows:
            w.append("frames", pa.Table.from_pylist(rows, schema=FRAMES_SCHEMA))
    return path


def dumps(obj) -> str:
    return orjson.dumps(obj).decode()


def store_digest(store: Path) -> dict[str, str]:
    """sha256 of every file of the recording (everything but verdicts/)."""
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.relative_to(store).parts[0] != "verdicts"
    }


# ---- valid frames of realtime-protocol.md, verbatim ------------------------------------------------------

# The frames as the document prints them (vsn 1.0.0 objects, or vsn 2.0.0 arrays).
DOC_FRAMES = [
    '{"event":"phx_reply","payload":{"response":{"postgres_changes":[{"event":"*","id":38606455,"schema":"public","table":"todos"}]},"status":"ok"},"ref":"1","topic":"realtime:room1"}',
    '["1","1","realtime:room1","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]',
    '["1",null,"realtime:room1","system",{"channel":"room1","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"}]',
    '{"event":"system","payload":{"channel":"room1","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"},"ref":null,"topic":"realtime:room1"}',
    '{"event":"system","payload":{"channel":"room1","extension":"postgres_changes","message":"Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: todos, filters: [], select: nil]","status":"error"},"ref":null,"topic":"realtime:room1"}',
    '{"event":"system","payload":{"channel":"room1","extension":"postgres_changes","message":"Error parsing `filter` params: …","status":"error"},"ref":null,"topic":"realtime:room1"}',
    '{"event":"system","payload":{"channel":"room1","extension":"system","message":"Replication connection established","status":"ok"},"ref":null,"topic":"realtime:room1"}',
    '{"event":"system","payload":{"channel":"room1","extension":"system","message":"Too many messages per second","status":"error"},"ref":null,"topic":"realtime:room1"}',
    '{"event":"system","payload":{"extension":"system","message":"Server requested disconnect","status":"ok"},"ref":null,"topic":"realtime:room1"}',
    '{"event":"broadcast","payload":{"event":"cursor","payload":{"x":1},"type":"broadcast"},"ref":null,"topic":"realtime:room1"}',
    '{"event":"postgres_changes","payload":{"data":{"columns":[{"name": "id", "type": "int8"}, {"name": "created_at", "type": "timestamptz"}, {"name": "text", "type": "text"}],"commit_timestamp":"2025-11-19T00:22:40.877Z","errors":null,"old_record":{"id": 46},"record":{"id": 46, "text": "content", "created_at": "2025-11-03T09:32:55+00:00"},"schema":"public","table":"test","type":"UPDATE"},"ids":[104868189]},"ref":null,"topic":"realtime:chat-room"}',
    '["1","1","realtime:room1","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]',
]
# The document elides parts of these with "…" outside strings; filled in minimally.
DOC_FRAMES_COMPLETED = [
    # §3.3 database broadcast: `…` after the inner payload's last key removed
    '{"event":"broadcast","payload":{"event":"INSERT","meta":{"id":"5f0c7a0e-…"},"payload":{"id": "5f0c7a0e-…", "table": "todos"},"type":"broadcast"},"ref":null,"topic":"realtime:todos:42"}',
    # §3.2 other replies
    '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":null,"topic":"phoenix"}',
    '{"event":"phx_reply","payload":{"status":"error","response":{"reason":"Unauthorized: You do not have permissions to read from this Channel topic: room1"}},"ref":"1","topic":"realtime:room1"}',
    '{"event":"phx_reply","payload":{"status":"error","response":{"error":"payload_size_exceeded"}},"ref":"3","topic":"realtime:room1"}',
    # §3.3 presence (shapes given in prose)
    '{"event":"presence_state","payload":{"user-1":{"metas":[{"phx_ref":"GHlA1fShRjMmZhnL","name":"ann"}]}},"ref":null,"topic":"realtime:room1"}',
    '{"event":"presence_diff","payload":{"joins":{"user-2":{"metas":[{"phx_ref":"GHlA1fShRjMmZhnM"}]}},"leaves":{}},"ref":null,"topic":"realtime:room1"}',
    '{"event":"presence_state","payload":{},"ref":null,"topic":"realtime:room1"}',
    # §4.1 the three change types, §4.2 error 413 is checked below (invalid by our rule)
    dumps({"event": "postgres_changes", "payload": a_change("INSERT")}),
    dumps({"event": "postgres_changes", "payload": a_change("DELETE")}),
    # binary kind 4 with a raw payload, as the recorder stores it (recorder/codec.py)
    '{"event":"broadcast","payload":{"event":"file","payload":{"$binary":"AAEC"},"type":"broadcast"},"ref":null,"topic":"realtime:room1"}',
]


def _event_and_payload(frame: str) -> tuple[str, object]:
    decoded = json.loads(frame)
    if isinstance(decoded, list):
        return decoded[3], decoded[4]
    return decoded["event"], decoded["payload"]


@pytest.mark.parametrize("frame", DOC_FRAMES + DOC_FRAMES_COMPLETED)
def test_every_valid_frame_shape_of_the_protocol_doc_passes_both_engines(frame) -> None:
    event, payload = _event_and_payload(frame)
    assert verdict(event, dumps(payload)) is None


# ---- the known bad ones: exact path, message and kind ------------------------------------------------------

TS_MSG = "realtime-py drops a change whose commit_timestamp is not a string"
BAD = [
    # postgres_changes: the row
    ("postgres_changes", a_change("INSERT", record=None),
     ("/data/record", "expected object, got null: INSERT must carry the new row", "null")),
    ("postgres_changes", a_change("INSERT", record={}),
     ("/data/record", "empty object: INSERT must carry the new row", "empty")),
    ("postgres_changes", a_change("UPDATE", record={}),
     ("/data/record", "empty object: UPDATE must carry the new row", "empty")),
    ("postgres_changes", a_change("UPDATE", record=None),
     ("/data/record", "expected object, got null: UPDATE must carry the new row", "null")),
    ("postgres_changes", a_change("INSERT", record=DROP), ("/data/record", "missing", "missing")),
    ("postgres_changes", a_change("INSERT", record=[1]),
     ("/data/record", "expected object, got array: INSERT must carry the new row", "wrong_type")),
    ("postgres_changes", a_change("UPDATE", old_record=DROP), ("/data/old_record", "missing", "missing")),
    ("postgres_changes", a_change("DELETE", old_record={}),
     ("/data/old_record", "empty object: DELETE must carry the old row's replica identity", "empty")),
    # postgres_changes: the envelope
    ("postgres_changes", {"ids": [1]}, ("/data", "missing", "missing")),
    ("postgres_changes", {"data": None, "ids": [1]}, ("/data", "expected object, got null", "null")),
    ("postgres_changes", {"data": a_change()["data"]}, ("/ids", "missing", "missing")),
    ("postgres_changes", {**a_change(), "ids": []},
     ("/ids", "empty list: no binding of this channel matched the change", "empty")),
    ("postgres_changes", {**a_change(), "ids": ["38606455"]}, ("/ids/0", "expected integer, got string", "wrong_type")),
    ("postgres_changes", a_change("INSERT", type=DROP), ("/data/type", "missing", "missing")),
    ("postgres_changes", a_change("INSERT", type="TRUNCATE"),
     ("/data/type", 'expected one of "INSERT", "UPDATE", "DELETE", got "TRUNCATE" (realtime-py drops the frame)',
      "bad_value")),
    ("postgres_changes", a_change("INSERT", type=None),
     ("/data/type", 'expected one of "INSERT", "UPDATE", "DELETE", got null (realtime-py drops the frame)', "null")),
    ("postgres_changes", a_change("INSERT", schema=5), ("/data/schema", "expected string, got integer", "wrong_type")),
    ("postgres_changes", a_change("INSERT", table=""), ("/data/table", "empty string", "empty")),
    ("postgres_changes", a_change("INSERT", columns="id"), ("/data/columns", "expected array, got string", "wrong_type")),
    ("postgres_changes", a_change("INSERT", columns=[{"name": "id"}]), ("/data/columns/0/type", "missing", "missing")),
    ("postgres_changes", a_change("INSERT", commit_timestamp=None),
     ("/data/commit_timestamp", f"expected string, got null: {TS_MSG}", "null")),
    ("postgres_changes", a_change("INSERT", commit_timestamp=DROP), ("/data/commit_timestamp", "missing", "missing")),
    ("postgres_changes", a_change("INSERT", commit_timestamp="2026-11-24 08:00:00"),
     ("/data/commit_timestamp",
      '"2026-11-24 08:00:00" is not an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SS[.fff]Z)', "bad_value")),
    ("postgres_changes", [a_change()], ("", "expected object, got array", "wrong_type")),
    ("postgres_changes", None, ("", "expected object, got null", "null")),
    # postgres_changes: the error rows of §4.2, verbatim (401) and as the server builds them (400, 413)
    ("postgres_changes",
     json.loads('{"data":{"columns":[],"commit_timestamp":null,"errors":["Error 401: Unauthorized"],"record":{},"schema":"public","table":"todos","type":"INSERT"},"ids":[38606455]}'),
     ("/data/errors", 'the server reported ["Error 401: Unauthorized"]: the change carries no row data '
      "(and a null commit_timestamp, which realtime-py drops)", "server_error")),
    ("postgres_changes",
     a_change("UPDATE", columns=[], commit_timestamp=None, errors=["Error 400: Bad Request, no primary key"],
              record={}, old_record={}),
     ("/data/errors", 'the server reported ["Error 400: Bad Request, no primary key"]: the change carries no '
      "row data (and a null commit_timestamp, which realtime-py drops)", "server_error")),
    ("postgres_changes", a_change("UPDATE", errors=["Error 413: Payload Too Large"]),
     ("/data/errors", 'the server reported ["Error 413: Payload Too Large"]: the record keeps only columns of '
      "64 bytes or less", "too_large")),
    # broadcast (§7.6: realtime-py drops an inner payload that is not an object)
    ("broadcast", {"event": "x", "payload": None, "type": "broadcast"},
     ("/payload", "expected object, got null: realtime-py drops a broadcast whose payload is not an object", "null")),
    ("broadcast", {"event": "x", "payload": [1, 2], "type": "broadcast"},
     ("/payload", "expected object, got array: realtime-py drops a broadcast whose payload is not an object",
      "wrong_type")),
    ("broadcast", {"event": "x", "payload": "hi", "type": "broadcast"},
     ("/payload", "expected object, got string: realtime-py drops a broadcast whose payload is not an object",
      "wrong_type")),
    ("broadcast", {"payload": {}, "type": "broadcast"}, ("/event", "missing", "missing")),
    ("broadcast", {"event": "x", "payload": {}, "type": "presence"},
     ("/type", 'expected "broadcast", got "presence"', "bad_value")),
    ("broadcast", {"event": "x", "payload": {}, "type": "broadcast", "meta": {"id": 5}},
     ("/meta/id", "expected string, got integer", "wrong_type")),
    # system
    ("system", {"extension": "system", "message": "Too many messages per second", "status": "error"},
     ("/channel", "missing", "missing")),
    ("system", {"channel": "room1", "extension": "system", "message": "x", "status": "timeout"},
     ("/status", 'expected one of "ok", "error", got "timeout" (realtime-py drops the frame)', "bad_value")),
    ("system", {"channel": "room1", "message": "x", "status": "ok"}, ("/extension", "missing", "missing")),
    # phx_reply
    ("phx_reply", {"response": {}}, ("/status", "missing", "missing")),
    ("phx_reply", {"response": None, "status": "ok"}, ("/response", "expected object, got null", "null")),
    ("phx_reply", {"response": {"postgres_changes": [{"event": "*", "id": "1"}]}, "status": "ok"},
     ("/response/postgres_changes/0/id", "expected integer, got string", "wrong_type")),
    # presence
    ("presence_state", {"u": {"metas": {}}}, ("/u/metas", "expected array, got object", "wrong_type")),
    ("presence_state", {"u": {"metas": [{"name": "a"}]}}, ("/u/metas/0/phx_ref", "missing", "missing")),
    ("presence_diff", {"joins": {}}, ("/leaves", "missing", "missing")),
    ("presence_diff", {"joins": {"u": {}}, "leaves": {}}, ("/joins/u/metas", "missing", "missing")),
]  # fmt: skip


@pytest.mark.parametrize(("event", "payload", "expected"), BAD, ids=[f"{b[0]}:{b[2][0]}:{b[2][2]}" for b in BAD])
def test_known_bad_payloads_fail_with_exact_path_message_and_kind(event, payload, expected) -> None:
    assert verdict(event, dumps(payload)) == expected
    assert expected[2] in ERROR_KINDS


def test_the_first_error_is_the_shortest_path_then_alphabetical() -> None:
    # both missing: /data wins over anything deeper; two siblings: alphabetical
    assert verdict("postgres_changes", dumps({"data": None}))[0] == "/data"
    assert verdict("postgres_changes", dumps(a_change(schema=1, table=2)))[0] == "/data/schema"
    # the error rows report /data/errors, not the null commit_timestamp beside it
    row = a_change(commit_timestamp=None, errors=["Error 401: Unauthorized"], record={})
    assert verdict("postgres_changes", dumps(row))[0] == "/data/errors"
    # every issue of a payload, in the order the verdict picks from, is the same in both engines
    payload = a_change("UPDATE", record=None, old_record=None, commit_timestamp=3, ids=DROP)
    payload["ids"] = "x"
    issues = {n: _validator(n).issues("postgres_changes", payload) for n in ENGINE_NAMES}
    assert issues["fast"] == issues["reference"]
    assert [i.pointer for i in issues["fast"]] == [
        "/ids", "/data/commit_timestamp", "/data/old_record", "/data/record",
    ]  # fmt: skip


def test_frame_level_problems_come_before_any_engine() -> None:
    deep = '{"event":"x","type":"broadcast","payload":' + "[" * 10_000 + "]" * 10_000 + "}"
    too_deep = ("", f"nesting too deep (more than {MAX_DEPTH} levels)", "too_deep")
    t = time.perf_counter()
    assert verdict("broadcast", deep) == too_deep
    assert verdict("broadcast", "[" * 10_000) == too_deep  # never closed: still no recursion
    assert verdict("postgres_changes", '{"data":' * 10_000) == too_deep
    assert time.perf_counter() - t < 2
    # exactly at the limit is fine; one more level is not (brackets inside strings do not count)
    inner = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    assert verdict("broadcast", '{"event":"x","type":"broadcast","payload":{"a":' + inner + "}}") is None
    assert verdict("broadcast", '{"event":"x","type":"broadcast","payload":{"a":[' + inner + "]}}") == too_deep
    strings = '"' + "[{" * 500 + '"'
    assert verdict("broadcast", '{"event":"x","type":"broadcast","payload":{"a":' + strings + "}}") is None
    assert verdict("broadcast", '{"event": "x", "payload": ') == (
        "", "payload is not valid JSON: unexpected end of data: line 1 column 27 (char 26)", "undecodable",
    )  # fmt: skip
    assert verdict("broadcast", None) == ("", "payload missing (frame has no payload)", "undecodable")
    assert _validator("fast").check("broadcast", "{}", decode_error="truncated binary frame") == Issue(
        (), "decode", "frame could not be decoded: truncated binary frame", "undecodable"
    )


TRICKY_TIMESTAMPS = {
    "2025-11-19T00:22:40.877Z": True,
    "2025-11-19T00:22:40Z": True,
    "2025-11-19T00:22:40.123456789Z": True,
    "2025-11-19T00:22:40.877+01:00": True,
    "2025-11-19T00:22:40-05:30": True,
    "2025-11-19T23:59:60Z": True,  # leap second: RFC 3339 allows it
    "2025-02-30T00:00:00Z": True,  # calendar validity is not checked (documented)
    "2025-11-19T00:22:40.877Z\n": False,  # Python's $ alone would accept this one
    "2025-11-19T00:22:40.877Z\n\n": False,
    "2025-11-19T00:22:40.877Z\r": False,
    "2025-11-19t00:22:40.877z": False,
    "2025-11-19 00:22:40.877Z": False,
    "2025-11-19T00:22:40.877": False,
    "2025-11-19T00:22:40.Z": False,
    "2025-11-19T00:22:40.1234567890Z": False,
    "2025-13-01T00:00:00Z": False,
    "2025-11-19T24:00:00Z": False,
    "2025-11-19T00:22:40+2400": False,
    "٢٠٢٥-11-19T00:22:40Z": False,  # Arabic-Indic digits: \d would take them in Python
    "2025-11-19T00:22:40.877Z ": False,
    " 2025-11-19T00:22:40.877Z": False,
    "+2025-11-19T00:22:40Z": False,
    "": False,
}


@pytest.mark.parametrize(("ts", "ok"), TRICKY_TIMESTAMPS.items())
def test_both_engines_agree_on_tricky_timestamps(ts, ok) -> None:
    found = verdict("postgres_changes", dumps(a_change(commit_timestamp=ts)))
    assert (found is None) is ok, found
    if not ok:
        assert found[0] == "/data/commit_timestamp" and found[2] == "bad_value"


# ---- agreement: every fixture, and a property-test corpus ---------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(p.name for p in SCENARIOS.iterdir() if (p / "store").is_dir()))
def test_engines_agree_on_every_recorded_fixture(scenario) -> None:
    result = validate_store(SCENARIOS / scenario / "store", engine="both", write=False)
    assert result.disagreements == 0, result.disagreeing
    assert result.checked > 0 and result.checked + result.skipped == result.frames


def _mutations(payload):
    """Every (path, container) inside ``payload`` where a mutation can apply."""
    out = [((), None)]
    stack = [((), payload)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                out.append(((*path, k), node))
                stack.append(((*path, k), v))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out.append(((*path, i), node))
                stack.append(((*path, i), v))
    return out


json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
odd_timestamps = st.sampled_from(list(TRICKY_TIMESTAMPS)) | st.text(
    alphabet="0123456789-:.TZtz+ \n٢", max_size=30
) | st.builds(
    lambda d, frac, zone: d.strftime("%Y-%m-%dT%H:%M:%S") + frac + zone,
    st.datetimes(), st.sampled_from(["", ".1", ".123", ".123456", ".1234567890", "."]),
    st.sampled_from(["Z", "+01:00", "-23:59", "+24:00", "z", "", "Z\n"]),
)  # fmt: skip
special_values = st.sampled_from(
    [None, {}, [], "", 0, 1.5, True, "INSERT", "UPDATE", "DELETE", "TRUNCATE", "*", ["Error 401: Unauthorized"],
     ["Error 413: Payload Too Large"], "broadcast", "ok", "error", "timeout", "Server requested disconnect",
     {"metas": []}, {"metas": [{"phx_ref": "x"}]}]
) | odd_timestamps  # fmt: skip

BASES = {
    "postgres_changes": [a_change("INSERT"), a_change("UPDATE"), a_change("DELETE"), _event_and_payload(DOC_FRAMES[10])[1]],
    "broadcast": [{"event": "cursor", "meta": {"id": "5f0c"}, "payload": {"x": 1}, "type": "broadcast"}],
    "system": [json.loads(DOC_FRAMES[3])["payload"], json.loads(DOC_FRAMES[8])["payload"]],
    "phx_reply": [json.loads(DOC_FRAMES[0])["payload"], {"response": {"reason": "x"}, "status": "error"}],
    "presence_state": [{"u": {"metas": [{"phx_ref": "a", "n": 1}]}}],
    "presence_diff": [{"joins": {"u": {"metas": [{"phx_ref": "a"}]}}, "leaves": {"v": {"metas": [{"phx_ref": "b"}]}}}],
}  # fmt: skip


@st.composite
def mutated_payloads(draw, event: str | None = None):
    event = event or draw(st.sampled_from(sorted(BASES)))
    payload = copy.deepcopy(draw(st.sampled_from(BASES[event])))
    for _ in range(draw(st.integers(1, 4))):
        spots = _mutations(payload)
        path, container = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["drop", "null", "value", "special", "nest", "add", "timestamp"]))
        if not path:
            if action in ("value", "special"):
                payload = copy.deepcopy(draw(json_values if action == "value" else special_values))
            continue
        key = path[-1]
        if action == "drop":
            if isinstance(container, dict):
                del container[key]
            else:
                container.pop(key)
        elif action == "null":
            container[key] = None
        elif action == "value":
            container[key] = draw(json_values)
        elif action == "special":
            container[key] = copy.deepcopy(draw(special_values))  # never mutate the strategy's own values
        elif action == "timestamp":
            container[key] = draw(odd_timestamps)
        elif action == "nest":
            value = container[key]
            for _ in range(draw(st.integers(1, MAX_DEPTH + 20))):
                value = [value] if draw(st.booleans()) else {"k": value}
            container[key] = value
        elif action == "add" and isinstance(container[key], dict):
            container[key][draw(st.text(max_size=6))] = draw(json_values)
    return event, payload


# RT_VALIDATE_EXAMPLES=5000 for a longer hunt for disagreements
AGREEMENT = settings(
    max_examples=int(os.environ.get("RT_VALIDATE_EXAMPLES", "400")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip


def _assert_agree(event: str, payload) -> None:
    text = json.dumps(payload).encode()  # the stdlib writes deeper values than orjson does
    verdicts = {n: _validator(n).check(event, text) for n in ENGINE_NAMES}
    assert verdicts["fast"] == verdicts["reference"], (event, text[:300], verdicts)
    if verdicts["fast"] is None or verdicts["fast"].kind != "too_deep":
        issues = {n: _validator(n).issues(event, orjson.loads(text)) for n in ENGINE_NAMES}
        assert issues["fast"] == issues["reference"], (event, text[:300], issues)


@AGREEMENT
@given(mutated_payloads())
def test_engines_agree_on_mutated_payloads(case) -> None:
    _assert_agree(*case)


@AGREEMENT
@given(st.sampled_from(sorted(BASES)), json_values)
def test_engines_agree_on_random_json(event, payload) -> None:
    _assert_agree(event, payload)


@AGREEMENT
@given(odd_timestamps)
def test_engines_agree_on_odd_timestamps(ts) -> None:
    _assert_agree("postgres_changes", a_change(commit_timestamp=ts))


@st.composite
def batches_of_one_event(draw):
    """Payloads of one event, most as the server sends them, some mutated: what a recording holds."""
    event = draw(st.sampled_from(sorted(BASES)))
    payloads = [
        draw(mutated_payloads(event))[1] if draw(st.integers(0, 3)) == 0 else copy.deepcopy(draw(st.sampled_from(BASES[event])))
        for _ in range(draw(st.integers(1, 40)))
    ]  # fmt: skip
    return event, payloads


BATCH_SCHEMAS = {
    "builtin": SCHEMAS,
    "table": SchemaSet(
        SCHEMAS.events,
        {"public.orders": SchemaFile("public.orders", "test", record_schema("public.orders", parse_columns("id:int8:not null,note:text")))},
    ),
}  # fmt: skip
BATCH_CHECKS = {
    (label, n): (schemas.compile(ENGINES[n]), Router(schemas.events), schemas.all_valid([ENGINES[n]]))
    for label, schemas in BATCH_SCHEMAS.items()
    for n in ENGINE_NAMES
}


@AGREEMENT
@given(batches_of_one_event(), st.sampled_from(sorted(BATCH_SCHEMAS)))
def test_a_batch_is_judged_as_each_payload_alone_by_both_engines(batch, label) -> None:
    # the fast engine checks a chunk of one event in one call and explains only the payloads that fail
    event, payloads = batch
    texts = [json.dumps(p).encode() for p in payloads]
    found = {}
    for n in ENGINE_NAMES:
        checks, router, all_valid = BATCH_CHECKS[(label, n)]
        judged = judge([event] * len(texts), texts, {}, {n: checks}, router, all_valid=all_valid)
        alone = [judge([event], [t], {}, {n: checks}, router) for t in texts]
        assert judged.firsts[n] == [a.firsts[n][0] for a in alone]
        assert (judged.relation, judged.type) == ([a.relation[0] for a in alone], [a.type[0] for a in alone])
        found[n] = (judged.firsts[n], judged.relation, judged.type)
    assert found["fast"] == found["reference"], (event, texts)
    assert BATCH_CHECKS[(label, "fast")][2].keys() >= {event}  # the one-call path was taken


SHARED_COLUMNS = '{"data":{"columns":[{"name":"id","type":"int8"},{"name":"note","type":"text"}]'
TRICKY_COLUMN_TEXTS = [
    SHARED_COLUMNS + ',"commit_timestamp":"2026-11-24T08:00:00Z","schema":"public","table":"t","type":"INSERT","record":{"id":1}},"ids":[1]}',
    SHARED_COLUMNS + ',"columns":7},"ids":[1]}',  # a later key wins
    SHARED_COLUMNS + ',"\\u0063olumns":[]},"ids":[1]}',  # the same key, spelled with an escape
    SHARED_COLUMNS + ',"x":"\\u0000"},"data":{"columns":"\\u0000"}}',  # the hole's value, written by the payload
    SHARED_COLUMNS + '},"data":5}',  # a later data
    '{"data":{"columns":[{"name":"a]","type":"text"}],"type":"INSERT"},"ids":[1]}',  # "]" inside a name
    '{"data":{"columns":[1,2],"type":"INSERT"},"ids":[1]}',
    '{"data":{"columns":[]}}',
    '{"data":{"columns":[}}',
    '{"data":{"columns":[1]',
    '{"data":{"columns":[1]}',
    '{"data":{"columns":[1]x}',
    '{"data":{"columns":[' + "[" * 200 + "]" * 200 + "]}}",
    SHARED_COLUMNS + ',"record":' + "[" * 127 + "]" * 127 + "}}",  # 129 deep in all
    SHARED_COLUMNS + ',"record":' + "[" * 126 + "]" * 126 + "}}",  # 128 deep
    SHARED_COLUMNS + ',"record":' + "[" * 10_000 + "]" * 10_000 + "}}",
    SHARED_COLUMNS + ',"record":' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}}",
]


def _loaded(loads, text: bytes):
    try:
        return ("value", loads(text))
    except orjson.JSONDecodeError:
        return ("error", None)
    except _MaybeDeep:
        return ("deep", None)


@pytest.mark.parametrize("text", TRICKY_COLUMN_TEXTS)
def test_shared_columns_parse_exactly_as_a_whole_parse(text) -> None:
    sharing = _ColumnSharing()
    for blob in (text.encode(), SHARED_COLUMNS.encode() + b"}}", text.encode()):  # cold, another, remembered
        kind, value = _loaded(sharing.loads, blob)
        if kind == "deep":
            assert json_depth(blob) > MAX_DEPTH - 3 or blob.count(b"[") + blob.count(b"{") > MAX_DEPTH
        else:
            assert (kind, value) == _loaded(orjson.loads, blob), blob[:200]
    assert (json_depth(text) > MAX_DEPTH) <= (_loaded(sharing.loads, text.encode())[0] == "deep")


def test_changes_of_one_table_share_their_columns_and_are_judged_the_same() -> None:
    changes = [a_change(t) for t in ("INSERT", "UPDATE", "DELETE")] + [a_change("INSERT", record={})]
    texts = [orjson.dumps(p) for p in changes]  # compact, as the server writes them
    sharing = _ColumnSharing()
    first, second = sharing.loads(texts[0]), sharing.loads(texts[1])
    assert first["data"]["columns"] is second["data"]["columns"]
    assert [sharing.loads(t) for t in texts] == changes
    for n in ENGINE_NAMES:
        checks, router, all_valid = BATCH_CHECKS[("builtin", n)]
        judged = judge(["postgres_changes"] * 4, texts, {}, {n: checks}, router, all_valid=all_valid)
        assert judged.firsts[n][:3] == [None] * 3
        assert judged.firsts[n][3].pointer == "/data/record"


@AGREEMENT
@given(mutated_payloads(), st.integers(0, 3))
def test_shared_columns_never_change_a_verdict(case, cut) -> None:
    event, payload = case
    try:
        text = orjson.dumps(payload)
    except orjson.JSONEncodeError:  # nested past orjson's own limit
        return
    if cut:  # a torn frame: valid JSON no more
        text = text[: len(text) * cut // 4]
    sharing = _ColumnSharing()
    kind, value = _loaded(sharing.loads, text)
    if kind != "deep":
        assert (kind, value) == _loaded(orjson.loads, text)
    for n in ENGINE_NAMES:
        checks, router, all_valid = BATCH_CHECKS[("table", n)]
        shared = judge(["postgres_changes"] * 2, [text, text], {}, {n: checks}, router, all_valid=all_valid)
        alone = judge(["broadcast", "postgres_changes"], [b"{}", text], {}, {n: checks}, router)  # parsed whole
        assert shared.firsts[n] == [alone.firsts[n][1]] * 2


def test_the_rust_engine_gets_patterns_without_the_python_newline_guard() -> None:
    from analyzer.validate import _for_rust

    guard = "(?!\\n)$"
    schema = {"properties": {"a": {"pattern": "^a" + guard}, "b": {"pattern": "^a\\\\" + guard},
                             "c": {"pattern": "^a\\" + guard}, "d": {"pattern": "(?m)^a" + guard}},
              "const": {"pattern": "^a" + guard}}  # fmt: skip
    rust = _for_rust(schema)["properties"]
    assert [rust[k]["pattern"] for k in "abcd"] == ["^a$", "^a\\\\$", "^a\\" + guard, "(?m)^a" + guard]
    assert _for_rust(schema)["const"] == schema["const"]  # a value, not a schema
    for n in ENGINE_NAMES:
        check = ENGINES[n].compile({"pattern": "^a" + guard})
        assert [bool(x) for x in check(["a", "a\n", "a\n\n", "b"])] == [False, True, True, True]


def test_each_missing_property_is_one_issue() -> None:
    schema = {"type": "object", "required": ["a", "b", "c"], "dependentRequired": {"x": ["y", "z"]}}
    for n in ENGINE_NAMES:
        issues = ENGINES[n].compile(schema)([{"x": 1}])[0]
        assert sorted(i.pointer for i in issues) == ["/a", "/b", "/c", "/y", "/z"], n


TABLE_COLUMNS = parse_columns("id:int8:not null,total:numeric(10,2),note:text,tags:text[],meta:jsonb,paid:bool:not null")
TABLE_CHECKS = {n: ENGINES[n].compile(record_schema("public.orders", TABLE_COLUMNS)) for n in ENGINE_NAMES}


@AGREEMENT
@given(st.dictionaries(st.sampled_from(["id", "total", "note", "tags", "meta", "paid", "other"]),
                       json_values | special_values, max_size=7))  # fmt: skip
def test_engines_agree_on_records_against_a_table_schema(record) -> None:
    found = {n: sorted(set(TABLE_CHECKS[n]([record])[0]), key=Issue.sort_key) for n in ENGINE_NAMES}
    assert found["fast"] == found["reference"]


KEYWORD_SCHEMAS = [
    {"type": "object", "additionalProperties": False, "properties": {"a": {}}},
    {"type": "object", "unevaluatedProperties": False, "properties": {"a": {}}},
    {"propertyNames": {"pattern": "^[a-z]+$"}},
    {"dependentRequired": {"a": ["b", "c"]}},
    {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}, "uniqueItems": True},
    {"contains": {"const": 5}, "minContains": 2, "maxContains": 3},
    {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    {"oneOf": [{"minimum": 1}, {"maximum": 5}]},
    {"not": {"const": 3}},
    {"enum": [1, "a", None, [1], {"b": 2}]},
    {"minimum": 0, "exclusiveMaximum": 10, "multipleOf": 2},
    {"type": ["string", "null"], "minLength": 2, "maxLength": 4, "pattern": "^[a-c]+$"},
    {"$defs": {"n": {"type": "object", "additionalProperties": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"},
    {"properties": {"x": False, "y": True}, "patternProperties": {"^z": {"type": "integer"}}},
    {"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"maxProperties": 1}},
]


@AGREEMENT
@given(st.sampled_from(range(len(KEYWORD_SCHEMAS))), json_values | special_values)
def test_engines_agree_on_other_keywords_of_user_schemas(which, instance) -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **KEYWORD_SCHEMAS[which]}
    from analyzer.validate import _without_false

    schema = _without_false(schema)
    found = {n: sorted(set(ENGINES[n].compile(schema)([instance])[0]), key=Issue.sort_key) for n in ENGINE_NAMES}
    assert found["fast"] == found["reference"], (schema, instance)


def test_a_recursive_record_schema_at_the_depth_limit_works_in_both_engines() -> None:
    schema = {"$defs": {"n": {"type": "object", "additionalProperties": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}
    deep: object = "leaf"
    for _ in range(MAX_DEPTH - 1):
        deep = {"a": deep}
    found = {n: ENGINES[n].compile(schema)([deep])[0] for n in ENGINE_NAMES}
    assert found["fast"] == found["reference"]
    assert [i.message for i in found["fast"]] == ["expected object, got string"]


# ---- schema files ------------------------------------------------------------------------------------------

D = "https://json-schema.org/draft/2020-12/schema"


def test_every_builtin_schema_declares_draft_2020_12_and_is_loaded() -> None:
    files = sorted((ROOT / "analyzer" / "schemas").glob("*.json"))
    assert {f.stem for f in files} == {
        "postgres_changes", "postgres_changes.INSERT", "postgres_changes.UPDATE", "postgres_changes.DELETE",
        "broadcast", "presence_state", "presence_diff", "system", "phx_reply",
    }  # fmt: skip
    for f in files:
        assert json.loads(f.read_text())["$schema"] == D, f
    assert SCHEMAS.checked_events == ["broadcast", "phx_reply", "postgres_changes", "presence_diff",
                                      "presence_state", "system"]  # fmt: skip


BAD_SCHEMA_FILES = [
    ("public.orders.json", "{not json", "public.orders.json: not valid JSON: "),
    ("public.orders.json", "[1]", "public.orders.json: not a usable JSON Schema: expected an object, got array"),
    ("public.orders.json", json.dumps({"$schema": "http://json-schema.org/draft-07/schema#"}),
     "public.orders.json: declares $schema 'http://json-schema.org/draft-07/schema#'; rt-replay validates with draft 2020-12 only"),
    ("public.orders.json", json.dumps({"type": "objec"}),
     "public.orders.json: not a valid JSON Schema (draft 2020-12): 'objec' is not valid under any of the given schemas at '/type'"),
    ("public.orders.json", json.dumps({"properties": {"id": {"minLength": -1}}}),
     "public.orders.json: not a valid JSON Schema (draft 2020-12): -1 is less than the minimum of 0 at '/properties/id/minLength'"),
    ("public.orders.json", json.dumps({"pattern": "(?<name>x)"}),
     "public.orders.json: not a valid JSON Schema (draft 2020-12): '(?<name>x)' is not a 'regex' at '/pattern'"),
    ("public.orders.json", json.dumps({"pattern": "\\Z"}),
     "public.orders.json: the fast engine (jsonschema-rs"),
    ("public.orders.json", json.dumps({"$ref": "#/$defs/nope"}),
     "public.orders.json: the fast engine (jsonschema-rs"),
    ("public.orders.json", json.dumps({"$ref": "https://example.com/orders.json"}),
     "public.orders.json: the fast engine (jsonschema-rs"),
    ("public.orders.json", '{"not":' * 10_000 + "{}" + "}" * 10_000,
     f"public.orders.json: not a usable JSON Schema: nested more than {MAX_DEPTH} levels deep"),
    ("orders.json", "{}", "orders.json: cannot tell what this schema is for: name a record schema <schema>.<table>.json"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "message"), BAD_SCHEMA_FILES, ids=[m[:40] for _, _, m in BAD_SCHEMA_FILES])
def test_a_bad_schema_file_is_one_clear_config_error_naming_it(tmp_path, name, text, message) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        load_schemas(tmp_path)
    line = str(err.value)
    assert "\n" not in line and line.startswith(str(tmp_path)) and message in line, line


META_CASES = [
    {"type": "objec"}, {"properties": {"id": {"minLength": -1}}}, {"pattern": "(?<name>x)"},
    {"patternProperties": {"(?<n>x)": {}}}, {"items": [{"type": "string"}]}, {"required": "id"},
    {"$defs": {"a": {"type": 5}}}, {"prefixItems": {}}, {"dependentRequired": {"a": "b"}},
    {"pattern": "\\Z"}, {"$ref": "#/$defs/nope"}, {"unknown": {"type": "objec"}}, {"const": {"pattern": "("}},
    *(f.schema for f in SCHEMAS.events.values()),
    *KEYWORD_SCHEMAS,
]  # fmt: skip


@pytest.mark.parametrize("schema", META_CASES)
def test_the_quick_meta_schema_check_never_passes_what_jsonschema_refuses(schema) -> None:
    import jsonschema

    from analyzer.validate import _passes_meta_schema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        refused = False
    except jsonschema.SchemaError:
        refused = True
    assert not (refused and _passes_meta_schema(schema)), schema


def test_schema_dir_problems_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_schemas(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"no \*\.json schema files"):
        load_schemas(tmp_path)


def test_event_schema_files_replace_the_builtin_ones(tmp_path) -> None:
    (tmp_path / "broadcast.json").write_text(json.dumps({"$schema": D, "required": ["meta"]}))
    schemas = load_schemas(tmp_path)
    v = PayloadValidator(schemas, "reference")
    assert v.check("broadcast", '{"event":"x","payload":null,"type":"broadcast"}').pointer == "/meta"


def test_x_message_and_x_kind_annotations_work_through_refs_in_both_engines(tmp_path) -> None:
    schema = {
        "$schema": D, "$defs": {"money": {"type": "number", "minimum": 0,
                                          "x-message": {"minimum": "{instance} is negative"}, "x-kind": "bad_money"}},
        "properties": {"total": {"$ref": "#/$defs/money"}},
    }  # fmt: skip
    (tmp_path / "public.orders.json").write_text(json.dumps(schema))
    schemas = load_schemas(tmp_path)
    change = dumps(a_change(record={"id": 1, "total": -3}))
    for name in ENGINE_NAMES:
        issue = PayloadValidator(schemas, name).check("postgres_changes", change)
        assert (issue.pointer, issue.message, issue.kind) == ("/data/record/total", "-3 is negative", "bad_money")


# ---- record schemas from columns ---------------------------------------------------------------------------


def test_columns_spec_and_files_make_a_record_schema(tmp_path) -> None:
    cols = parse_columns("id:int8:not null, total:numeric(10,2), note:text:null, tags:_text, at:timestamptz")
    assert cols == [Column("id", "int8", False), Column("total", "numeric(10,2)"), Column("note", "text"),
                    Column("tags", "_text"), Column("at", "timestamptz")]  # fmt: skip
    schema = record_schema("public.orders", cols)
    assert schema["$schema"] == D and schema["required"] == ["id", "total", "note", "tags", "at"]
    assert schema["properties"]["id"] == {"type": "integer", "description": "int8 not null"}
    assert schema["properties"]["total"]["type"] == ["number", "null"]
    assert schema["properties"]["tags"] == {"type": ["array", "null"], "items": {"type": "string"}, "description": "_text"}
    assert record_schema("public.orders", cols, required="not-null")["required"] == ["id"]
    csv_file = tmp_path / "cols.csv"
    csv_file.write_text("column_name,udt_name,is_nullable\nid,int8,NO\nnote,text,YES\n")
    assert read_columns_file(csv_file) == [Column("id", "int8", False), Column("note", "text", True)]
    json_file = tmp_path / "cols.json"
    json_file.write_text(json.dumps([{"name": "id", "type": "uuid", "nullable": False}]))
    assert read_columns_file(json_file) == [Column("id", "uuid", False)]
    path = write_record_schema("public.orders", schema, tmp_path / "schemas")
    assert path == tmp_path / "schemas" / "public.orders.json" and json.loads(path.read_text()) == schema
    assert load_schemas(tmp_path / "schemas").tables["public.orders"].schema == schema
    for bad in ("id", "id:int8:maybe", "", ":int8"):
        with pytest.raises(ConfigError):
            parse_columns(bad)


# ---- the run over a store ---------------------------------------------------------------------------------


def test_validate_store_writes_verdicts_beside_the_recording_and_replaces_them(tmp_path) -> None:
    rows = [
        a_row(1, dumps(a_change())),
        a_row(2, dumps(a_change("UPDATE", record={}))),
        a_row(3, "{}", event="phx_join", direction="out"),
        a_row(4, dumps({"event": "x", "payload": None, "type": "broadcast"}), event="broadcast"),
        a_row(5, None, event=None, kind="close", close_code=1000),
        a_row(6, '{"data":' * 10_000, event="postgres_changes"),
        a_row(7, None, event=None, decode_error="binary frame too short"),
        a_row(8, "{}", event="phx_close"),
    ]
    store = a_store(tmp_path / "store", rows)
    before = store_digest(store)
    first = validate_store(store, failures=3)
    assert (first.frames, first.checked, first.valid, first.invalid, first.skipped) == (8, 5, 1, 4, 3)
    assert first.exit_code == 1
    assert [(f.seq, f.error_path, f.error_kind) for f in first.failures] == [
        (2, "/data/record", "empty"), (4, "/payload", "null"), (6, "", "too_deep"),
    ]  # fmt: skip
    assert first.by_event() == [
        {"event": None, "relation": None, "checked": 1, "valid": 0, "invalid": 1},
        {"event": "broadcast", "relation": None, "checked": 1, "valid": 0, "invalid": 1},
        {"event": "postgres_changes", "relation": None, "checked": 1, "valid": 0, "invalid": 1},
        {"event": "postgres_changes", "relation": "public.orders", "checked": 2, "valid": 1, "invalid": 1},
    ]
    verdicts = store / "verdicts"
    assert [p.name for p in verdicts.iterdir()] == ["verdicts.parquet"]
    con = duckdb.connect()
    con.execute(verdicts_sql(store))
    got = con.execute("SELECT seq, valid, error_path, error_kind, relation, type, engine, run FROM verdicts ORDER BY seq").fetchall()
    assert got == [
        (1, True, None, None, "public.orders", "INSERT", "fast", first.run),
        (2, False, "/data/record", "empty", "public.orders", "UPDATE", "fast", first.run),
        (4, False, "/payload", "null", None, None, "fast", first.run),
        (6, False, "", "too_deep", None, None, "fast", first.run),
        (7, False, "", "undecodable", None, None, "fast", first.run),
    ]
    assert con.execute("DESCRIBE verdicts").fetchall()[0][:2] == ("session_id", "VARCHAR")
    second = validate_store(store, engine="reference")
    assert second.run != first.run and [p.name for p in verdicts.iterdir()] == ["verdicts.parquet"]
    assert con.execute("SELECT DISTINCT run, engine FROM verdicts").fetchall() == [(second.run, "reference")]
    assert store_digest(store) == before
    assert validate_store(store, write=False).verdicts is None


def test_workers_and_engines_write_the_same_verdicts(tmp_path) -> None:
    bad = [dumps(a_change("UPDATE", record={})), dumps(a_change(commit_timestamp=None)), '{"data":' * 300, "{",
           dumps(a_change(type="TRUNCATE")), dumps(a_change(**{"": 1})), dumps({"event": "x", "payload": None})]  # fmt: skip
    good = [dumps(a_change()), dumps(a_change("UPDATE")), dumps(a_change("DELETE"))]
    rows = [a_row(seq, bad[seq // 7 % len(bad)] if seq % 7 == 3 else good[seq % 3]) for seq in range(400)]
    rows[50] = a_row(50, dumps({"event": "x", "payload": {"a": 1}, "type": "broadcast"}), event="broadcast")
    rows[60] = a_row(60, None, event=None, decode_error="binary frame too short")
    store = a_store(tmp_path / "store", rows)
    tables, results = {}, {}
    for label, engine, workers in (("fast", "fast", 1), ("fast x2", "fast", 2), ("reference", "reference", 1)):
        results[label] = validate_store(store, engine=engine, workers=workers, failures=50, run="r")
        tables[label] = pq.read_table(store / "verdicts" / "verdicts.parquet").drop_columns(["engine"])
    assert tables["fast"].equals(tables["fast x2"]) and tables["fast"].equals(tables["reference"])
    first = results["fast"]
    assert (first.checked, first.invalid) == (400, 50)  # an empty key in data is allowed
    for other in ("fast x2", "reference"):
        assert results[other].counts == first.counts
        assert [f.as_dict() for f in results[other].failures] == [f.as_dict() for f in first.failures]


def test_verdicts_view_is_empty_with_its_columns_before_any_run(tmp_path) -> None:
    store = a_store(tmp_path / "store", [a_row(1, "{}", event="phx_close")])
    con = duckdb.connect()
    con.execute(verdicts_sql(store))
    assert [r[0] for r in con.execute("DESCRIBE verdicts").fetchall()] == VERDICTS_SCHEMA.names
    assert con.execute("SELECT count(*) FROM verdicts").fetchone() == (0,)


def test_bad_stores_are_store_errors(tmp_path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        validate_store(tmp_path / "nope")
    open_store(tmp_path / "empty", create=True)
    with pytest.raises(StoreError, match="no recorded sessions to validate"):
        validate_store(tmp_path / "empty")
    with pytest.raises(ConfigError, match="unknown engine 'turbo'; engines: fast, reference, both"):
        validate_store(tmp_path / "empty", engine="turbo")


def test_a_record_schema_from_the_schema_command_is_applied(tmp_path) -> None:
    assert replay_cli("schema", "--table", "public.orders", "--columns", "id:int8:not null,note:text",
                      "--schema", str(tmp_path / "schemas")).returncode == 0  # fmt: skip
    store = a_store(tmp_path / "store", [
        a_row(1, dumps(a_change(record={"id": 1, "note": None}))),
        a_row(2, dumps(a_change(record={"id": "1", "note": "x"}))),
        a_row(3, dumps(a_change(record={"note": "x"}))),
        a_row(4, dumps(a_change(table="other", record={"x": 1}))),
        a_row(5, dumps(a_change("DELETE"))),
    ])  # fmt: skip
    result = validate_store(store, tmp_path / "schemas", engine="both")
    assert result.disagreements == 0 and result.table_schemas == ["public.orders"]
    assert [(f.seq, f.error_path, f.error) for f in result.failures] == [
        (2, "/data/record/id", "expected integer, got string"), (3, "/data/record/id", "missing"),
    ]  # fmt: skip


# ---- the command ---------------------------------------------------------------------------------------------


def replay_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.replay_cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


JWT = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'role': 'anon', 'exp': 2079000000})}.ValidateSig_0123456789"


def record_session(store: Path, script) -> None:
    """The official client (realtime 2.34) through ``rt-record proxy`` to the mock server; ``script(server)``
    pushes frames once the channel is joined. The client listens to postgres_changes of public.orders."""
    from realtime import AsyncRealtimeClient

    from recorder.mockserver import MockRealtimeServer
    from recorder.proxy import run_proxy

    async def body():
        async with MockRealtimeServer() as server:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            proxy = asyncio.create_task(run_proxy("127.0.0.1:0", server.url, str(store), stop=stop,
                                                  ready=ready.set_result, say=lambda line: None))  # fmt: skip
            await asyncio.wait({ready, proxy}, return_when=asyncio.FIRST_COMPLETED)
            client = AsyncRealtimeClient(ready.result() + "/realtime/v1", token=JWT, auto_reconnect=False)
            await client.connect()
            got: list = []
            channel = client.channel("room1")
            channel.on_postgres_changes("*", schema="public", table="orders", callback=got.append)
            channel.on_broadcast("*", callback=got.append)
            await channel.subscribe()
            await server.wait_joined("room1")
            await script(server)
            await asyncio.sleep(0.3)  # the frames cross the proxy to the client
            await client.close()
            await server.wait_closed()
            stop.set()
            await proxy

    asyncio.run(asyncio.wait_for(body(), 30))


async def _mixed_traffic(server) -> None:
    await server.insert("orders", {"id": 1, "note": "paid"})
    await server.update("orders", {}, old_record={"id": 1})  # record {}: invalid
    await server.insert("orders", {}, commit_timestamp=None, columns=[], errors=["Error 401: Unauthorized"])
    await server.insert("orders", {"id": 2, "note": "new"})
    await server.delete("orders", {"id": 2})
    await server.broadcast("room1", "cursor", {"x": 1})
    await server.broadcast("room1", "cursor", None)  # inner payload null: invalid
    await server.system("room1", "Replication connection established", channel=None)  # no channel: invalid
    await server.system("room1", "Server requested disconnect", channel=None)  # valid without channel


async def _valid_traffic(server) -> None:
    await server.insert("orders", {"id": 1, "note": "paid"})
    await server.broadcast("room1", "cursor", {"x": 1})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("recorded") / "store"
    record_session(store, _mixed_traffic)
    return store


def _frames(store: Path, where: str) -> list[tuple]:
    con = duckdb.connect()
    return con.execute(
        f"SELECT session_id, seq, event, payload FROM read_parquet('{store}/frames/*/*.parquet') WHERE {where} ORDER BY seq"
    ).fetchall()


def test_cli_on_a_recording_of_the_official_client_exit_1_exact_counts_and_failures(recorded) -> None:
    store = recorded
    before = store_digest(store)
    checked_frames = _frames(store, "direction = 'in' AND kind IN ('text', 'binary')")
    proc = replay_cli("validate", "--store", str(store), "--format", "json", "--engine", "both")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    total = len(_frames(store, "true"))
    assert (out["checked"], out["valid"], out["invalid"], out["disagreements"], out["skipped"]) == (
        len(checked_frames), len(checked_frames) - 4, 4, 0, total - len(checked_frames),
    )  # fmt: skip
    (session,) = {row[0] for row in checked_frames}
    seq_of = {}
    for _, seq, event, payload in checked_frames:
        data = json.loads(payload)
        if event == "postgres_changes" and data["data"]["type"] == "UPDATE":
            seq_of["update"] = seq
        elif event == "postgres_changes" and data["data"]["errors"]:
            seq_of["401"] = seq
        elif event == "broadcast" and data["payload"] is None:
            seq_of["broadcast"] = seq
        elif event == "system" and "channel" not in data and data["message"] != "Server requested disconnect":
            seq_of["system"] = seq
    assert [(f["session_id"], f["seq"], f["error_path"], f["error_kind"]) for f in out["failures"]] == [
        (session, seq_of["update"], "/data/record", "empty"),
        (session, seq_of["401"], "/data/errors", "server_error"),
        (session, seq_of["broadcast"], "/payload", "null"),
        (session, seq_of["system"], "/channel", "missing"),
    ]
    pc_row = [r for r in out["by_event"] if r["event"] == "postgres_changes"]
    assert pc_row == [{"event": "postgres_changes", "relation": "public.orders", "checked": 5, "valid": 3, "invalid": 2}]
    bc_row = [r for r in out["by_event"] if r["event"] == "broadcast"]
    assert bc_row == [{"event": "broadcast", "relation": None, "checked": 2, "valid": 1, "invalid": 1}]
    # text output: the counts table and the failures with session and seq
    text = replay_cli("validate", "--store", str(store))
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"checked {out['checked']} payloads with jsonschema-rs ")
    assert lines[0].endswith(f": {out['valid']} valid, 4 invalid, {out['skipped']} frames skipped")
    assert any(line.split() == ["postgres_changes", "public.orders", "5", "3", "2"] for line in lines), text.stdout
    assert f"  session {session} seq {seq_of['update']} postgres_changes public.orders /data/record: empty object: " \
           "UPDATE must carry the new row" in lines  # fmt: skip
    assert lines[-1].startswith(f"verdicts: {store}/verdicts/verdicts.parquet (run ")
    # verdicts queryable, through the analyzer's connection too; the recording untouched
    con = duckdb.connect()
    con.execute(verdicts_sql(store))
    assert con.execute("SELECT count(*), count(*) FILTER (NOT valid) FROM verdicts").fetchone() == (out["checked"], 4)
    from analyzer import connect

    acon = connect(store)
    try:
        assert acon.execute("SELECT count(*) FROM verdicts WHERE NOT valid").fetchone() == (4,)
    finally:
        acon.close()
    assert store_digest(store) == before
    assert not [p for p in (store / "verdicts").iterdir() if p.name != "verdicts.parquet"]


def test_cli_exit_0_when_every_payload_is_valid(tmp_path) -> None:
    store = tmp_path / "store"
    record_session(store, _valid_traffic)
    proc = replay_cli("validate", "--store", str(store), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["invalid"] == 0 and out["valid"] == out["checked"] >= 5 and out["failures"] == []


def test_cli_bad_inputs_are_one_line_and_exit_2(tmp_path, recorded) -> None:
    open_store(tmp_path / "empty", create=True)
    (tmp_path / "badschemas").mkdir()
    (tmp_path / "badschemas" / "public.orders.json").write_text('{"type": "objec"}')
    cases = [
        (["--store", str(tmp_path / "nope")], "no such store"),
        (["--store", str(tmp_path / "empty")], "no recorded sessions to validate"),
        (["--store", str(recorded), "--schema", str(tmp_path / "missing")], "does not exist"),
        (["--store", str(recorded), "--schema", str(tmp_path / "badschemas")],
         "public.orders.json: not a valid JSON Schema (draft 2020-12)"),
        (["--store", str(recorded), "--engine", "turbo"], "--engine 'turbo': expected one of fast, reference, both"),
        (["--store", str(recorded), "--format", "xml"], "Invalid value for '--format'"),
    ]  # fmt: skip
    for args, message in cases:
        proc = replay_cli("validate", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rt-replay: error: ") and message in lines[0], proc.stderr
        assert proc.stdout == ""
    proc = replay_cli("schema", "--table", "orders", "--columns", "id:int8")
    assert proc.returncode == 2 and "--table 'orders': expected <schema>.<table>" in proc.stderr


def test_cli_exit_3_when_an_engine_disagrees(recorded, monkeypatch, capsys) -> None:
    """A fake engine, added through the registry: the reference except that it accepts broadcasts."""
    reference = ENGINES["reference"]

    def lenient(schema: dict):
        check = reference.compile(schema)
        if schema.get("title", "").startswith("broadcast"):
            return lambda payloads: [[] for _ in payloads]
        return check

    monkeypatch.setitem(ENGINES, "fast", Engine("fast", "lenient 0.1", lenient))
    with pytest.raises(SystemExit) as exit_:
        replay_main(["validate", "--store", str(recorded), "--engine", "both", "--format", "json", "--no-write"])
    assert exit_.value.code == 3
    out = json.loads(capsys.readouterr().out)
    assert out["disagreements"] == 1 and out["engines"]["fast"] == "lenient 0.1"
    (d,) = out["disagreeing"]
    assert d["event"] == "broadcast" and d["fast"] == {"valid": True}
    assert d["reference"]["error_path"] == "/payload"
    assert not (recorded / "verdicts" / ".tmp").exists()


def test_help_has_a_real_example() -> None:
    proc = replay_cli("validate", "--help")
    assert proc.returncode == 0 and "rt-replay validate --store ./store" in proc.stdout
    proc = replay_cli("schema", "--help")
    assert "rt-replay schema --table public.orders --columns" in proc.stdout
