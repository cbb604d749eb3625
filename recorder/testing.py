"""Recordings as test fixtures for your own bot: a replay server in a background thread.

Your bot's tests then run against what production really sent, without a Supabase project::

    from recorder.testing import recorded_changes, replay_server

    @pytest.fixture
    def realtime():
        with replay_server("fixtures/scenarios/healthy/store", speed="max") as server:
            yield server                      # server.url: ws://127.0.0.1:PORT/realtime/v1

    def test_bot_sees_every_insert(realtime):
        got = asyncio.run(my_bot.collect(realtime.url, seconds=2))
        assert got == recorded_changes("fixtures/scenarios/healthy/store")

The server is :class:`recorder.replay.ReplayServer` on its own event loop, so it works from
plain synchronous tests, from ``asyncio.run`` inside them and from async test frameworks alike.
Faults (``faults=["corrupt=0.2"]``, ``["disconnect=after:5s"]``...) take the ``--fault``
specs of ``rt-replay serve``; ``seed`` makes them the same on every run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recorder.replay import Recording, ReplayServer, ReplayStats, load_recording, parse_fault, parse_speed

__all__ = ["RunningReplay", "recorded_changes", "replay_server"]

START_TIMEOUT = 10.0


@dataclass
class RunningReplay:
    """A replay server running in a background thread."""

    url: str  # ws://127.0.0.1:PORT/realtime/v1, what a Supabase client is given
    recording: Recording
    stats: ReplayStats  # live: connections, joins, frames sent, faults injected


@contextmanager
def replay_server(
    store: str | Path,
    *,
    session: str | None = None,
    speed: str | float = "max",
    faults: Sequence[str] = (),
    seed: int = 0,
    host: str = "127.0.0.1",
) -> Iterator[RunningReplay]:
    """Serve one recorded session of ``store`` on a free port until the ``with`` block ends.

    Bad options or a store without a replayable session raise the same one-line errors as
    ``rt-replay serve`` (:class:`~recorder.errors.ConfigError`, ``InputError``, ``StoreError``)
    before anything listens.
    """
    recording = load_recording(store, session)
    server = ReplayServer(
        recording, host=host, port=0, speed=parse_speed(speed), faults=[parse_fault(f) for f in faults], seed=seed
    )
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            await server.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="rt-replay-fixture", daemon=True)
    thread.start()
    if not started.wait(START_TIMEOUT):
        raise TimeoutError(f"the replay server did not start within {START_TIMEOUT:.0f} s")
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    try:
        yield RunningReplay(url=server.url, recording=recording, stats=server.stats)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(START_TIMEOUT)
        loop.close()


def recorded_changes(store: str | Path, *, session: str | None = None, topic: str | None = None) -> list[dict]:
    """The ``postgres_changes``/``broadcast`` payloads the recorded session pushed, in order.

    What a client's callbacks should receive from :func:`replay_server` without faults
    (``topic`` picks one channel; by default all, in recorded order per topic).
    """
    recording = load_recording(store, session)
    out: list[dict] = []
    for name, recorded in recording.topics.items():
        if topic is not None and name != topic:
            continue
        for push in recorded.pushes:
            frame = push.frame
            if frame is not None and frame.event in ("postgres_changes", "broadcast") and isinstance(frame.payload, dict):
                out.append(frame.payload)
    return out
