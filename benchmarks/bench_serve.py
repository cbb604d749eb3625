"""Replay benchmark: ``rt-replay serve`` to a plain websockets client, against a plain websockets
server sending the same frames from memory, same run.

Throughput: a recorded session of 200k postgres_changes frames (~190 bytes) served at
``--speed max``; the client joins, then counts frames from the join reply to the last frame.
The baseline server answers the join and sends the same frames from a list as fast as it can
(``await ws.send`` in a loop): the figure is frames/s and the ratio to that baseline.

Timing drift: a session of 2,000 frames 1 ms apart served at ``--speed 1``; the client takes
each frame's receive time minus its schedule (join reply received + recorded offset), and the
baseline is a plain asyncio server sleeping until each frame's time in the same way. Server and
client are separate processes (they share the machine's cores, as a bot and the tool would).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import shutil
import tempfile
import time

TOPIC = "realtime:orders"
BINDING = {"event": "*", "schema": "public", "table": "orders"}
BINDING_ID = 38606455
CHANGE = (
    '{"event":"postgres_changes","payload":{"data":{"columns":[{"name":"id","type":"int8"}],'
    '"commit_timestamp":"2026-11-24T08:00:00.000Z","errors":null,"record":{"id": %d, "status": "paid"},'
    '"schema":"public","table":"orders","type":"UPDATE"},"ids":[38606455]},"ref":null,"topic":"realtime:orders"}'
)
JOIN = (
    '{"event":"phx_join","payload":{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"",'
    '"enabled":false},"private":false,"postgres_changes":[{"event":"*","schema":"public","table":"orders"}]}},'
    '"topic":"realtime:orders","ref":"1","join_ref":"1"}'
)
REPLY = (
    '{"event":"phx_reply","payload":{"response":{"postgres_changes":[{"event":"*","id":38606455,'
    '"schema":"public","table":"orders"}]},"status":"ok"},"ref":"1","topic":"realtime:orders"}'
)


def make_store(path: str, frames: int, gap: float) -> None:
    """A store holding one session: join, reply, then ``frames`` changes ``gap`` seconds apart."""
    import pyarrow as pa

    from recorder.codec import CAPTURE_SCHEMA, IN, OUT
    from recorder.store import StoreWriter

    start = 1_795_000_000_000_000
    raws = [JOIN.encode(), REPLY.encode()] + [(CHANGE % i).encode() for i in range(frames)]
    ts = [start, start + 1000] + [start + 1000 + round((i + 1) * gap * 1e6) for i in range(frames)]
    n = len(raws)
    table = pa.table(
        {
            "ts": pa.array(ts, pa.int64()).cast(CAPTURE_SCHEMA.field("ts").type),
            "session_id": ["bench"] * n,
            "seq": list(range(n)),
            "direction": [OUT, IN] + [IN] * frames,
            "kind": ["text"] * n,
            "vsn": ["1.0.0"] * n,
            "raw": pa.array(raws, pa.binary()),
            "close_code": pa.array([None] * n, pa.int32()),
            "info": pa.array([None] * n, pa.string()),
            "source": ["import"] * n,
        },
        schema=CAPTURE_SCHEMA,
    )
    with StoreWriter(path, "bench") as writer:
        writer.append("frames_capture", table)


# ---- servers (each in its own process) ------------------------------------------------------------


def _replay_main(store: str, speed: str, urls) -> None:
    from recorder.replay import serve_replay

    asyncio.run(serve_replay(store, "127.0.0.1:0", speed=speed, seed=1, ready=urls.put))


def _baseline_main(frames: int, gap: float, urls) -> None:
    asyncio.run(_baseline(frames, gap, urls))


async def _baseline(frames: int, gap: float, urls) -> None:
    """Answer the join, then send the frames from memory: all at once (gap 0) or each at its time."""
    from websockets.asyncio.server import serve

    messages = [CHANGE % i for i in range(frames)]

    async def handler(ws):
        async for message in ws:
            if '"phx_join"' not in message:
                continue
            await ws.send(REPLY)
            if gap == 0:
                for m in messages:
                    await ws.send(m)
                continue
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i, m in enumerate(messages):
                delay = start + (i + 1) * gap - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(m)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        urls.put(f"ws://127.0.0.1:{port}/realtime/v1")
        await asyncio.Future()


# ---- the client -----------------------------------------------------------------------------------


def _client_main(url: str, frames: int, gap: float, results) -> None:
    results.put(asyncio.run(_client(url, frames, gap)))


async def _client(url: str, frames: int, gap: float) -> dict:
    """Join, then receive ``frames`` frames: elapsed seconds, and each frame's lateness (ms)."""
    from websockets.asyncio.client import connect

    async with connect(url + "/websocket?vsn=1.0.0", compression=None, max_size=None) as ws:
        await ws.send(JOIN)
        while '"phx_reply"' not in (reply := await ws.recv()) or TOPIC not in reply:
            pass
        t0 = time.monotonic()
        arrivals = []
        first = last = None
        for _ in range(frames):
            last = await ws.recv()
            if gap:
                arrivals.append(time.monotonic())
            first = first or last
        elapsed = time.monotonic() - t0
    assert first == CHANGE % 0 and last == CHANGE % (frames - 1), "frames changed on the way"
    drift_ms = [(t - (t0 + (i + 1) * gap)) * 1000 for i, t in enumerate(arrivals)]
    return {"seconds": elapsed, "drift_ms": drift_ms}


