"""A circuit breaker for outages: the provider cannot be reached, so the campaign waits.

When many attempts in a row fail before anything was written (connection refused, DNS,
connect timed out: :data:`~bulkmail.providers.errors.UNREACHABLE_CODES`) and none succeeds in
between, the outage is the campaign's, not the recipients': the breaker *opens*. Every
message then waits in :meth:`CircuitBreaker.admit` without being charged an attempt, and at
growing intervals (1 s, 2 s, 4 s, … up to ``max_probe_interval``) one message goes as a
*probe*. Any answer at all closes the breaker and everyone goes on; once ``outage_wait``
seconds have passed since it opened with no answer, the breaker gives up: ``on_give_up`` is
called (the :class:`~bulkmail.delivery.sender.Sender` stops the campaign with
:class:`~bulkmail.errors.ProviderUnavailable`, rows stay pending) and waiters get
:attr:`Ticket.STOP`.

The clock and the sleep are injected, so tests never really wait.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from enum import Enum, StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    #: Paused: waiting for the next probe time (``paused_until``).
    OPEN = "open"
    #: One probe request is under way.
    PROBING = "probing"
    #: ``outage_wait`` ran out, or the sender stopped: nothing more goes.
    STOPPED = "stopped"


class Ticket(Enum):
    """What :meth:`CircuitBreaker.admit` lets a message do."""

    GO = "go"
    PROBE = "probe"
    STOP = "stop"


class CircuitBreaker:
    """Pause a campaign through an outage, probe, and give up after ``outage_wait``.

    >>> async def attempt(breaker: CircuitBreaker) -> None:            # doctest: +SKIP
    ...     ticket = await breaker.admit()           # waits while the breaker is open
    ...     if ticket is Ticket.STOP:
    ...         return
    ...     if await send_one():                     # any answer from the provider
    ...         breaker.success()
    ...     else:                                    # refused, DNS, connect timeout
    ...         breaker.failure("refused", probe=ticket is Ticket.PROBE)
    """

    __slots__ = (
        "threshold",
        "outage_wait",
        "first_probe",
        "max_probe_interval",
        "_clock",
        "_sleep",
        "_on_give_up",
        "_state",
        "_streak",
        "_opened_at",
        "_paused_until",
        "_last_error",
        "_waiters",
        "_probe_free",
        "_probe_done",
        "_task",
        "outages",
        "probes",
        "on_pause",
    )

    def __init__(
        self,
        *,
        threshold: int = 10,
        outage_wait: float = 600.0,
        first_probe: float = 1.0,
        max_probe_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_give_up: Callable[[str], None] | None = None,
    ) -> None:
        if threshold < 1 or outage_wait < 0 or first_probe <= 0 or max_probe_interval <= 0:
            raise ValueError("threshold >= 1, outage_wait >= 0, probe intervals > 0")
        self.threshold = threshold
        self.outage_wait = outage_wait
        self.first_probe = first_probe
        self.max_probe_interval = max_probe_interval
        self._clock = clock
        self._sleep = sleep
        self._on_give_up = on_give_up
        self._state = BreakerState.CLOSED
        self._streak = 0
        self._opened_at = 0.0
        self._paused_until: float | None = None
        self._last_error = ""
        self._waiters: collections.deque[asyncio.Future[Ticket]] = collections.deque()
        self._probe_free = False
        self._probe_done: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        #: How many times the breaker opened, and how many probes went.
        self.outages = 0
        self.probes = 0
        #: Told a short text while paused (for a progress line), and ``None`` when it ends.
        self.on_pause: Callable[[str | None], None] | None = None

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def paused_until(self) -> float | None:
        """Clock time of the next probe while open, else ``None`` (for a progress line)."""
        return self._paused_until if self._state is BreakerState.OPEN else None

    @property
    def last_error(self) -> str:
        return self._last_error

    def success(self) -> None:
        """The provider answered (whatever it said): the outage, if any, is over."""
        self._streak = 0
        if self._state in (BreakerState.OPEN, BreakerState.PROBING):
            self._close()

    def failure(self, error: str, *, probe: bool = False) -> None:
        """An attempt could not reach the provider (nothing was written)."""
        self._last_error = error
        if self._state is BreakerState.CLOSED:
            self._streak += 1
            if self._streak >= self.threshold:
                self._open()
        elif probe and self._state is BreakerState.PROBING:
            self._settle_probe(False)

    async def admit(self) -> Ticket:
        """``GO`` at once while closed; while open, wait for the probe slot (``PROBE``) or
        the end of the outage (``GO``); ``STOP`` once the breaker gave up or was stopped."""
        state = self._state
        if state is BreakerState.CLOSED:
            return Ticket.GO
        if state is BreakerState.STOPPED:
            return Ticket.STOP
        if self._probe_free:
            self._probe_free = False
            return Ticket.PROBE
        waiter: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is Ticket.PROBE:
                self._settle_probe(False)  # the probe was handed to us as we were cancelled
            raise

    def stop(self) -> None:
        """Release every waiter with ``STOP`` (the sender drains or stopped)."""
        if self._state is not BreakerState.CLOSED:
            self._report(None)
        self._state = BreakerState.STOPPED
        self._paused_until = None
        self._release_all(Ticket.STOP)
        self._settle_probe(False)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # -- internals ----------------------------------------------------------------------

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self.outages += 1
        self._task = asyncio.get_running_loop().create_task(self._probe_loop())

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._paused_until = None
        self._report(None)
        self._probe_free = False
        self._settle_probe(True)
        self._release_all(Ticket.GO)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    def _release_all(self, ticket: Ticket) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(ticket)

    def _settle_probe(self, answered: bool) -> None:
        done = self._probe_done
        if done is not None and not done.done():
            done.set_result(answered)

    def _hand_probe(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(Ticket.PROBE)
                return
        self._probe_free = True  # the next message to arrive takes it

    async def _probe_loop(self) -> None:
        interval = self.first_probe
        deadline = self._opened_at + self.outage_wait
        while True:
            delay = max(0.0, min(interval, deadline - self._clock()))
            self._paused_until = self._clock() + delay
            self._report(f"provider unreachable; next try in {delay:.0f}s")
            await self._sleep(delay)
            if self._state is not BreakerState.OPEN:
                return
            self._state = BreakerState.PROBING
            self._paused_until = None
            self._report("provider unreachable; trying one request")
            self.probes += 1
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._probe_done = done
            self._hand_probe()
            answered = await done
            self._probe_done = None
            if answered or self._state is not BreakerState.PROBING:
                return
            self._probe_free = False
            if self._clock() >= deadline:
                self._give_up()
                return
            self._state = BreakerState.OPEN
            interval = min(interval * 2, self.max_probe_interval)

    def _report(self, text: str | None) -> None:
        if self.on_pause is not None:
            self.on_pause(text)

    def _give_up(self) -> None:
        self._task = None
        waited = self._clock() - self._opened_at
        reason = (
            f"the provider could not be reached for {waited:.0f}s "
            f"(outage_wait {self.outage_wait:g}s): {self._last_error}"
        )
        self.stop()
        if self._on_give_up is not None:
            self._on_give_up(reason)


__all__ = ["BreakerState", "CircuitBreaker", "Ticket"]
