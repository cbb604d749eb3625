"""Proxy benchmark: 200k small frames server -> client, directly and through ``rt-record proxy``, same run.

Three processes share the machine's cores, as they would in production: a websockets server
sending postgres_changes-like text frames (~150 bytes) as fast as it can, a websockets client
receiving them, and, for the proxied rounds, the real ``rt-record proxy`` CLI recording into a
store on disk. Rounds alternate direct/proxied and the best of each is kept (shared machine).

Added latency: the server then sends paced frames carrying ``time.monotonic_ns()`` (one clock
for every process on Linux); the client takes receive time minus send time; the figures are
the proxied percentiles minus the direct ones. At the end the store must hold every frame the
proxy relayed (checked, not assumed).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FRAME = (
    '{"event":"postgres_changes","payload":{"data":{"record":{"id":%d,"status":"paid"},"type":"UPDATE",'
    '"table":"orders"},"ids":[38606455]},"ref":null,"topic":"realtime:orders"}'
)
LATENCY_FRAME = '{"event":"broadcast","payload":{"sent_ns":%d,"n":%d},"ref":null,"topic":"realtime:latency"}'


# ---- the two endpoints, each run in its own process ---------------------------------------------


def _server_main(port_queue) -> None:
    asyncio.run(_server(port_queue))


async def _server(port_queue) -> None:
    from websockets.asyncio.server import serve

    async def handler(ws):
        async for command in ws:
            verb, n, gap = command.split()
            n, gap = int(n), float(gap)
            if verb == "burst":
                for i in range(n):
                    await ws.send(FRAME % i)
            elif verb == "paced":
                for i in range(n):
                    await ws.send(LATENCY_FRAME % (time.monotonic_ns(), i))
                    await asyncio.sleep(gap)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port_queue.put(next(iter(server.sockets)).getsockname()[1])
        await asyncio.Future()


def _client_main(url: str, frames: int, paced: int, gap: float, result_queue) -> None:
    result_queue.put(asyncio.run(_client(url, frames, paced, gap)))


async def _client(url: str, frames: int, paced: int, gap: float) -> dict:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=None) as ws:
        await ws.send(f"burst {frames} 0")
        started = time.perf_counter()
        first = last = await ws.recv()
        for _ in range(frames - 1):
            last = await ws.recv()
        elapsed = time.perf_counter() - started
        assert first == FRAME % 0 and last == FRAME % (frames - 1), "frames changed on the way"
        latencies = []
        if paced:
            await ws.send(f"paced {paced} {gap}")
            for _ in range(paced):
                message = await ws.recv()
                now = time.monotonic_ns()
                latencies.append((now - json.loads(message)["payload"]["sent_ns"]) / 1000)
    return {"seconds": elapsed, "latencies_us": latencies}


def _run_client(url: str, frames: int, paced: int, gap: float) -> dict:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_client_main, args=(url, frames, paced, gap, results))
    proc.start()
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                return results.get(timeout=0.5)
            except queue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"benchmark client failed (exit code {proc.exitcode})") from None
        raise RuntimeError("benchmark client timed out")
    finally:
        proc.join(30)


def _start_proxy(upstream_port: int, store: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", "proxy", "--listen", "127.0.0.1:0", "--upstream",
         f"ws://127.0.0.1:{upstream_port}", "--store", store, "--quiet", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"proxy did not start: {line}{proc.stderr.read()}")
    return proc, line.split("listening on ")[1].split(",")[0]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _store_frames(store: str) -> int:
    from analyzer import connect

    con = connect(store)
    try:
        return con.execute("SELECT count(*) FROM frames WHERE kind = 'text' AND direction = 'in'").fetchone()[0]
    finally:
        con.close()


def run(frames: int = 200_000, rounds: int = 2, paced: int = 2000, gap: float = 0.001) -> dict:
    tmp = tempfile.mkdtemp(prefix="rtbb-proxy-")
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=_server_main, args=(ports,), daemon=True)
    server.start()
    proxy = None
    try:
        port = ports.get(timeout=30)
        store = os.path.join(tmp, "store")
        proxy, proxy_url = _start_proxy(port, store)
        path = "/realtime/v1/websocket?apikey=bench&vsn=1.0.0"
        best = {"direct": float("inf"), "proxy": float("inf")}
        lat: dict[str, list[float]] = {"direct": [], "proxy": []}
        bases = {"direct": f"ws://127.0.0.1:{port}", "proxy": proxy_url}
        for _ in range(rounds):
            for mode, base in bases.items():
                best[mode] = min(best[mode], _run_client(base + path, frames, 0, gap)["seconds"])
        if paced:
            time.sleep(3)  # let the proxy commit the bursts: latency is measured in steady state
            for mode, base in bases.items():
                lat[mode] = _run_client(base + path, 1, paced, gap)["latencies_us"]
        proxy.send_signal(signal.SIGTERM)
        out, err = proxy.communicate(timeout=120)
        if proxy.returncode != 0:
            raise RuntimeError(f"proxy exited with {proxy.returncode}: {err}")
        summary = json.loads(out)
        relayed = rounds * frames + (1 + paced if paced else 0)
        stored = _store_frames(store)
        assert summary["frames_in"] == relayed, (summary["frames_in"], relayed)
        assert stored == relayed, f"the store holds {stored} server frames, the proxy relayed {relayed}"
        result = {
            "frames": frames,
            "rounds": rounds,
            "direct_s": best["direct"],
            "proxy_s": best["proxy"],
            "direct_fps": frames / best["direct"],
            "proxy_fps": frames / best["proxy"],
            "ratio": best["direct"] / best["proxy"],
            "stored": stored,
            "recorded": summary["recorded"],
            "unrecorded": summary["unrecorded"],
            "paced": paced,
        }
        if paced:
            for q in (0.5, 0.9, 0.99, 1.0):
                key = f"p{int(q * 100)}"
                result[f"direct_{key}_us"] = _percentile(lat["direct"], q)
                result[f"proxy_{key}_us"] = _percentile(lat["proxy"], q)
                result[f"added_{key}_us"] = result[f"proxy_{key}_us"] - result[f"direct_{key}_us"]
        return result
    finally:
        if proxy is not None and proxy.poll() is None:
            proxy.kill()
            proxy.wait()
        server.terminate()
        server.join(10)
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict) -> list[str]:
    out = [
        f"proxy, {r['frames']:,} text frames (~150 B) server -> client, best of {r['rounds']} rounds:",
        f"  direct          : {r['direct_s']:.2f} s  {r['direct_fps']:,.0f} frames/s",
        f"  rt-record proxy : {r['proxy_s']:.2f} s  {r['proxy_fps']:,.0f} frames/s (recording to disk)",
        f"  ratio           : {r['ratio']:.2f}x direct (target >= 0.5x; naive asyncio proxy 0.44x, socat 0.63-0.77x)",
        f"  store           : {r['stored']:,} server frames stored = every frame relayed, {r['unrecorded']} unrecorded",
    ]
    if r.get("paced"):
        out.append(
            f"  added latency   : p50 {r['added_p50_us']:.0f} us, p99 {r['added_p99_us']:.0f} us "
            f"({r['paced']} paced frames; direct p50 {r['direct_p50_us']:.0f} us / p99 {r['direct_p99_us']:.0f} us, "
            f"proxied {r['proxy_p50_us']:.0f} / {r['proxy_p99_us']:.0f} us)"
        )
    return out


if __name__ == "__main__":
    print("\n".join(report(run())))