def _run(server_target, server_args: tuple, frames: int, gap: float) -> dict:
    ctx = multiprocessing.get_context("spawn")
    urls, results = ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=server_target, args=(*server_args, urls), daemon=True)
    server.start()
    try:
        url = urls.get(timeout=120)
        client = ctx.Process(target=_client_main, args=(url, frames, gap, results))
        client.start()
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                try:
                    return results.get(timeout=0.5)
                except queue.Empty:
                    if not client.is_alive():
                        raise RuntimeError(f"benchmark client failed (exit code {client.exitcode})") from None
            raise RuntimeError("benchmark client timed out")
        finally:
            client.join(30)
    finally:
        server.terminate()
        server.join(10)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(frames: int = 200_000, rounds: int = 3, paced: int = 2000, gap: float = 0.001) -> dict:
    tmp = tempfile.mkdtemp(prefix="rtbb-serve-")
    try:
        burst_store = os.path.join(tmp, "burst")
        paced_store = os.path.join(tmp, "paced")
        make_store(burst_store, frames, 0.0)
        make_store(paced_store, paced, gap)
        best = {"replay": float("inf"), "baseline": float("inf")}
        for _ in range(rounds):
            best["baseline"] = min(best["baseline"], _run(_baseline_main, (frames, 0.0), frames, 0.0)["seconds"])
            best["replay"] = min(best["replay"], _run(_replay_main, (burst_store, "max"), frames, 0.0)["seconds"])
        drift = {
            "replay": _run(_replay_main, (paced_store, "1"), paced, gap)["drift_ms"],
            "baseline": _run(_baseline_main, (paced, gap), paced, gap)["drift_ms"],
        }
        result = {
            "frames": frames,
            "rounds": rounds,
            "replay_s": best["replay"],
            "baseline_s": best["baseline"],
            "replay_fps": frames / best["replay"],
            "baseline_fps": frames / best["baseline"],
            "ratio": best["baseline"] / best["replay"],
            "paced": paced,
            "gap_ms": gap * 1000,
        }
        for mode, values in drift.items():
            late = [abs(v) for v in values]
            for q in (0.5, 0.99, 1.0):
                result[f"{mode}_drift_p{int(q * 100)}_ms"] = _percentile(late, q)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict) -> list[str]:
    return [
        f"replay serve, {r['frames']:,} recorded postgres_changes frames (~190 B) at --speed max, best of {r['rounds']}:",
        f"  rt-replay serve : {r['replay_s']:.2f} s  {r['replay_fps']:,.0f} frames/s (target >= 50,000)",
        f"  plain websockets: {r['baseline_s']:.2f} s  {r['baseline_fps']:,.0f} frames/s (same frames from memory)",
        f"  ratio           : {r['ratio']:.2f}x the plain server",
        f"  timing drift at --speed 1, {r['paced']:,} frames {r['gap_ms']:g} ms apart: "
        f"p50 {r['replay_drift_p50_ms']:.2f} ms, p99 {r['replay_drift_p99_ms']:.2f} ms, max {r['replay_drift_p100_ms']:.2f} ms "
        f"(target p99 <= 5 ms; plain asyncio sleep-until sender p50 {r['baseline_drift_p50_ms']:.2f} / "
        f"p99 {r['baseline_drift_p99_ms']:.2f} ms)",
    ]


if __name__ == "__main__":
    print("\n".join(report(run())))
