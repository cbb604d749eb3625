"""``rt-replay serve``: sessions of a store replayed to the official client (realtime 2.34) and to plain
websockets clients on 127.0.0.1 port 0, at max speed and at 1x/10x, with seeded faults; bad inputs.

Two kinds of recordings: one made for real (the official client recorded through ``rt-record
proxy`` while the mock server pushed changes and broadcasts, built once per module), and small
sessions written straight into a store with exact offsets (:func:`a_session`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from recorder.codec import CAPTURE_SCHEMA, IN, OUT, V1, V2, Frame, decode, encode
from recorder.errors import ConfigError, InputError, StoreError
from recorder.mockserver import MockRealtimeServer, binding_id
from recorder.proxy import run_proxy
from recorder.replay import (
    FAULTS,
    ReplayHub,
    ReplayServer,
    list_sessions,
    load_recording,
    parse_fault,
    parse_speed,
    plan_replay,
)
from recorder.store import StoreWriter, open_store
from tests.support import Collector, a_jwt, run

ROOT = Path(__file__).resolve().parents[1]
SUBSCRIBED = RealtimeSubscribeStates.SUBSCRIBED
CHANNEL_ERROR = RealtimeSubscribeStates.CHANNEL_ERROR
ORDERS = {"event": "*", "schema": "public", "table": "orders"}
ORDERS_ID = binding_id(ORDERS)
TS = "2026-11-24T08:00:00.000Z"
START_US = 1_795_000_000_000_000  # 2026-11-18T..., any fixed instant


# ---- builders --------------------------------------------------------------------------------------------


def a_change(i: int, type: str = "INSERT", topic: str = "realtime:orders") -> str:
    """A postgres_changes frame as the server sends it (vsn 1.0.0) for row ``i``."""
    data: dict = {"columns": [{"name": "id", "type": "int8"}], "commit_timestamp": TS, "errors": None}
    if type != "INSERT":
        data["old_record"] = {"id": i}
    if type != "DELETE":
        data["record"] = {"id": i, "note": f"row {i}"}
    data.update(schema="public", table="orders", type=type)
    return encode(Frame(topic, "postgres_changes", {"data": data, "ids": [ORDERS_ID]}))


def a_broadcast(i: int, topic: str = "realtime:room1") -> str:
    return encode(Frame(topic, "broadcast", {"event": "tick", "payload": {"n": i}, "type": "broadcast"}))


def a_join(topic: str = "realtime:orders", bindings: list | None = None, ref: str = "1", vsn: str = V1) -> str:
    payload = {
        "config": {
            "broadcast": {"ack": False, "self": False},
            "presence": {"key": "", "enabled": False},
            "private": False,
            "postgres_changes": [ORDERS] if bindings is None else bindings,
        },
        "access_token": "[REDACTED]",
    }
    return encode(Frame(topic, "phx_join", payload, ref, ref), vsn=vsn, direction=OUT)


def a_reply(topic: str = "realtime:orders", bindings: list | None = None, ref: str = "1", status: str = "ok",
            response: dict | None = None) -> str:
    if response is None:
        bound = [ORDERS] if bindings is None else bindings
        response = {"postgres_changes": [dict(sorted({**b, "id": binding_id(b)}.items())) for b in bound]}
    return encode(Frame(topic, "phx_reply", {"response": response, "status": status}, ref))


def orders_session(count: int = 10, gap: float = 0.1) -> list[tuple[float, str, str | bytes]]:
    """Join realtime:orders, its reply at 0.01 s, then ``count`` changes ``gap`` apart."""
    rows: list[tuple[float, str, str | bytes]] = [(0.0, OUT, a_join()), (0.01, IN, a_reply())]
    rows += [(0.01 + gap * (i + 1), IN, a_change(i)) for i in range(count)]
    return rows


def a_session(store: Path, rows: list[tuple[float, str, str | bytes]], session_id: str = "s1",
              start_us: int = START_US, vsn: str = V1) -> Path:
    """Write one recorded session into ``store``: (offset seconds, direction, frame) rows."""
    n = len(rows)
    table = pa.table(
        {
            "ts": pa.array([start_us + round(off * 1e6) for off, _, _ in rows], pa.int64()).cast(
                CAPTURE_SCHEMA.field("ts").type
            ),
            "session_id": [session_id] * n,
            "seq": list(range(n)),
            "direction": [d for _, d, _ in rows],
            "kind": ["text" if isinstance(f, str) else "binary" for _, _, f in rows],
            "vsn": [vsn] * n,
            "raw": pa.array([f.encode() if isinstance(f, str) else f for _, _, f in rows], pa.binary()),
            "close_code": pa.array([None] * n, pa.int32()),
            "info": pa.array([None] * n, pa.string()),
            "source": ["import"] * n,
        },
        schema=CAPTURE_SCHEMA,
    )
    with StoreWriter(store, f"test-{session_id}") as writer:
        writer.append("frames_capture", table)
    return store


def recording_of(tmp_path: Path, rows=None, **kwargs):
    return load_recording(a_session(tmp_path / "store", rows or orders_session(), **kwargs))


async def official_client(server: ReplayServer, **kwargs) -> AsyncRealtimeClient:
    client = AsyncRealtimeClient(server.url, token=a_jwt(), **kwargs)
    await client.connect()
    return client


async def subscribe_orders(client: AsyncRealtimeClient, states: Collector | None = None) -> Collector:
    changes = Collector()
    channel = client.channel("orders")
    channel.on_postgres_changes("*", schema="public", table="orders", callback=changes)
    await channel.subscribe(states)
    return changes


def records(payloads: list) -> list:
    return [p["data"].get("record", p["data"].get("old_record")) for p in payloads]


# ---- a real recording: the official client through rt-record proxy ------------------------------------------

CHANGE_OFFSETS = [0.0, 0.15, 0.3, 0.5, 0.7, 0.95, 1.2, 1.5]  # seconds after the first change


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict:
    """Record the official client subscribed to orders (postgres_changes) and room1 (broadcast)."""
    store = tmp_path_factory.mktemp("recorded") / "store"

    async def body() -> dict:
        async with MockRealtimeServer() as upstream:
            stop, urls = asyncio.Event(), []
            proxy = asyncio.create_task(run_proxy("127.0.0.1:0", upstream.url, str(store), stop=stop, ready=urls.append))
            while not urls:
                await asyncio.sleep(0.01)
            client = AsyncRealtimeClient(urls[0] + "/realtime/v1", token=a_jwt())
            await client.connect()
            changes, broadcasts = Collector(), Collector()
            orders = client.channel("orders")
            orders.on_postgres_changes("*", schema="public", table="orders", callback=changes)
            await orders.subscribe()
            room = client.channel("room1")
            room.on_broadcast("tick", broadcasts)
            await room.subscribe()
            await upstream.wait_joined("orders")
            await upstream.wait_joined("room1")
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i, offset in enumerate(CHANGE_OFFSETS):
                await asyncio.sleep(max(0.0, start + offset - loop.time()))
                kind = ("INSERT", "UPDATE", "DELETE")[i % 3]
                if kind == "INSERT":
                    await upstream.insert("orders", {"id": i, "status": "new"}, commit_timestamp=TS)
                elif kind == "UPDATE":
                    await upstream.update("orders", {"id": i, "status": "paid"}, {"id": i}, commit_timestamp=TS)
                else:
                    await upstream.delete("orders", {"id": i}, commit_timestamp=TS)
                if i % 2:
                    await upstream.broadcast("room1", "tick", {"n": i})
            await changes.wait(len(CHANGE_OFFSETS))
            await broadcasts.wait(len(CHANGE_OFFSETS) // 2)
            await client.close()
            await asyncio.sleep(0.1)
            stop.set()
            await proxy
            return {"store": store, "changes": list(changes.items), "broadcasts": list(broadcasts.items)}

    return run(body(), timeout=30)


def test_recorded_session_is_chosen_and_grouped_per_topic(recorded) -> None:
    sessions = list_sessions(recorded["store"])
    assert len(sessions) == 1
    rec = load_recording(recorded["store"])
    assert rec.session.session_id == sessions[0].session_id
    assert rec.why == "the only session in the store"
    assert sorted(rec.topics) == ["realtime:orders", "realtime:room1"]
    orders = rec.topics["realtime:orders"]
    assert [p.event for p in orders.pushes] == ["system"] + ["postgres_changes"] * len(CHANGE_OFFSETS)
    assert orders.bindings == [ORDERS]
    assert [p.event for p in rec.topics["realtime:room1"].pushes] == ["broadcast"] * (len(CHANGE_OFFSETS) // 2)
    changes = [p.offset for p in orders.pushes[1:]]
    assert changes == sorted(changes)
    # offsets follow the recorded spacing (the first change came right after the joins)
    spacing = [b - a for a, b in zip(changes, changes[1:], strict=False)]
    expected = [b - a for a, b in zip(CHANGE_OFFSETS, CHANGE_OFFSETS[1:], strict=False)]
    assert all(abs(s - e) < 0.05 for s, e in zip(spacing, expected, strict=True)), spacing


def test_official_client_gets_the_recorded_payloads_in_order_at_max_speed(recorded) -> None:
    async def body():
        rec = load_recording(recorded["store"])
        async with ReplayServer(rec, speed=math.inf) as server:
            client = await official_client(server)
            states = Collector()
            changes = await subscribe_orders(client, states)
            broadcasts = Collector()
            room = client.channel("room1")
            room.on_broadcast("tick", broadcasts)
            await room.subscribe()
            assert states.items == [(SUBSCRIBED, None)]
            await changes.wait(len(recorded["changes"]))
            await broadcasts.wait(len(recorded["broadcasts"]))
            assert changes.items == recorded["changes"]
            assert broadcasts.items == recorded["broadcasts"]
            assert changes.times[-1] - changes.times[0] < 0.3  # no 1.5 s of spacing at max speed
            await client.close()
        assert server.stats.total("sent") == len(recorded["changes"]) + len(recorded["broadcasts"]) + 1

    run(body())


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_official_client_gets_the_recorded_spacing_at_1x_and_scaled_at_10x(recorded, speed: float) -> None:
    rec = load_recording(recorded["store"])
    offsets = [p.offset for p in rec.topics["realtime:orders"].pushes if p.event == "postgres_changes"]

    async def body():
        async with ReplayServer(rec, speed=speed) as server:
            client = await official_client(server)
            changes = await subscribe_orders(client)
            joined = time.monotonic()
            await changes.wait(len(offsets), timeout=5)
            assert changes.items == recorded["changes"]
            await client.close()
        return [t - joined for t in changes.times]

    arrived = run(body())
    # each change arrives at its recorded offset / speed after the join (+ the join's round trip)
    # (the bounds leave room for a loaded 2-core machine; unpaced frames would spread by the
    # whole recording: 1.5 s at 1x, 0.15 s at 10x; the benchmark measures the real drift)
    errors = [a - o / speed for a, o in zip(arrived, offsets, strict=True)]
    assert max(errors) - min(errors) < 0.08, errors
    assert -0.01 < min(errors) < 0.1, errors
    if speed == 10.0:
        assert arrived[-1] < offsets[-1] / 5


def test_join_reply_takes_the_clients_refs_and_vsn_and_recorded_bytes_go_out_unchanged(tmp_path) -> None:
    rec = recording_of(tmp_path, orders_session(count=3, gap=0.01))

    async def body():
        async with ReplayServer(rec, speed=math.inf) as server:
            # vsn 1.0.0 with the recorded ref: the recorded bytes, all of them
            async with connect(server.url + "/websocket?vsn=1.0.0") as ws:
                await ws.send(a_join())
                got = [await ws.recv() for _ in range(4)]
                assert got == [a_reply()] + [a_change(i) for i in range(3)]
            # vsn 1.0.0, another ref: the reply carries the client's ref
            async with connect(server.url + "/websocket") as ws:
                await ws.send(a_join(ref="7"))
                assert await ws.recv() == a_reply(ref="7")
                assert await ws.recv() == a_change(0)
            # vsn 2.0.0: arrays with the client's join_ref and ref; the heartbeat is answered live
            async with connect(server.url + "/websocket?vsn=2.0.0") as ws:
                await ws.send(a_join(ref="3", vsn=V2))
                reply = decode(await ws.recv(), vsn=V2).frame
                assert (reply.join_ref, reply.ref, reply.event) == ("3", "3", "phx_reply")
                assert reply.payload == decode(a_reply()).frame.payload
                pushes = [decode(await ws.recv(), vsn=V2).frame for _ in range(3)]
                assert [p.payload for p in pushes] == [decode(a_change(i)).frame.payload for i in range(3)]
                assert all(p.ref is None and p.join_ref is None for p in pushes)
                await ws.send('[null,"9","phoenix","heartbeat",{}]')
                assert await ws.recv() == '[null,"9","phoenix","phx_reply",{"response":{},"status":"ok"}]'

    run(body())


def test_a_vsn2_recording_with_binary_broadcasts_plays_to_vsn1_and_vsn2_clients(tmp_path) -> None:
    topic = "realtime:room1"
    kind4 = [encode(Frame(topic, "broadcast", {"type": "broadcast", "event": "tick", "payload": {"n": i}}),
                    vsn=V2, binary=True) for i in range(3)]
    raw_bytes = encode(Frame(topic, "broadcast", {"type": "broadcast", "event": "blob", "payload": b"\x00\x01"}),
                       vsn=V2, binary=True)
    reply = encode(Frame(topic, "phx_reply", {"response": {"postgres_changes": []}, "status": "ok"}, "1", "1"), vsn=V2)
    rows = [(0.0, OUT, a_join(topic, bindings=[], vsn=V2)), (0.01, IN, reply), (0.02, IN, kind4[0]),
            (0.03, IN, raw_bytes), (0.04, IN, kind4[1]), (0.05, IN, kind4[2])]
    rec = recording_of(tmp_path, rows, vsn=V2)
    assert [type(p.data) for p in rec.topics[topic].pushes] == [bytes] * 4

    async def body():
        async with ReplayServer(rec, speed=math.inf) as server:
            async with connect(server.url + "/websocket?vsn=2.0.0") as ws:  # the recorded bytes
                await ws.send(a_join(topic, bindings=[], vsn=V2))
                assert await ws.recv() == reply
                assert [await ws.recv() for _ in range(4)] == [kind4[0], raw_bytes, kind4[1], kind4[2]]
            client = await official_client(server)  # vsn 1.0.0: JSON broadcasts, the raw one left out
            ticks = Collector()
            room = client.channel("room1")
            room.on_broadcast("*", ticks)
            await room.subscribe()
            await ticks.wait(3)
            assert ticks.items == [{"event": "tick", "payload": {"n": i}} for i in range(3)]
            await client.close()
            await asyncio.sleep(0.05)
        assert server.stats.connections[1].undeliverable == 1

    run(body())


def test_recorded_refusals_and_unanswered_joins_replay_as_recorded(tmp_path) -> None:
    refused = "ClientJoinRateLimitReached: Too many joins per second"
    rows = [(0.0, OUT, a_join()), (0.01, IN, a_reply(status="error", response={"reason": refused})),
            (0.0, OUT, a_join("realtime:room1", bindings=[], ref="2"))]  # never answered
    rec = recording_of(tmp_path, rows)

    async def body():
        async with ReplayServer(rec, speed=math.inf) as server:
            client = await official_client(server, timeout=1)
            states = Collector()
            await subscribe_orders(client, states)
            assert states.items[0][0] == CHANNEL_ERROR and refused in str(states.items[0][1])
            room = Collector()
            await client.channel("room1").subscribe(room)
            assert room.items == [(RealtimeSubscribeStates.TIMED_OUT, None)]
            await client.close()
            with pytest.raises(InvalidStatus) as err:
                async with connect(server.url.removesuffix("/realtime/v1") + "/elsewhere"):
                    pass
            assert err.value.response.status_code == 404

    run(body())


def test_multiple_clients_each_get_their_own_replay(tmp_path) -> None:
    rec = recording_of(tmp_path, orders_session(count=5, gap=0.05))

    async def body():
        async with ReplayServer(rec, speed=2.0) as server:
            first = await official_client(server)
            a = await subscribe_orders(first)
            await a.wait(2)
            second = await official_client(server)
            b = await subscribe_orders(second)
            await a.wait(5)
            await b.wait(5)
            assert records(a.items) == records(b.items) == [{"id": i, "note": f"row {i}"} for i in range(5)]
            await first.close()
            await second.close()

    run(body())


# ---- faults ---------------------------------------------------------------------------------------------


def test_fault_plans_are_reproducible_for_a_seed(tmp_path) -> None:
    rec = recording_of(tmp_path, orders_session(count=200, gap=0.001))
    faults = [parse_fault("drop=0.1"), parse_fault("duplicate=0.05"), parse_fault("corrupt=0.05")]

    def shape(plan):
        return [(item.push.offset, item.drop, item.copy, item.corrupt) for item in plan["realtime:orders"]]

    first, again, other = (shape(plan_replay(rec, faults, seed)) for seed in (42, 42, 43))
    assert first == again
    assert first != other
    dropped = sum(1 for _, drop, _, _ in first if drop)
    copies = sum(1 for _, _, copy, _ in first if copy)
    corrupted = sum(1 for *_, c in first if c)
    assert 5 <= dropped <= 40 and 1 <= copies <= 25 and 1 <= corrupted <= 25
    assert {c for *_, c in first if c} <= {"json", "null", "missing"}


def test_drop_and_duplicate_counts_repeat_with_the_same_seed(tmp_path) -> None:
    rec = recording_of(tmp_path, orders_session(count=60, gap=0.001))
    faults = [parse_fault("drop=0.2"), parse_fault("duplicate=0.2")]

    async def replay(seed: int):
        async with ReplayServer(rec, speed=math.inf, faults=faults, seed=seed) as server:
            client = await official_client(server)
            changes = await subscribe_orders(client)
            expected = sum(1 for i in plan_replay(rec, faults, seed)["realtime:orders"] if not i.drop)
            await changes.wait(expected)
            await asyncio.sleep(0.05)
            await client.close()
        stats = server.stats
        return [r["id"] for r in records(changes.items)], stats.total("dropped"), stats.total("duplicated")

    first, again, other = run(replay(5)), run(replay(5)), run(replay(6))
    assert first == again
    assert first != other
    ids, dropped, duplicated = first
    assert dropped > 0 and duplicated > 0
    assert len(ids) == 60 - dropped + duplicated
    assert len(set(ids)) == 60 - dropped


def test_corrupt_frames_make_the_client_log_unrecognized_and_it_keeps_working(tmp_path, caplog) -> None:
    rows = orders_session(count=20, gap=0.002)
    rows += [(0.0, OUT, a_join("realtime:room1", bindings=[], ref="2")),
             (0.02, IN, a_reply("realtime:room1", bindings=[], ref="2"))]
    rows += [(0.03 + 0.002 * i, IN, a_broadcast(i)) for i in range(10)]
    rows.sort(key=lambda r: r[0])
    rec = recording_of(tmp_path, rows)
    faults = [parse_fault("corrupt=0.3")]
    plan = plan_replay(rec, faults, 11)
    variants = {t: [i.corrupt for i in items] for t, items in plan.items()}
    # realtime-py accepts a change with "record": null or without record (its model allows both), and
    # rejects malformed JSON and a broadcast whose payload is null or missing (realtime-protocol.md §7.6)
    rejected = variants["realtime:orders"].count("json") + sum(1 for v in variants["realtime:room1"] if v)
    accepted_bad = [i for i, v in enumerate(variants["realtime:orders"]) if v in ("null", "missing")]
    assert rejected >= 2 and accepted_bad

    async def body():
        async with ReplayServer(rec, speed=math.inf, faults=faults, seed=11) as server:
            client = await official_client(server)
            changes = await subscribe_orders(client)
            ticks = Collector()
            room = client.channel("room1")
            room.on_broadcast("tick", ticks)
            await room.subscribe()
            good_ticks = sum(1 for v in variants["realtime:room1"] if v is None)
            await changes.wait(20 - variants["realtime:orders"].count("json"))
            await ticks.wait(good_ticks)
            got = records(changes.items)
            for i in accepted_bad:  # delivered, but with the record null or missing
                kept = [r for r in got if r is None or r == {"id": i}]
                assert kept, i
            await client.close()
        assert server.stats.total("corrupted") == sum(1 for v in variants.values() for x in v if x)

    with caplog.at_level(logging.ERROR, logger="realtime"):
        run(body())
    unrecognized = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Unrecognized message format")]
    assert len(unrecognized) == rejected


@pytest.mark.filterwarnings("ignore:ConnectionClosed.(code|reason) is deprecated:DeprecationWarning")
def test_disconnect_fault_client_reconnects_rejoins_and_the_replay_goes_on(tmp_path, caplog) -> None:
    rec = recording_of(tmp_path, orders_session(count=12, gap=0.1))
    said: list[str] = []

    async def body():
        async with ReplayServer(rec, faults=[parse_fault("disconnect=after:0.45s")], say=said.append) as server:
            client = await official_client(server)
            states = Collector()
            changes = await subscribe_orders(client, states)
            await states.wait(3, timeout=5)
            assert [s for s, _ in states.items] == [SUBSCRIBED, CHANNEL_ERROR, SUBSCRIBED]
            stats = server.stats
            expected = 12 - stats.total("lost")
            await changes.wait(expected, timeout=5)
            await client.close()
            await asyncio.sleep(0.05)
        first, second = stats.connections
        assert first.ended == "cut by fault disconnect=after:0.45s: dropped (1006)"
        assert second.resumed and second.joins == 1
        assert first.sent == 4  # changes at 0.1 .. 0.4 s of recorded time
        ids = [r["id"] for r in records(changes.items)]
        assert ids == sorted(set(ids)) and ids[:4] == [0, 1, 2, 3]  # resumed, not started again
        assert len(ids) + stats.total("lost") == 12

    with caplog.at_level(logging.ERROR, logger="realtime"):
        run(body())
    assert any("WebSocket connection closed with code: 1006" in r.getMessage() for r in caplog.records)
    assert any("fault disconnect=after:0.45s: dropping the connection (1006)" in s for s in said)


@pytest.mark.filterwarnings("ignore:ConnectionClosed.(code|reason) is deprecated:DeprecationWarning")
def test_close_fault_closes_with_the_code_after_the_last_frame_once(tmp_path, caplog) -> None:
    rec = recording_of(tmp_path, orders_session(count=5, gap=0.01))

    async def body():
        async with ReplayServer(rec, speed=math.inf, faults=[parse_fault("close=1011")]) as server:
            client = await official_client(server)
            states = Collector()
            changes = await subscribe_orders(client, states)
            await states.wait(3)
            await changes.wait(5)
            await asyncio.sleep(0.2)  # the resumed replay has nothing left: no second close
            assert len(server.stats.connections) == 2
            assert server.stats.connections[0].ended == "cut by fault close=1011: closed with 1011"
            assert server.stats.connections[1].resumed and server.stats.connections[1].ended is None
            assert len(changes.items) == 5
            await client.close()

    with caplog.at_level(logging.ERROR, logger="realtime"):
        run(body())
    closes = [r.getMessage() for r in caplog.records if "WebSocket connection closed" in r.getMessage()]
    assert closes == ["WebSocket connection closed with code: 1011, reason: rt-replay fault"]


def test_reject_join_fault_gives_channel_error_and_a_later_rejoin_works(tmp_path) -> None:
    rec = recording_of(tmp_path, orders_session(count=3, gap=0.01))
    reason = "Unauthorized: You do not have permissions to read from this Channel topic: orders"

    async def body():
        async with ReplayServer(rec, speed=math.inf, faults=[parse_fault("reject-join=Unauthorized,times:1")]) as server:
            client = await official_client(server)
            states = Collector()
            changes = await subscribe_orders(client, states)
            state, error = states.items[0]
            assert state == CHANNEL_ERROR and str(error) == json.dumps({"reason": reason})
            await changes.wait(3, timeout=5)  # realtime-py rejoins after 1 s
            assert [s for s, _ in states.items] == [CHANNEL_ERROR, SUBSCRIBED]
            assert server.stats.total("refused_joins") == 1
            await client.close()

    run(body())


def test_delay_fault_shifts_every_push(tmp_path) -> None:
    rec = recording_of(tmp_path, orders_session(count=3, gap=0.01))

    async def body():
        async with ReplayServer(rec, speed=math.inf, faults=[parse_fault("delay=200ms")]) as server:
            async with connect(server.url + "/websocket") as ws:
                await ws.send(a_join())
                await ws.recv()
                joined = time.monotonic()
                got = [await ws.recv() for _ in range(3)]
                assert time.monotonic() - joined >= 0.19
                assert got == [a_change(i) for i in range(3)]
        assert server.stats.total("delayed") == 3

    run(body())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("drop=2", "drop takes a probability between 0 and 1 (e.g. drop=0.1)"),
        ("duplicate=often", "duplicate takes a probability between 0 and 1"),
        ("delay=200", "expected a duration like 200ms, 1.5s or 2m"),
        ("delay=300ms..100ms", "from the smaller to the larger"),
        ("corrupt=0.1,as:garbage", "unknown corruption 'garbage' (known: json, null, missing)"),
        ("disconnect=30s", "disconnect takes after:DURATION, e.g. disconnect=after:30s"),
        ("close=999", "close takes a WebSocket close code"),
        ("close=1011,after:soon", "expected a duration"),
        ("reject-join=Nope", "unknown refusal 'Nope'"),
        ("reject-join=Unauthorized,times:0", "times takes a whole number"),
        ("explode=1", "unknown fault 'explode' (known: drop=P"),
        ("drop", "drop needs a value"),
        ("drop=0.1,every:2", "unknown option 'every:2' (options of drop: topic:...)"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_fault(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_fault_registry_and_speed_parsing() -> None:
    assert set(FAULTS) == {"drop", "duplicate", "corrupt", "delay", "disconnect", "close", "reject-join"}
    assert parse_fault("close=1011,after:2s").after == 2.0
    assert parse_fault("disconnect=after:30s").after == 30.0
    assert parse_fault("delay=50ms..300ms").delay == (0.05, 0.3)
    assert parse_fault("reject-join=Unauthorized").reason.endswith("Channel topic: {name}")
    assert parse_fault("drop=0.5,topic:orders").topic == "realtime:orders"
    assert (parse_speed("1"), parse_speed("10"), parse_speed("10x"), parse_speed("max")) == (1.0, 10.0, 10.0, math.inf)
    for bad in ("0", "-1", "fast", "nan"):
        with pytest.raises(ConfigError, match="expected 1 \\(original timing\\), a factor such as 10, or max"):
            parse_speed(bad)


# ---- bad input -----------------------------------------------------------------------------------------


def test_store_without_sessions_and_not_a_store(tmp_path) -> None:
    open_store(tmp_path / "empty", create=True)
    with pytest.raises(InputError) as err:
        load_recording(tmp_path / "empty")
    assert "no recorded sessions to replay" in str(err.value) and "rt-record proxy" in str(err.value)
    with pytest.raises(StoreError, match="no such store"):
        load_recording(tmp_path / "nowhere")


def test_unknown_session_lists_the_sessions_that_exist(tmp_path) -> None:
    store = a_session(tmp_path / "store", orders_session(count=2), session_id="aaaa1111")
    a_session(store, orders_session(count=5), session_id="bbbb2222", start_us=START_US + 60_000_000)
    with pytest.raises(InputError) as err:
        load_recording(store, "cccc")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("unknown session 'cccc' in ")
    assert "aaaa1111 (2026-11-18T" in text and "4 frames, 2 changes, realtime:orders)" in text
    assert "bbbb2222 (" in text and "7 frames, 5 changes" in text
    chosen = load_recording(store)
    assert chosen.session.session_id == "bbbb2222"  # most changes
    assert chosen.describe() == (
        "session bbbb2222 (2026-11-18T11:07:40Z, 7 frames, 5 changes, realtime:orders): 5 pushes to replay "
        "(chosen: the most postgres_changes/broadcast frames of the 2 sessions; another one with --session ID)"
    )
    assert load_recording(store, "aaaa").session.session_id == "aaaa1111"  # a unique prefix will do


def test_join_of_a_topic_not_in_the_recording_is_refused_naming_the_recorded_topics(tmp_path) -> None:
    rec = recording_of(tmp_path)
    said: list[str] = []

    async def body():
        async with ReplayServer(rec, speed=math.inf, say=said.append) as server:
            client = await official_client(server)
            states = Collector()
            await client.channel("elsewhere").subscribe(states)
            state, error = states.items[0]
            assert state == CHANNEL_ERROR
            assert json.loads(str(error))["reason"] == (
                "UnknownTopic: realtime:elsewhere is not in recorded session s1 (recorded topics: realtime:orders)"
            )
            await client.close()

    run(body())
    assert any("join of realtime:elsewhere refused: not in the recording (recorded topics: realtime:orders)" in s
               for s in said)


def test_a_client_that_disconnects_mid_replay_does_not_disturb_the_server(tmp_path) -> None:
    rec = recording_of(tmp_path, orders_session(count=20, gap=0.02))
    said: list[str] = []

    async def body():
        async with ReplayServer(rec, say=said.append) as server:
            async with connect(server.url + "/websocket") as ws:
                await ws.send(a_join())
                await ws.recv()
                await ws.recv()
                ws.transport.abort()  # gone without a close frame
            client = await official_client(server)
            changes = await subscribe_orders(client)
            await changes.wait(20)
            await client.close()
            await asyncio.sleep(0.05)
        first = server.stats.connections[0]
        assert 1 <= first.sent < 20 and first.ended.startswith("closed by the client")

    run(body())
    assert not any("Traceback" in s for s in said)


def test_a_payload_nested_10000_deep_neither_hangs_nor_crashes(tmp_path, caplog) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    deep_push = '{"event":"broadcast","payload":{"event":"tick","payload":{"x":' + deep + '},"type":"broadcast"},"ref":null,"topic":"realtime:room1"}'
    rows = [(0.0, OUT, a_join("realtime:room1", bindings=[], ref="1")),
            (0.01, IN, a_reply("realtime:room1", bindings=[])),
            (0.02, IN, deep_push), (0.03, IN, a_broadcast(1))]
    rec = recording_of(tmp_path, rows)
    assert rec.topics["realtime:room1"].pushes[0].decode_error.startswith("invalid JSON")

    async def body():
        async with ReplayServer(rec, speed=math.inf) as server:
            # the recorded deep frame goes out as recorded; the official client refuses it and goes on
            client = await official_client(server)
            ticks = Collector()
            room = client.channel("room1")
            room.on_broadcast("tick", ticks)
            await room.subscribe()
            assert (await ticks.wait(1)) == [{"event": "tick", "payload": {"n": 1}}]
            await client.close()
            # a client join nested 10,000 deep is dropped (as the server does); the socket stays usable
            async with connect(server.url + "/websocket") as ws:
                await ws.send('{"event":"phx_join","payload":{"config":' + deep + '},"topic":"realtime:room1","ref":"1","join_ref":"1"}')
                await ws.send('{"event":"heartbeat","payload":{},"topic":"phoenix","ref":"2","join_ref":null}')
                assert json.loads(await ws.recv())["ref"] == "2"

    with caplog.at_level(logging.ERROR, logger="realtime"):
        run(body())
    assert sum("Unrecognized message format" in r.getMessage() for r in caplog.records) == 1


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def small_recording(tmp_path_factory):
    return recording_of(tmp_path_factory.mktemp("small"), orders_session(count=3, gap=0.01))


@settings(max_examples=300, deadline=None)
@given(
    event=st.sampled_from(["phx_join", "phx_leave", "heartbeat", "broadcast", "presence", "access_token", "x"]),
    topic=st.sampled_from(["realtime:orders", "realtime:other", "realtime:", "phoenix", "orders"]) | st.text(max_size=8),
    payload=_JSON | st.fixed_dictionaries({"config": _JSON}) | st.fixed_dictionaries(
        {"config": st.fixed_dictionaries({"postgres_changes": _JSON})}),
    ref=st.none() | st.sampled_from(["1", "2"]) | st.integers(),
    vsn=st.sampled_from([V1, V2]),
    garbage=st.none() | st.binary(max_size=20) | st.text(max_size=20),
)
def test_any_client_frame_is_answered_or_dropped_never_raises(small_recording, event, topic, payload, ref, vsn,
                                                            garbage) -> None:
    hub = ReplayHub(small_recording, speed=math.inf, faults=[parse_fault("corrupt=0.5"), parse_fault("close=1011")])
    hub.open(1, vsn, "key", 0.0)
    if vsn == V1:
        data = json.dumps({"event": event, "payload": payload, "topic": topic, "ref": ref, "join_ref": ref})
    else:
        data = json.dumps([ref, ref, topic, event, payload])
    for frame in (data, garbage) if garbage is not None else (data,):
        decoded, sends = hub.receive(1, frame, 0.0)
        assert all(isinstance(s.data, str | bytes) for s in sends)
        frames, _ = hub.due(1, 1.0)
        assert all(isinstance(f, str | bytes) for f in frames)
    hub.close(1, 2.0)


def test_binding_mismatch_is_said(tmp_path) -> None:
    rec = recording_of(tmp_path, orders_session(count=1))
    said: list[str] = []

    async def body():
        async with ReplayServer(rec, speed=math.inf, say=said.append) as server:
            client = await official_client(server)
            states = Collector()
            channel = client.channel("orders")
            channel.on_postgres_changes("INSERT", schema="public", table="orders", callback=lambda p: None)
            await channel.subscribe(states)
            assert states.items[0][0] == CHANNEL_ERROR
            assert "mismatch between server and client bindings" in str(states.items[0][1])
            await client.close()

    run(body())
    assert any('joined with postgres_changes [{"event": "INSERT"' in s and "the recording has" in s for s in said)


# ---- the command --------------------------------------------------------------------------------------------


def rt_replay(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from analyzer.replay_cli import main; main()", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def test_cli_bad_inputs_are_one_line_and_exit_2(tmp_path) -> None:
    open_store(tmp_path / "empty", create=True)
    store = a_session(tmp_path / "store", orders_session(count=2), session_id="aaaa1111")
    cases = [
        (["--store", str(tmp_path / "empty")], "no recorded sessions to replay"),
        (["--store", str(store), "--session", "zzz"], "unknown session 'zzz'"),
        (["--store", str(store), "--fault", "drop=2"], "drop takes a probability between 0 and 1"),
        (["--store", str(store), "--speed", "fast"], "--speed 'fast'"),
    ]
    for args, message in cases:
        proc = rt_replay("serve", "--listen", "127.0.0.1:0", *args)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rt-replay: error: ") and message in lines[0], err
        assert out == ""


def test_cli_serves_until_sigterm_and_prints_a_json_summary(tmp_path) -> None:
    store = a_session(tmp_path / "store", orders_session(count=3, gap=0.01))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = rt_replay("serve", "--store", str(store), "--listen", str(port), "--speed", "max",
                     "--fault", "duplicate=1", "--seed", "3", "--format", "json")
    try:
        lines = []
        while not any("listening on" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert any("replaying session s1 (" in line for line in lines)
        assert any("faults: duplicate=1 (seed 3" in line for line in lines)
        assert f"listening on ws://127.0.0.1:{port}/realtime/v1" in lines[-1]

        async def client():
            async with connect(f"ws://127.0.0.1:{port}/realtime/v1/websocket?vsn=1.0.0") as ws:
                await ws.send(a_join())
                return [await ws.recv() for _ in range(7)]

        got = run(client())
        assert got == [a_reply()] + [a_change(i) for i in range(3) for _ in range(2)]
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        summary = json.loads(out)
        assert (summary["session_id"], summary["speed"], summary["seed"]) == ("s1", "max", 3)
        assert (summary["sent"], summary["duplicated"], summary["joins"]) == (6, 3, 1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
