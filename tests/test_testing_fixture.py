"""recorder.testing: a recording as a pytest fixture for a bot, driven by the official client."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from realtime import AsyncRealtimeClient

from recorder.errors import BlackboxError
from recorder.testing import recorded_changes, replay_server
from tests.support import a_jwt

HEALTHY = Path(__file__).resolve().parent.parent / "fixtures" / "scenarios" / "healthy" / "store"


async def collect(url: str, count: int, timeout: float = 10.0) -> list[dict]:
    """What a bot subscribed to public.orders receives: the first ``count`` callbacks."""
    got: list[dict] = []
    done = asyncio.Event()

    def on_change(payload: dict) -> None:
        got.append(payload)
        if len(got) >= count:
            done.set()

    client = AsyncRealtimeClient(url, token=a_jwt())
    await client.connect()
    try:
        channel = client.channel("public:orders")
        channel.on_postgres_changes("*", schema="public", table="orders", callback=on_change)
        await channel.subscribe()
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await client.close()
    return got


@pytest.fixture
def realtime():
    with replay_server(HEALTHY, speed="max") as server:
        yield server


def test_recorded_changes_are_the_store_inserts() -> None:
    changes = recorded_changes(HEALTHY)
    assert [c["data"]["type"] for c in changes] == ["INSERT", "INSERT", "INSERT"]
    assert [c["data"]["table"] for c in changes] == ["orders"] * 3
    assert len({c["data"]["record"]["id"] for c in changes}) == 3


def test_official_client_gets_exactly_the_recorded_payloads(realtime) -> None:
    assert realtime.url.startswith("ws://127.0.0.1:") and realtime.url.endswith("/realtime/v1")
    got = asyncio.run(collect(realtime.url, 3))
    assert got == recorded_changes(HEALTHY)
    assert realtime.stats.total("joins") == 1
    assert realtime.stats.total("sent") >= 3


def test_server_is_gone_after_the_block() -> None:
    with replay_server(HEALTHY) as server:
        port = int(server.url.split(":")[2].split("/")[0])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_faults_reach_the_client() -> None:
    with replay_server(HEALTHY, faults=["drop=1"], seed=3) as server:
        with pytest.raises(TimeoutError):
            asyncio.run(collect(server.url, 1, timeout=1.5))
        assert server.stats.total("dropped") == 3


def test_bad_store_and_bad_fault_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BlackboxError) as exc:
        with replay_server(tmp_path):
            pass
    assert "\n" not in str(exc.value) and str(tmp_path) in str(exc.value)
    with pytest.raises(BlackboxError) as exc:
        with replay_server(HEALTHY, faults=["explode=1"]):
            pass
    assert "explode" in str(exc.value)
