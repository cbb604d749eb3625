"""What many tests share: JWT-shaped keys, a hard-timeout runner and a callback collector."""

from __future__ import annotations

import asyncio
import base64
import json
import time


def b64url(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def a_jwt(role: str = "anon", signature: str = "fakeSigPlanted-x9Q") -> str:
    """A JWT-shaped anon key with a recognisable signature (the mock servers do not check it)."""
    claims = {"iss": "supabase", "ref": "mockproject", "role": role, "iat": 1764000000, "exp": 2079000000}
    return f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url(claims)}.{signature}"


def run(coro, timeout: float = 20.0):
    """Run one async test body with a hard timeout (no pytest-asyncio here)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Collector:
    """Callback target that lets a test await the n-th call (and its arrival time) instead of sleeping."""

    def __init__(self) -> None:
        self.items: list = []
        self.times: list[float] = []
        self._changed = asyncio.Event()

    def __call__(self, *args) -> None:
        self.items.append(args[0] if len(args) == 1 else args)
        self.times.append(time.monotonic())
        self._changed.set()

    async def wait(self, count: int, timeout: float = 5.0) -> list:
        async def until():
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.items
