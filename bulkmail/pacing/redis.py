"""One quota for the whole fleet: send slots handed out by Redis, on Redis' clock.

Every worker sending on a provider account (region + access key id, hashed) asks Redis for
*slots* — instants at which one recipient may leave — in small batches, with one Lua step
(``bulkmail/fleet/scripts/pace_reserve.lua``) that uses the server's ``TIME`` as the only
clock, so hosts' clocks never matter. The script spaces all the account's slots, across
every worker, ``T = 1 / (min(e, K) · (1 - h))`` apart (``e`` the fleet's effective rate,
``K = floor(R)`` the quota, ``h`` the headroom), with no burst allowance.

The window guarantee
--------------------
A slot may be used from its instant up to ``s`` (``slack``) later, never earlier; a worker
that wakes later than that drops the slot and takes the next. So the recipients sent in any
closed one-second window ``[x, x+1]`` all had slots in ``[x - s, x + 1]``, an interval of
``1 + s`` holding at most ``floor((1 + s) / T) + 1`` slots spaced ``>= T``. With
``T >= 1 / (K (1 - h))`` that is ``<= floor((1 + s)(1 - h) K) + 1``, which is ``<= K``
whenever ``(1 + s)(1 - h) < 1``, i.e. ``s < h / (1 - h)``. The defaults ``h = 0.03``,
``s = 0.01`` leave ``K - 1 - floor(0.9797 K)`` recipients of margin for network jitter
(40 at ``K = 2000``, as ``h = 0.04, s = 0.02`` did; ``h = 0.03, s = 0.02`` left 21, which
were not enough on a loaded 2-core box: 66 throttles in 40,000) and pace at ``0.97 K``.
A slot is dropped when its worker wakes more than 10 ms late: 0-23 of 10,000 a worker in
the 4-worker benchmark.

A worker maps Redis time to its own monotonic clock from each reply (``offset = server
time - local time the answer arrived``), which can only make it *late*, never early.

Throttles and the daily cap are fleet-wide: ``throttled()`` runs
``pace_throttle.lua`` (the shared rate × 0.7, at most once a second), ``succeeded()``
counts are sent with the next reservation and recover the shared rate additively, and the
daily limit is a counter per UTC day beside the pacer. A reservation asks for 40-100
slots (as many as are waiting, or twice what was used since the last one), up to half a
second ahead of the account's schedule.

>>> async def main(link) -> None:                                    # doctest: +SKIP
...     pacer = RedisPacer(link, account="3f2a…", rate=2000)
...     await pacer.acquire()        # one recipient may leave now
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from bulkmail.errors import QuotaExhausted
from bulkmail.fleet.keys import pacer_keys
from bulkmail.fleet.link import Link

__all__ = ["RedisPacer"]


class RedisPacer:
    """The :class:`~bulkmail.pacing.base.Pacer` shared by every worker on one account.

    >>> async def send(pacer: "RedisPacer", provider, message) -> None:  # doctest: +SKIP
    ...     await pacer.acquire(message.cost)
    ...     outcome = await provider.send(message)

    ``clock`` is the local monotonic clock; ``server_clock``, for tests only, replaces
    Redis' ``TIME`` inside the script (the test drives both). ``on_exhausted`` is called
    when the fleet's daily limit is used up (the worker stops its sender with it).
    """

    __slots__ = (
        "account", "batch", "daily_limit", "headroom", "horizon", "link", "on_exhausted",
        "slack", "wasted", "_clock", "_cut_at", "_effective", "_error", "_keys",
        "_blocked", "late", "_low", "_ok", "_offset", "_taken", "_rate", "_refilled",
        "_server_clock", "_sleepers",
        "_slots", "_tasks",
        "_waiting",
        "reservations",
    )  # fmt: skip

    def __init__(
        self,
        link: Link,
        account: str,
        *,
        rate: float,
        headroom: float = 0.03,
        slack: float = 0.01,
        daily_limit: int | None = None,
        batch: int = 100,
        clock: Callable[[], float] = time.monotonic,
        server_clock: Callable[[], float] | None = None,
        on_exhausted: Callable[[], None] | None = None,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(
                f"rate must be a positive number of recipients per second, not {rate!r}"
            )
        if not 0 < headroom < 1 or not 0 <= slack < headroom / (1 - headroom):
            raise ValueError("need 0 < headroom < 1 and 0 <= slack < headroom / (1 - headroom)")
        self.link = link
        self.account = account
        self._keys = pacer_keys(account)
        self._rate = float(rate)
        self._effective = float(rate)
        self.headroom = headroom
        self.slack = slack
        self.daily_limit = daily_limit
        self.batch = max(20, batch)
        self.horizon = max(0.5, min(2.0, 40.0 / rate))
        self._clock = clock
        self._server_clock = server_clock
        self.on_exhausted = on_exhausted
        self._slots: deque[float] = deque()  # server times, increasing
        self._offset = 0.0  # server time - local time (a lower bound)
        self._ok = 0
        self._waiting = 0
        self._cut_at = -math.inf
        self._refilled: asyncio.Future[None] | None = None
        self._sleepers: set[asyncio.Future[None]] = set()
        self._error: type[BaseException] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._taken = 0  # slots used since the last reservation
        self._blocked = 0  # acquirers waiting for a reservation
        self.late = 0  # of the wasted: woken too late (the others had no taker in time)
        self._low = 0  # reserve more once fewer than this many are left
        self.wasted = 0  # slots dropped because the worker woke too late for them
        self.reservations = 0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def effective_rate(self) -> float:
        """The fleet's effective rate as Redis last said."""
        return self._effective

    async def acquire(self, cost: int = 1) -> None:
        if cost <= 0:
            raise ValueError(f"cost must be a positive number of recipients, not {cost!r}")
        if cost > max(1, math.floor(self._rate)):
            raise ValueError(f"cost {cost} can never fit in one second at {self._rate:g}/s")
        self._waiting += 1
        try:
            while True:
                at = await self._slot(cost)
                local = at - self._offset
                delay = local - self._clock()
                if delay > 0:
                    await self._sleep(delay)
                if self._clock() - local <= self.slack:
                    return
                self.wasted += cost  # too late: it could bunch with the next slots
                self.late += cost
        finally:
            self._waiting -= 1

    def succeeded(self, n: int = 1) -> None:
        if n > 0:
            self._ok += n

    def throttled(self) -> None:
        now = self._clock()
        if now - self._cut_at < 1.0:
            return
        self._cut_at = now
        self._slots.clear()  # reserved at the old pace
        task = asyncio.get_running_loop().create_task(self._throttle())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def interrupt(self, error: type[BaseException]) -> None:
        """Fail every waiting :meth:`acquire` (sleeping for its slot or for a reservation)."""
        waiting = list(self._sleepers)
        if self._refilled is not None:
            waiting.append(self._refilled)
            self._refilled = None
        self._sleepers.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(error())
        self._error = error

    # -- slots -----------------------------------------------------------------------------

    async def _sleep(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(delay, _wake, future)
        self._sleepers.add(future)
        try:
            await future
        finally:
            timer.cancel()
            self._sleepers.discard(future)

    async def _slot(self, cost: int) -> float:
        """The server time at which ``cost`` slots (taken now) allow a send."""
        while True:
            now = self._clock() + self._offset
            slots = self._slots
            while slots and slots[0] < now - self.slack:
                slots.popleft()
                self.wasted += 1
            if len(slots) >= cost:
                at = slots[0]
                for _ in range(cost):
                    at = slots.popleft()
                self._taken += cost
                if len(slots) < self._low and self._refilled is None:
                    self._start_refill(cost)  # ahead of need: the account's slots stay contiguous
                return at
            if self._refilled is None:
                self._start_refill(cost)
            assert self._refilled is not None
            self._blocked += 1
            try:
                await asyncio.shield(self._refilled)
            finally:
                self._blocked -= 1

    def _start_refill(self, cost: int) -> None:
        loop = asyncio.get_running_loop()
        self._refilled = loop.create_future()
        task = loop.create_task(self._refill_for(cost, self._refilled))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refill_for(self, cost: int, done: asyncio.Future[None]) -> None:
        try:
            await self._reserve(cost)
        except Exception as exc:  # handed to the waiters (if any are left)
            if not done.done():
                done.set_exception(exc)
                done.exception()  # retrieved: a waiter may have gone
            return
        finally:
            if self._refilled is done:
                self._refilled = None
        if not done.done():
            done.set_result(None)

    async def _reserve(self, cost: int) -> None:
        # as many as are waiting for one now (at least 20: <= 0.05 round trips a recipient);
        # a bigger block than the waiters can use in time would only be dropped
        unserved = self._blocked - len(self._slots)
        taken, self._taken = self._taken, 0
        want = max(cost, min(self.batch, max(40, unserved, 2 * taken)))
        self._low = want // 2
        ok, self._ok = self._ok, 0
        test_now = "" if self._server_clock is None else repr(self._server_clock())
        primary, daily = self._keys
        args = [want, repr(self._rate), repr(self.headroom), ok, self.daily_limit or 0,
                repr(self.horizon), test_now]  # fmt: skip
        reply = await self.link.script("pace_reserve", [primary, daily], args)
        arrived = self._clock()
        self.reservations += 1
        n = int(reply[0])
        start, interval, effective, server_now = (float(x) for x in reply[1:])
        self._offset = server_now - arrived
        self._effective = effective
        if n < 0:
            self._exhausted()
            return
        if n == 0:  # the account is booked up to the horizon: come back when it is not
            await asyncio.sleep(max(0.0, start - self.horizon - server_now))
            return
        self._slots.extend(start + i * interval for i in range(n))

    def _exhausted(self) -> None:
        if self.on_exhausted is not None:
            self._error = None
            self.on_exhausted()  # the sender stops and interrupts every waiter
            if self._error is not None:
                return
        raise QuotaExhausted(
            f"the fleet's daily limit of {self.daily_limit} recipients is used up",
            code="DailyLimit",
        )

    async def _throttle(self) -> None:
        test_now = "" if self._server_clock is None else repr(self._server_clock())
        reply = await self.link.script(
            "pace_throttle", [self._keys[0]], [repr(self._rate), test_now]
        )
        self._effective = float(reply)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
