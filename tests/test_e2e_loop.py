"""The end-to-end loop of the whole tool, with the real commands as subprocesses:

1. record: the official client (realtime 2.34, logging into ``realtime.log``) subscribes through
   ``rt-record proxy`` to the mock server, which pushes changes; the log is added with
   ``recorder.logfiles.record_logs``;
2. replay with faults: ``rt-replay serve`` replays that session with ``reject-join``,
   ``corrupt`` and ``disconnect`` faults (seeded);
3. record again: a fresh official client subscribes to the replay through a second
   ``rt-record proxy``; its log is added to the second store;
4. analyze: ``rt-analyze report --format json`` on the second store names each injected fault
   with the right cause, while the first store, recorded without faults, has no incident:
   ``reject-join=Unauthorized`` -> rls, ``corrupt=P,as:json`` -> invalid_payload (undecodable,
   with the client's "Unrecognized message format" lines), ``disconnect=after:`` -> network (1006);
   and, in a second pass at max speed, ``corrupt=P,as:null`` -> invalid_payload (null_record),
   ``close=1011`` -> network.

Step 1 runs once for the module (fixture ``first``); each test replays it with other faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

from analyzer import connect as connect_store
from recorder.logfiles import record_logs
from recorder.mockserver import MockRealtimeServer
from recorder.replay import load_recording, parse_fault, plan_replay
from tests.support import Collector, a_jwt

ROOT = Path(__file__).resolve().parents[1]
SUBSCRIBED = RealtimeSubscribeStates.SUBSCRIBED
CHANNEL_ERROR = RealtimeSubscribeStates.CHANNEL_ERROR
TS = "2026-11-24T08:00:00.000Z"
CHANGES = 12
GAP = 0.1  # seconds between recorded changes
FAULTS = ["reject-join=Unauthorized,times:1", "corrupt=0.25,as:json", "disconnect=after:0.55s"]
SEED = 4


@contextlib.contextmanager
def client_log(path: Path):
    """The official client's loggers written to ``path`` as a bot would (UTC asctime, DEBUG)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    formatter = logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger = logging.getLogger("realtime")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def start(args: list[str], ready: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Start a command; return it, the URL of its ``ready`` line ("listening on URL") and its first lines."""
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if ready in line:
            url = line.split(ready, 1)[1].split(",")[0].strip()
            return proc, url, lines
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"{args} did not start: {''.join(lines)}{err}")


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def rt_record_proxy(upstream: str, store: Path):
    return start(["-m", "recorder.cli", "proxy", "--listen", "127.0.0.1:0", "--upstream", upstream,
                  "--store", str(store), "--quiet", "--format", "json"], "listening on ")


def rt_replay_serve(store: Path, *args: str):
    return start(["-c", "from analyzer.replay_cli import main; main()", "serve", "--store", str(store),
                  "--listen", "127.0.0.1:0", "--format", "json", *args], "listening on ")


