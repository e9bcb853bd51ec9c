"""The concurrency gate: bounds requests in flight to what the rate and latency need.

In flight ≈ rate × latency (Little's law), with a floor and a cap::

    gate = Gate(lambda: limiter.effective_rate, floor=8, cap=512)
    await gate.acquire()
    try:
        ...  # one request
    finally:
        gate.release()
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable


class Gate:
    """Bounds requests in flight to what the rate and observed latency need (Little's law)."""

    __slots__ = ("_in_use", "_waiters", "_latency", "_floor", "_cap", "_rate")

    def __init__(self, rate: Callable[[], float], *, floor: int, cap: int) -> None:
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._latency = 0.05  # EWMA of seconds per attempt; starts at a plausible 50 ms
        self._floor = floor
        self._cap = cap
        self._rate = rate

    @property
    def limit(self) -> int:
        needed = math.ceil(2.0 * self._rate() * self._latency) + self._floor
        return min(self._cap, needed)

    @property
    def in_use(self) -> int:
        return self._in_use

    def observe(self, seconds: float) -> None:
        self._latency += 0.05 * (seconds - self._latency)

    async def acquire(self) -> None:
        if self._in_use < self.limit and not self._waiters:
            self._in_use += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release()  # woken and cancelled at once: hand the slot on
            else:
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        self._in_use -= 1
        while self._waiters and self._in_use < self.limit:
            future = self._waiters.popleft()
            if not future.done():
                self._in_use += 1
                future.set_result(None)


__all__ = ["Gate"]
