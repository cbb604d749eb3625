"""The mock Realtime server: its sans-I/O hub with plain values, and the asyncio shell on 127.0.0.1
port 0 driven by the official client (realtime 2.34) and by a plain websockets client (vsn 2.0.0,
binary frames, handshake refusals)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from recorder.codec import IN, OUT, V1, V2, Frame, decode, encode
from recorder.mockserver import MockRealtimeServer, RealtimeHub, Rule, binding_id, columns_of, filter_matches
from tests.support import Collector, a_jwt, run

SUBSCRIBED = RealtimeSubscribeStates.SUBSCRIBED
CHANNEL_ERROR = RealtimeSubscribeStates.CHANNEL_ERROR


async def official_client(server: MockRealtimeServer, **kwargs) -> AsyncRealtimeClient:
    client = AsyncRealtimeClient(server.url, token=a_jwt(), auto_reconnect=True, **kwargs)
    await client.connect()
    return client


def a_change(table: str = "orders", type: str = "INSERT", **data) -> dict:
    """The ``data`` of a postgres_changes payload as the mock sends it (server key order)."""
    out = {"columns": data.pop("columns", []), "commit_timestamp": data.pop("commit_timestamp", None)}
    out["errors"] = data.pop("errors", None)
    out.update(data)
    out.update(schema="public", table=table, type=type)
    return out


# ---- the hub, without sockets ------------------------------------------------------------------------------


def join_frame(
    topic: str = "realtime:room1", bindings: list | None = None, ref: str = "1", **config
) -> Frame:
    payload = {
        "config": {
            "broadcast": config.pop("broadcast", {"ack": False, "self": False}),
            "presence": config.pop("presence", {"key": "", "enabled": False}),
            "private": False,
            "postgres_changes": bindings or [],
        },
        "access_token": "tok",
    }
    return Frame(topic, "phx_join", payload, ref, ref)


def test_hub_join_reply_and_subscribed_message_v1() -> None:
    hub = RealtimeHub()
    hub.open(1, V1)
    binding = {"event": "*", "schema": "public", "table": "todos"}
    decoded, sends = hub.receive(1, encode(join_frame(bindings=[binding]), direction=OUT))
    assert decoded.frame.event == "phx_join"
    ident = binding_id(binding)
    assert [s.data for s in sends] == [
        '{"event":"phx_reply","payload":{"response":{"postgres_changes":[{"event":"*","id":'
        + str(ident)
        + ","
        '"schema":"public","table":"todos"}]},"status":"ok"},"ref":"1","topic":"realtime:room1"}',
        '{"event":"system","payload":{"channel":"room1","extension":"postgres_changes",'
        '"message":"Subscribed to PostgreSQL","status":"ok"},"ref":null,"topic":"realtime:room1"}',
    ]
    assert sends[-1].joined == "realtime:room1"
    assert hub.joined("room1")[0].access_token == "tok"


def test_hub_join_without_changes_has_empty_list_and_no_system_message() -> None:
    hub = RealtimeHub()
    hub.open(1, V1)
    _, sends = hub.receive(1, encode(join_frame(), direction=OUT))
    assert [s.frame.event for s in sends] == ["phx_reply"]
    assert sends[0].frame.payload == {"response": {"postgres_changes": []}, "status": "ok"}


def test_binding_ids_are_deterministic_and_never_zero() -> None:
    a = {"event": "*", "schema": "public", "table": "orders"}
    assert binding_id(a) == binding_id(dict(reversed(list(a.items()))))
    assert binding_id(a) != binding_id({**a, "filter": "id=eq.1"})
    assert binding_id(a) != binding_id({**a, "event": "INSERT"})
    assert all(0 < binding_id({"event": "*", "table": f"t{i}"}) < 2**27 for i in range(500))


def test_hub_postgres_change_ids_follow_matching_bindings_per_channel() -> None:
    hub = RealtimeHub()
    every = {"event": "*", "schema": "public", "table": "orders"}
    inserts = {"event": "INSERT", "schema": "public", "table": "orders"}
    one = {"event": "*", "schema": "public", "table": "orders", "filter": "id=eq.1"}
    hub.open(1, V1)
    hub.open(2, V2)
    hub.receive(1, encode(join_frame(bindings=[every, inserts, one]), direction=OUT))
    hub.receive(2, encode(join_frame("realtime:other", bindings=[one]), vsn=V2, direction=OUT))

    sends = hub.postgres_change("orders", "INSERT", record={"id": 1})
    assert {s.conn_id: s.frame.payload["ids"] for s in sends} == {
        1: [binding_id(every), binding_id(inserts), binding_id(one)],
        2: [binding_id(one)],
    }
    sends = hub.postgres_change("orders", "UPDATE", record={"id": 2}, old_record={"id": 2})
    assert {s.conn_id: s.frame.payload["ids"] for s in sends} == {1: [binding_id(every)]}
    assert hub.postgres_change("customers", "INSERT", record={"id": 1}) == []
    # vsn 2.0.0 frames are arrays with null refs; DELETE matches filters on old_record
    sends = hub.postgres_change("orders", "DELETE", old_record={"id": 1}, commit_timestamp="t")
    (send,) = [s for s in sends if s.conn_id == 2]
    assert send.data.startswith('[null,null,"realtime:other","postgres_changes",{"data":{"columns":[],')
    assert '"old_record":{"id":1},"schema":"public"' in send.data and '"record"' not in send.data


def test_filter_matches_postgrest_like_filters() -> None:
    row = {"id": 5, "status": "paid", "note": None}
    assert filter_matches("id=eq.5", row)
    assert not filter_matches("id=neq.5", row)
    assert filter_matches("id=gt.4,status=in.(open,paid)", row)
    assert not filter_matches("id=gt.4,status=in.(open)", row)
    assert filter_matches("note=is.null", row)
    assert filter_matches("status=not.eq.open", row)
    assert filter_matches("id=unknownop.1", row)  # unknown operators never hide a change


def test_columns_of_guesses_postgres_types() -> None:
    assert columns_of({"id": 1, "ok": True, "name": "x", "meta": {}, "price": 1.5, "n": None}) == [
        {"name": "id", "type": "int8"},
        {"name": "ok", "type": "bool"},
        {"name": "name", "type": "text"},
        {"name": "meta", "type": "jsonb"},
        {"name": "price", "type": "float8"},
        {"name": "n", "type": "text"},
    ]


def test_hub_leave_replies_then_closes_with_join_ref() -> None:
    hub = RealtimeHub()
    hub.open(1, V2)
    hub.receive(1, encode(join_frame(ref="3"), vsn=V2, direction=OUT))
    leave = Frame("realtime:room1", "phx_leave", {}, "4", "3")
    _, sends = hub.receive(1, encode(leave, vsn=V2, direction=OUT))
    assert [s.data for s in sends] == [
        '["3","4","realtime:room1","phx_reply",{"response":{},"status":"ok"}]',
        '["3","3","realtime:room1","phx_close",{}]',
    ]
    assert hub.joined() == []


def test_hub_rules_reject_then_allow() -> None:
    hub = RealtimeHub()
    hub.open(1, V1)
    hub.add_rule(Rule("join", "reject", "room1", 1, reason="Unauthorized: nope"))
    _, sends = hub.receive(1, encode(join_frame(), direction=OUT))
    assert sends[0].frame.payload == {"response": {"reason": "Unauthorized: nope"}, "status": "error"}
    assert hub.joined() == []
    _, sends = hub.receive(1, encode(join_frame(ref="2"), direction=OUT))
    assert sends[0].frame.payload["status"] == "ok"


def test_hub_drops_undecodable_and_unknown_frames() -> None:
    hub = RealtimeHub()
    hub.open(1, V1)
    decoded, sends = hub.receive(1, "not json")
    assert decoded.frame is None and "invalid JSON" in decoded.error and sends == []
    _, sends = hub.receive(1, '["1","1","realtime:x","phx_join",{}]')  # a vsn 2.0.0 frame on a 1.0.0 socket
    assert sends == []


def test_hub_system_message_without_channel_key() -> None:
    hub = RealtimeHub()
    hub.open(1, V1)
    hub.receive(1, encode(join_frame(), direction=OUT))
    (send,) = hub.system("room1", "Server requested disconnect", channel=None)
    assert send.data == (
        '{"event":"system","payload":{"extension":"system","message":"Server requested disconnect",'
        '"status":"ok"},"ref":null,"topic":"realtime:room1"}'
    )


# ---- the official client --------------------------------------------------------------------------------


def test_official_client_subscribes_and_gets_exact_changes() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            client = await official_client(server)
            states, changes = Collector(), Collector()
            channel = client.channel("room1")
            channel.on_postgres_changes("*", schema="public", table="orders", callback=changes)
            await channel.subscribe(states)
            assert states.items == [(SUBSCRIBED, None)]
            conn = await server.wait_joined("room1")

            # what realtime-py 2.34 put on the wire (realtime-protocol.md §1.1, §3.1)
            assert conn.path == "/realtime/v1/websocket"
            assert conn.query == {"apikey": a_jwt(), "vsn": "1.0.0"}
            assert conn.received[0].data == (
                '{"event":"phx_join","payload":{"config":{"broadcast":{"ack":false,"self":false},'
                '"presence":{"key":"","enabled":false},"private":false,"postgres_changes":[{"event":"*",'
                '"schema":"public","table":"orders"}]},"access_token":"'
                + a_jwt()
                + '"},"topic":"realtime:room1",'
                '"ref":"1","join_ref":"1"}'
            )

            ident = binding_id({"event": "*", "schema": "public", "table": "orders"})
            ts = "2026-11-24T08:00:00.000Z"
            cols = [{"name": "id", "type": "int8"}, {"name": "status", "type": "text"}]
            await server.insert("orders", {"id": 1, "status": "new"}, commit_timestamp=ts)
            await server.update("orders", {"id": 1, "status": "paid"}, {"id": 1}, commit_timestamp=ts)
            await server.delete("orders", {"id": 1}, commit_timestamp=ts, columns=cols)
            await server.insert("customers", {"id": 9})  # nobody listens to customers
            await server.insert(
                "orders",
                {"id": 2, "status": "new"},
                commit_timestamp=ts,
                errors=["Error 413: Payload Too Large"],
            )
            got = await changes.wait(4)
            assert got == [
                {
                    "data": a_change(record={"id": 1, "status": "new"}, columns=cols, commit_timestamp=ts),
                    "ids": [ident],
                },
                {
                    "data": a_change(
                        type="UPDATE",
                        record={"id": 1, "status": "paid"},
                        old_record={"id": 1},
                        columns=cols,
                        commit_timestamp=ts,
                    ),
                    "ids": [ident],
                },
                {
                    "data": a_change(type="DELETE", old_record={"id": 1}, columns=cols, commit_timestamp=ts),
                    "ids": [ident],
                },
                {
                    "data": a_change(
                        record={"id": 2, "status": "new"},
                        columns=cols,
                        commit_timestamp=ts,
                        errors=["Error 413: Payload Too Large"],
                    ),
                    "ids": [ident],
                },
            ]
            on_topic = [f.event for f in conn.sent if f.topic == "realtime:room1"]  # heartbeat replies aside
            assert on_topic == ["phx_reply", "system"] + ["postgres_changes"] * 4
            await client.close()

    run(body())


def test_official_client_broadcast_ack_and_self_echo() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            client = await official_client(server)
            got = Collector()
            options = {
                "config": {
                    "broadcast": {"ack": True, "self": True},
                    "presence": {"key": "", "enabled": False},
                    "private": False,
                }
            }
            channel = client.channel("room1", options).on_broadcast("cursor", got)
            await channel.subscribe()
            conn = await server.wait_joined("room1")

            assert await server.broadcast("room1", "cursor", {"x": 1}) == 1
            # realtime-py's BroadcastPayload model keeps only event, payload and meta
            assert (await got.wait(1))[0] == {"event": "cursor", "payload": {"x": 1}}
            assert conn.sent[-1].data == (
                '{"event":"broadcast","payload":{"event":"cursor","payload":{"x":1},"type":"broadcast"},'
                '"ref":null,"topic":"realtime:room1"}'
            )

            await channel.send_broadcast("cursor", {"x": 2})
            assert (await got.wait(2))[1]["payload"] == {"x": 2}
            (push,) = conn.frames(OUT, event="broadcast")
            ack = next(f for f in conn.sent if f.event == "phx_reply" and f.ref == push.ref)
            assert ack.payload == {"response": {}, "status": "ok"}
            await client.close()

    run(body())


def test_official_client_presence_track_and_scripted_diffs() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            client = await official_client(server)
            syncs = Collector()
            channel = client.channel("room1")
            channel.on_presence_sync(lambda: syncs(dict(channel.presence_state())))
            await channel.subscribe()
            conn = await server.wait_joined("room1")
            assert conn.sent[1].event == "presence_state"
            await syncs.wait(1)

            await channel.track({"user": "bob"})
            state = (await syncs.wait(2))[-1]
            (key,) = state
            assert [{k: v for k, v in p.items() if k != "presence_ref"} for p in state[key]] == [
                {"user": "bob"}
            ]

            alice = {"alice": {"metas": [{"phx_ref": "F-alice", "user": "alice"}]}}
            await server.presence_diff("room1", joins=alice)
            assert set((await syncs.wait(3))[-1]) == {key, "alice"}
            await server.presence_diff("room1", leaves=alice)
            assert set((await syncs.wait(4))[-1]) == {key}
            await client.close()

    run(body())


LEGACY_WEBSOCKETS = int(websockets.__version__.split(".")[0]) < 14


@pytest.mark.filterwarnings("ignore:ConnectionClosed.(code|reason) is deprecated:DeprecationWarning")
@pytest.mark.parametrize("code", [1000, 1006, 1011, 1012])
def test_official_client_reconnects_and_rejoins_after_server_close(code: int) -> None:
    async def body():
        async with MockRealtimeServer() as server:
            client = await official_client(server)
            states, changes = Collector(), Collector()
            channel = client.channel("room1")
            channel.on_postgres_changes("*", schema="public", table="orders", callback=changes)
            await channel.subscribe(states)
            first = await server.wait_joined("room1")

            await server.close_connections(code, "internal" if code == 1011 else "")
            assert first.close_code == code
            if code == 1000 and LEGACY_WEBSOCKETS:
                # realtime 2.34.1 on websockets 13: `from websockets import connect` is the legacy client,
                # whose connection has no `.protocol`: the normal-close branch of _listen raises
                # AttributeError and the client never reconnects (a silent dead client).
                with pytest.raises(AttributeError, match="protocol"):
                    await client._listen_task
                assert len(server.connections) == 1
                return
            second = await server.wait_joined("room1", 2)
            assert second is not first and second.id == 2
            rejoin = second.frames(OUT, event="phx_join")[0]
            assert rejoin.ref != first.frames(OUT, event="phx_join")[0].ref  # every rejoin has a new join_ref

            await server.insert("orders", {"id": 7})
            assert (await changes.wait(1))[0]["data"]["record"] == {"id": 7}
            await states.wait(3)
            assert [s for s, _ in states.items] == [SUBSCRIBED, CHANNEL_ERROR, SUBSCRIBED]
            await client.close()

    run(body())


def test_official_client_join_rejected_gets_channel_error_then_rejoins() -> None:
    reason = "Unauthorized: You do not have permissions to read from this Channel topic: room1"

    async def body():
        async with MockRealtimeServer() as server:
            server.reject_joins(reason, "room1", times=1)
            client = await official_client(server)
            states = Collector()
            await client.channel("room1").subscribe(states)
            state, error = states.items[0]
            assert state == CHANNEL_ERROR and str(error) == json.dumps({"reason": reason})
            conn = server.connections[0]
            assert conn.sent[0].data == (
                '{"event":"phx_reply","payload":{"response":{"reason":"' + reason + '"},"status":"error"},'
                '"ref":"1","topic":"realtime:room1"}'
            )
            await server.wait_joined("room1", timeout=5)  # realtime-py rejoins after 1 s
            await client.close()

    run(body())


def test_official_client_times_out_when_join_reply_is_dropped_and_late_reply_works() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            server.drop_joins("room1", times=1)
            client = await official_client(server, timeout=1)
            states = Collector()
            await client.channel("room1").subscribe(states)
            assert states.items == [(RealtimeSubscribeStates.TIMED_OUT, None)]
            await client.close()

        async with MockRealtimeServer() as server:
            server.delay_joins(0.3, "room1", times=1)
            client = await official_client(server)
            states = Collector()
            started = asyncio.get_running_loop().time()
            await client.channel("room1").subscribe(states)
            assert states.items == [(SUBSCRIBED, None)]
            assert asyncio.get_running_loop().time() - started >= 0.3
            await client.close()

    run(body())


def test_official_client_survives_bad_frames(caplog) -> None:
    async def body():
        async with MockRealtimeServer() as server:
            client = await official_client(server)
            changes = Collector()
            channel = client.channel("room1")
            channel.on_postgres_changes("*", schema="public", table="orders", callback=changes)
            await channel.subscribe()
            conn = await server.wait_joined("room1")
            await server.send_raw("not json at all")
            await server.send_raw(b"\x04\x00")
            await server.system("room1", "Server requested disconnect", channel=None)
            await server.insert("orders", {"id": 1})
            await changes.wait(1)
            bad = [f for f in conn.sent if f.error]
            assert [f.data for f in bad] == ["not json at all", b"\x04\x00"]
            assert "invalid JSON" in bad[0].error and "binary frame" in bad[1].error
            await client.close()

    with caplog.at_level(logging.ERROR, logger="realtime"):
        run(body())
    unrecognized = [r.getMessage() for r in caplog.records if "Unrecognized message format" in r.getMessage()]
    assert len(unrecognized) == 3  # text garbage, binary garbage, system without channel (§7.6)


def test_official_client_leave_gets_reply_and_close() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            client = await official_client(server)
            states = Collector()
            channel = client.channel("room1")
            await channel.subscribe(states)
            conn = await server.wait_joined("room1")
            await channel.unsubscribe()
            await states.wait(2)
            assert states.items[-1] == (RealtimeSubscribeStates.CLOSED, None)
            leave = conn.frames(OUT, event="phx_leave")[0]
            close = conn.frames(IN, event="phx_close")[0]
            assert close.ref == leave.frame.join_ref == "1"
            assert server.hub.joined() == []
            await client.close()

    run(body())


def test_official_client_refused_handshake() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            server.refuse_handshakes(403, "Realtime was disabled for this tenant")
            client = AsyncRealtimeClient(server.url, token=a_jwt(), max_retries=1)
            # InvalidStatus, or the legacy InvalidStatusCode: realtime-py's `from websockets import connect`
            # is the legacy client on websockets 13
            with pytest.raises(WebSocketException, match="HTTP 403"):
                await client.connect()
            assert server.handshakes == [("/realtime/v1/websocket", 403)]
            assert server.connections == []

    run(body())


# ---- a plain websockets client ---------------------------------------------------------------------------


def test_plain_client_socket_path_default_vsn_and_heartbeat_ref() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            async with connect(f"{server.socket_url}/websocket?apikey=k") as ws:
                await ws.send(
                    '{"event":"heartbeat","payload":{},"topic":"phoenix","ref":"7","join_ref":null}'
                )
                assert await ws.recv() == (
                    '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"7","topic":"phoenix"}'
                )
            conn = server.connections[0]
            assert (conn.path, conn.vsn, conn.apikey) == ("/socket/websocket", V1, "k")

    run(body())


def test_plain_client_refusals_without_apikey_and_on_unknown_path() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            with pytest.raises(InvalidStatus) as err:
                await connect(f"{server.url}/websocket?vsn=1.0.0")
            assert err.value.response.status_code == 401
            assert json.loads(err.value.response.body) == {"error": "API key is missing"}
            with pytest.raises(InvalidStatus) as err:
                await connect(f"ws://127.0.0.1:{server.port}/elsewhere?apikey=k")
            assert err.value.response.status_code == 404
            # the key may also come in a header (which wins over the query)
            async with connect(f"{server.url}/websocket", additional_headers={"x-api-key": "hdr"}):
                conn = await server.wait_connected()
            assert conn.apikey == "hdr"

    run(body())


def test_plain_client_vsn2_text_and_binary_round_trip() -> None:
    binding = {"event": "INSERT", "schema": "public", "table": "orders"}
    ident = binding_id(binding)

    async def body():
        async with MockRealtimeServer() as server:
            async with connect(f"{server.url}/websocket?apikey=k&vsn=2.0.0") as ws:
                join = join_frame(bindings=[binding], broadcast={"ack": True, "self": True})
                await ws.send(encode(join, vsn=V2, direction=OUT))
                assert await ws.recv() == (
                    '["1","1","realtime:room1","phx_reply",{"response":{"postgres_changes":[{"event":"INSERT",'
                    '"id":' + str(ident) + ',"schema":"public","table":"orders"}]},"status":"ok"}]'
                )
                assert await ws.recv() == (
                    '["1",null,"realtime:room1","system",{"channel":"room1","extension":"postgres_changes",'
                    '"message":"Subscribed to PostgreSQL","status":"ok"}]'
                )
                await ws.send('[null,"2","phoenix","heartbeat",{}]')
                assert await ws.recv() == '[null,"2","phoenix","phx_reply",{"response":{},"status":"ok"}]'

                await server.insert("orders", {"id": 1}, commit_timestamp="2026-11-24T08:00:00.000Z")
                change = decode(await ws.recv(), vsn=V2).frame
                assert (change.event, change.ref, change.join_ref) == ("postgres_changes", None, None)
                assert change.payload["ids"] == [ident]

                # a user broadcast reaches vsn 2.0.0 as binary kind 4 (§2.3)
                await server.broadcast("room1", "message", {"content": "oi"}, meta={"id": "m1"})
                data = await ws.recv()
                topic, event, meta, body = b"realtime:room1", b"message", b'{"id":"m1"}', b'{"content":"oi"}'
                assert data == bytes([4, len(topic), len(event), len(meta), 1]) + topic + event + meta + body
                assert decode(data, vsn=V2, direction=IN).frame == Frame(
                    "realtime:room1",
                    "broadcast",
                    {
                        "type": "broadcast",
                        "event": "message",
                        "payload": {"content": "oi"},
                        "meta": {"id": "m1"},
                    },
                )

                # the client's own kind 3 push: ack reply (text) and echo to itself (kind 4, raw payload)
                push = Frame(
                    "realtime:room1",
                    "broadcast",
                    {"type": "broadcast", "event": "blob", "payload": b"\x00\xff"},
                    "3",
                    "1",
                )
                await ws.send(encode(push, vsn=V2, binary=True, direction=OUT))
                assert (
                    await ws.recv() == '["1","3","realtime:room1","phx_reply",{"response":{},"status":"ok"}]'
                )
                echo = decode(await ws.recv(), vsn=V2, direction=IN)
                assert echo.frame.binary_kind == 4 and echo.frame.payload["payload"] == b"\x00\xff"

                await ws.send('["1","4","realtime:room1","phx_leave",{}]')
                assert (
                    await ws.recv() == '["1","4","realtime:room1","phx_reply",{"response":{},"status":"ok"}]'
                )
                assert await ws.recv() == '["1","1","realtime:room1","phx_close",{}]'
            conn = server.connections[0]
            assert conn.vsn == V2
            assert [f.event for f in conn.received] == ["phx_join", "heartbeat", "broadcast", "phx_leave"]
            assert conn.received[2].frame.binary_kind == 3

    run(body())


def test_raw_binary_broadcast_reaches_only_vsn2_connections() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            async with (
                connect(f"{server.url}/websocket?apikey=k&vsn=1.0.0") as v1,
                connect(f"{server.url}/websocket?apikey=k&vsn=2.0.0") as v2,
            ):
                await v1.send(encode(join_frame(), direction=OUT))
                await v2.send(encode(join_frame(), vsn=V2, direction=OUT))
                await server.wait_joined("room1", 2)
                await v1.recv(), await v2.recv()
                assert await server.broadcast("room1", "blob", b"\x01\x02") == 1
                frame = decode(await v2.recv(), vsn=V2).frame
                assert frame.payload == {"type": "broadcast", "event": "blob", "payload": b"\x01\x02"}
                assert await server.broadcast("room1", "json", {"a": 1}) == 2
                assert decode(await v1.recv(), vsn=V1).frame.payload["event"] == "json"

    run(body())


def test_abort_closes_without_close_frame_and_wait_helpers_time_out_clearly() -> None:
    async def body():
        async with MockRealtimeServer() as server:
            async with connect(f"{server.url}/websocket?apikey=k") as ws:
                conn = await server.wait_connected()
                await server.close_connections(1006)
                assert conn.close_code == 1006
                await ws.wait_closed()
                assert ws.protocol.close_code == 1006 and ws.protocol.close_rcvd is None
            with pytest.raises(
                TimeoutError, match=r"no join #1 of realtime:nowhere after 0.1 s; 1 connection"
            ):
                await server.wait_joined("nowhere", timeout=0.1)

    run(body())