def frames(store: Path, where: str = "true") -> list[dict]:
    con = connect_store(store)
    try:
        cur = con.execute(
            f"SELECT *, min(ts) OVER (PARTITION BY session_id) AS started FROM frames WHERE {where} "
            "ORDER BY started, session_id, seq"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def report(store: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "report", "--store", str(store), "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


async def subscribe(url: str, states: Collector) -> tuple[AsyncRealtimeClient, Collector]:
    client = AsyncRealtimeClient(url + "/realtime/v1", token=a_jwt())
    await client.connect()
    changes = Collector()
    channel = client.channel("orders")
    channel.on_postgres_changes("*", schema="public", table="orders", callback=changes)
    await channel.subscribe(states)
    return client, changes


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> Path:
    """Step 1: the official client recorded through rt-record proxy, its log added to the store."""
    first = tmp_path_factory.mktemp("first")

    async def record() -> list:
        async with MockRealtimeServer() as upstream:
            proxy, url, _ = rt_record_proxy(f"ws://127.0.0.1:{upstream.port}", first / "store")
            try:
                with client_log(first / "realtime.log"):
                    states = Collector()
                    client, changes = await subscribe(url, states)
                    assert states.items == [(SUBSCRIBED, None)]
                    await upstream.wait_joined("orders")
                    loop = asyncio.get_running_loop()
                    t0 = loop.time()
                    for i in range(CHANGES):
                        await asyncio.sleep(max(0.0, t0 + (i + 1) * GAP - loop.time()))
                        await upstream.insert("orders", {"id": i, "status": "new"}, commit_timestamp=TS)
                    await changes.wait(CHANGES, timeout=10)
                    await client.close()
                    await asyncio.sleep(0.1)
            finally:
                summary = json.loads(stop(proxy))
            assert summary["failure"] is None and summary["unrecorded"] == 0
            return [c["data"]["record"] for c in changes.items]

    recorded = asyncio.run(asyncio.wait_for(record(), 30))
    assert recorded == [{"id": i, "status": "new"} for i in range(CHANGES)]
    record_logs([str(first / "realtime.log")], str(first / "store"), tz="UTC", say=lambda msg: None)
    return first


def test_the_first_recording_has_no_incident(first) -> None:
    clean = report(first / "store")
    assert clean["incidents"] == [], clean
    rows = frames(first / "store", "direction = 'in' AND event = 'postgres_changes'")
    assert len(rows) == CHANGES


@pytest.mark.filterwarnings("ignore:ConnectionClosed.(code|reason) is deprecated:DeprecationWarning")
def test_replay_with_refused_join_corrupt_json_and_disconnect_is_classified(first, tmp_path) -> None:
    second = tmp_path / "second"
    second.mkdir()

    # what the faults will do, known in advance: same recording, faults and seed -> same plan
    recording = load_recording(first / "store")
    plan = plan_replay(recording, [parse_fault(f) for f in FAULTS], SEED)["realtime:orders"]
    corrupted = [i.push.offset for i in plan if i.corrupt]
    assert [i.corrupt for i in plan if i.corrupt] == ["json"] * len(corrupted) and corrupted
    intact = [i for i in plan if i.push.event == "postgres_changes" and not i.corrupt]

    # ---- 2. + 3. replay with faults through rt-replay serve, record the replayed client again ---------------
    replay, replay_url, replay_lines = rt_replay_serve(
        first / "store", "--speed", "1", "--seed", str(SEED), *[a for f in FAULTS for a in ("--fault", f)]
    )
    assert any("replaying session" in line for line in replay_lines)

    async def replayed() -> tuple[list, list]:
        proxy, url, _ = rt_record_proxy(replay_url.removesuffix("/realtime/v1"), second / "store")
        try:
            with client_log(second / "realtime.log"):
                states = Collector()
                client, changes = await subscribe(url, states)
                # refused once (reject-join), rejoined after 1 s, cut (disconnect), rejoined again
                await states.wait(4, timeout=10)
                await changes.wait(len(intact) - 1, timeout=10)  # a change due while away may be lost
                await asyncio.sleep(2 * GAP + 0.3)
                await client.close()
                await asyncio.sleep(0.1)
        finally:
            stop(proxy)
        return [s for s, _ in states.items], [c["data"]["record"] for c in changes.items]

    try:
        states, got = asyncio.run(asyncio.wait_for(replayed(), 40))
    finally:
        summary = json.loads(stop(replay))
    assert states == [CHANNEL_ERROR, SUBSCRIBED, CHANNEL_ERROR, SUBSCRIBED]
    assert summary["refused_joins"] == 1 and summary["corrupted"] == len(corrupted)
    first_conn, second_conn = summary["connections"]
    assert first_conn["ended"] == "cut by fault disconnect=after:0.55s: dropped (1006)"
    assert second_conn["resumed"]
    expected = [i.push.frame.payload["data"]["record"] for i in intact]
    assert len(got) == len(expected) - summary["lost"]
    assert all(record in expected for record in got) and got == sorted(got, key=expected.index)
    record_logs([str(second / "realtime.log")], str(second / "store"), tz="UTC", say=lambda msg: None)

    # the second recording holds what the replayed client saw: the refusal, the cut frames, the drop
    rows = frames(second / "store")
    sessions = list(dict.fromkeys(r["session_id"] for r in rows))
    assert len(sessions) == 2
    replies = [json.loads(r["payload"]) for r in rows if r["event"] == "phx_reply" and r["topic"] == "realtime:orders"]
    assert replies[0]["status"] == "error" and replies[0]["response"]["reason"].startswith("Unauthorized: ")
    assert [r["status"] for r in replies[1:]] == ["ok", "ok"]
    bad = [r for r in rows if r["direction"] == "in" and r["decode_error"]]
    assert len(bad) == len(corrupted)
    closes = [r for r in rows if r["kind"] == "close" and r["session_id"] == sessions[0]]
    assert closes and closes[0]["close_code"] == 1006

    # ---- 4. analyze: each injected fault is named with the right cause -------------------------------------
    faulty = report(second / "store")
    causes: dict[str, list[dict]] = {}
    for incident in faulty["incidents"]:
        causes.setdefault(incident["cause"], []).append(incident)
    assert set(causes) == {"rls", "invalid_payload", "network"}, faulty
    # reject-join=Unauthorized: the refused subscription
    assert [(i["detail"], i["count"]) for i in causes["rls"]] == [("channel_unauthorized", 1)]
    assert "Unauthorized: You do not have permissions" in causes["rls"][0]["summary"]
    # corrupt=...,as:json: the frames that are not JSON any more, and the client's lines about them
    assert {i["detail"] for i in causes["invalid_payload"]} == {"undecodable"}
    assert sum(i["count"] for i in causes["invalid_payload"]) == len(corrupted)
    assert "the client logged" in causes["invalid_payload"][0]["summary"]
    # disconnect=after:...: the dropped connection (1006) and the reconnect
    assert [i["detail"] for i in causes["network"]] == ["abnormal_close"]
    assert "1006" in causes["network"][0]["summary"]


@pytest.mark.filterwarnings("ignore:ConnectionClosed.(code|reason) is deprecated:DeprecationWarning")
def test_replay_with_null_records_and_close_1011_is_classified(first, tmp_path) -> None:
    faults = ["corrupt=0.3,as:null", "close=1011"]
    recording = load_recording(first / "store")
    plan = plan_replay(recording, [parse_fault(f) for f in faults], SEED)["realtime:orders"]
    nulls = [i for i in plan if i.corrupt == "null"]
    assert nulls and all(i.push.event == "postgres_changes" for i in nulls)

    # ---- 2. + 3. at max speed: the client accepts "record": null, then the server closes with 1011 -------------
    replay, replay_url, _ = rt_replay_serve(
        first / "store", "--speed", "max", "--seed", str(SEED), *[a for f in faults for a in ("--fault", f)]
    )

    async def replayed() -> tuple[list, list]:
        proxy, url, _ = rt_record_proxy(replay_url.removesuffix("/realtime/v1"), tmp_path / "store")
        try:
            with client_log(tmp_path / "realtime.log"):
                states = Collector()
                client, changes = await subscribe(url, states)
                await changes.wait(CHANGES, timeout=10)
                await states.wait(3, timeout=10)  # closed with 1011 after the last frame, reconnected, rejoined
                await asyncio.sleep(0.2)
                await client.close()
                await asyncio.sleep(0.1)
        finally:
            stop(proxy)
        return [s for s, _ in states.items], [c["data"]["record"] for c in changes.items]

    try:
        states, got = asyncio.run(asyncio.wait_for(replayed(), 30))
    finally:
        summary = json.loads(stop(replay))
    assert states == [SUBSCRIBED, CHANNEL_ERROR, SUBSCRIBED]
    assert got.count(None) == len(nulls) == summary["corrupted"]
    assert summary["connections"][0]["ended"] == "cut by fault close=1011: closed with 1011"
    record_logs([str(tmp_path / "realtime.log")], str(tmp_path / "store"), tz="UTC", say=lambda msg: None)

    # ---- 4. analyze -------------------------------------------------------------------------------------------
    faulty = report(tmp_path / "store")
    causes: dict[str, list[dict]] = {}
    for incident in faulty["incidents"]:
        causes.setdefault(incident["cause"], []).append(incident)
    assert set(causes) == {"invalid_payload", "network"}, faulty
    # corrupt=...,as:null: changes whose record is null reached the client's callback
    assert {i["detail"] for i in causes["invalid_payload"]} == {"null_record"}
    assert sum(i["count"] for i in causes["invalid_payload"]) == len(nulls)
    # close=1011: the server closed the connection abnormally, the client reconnected
    assert [i["detail"] for i in causes["network"]] == ["abnormal_close"]
    assert "1011" in causes["network"][0]["summary"]
