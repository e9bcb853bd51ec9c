"""The concurrency gate: bounds requests in flight to what the service needs, not more.

Little's law says a service answering in ``S`` seconds needs ``X·S`` requests in flight to
carry ``X`` per second. The gate sizes itself from two measurements and a bound::

    limit = min(cap, max(floor, ceil(2 · min(rate, X) · S_low)) + slow [+ ceil(0.02 · rate)])

- ``S_low``: a low percentile (the 10th) of the *service's* own time — from the request
  written to the answer read, as the HTTP layer reports it in ``Outcome.service_time`` —
  over the last 256 answers. Time spent queueing inside bulkmail (waiting for the gate, the
  connection pool or a busy event loop) is not in it, so a long queue cannot make the gate
  grow: that is what let it feed on itself before (500 connections at ``rate: 1000000``).
- ``X``: the completions per second observed over the last window (0.1 s or three service
  times, whichever is longer; it falls by at most half a window at a time), capped
  by the pacer's rate. With no queueing (``S_low`` ≈ time per request) the limit doubles each
  window, so against a slow service (80 ms a call) it grows in a handful of windows; once
  requests queue inside bulkmail (time per request ≥ 2 ``S_low``) it stops growing, because
  ``X = in flight / time per request`` falls while ``S_low`` does not rise.

A low percentile ignores the service's slow answers, and those hold slots too: an answer over
10 × ``S_low`` and over ``S_low`` + 50 ms (longer than our own loop lag gets) counts as
slow, and the slots they hold — Little's law on them alone: seconds of slow answers per
second — are added. 5 % of answers taking 2 s at 1,000/s hold 100 slots.

When the pacer is what limits (``X`` ≥ 80 % of its rate), 2 % of a second's quota is added:
the limiter lets that many go at once to catch up after a stall (its burst tolerance τ at the
default 2 % headroom), and each of them holds a slot while it waits for its turn.

The factor 2 is the bound on self-inflicted queueing. ``floor`` (32 by default) is kept in
flight whatever the measurements say: on a fast service Little's law asks for only a handful
(0.3 ms × 10,000/s = 3), but each round trip between bulkmail and its peer costs a wake-up of
both, and 32 in flight let each wake-up carry many answers — the figure that did best when
tuned by hand (benchmarks/README.md). ``cap`` is the ceiling (``concurrency: N`` pins floor
and cap at N). A provider that reports no service time (SMTP) falls back to the time of
the whole attempt, which is what the gate used before::

    gate = Gate(lambda: limiter.effective_rate, floor=32, cap=512)
    await gate.acquire()
    try:
        ...  # one request
    finally:
        gate.observe(attempt_seconds, service_seconds)
        gate.release()
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Gate"]

_SAMPLES = 256  # service times kept (a ring)
_EVERY = 32  # recompute the percentile after this many new samples
_PERCENTILE = 0.10
_HEADROOM = 2.0  # in flight may carry up to this many times the service's own time
_WINDOW = 0.1  # seconds over which throughput is counted, at least ...
_ROUND_TRIPS = 3  # ... this many low service times
_START_LATENCY = 0.05  # what S is assumed to be before any answer
_SLOW_FACTOR = 10  # an answer over 10 × S_low and over S_low + 50 ms is a slow answer ...
_SLOW_MARGIN = 0.05  # ... of the service (our own loop lag is not that long)
_PACED = 0.8  # throughput at this share of the pacer's rate or more: the pacer limits
_CATCH_UP = 0.02  # then add this share of a second's quota (the limiter's burst tolerance)


class Gate:
    """Bounds requests in flight to ``max(floor, 2 × throughput × low service time)``.

    >>> gate = Gate(lambda: 100.0, floor=4, cap=64, clock=lambda: 0.0)
    >>> gate.limit                    # nothing observed yet: the floor
    4

    ``clock`` (seconds, monotonic) is injectable for tests; see the module docstring for
    the rule and why it cannot feed on its own queue.
    """

    __slots__ = (
        "_cap", "_clock", "_count", "_done", "_filled", "_floor", "_in_use", "_limit", "_pos",
        "_rate", "_samples", "_service", "_slow", "_slow_sum", "_throughput", "_waiters",
        "_window_start",
    )  # fmt: skip

    def __init__(
        self,
        rate: Callable[[], float],
        *,
        floor: int,
        cap: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if floor < 1 or cap < 1:
            raise ValueError("floor and cap must be at least 1")
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._floor = min(floor, cap)
        self._cap = cap
        self._rate = rate
        self._clock = clock
        self._samples = [0.0] * _SAMPLES
        self._pos = 0
        self._filled = 0
        self._count = 0
        self._service = _START_LATENCY
        self._throughput = 0.0  # completions per second, last full window
        self._done = 0  # completions in the current window
        self._window_start: float | None = None
        self._slow = 0.0  # requests held at the service by slow answers (Little's law on them)
        self._slow_sum = 0.0  # seconds of slow answers in the current window
        self._limit = self._floor

    @property
    def limit(self) -> int:
        """How many requests may be in flight now."""
        return self._limit

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def service_time(self) -> float:
        """The low percentile of the service's time the limit is sized from (seconds)."""
        return self._service

    @property
    def throughput(self) -> float:
        """Completions per second over the last full window."""
        return self._throughput

    def observe(self, seconds: float, service: float | None = None) -> None:
        """One attempt ended after ``seconds``; the service itself took ``service`` of them
        (``None``: unknown, use ``seconds``)."""
        took = seconds if service is None else service
        if took > max(_SLOW_FACTOR * self._service, self._service + _SLOW_MARGIN):
            self._slow_sum += took  # the service was slow, not our loop: it needs its slots
        self._samples[self._pos] = took
        self._pos = (self._pos + 1) % _SAMPLES
        if self._filled < _SAMPLES:
            self._filled += 1
        self._done += 1
        self._count += 1
        if self._count >= _EVERY or self._filled < _EVERY:
            self._count = 0
            self._update()

    def _update(self) -> None:
        now = self._clock()
        if self._window_start is None:
            self._window_start = now
        elapsed = now - self._window_start
        if elapsed >= max(_WINDOW, _ROUND_TRIPS * self._service):
            # Answers to a slow service come in waves one round trip apart: count over a few
            # of them, and fall at most by half a window (a lull in what the intake hands
            # out must not shrink the gate below what the next wave needs).
            self._throughput = max(self._done / elapsed, 0.5 * self._throughput)
            self._slow = max(self._slow_sum / elapsed, 0.5 * self._slow)
            self._done = 0
            self._slow_sum = 0.0
            self._window_start = now
        filled = self._filled
        ordered = sorted(self._samples[:filled]) if filled < _SAMPLES else sorted(self._samples)
        self._service = ordered[int(_PERCENTILE * (filled - 1))]
        rate = self._rate()
        carried = min(rate, self._throughput)
        needed = max(self._floor, math.ceil(_HEADROOM * carried * self._service))
        needed += math.ceil(self._slow)
        if carried >= _PACED * rate:
            # The pacer is what limits: after the loop stalls (a compose batch, a late timer)
            # it lets up to ~2 % of a second's quota go at once to catch up; each needs a slot.
            needed += math.ceil(_CATCH_UP * rate)
        self._limit = max(self._floor, min(self._cap, needed))
        self._wake()

    async def acquire(self) -> None:
        if self._in_use < self._limit and not self._waiters:
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
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self._in_use < self._limit:
            future = waiters.popleft()
            if not future.done():
                self._in_use += 1
                future.set_result(None)
