"""Pace sends to the account's quota: a token bucket charged per recipient, never bursting.

Amazon SES counts *recipients* per second and throttles when any one-second window holds more
than the quota ``R``. aiolimiter's leaky bucket lets a whole second's worth through at once,
which such a provider rejects; this limiter releases recipients evenly instead.

Release rule (checked at the moment of release, so a timer that fires late cannot break it)
-------------------------------------------------------------------------------------------
GCRA / virtual scheduling with emission interval ``T = 1/(e·(1-h))`` (``e`` the effective
rate, ``h`` the headroom) and burst tolerance ``τ``, plus an exact ledger of the last second.
A request of ``c`` recipients may be released at time ``a`` only if

1. ``a >= V - τ`` where ``V`` (the theoretical arrival time) then becomes ``max(V, a) + c·T``
   (a batch is charged in full once it goes, so rule 1 never blocks a batch ``<= K`` forever);
2. ``a`` is no earlier than the previous release (releases are in time order); and
3. the ledger holds at most ``K - c`` recipients released at times ``t`` with ``a - t <= 1``,
   where ``K = max(1, floor(R))`` is the configured quota in whole recipients.

Rule 3 alone makes the guarantee exact: *no closed one-second window ever holds more than K
recipients*, whatever the costs, rate changes or wake-up delays (the fullest window ends at
some release, and that release checked exactly that window).

Rules 1-2 do the pacing, and for recipients released one at a time (at a constant rate) they
keep every window within ``floor(e) <= K`` by themselves, so the ledger never slows a steady
stream; it binds only around batches and rate changes. Proof: let
``a_1 <= … <= a_k`` be the releases in a window ``[x, x+1]``. Each release pushes ``V`` to at
least ``a_j + T``, and ``V`` never falls, so ``V_k >= a_1 + (k-1)·T``; rule 1 gives
``a_k >= V_k - τ``. Hence ``1 >= a_k - a_1 >= (k-1)·T - τ``, i.e. ``k <= 1 + (1+τ)/T``, so
``k <= floor(e)`` whenever ``(1+τ)/T < floor(e)``; a stream resuming less than a window
after ``V`` attains the bound (``a_j = a_1 + (j-1)·T - τ``), so no larger ``τ`` is safe:

    τ < floor(e)·T - 1 = floor(e)/(e·(1-h)) - 1       (for integer e: h/(1-h) ≈ 0.0204 s)

so ``τ = max(0, floor(e)·T - 1 - 1 µs)``. In whole recipients that is ``τ/T = h·R`` at integer
``R``: 0.28 at ``R = 14`` (so 0 whole recipients of burst), 10 at 500, 100 at 5000. It is
what lets waiters whose timers fired late catch up without losing throughput: as long as a
wake-up is at most ``τ`` late, ``V`` still advances by exactly ``T`` per recipient, so a long
campaign runs at ``e·(1-h)`` = 98 % of the quota. The first release, and the first after
``V`` lies a whole window in the past, sets ``V`` as a steady stream would have it (``τ``
ahead): a campaign's first second holds ``R·(1-h)``, not ``R``.

Timers that fire late only ever *delay* a release: every rule is evaluated against the clock
at the instant the waiting task resumes and returns, with no ``await`` in between.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

__all__ = ["RateLimiter"]

_MARGIN = 1e-6  # seconds kept off the τ bound and added past a window edge (float safety)
_CUT = 0.7  # throttled(): multiply the effective rate by this ...
_CUT_INTERVAL = 1.0  # ... at most once per this many seconds (in-flight throttles count once)
_FLOOR = 0.05  # ... but never below max(1, 5 % of R)
_RECOVER = 0.03  # succeeded(): regain 3 % of R per second of clean sending
_BELOW_OBSERVED = 0.95  # throttled(): go 5 % under what the provider accepted last second
_MIN_EVIDENCE = 0.25  # seconds of answers needed before trusting the observed rate


class _Waiter:
    __slots__ = ("cost", "future")

    def __init__(self, cost: int, future: asyncio.Future[None]) -> None:
        self.cost = cost
        self.future = future


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _default_clock() -> Callable[[], float]:
    """The ``time`` of the loop running now, bound once; made outside a loop, the running
    loop's at each call. ``asyncio.get_running_loop()`` costs a getpid() in CPython's C
    code, and the limiter reads its clock twice a recipient: 2 % of a send run's samples
    (py-spy), 40,000 getpid calls over 20,000 recipients (strace)."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return _loop_time


def _positive_rate(rate: float) -> float:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of recipients per second, not {rate!r}")
    return float(rate)


class RateLimiter:
    """Release recipients at up to ``rate`` per second, with no one-second window over quota.

    ``acquire(cost)`` waits until ``cost`` recipients may be sent; waiters are served first in,
    first out, and a cancelled waiter takes no capacity with it. Tell the limiter how sends went
    so it can slow down when the provider pushes back and recover afterwards::

        limiter = RateLimiter(14)                  # the account's quota: 14 recipients/s

        async def deliver(message: Message) -> Outcome:
            await limiter.acquire(message.cost)    # one unit per recipient
            outcome = await provider.send(message)
            if outcome.verdict is Verdict.THROTTLED:
                limiter.throttled()                # effective rate x0.7, once per second
            elif outcome.verdict is Verdict.SENT:
                limiter.succeeded(message.cost)    # creep back towards 14/s
            return outcome

    The long-run pace is ``effective_rate × (1 - headroom)``; see the module docstring for
    the release rule and the proof that no window exceeds the quota. ``clock`` defaults to the
    event loop's ``time()`` (of the loop it is made in, else of the one running at each
    call); tests pass their own. Not thread-safe (one event loop).
    """

    __slots__ = (
        "_accepted", "_accepted_n", "_cap", "_clock", "_cut_at", "_effective", "_first_ok",
        "_headroom", "_in_window", "_interval", "_log", "_rate", "_tat", "_tau", "_timer",
        "_span", "_waiters",
    )  # fmt: skip

    def __init__(
        self, rate: float, *, headroom: float = 0.02, clock: Callable[[], float] | None = None
    ) -> None:
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), not {headroom!r}")
        self._headroom = headroom
        self._clock = clock or _default_clock()
        self._rate = self._effective = _positive_rate(rate)
        self._tat = -math.inf  # V: when the next recipient is due
        self._log: deque[tuple[float, int]] = deque()  # (release time, cost), time order
        self._in_window = 0  # total cost in _log
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._cut_at = -math.inf
        self._interval = self._tau = 0.0
        # The ledger counts over 1 s + δ, δ = half the headroom in time (~10 ms at h = 2 %):
        # steady pacing at R·(1-h) never touches it, but a catch-up burst can no longer put
        # R releases exactly 1 s apart, so arrival jitter at the provider up to δ cannot make
        # R + 1 in its strict one-second window (measured: with δ = 0 a loopback sink
        # throttled 8-17 of 20,000 at R = 500, and 1 of 80 at R = 40). A larger δ costs
        # throughput when timers fire late (0.2 % at 0.6 h, 0.8 % at 0.9 h with timers up to
        # 15 ms late at R = 500), so jitter is kept small at its source instead (the HTTP
        # pool writes at most 16 requests together, see ``providers.http._CORK_MOST``).
        self._span = 1.0 + 0.5 * headroom / (1.0 - headroom)
        self._cap = max(1, math.floor(self._rate))  # whole recipients in any such window
        self._accepted: deque[list[float]] = deque()  # [time, n] of answers, last second
        self._accepted_n = 0.0
        self._first_ok: float | None = None
        self._retune()

    @property
    def rate(self) -> float:
        """The configured quota ``R`` in recipients per second."""
        return self._rate

    @property
    def effective_rate(self) -> float:
        """The rate after adaptive slow-down: ``<= rate``."""
        return self._effective

    async def acquire(self, cost: int = 1) -> None:
        """Wait until ``cost`` recipients may be released, then claim them and return.

        :exception ValueError: ``cost`` is not positive or can never fit in one second.
        """
        self._check(cost)
        if not self._waiters and self._take(cost):
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(cost, loop.create_future())
        self._waiters.append(waiter)
        if self._waiters[0] is waiter:
            self._arm()
        try:
            while True:
                await waiter.future  # only the head of the queue is ever woken
                self._check(cost)  # set_rate() may have lowered the quota meanwhile
                if self._take(cost):
                    return
                waiter.future = loop.create_future()
                self._arm()
        finally:
            if self._waiters[0] is waiter:
                self._waiters.popleft()
                self._arm()
            else:
                self._waiters.remove(waiter)

    def interrupt(self, error: type[BaseException]) -> None:
        """Fail every waiting :meth:`acquire` with a new ``error()``; they take nothing.

        Used to drain on Ctrl-C: recipients still waiting for their turn come back at once
        instead of being released one by one at a (possibly slowed-down) rate.
        """
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reserve(self, cost: int = 1) -> float:
        """Claim ``cost`` recipients now; return how many seconds to wait before sending them.

        Non-blocking and does not queue behind :meth:`acquire` waiters. The guarantee holds for
        a send made at the returned time; a caller that oversleeps may bunch up with the next
        release, so prefer :meth:`acquire`, which checks at the moment of release.
        """
        self._check(cost)
        now = self._clock()
        at = self._earliest(cost, now)
        self._commit(at, cost)
        return at - now

    def set_rate(self, rate: float) -> None:
        """Change the configured quota (e.g. after quota discovery), keeping any slow-down."""
        rate = _positive_rate(rate)
        self._effective = max(self._floor(rate), self._effective * rate / self._rate)
        self._rate = rate
        self._cap = max(1, math.floor(rate))
        self._retune()
        self._arm()

    def throttled(self) -> None:
        """The provider said "Maximum sending rate exceeded": slow down (once per second).

        With at least a quarter second of answers seen, the new rate is 5 % under what the
        provider actually accepted over the last second (never above 95 % of the current
        rate): a throttle from timing jitter costs 5 % for a couple of seconds, while a
        ``rate`` set far above the real quota is corrected in one step instead of many.
        Without that evidence the rate is multiplied by 0.7.
        """
        now = self._clock()
        if now - self._cut_at < _CUT_INTERVAL:
            return
        self._cut_at = now
        self._prune_accepted(now)
        if self._first_ok is not None and now - self._first_ok >= _MIN_EVIDENCE:
            observed = self._accepted_n / min(1.0, now - self._first_ok)
            target = min(self._effective, observed) * _BELOW_OBSERVED
        else:
            target = self._effective * _CUT
        self._effective = max(self._floor(self._rate), target)
        self._retune()

    def _prune_accepted(self, now: float) -> None:
        accepted = self._accepted
        while accepted and now - accepted[0][0] > 1.0:
            self._accepted_n -= accepted.popleft()[1]

    def succeeded(self, n: int = 1) -> None:
        """``n`` recipients were accepted: recover additively towards :attr:`rate`."""
        if n <= 0:
            return
        now = self._clock()
        if self._first_ok is None:
            self._first_ok = now
        accepted = self._accepted
        if accepted and now - accepted[-1][0] < 0.01:
            accepted[-1][1] += n  # coalesce: one entry per 10 ms keeps this O(1) and small
        else:
            accepted.append([now, float(n)])
            self._prune_accepted(now)
        self._accepted_n += n
        if self._effective >= self._rate:
            return
        if now - self._cut_at < _CUT_INTERVAL:
            return  # answers to requests sent before the last cut are not clean sending
        # n recipients took n/e seconds to send, so this regains _RECOVER·R per second.
        gain = _RECOVER * self._rate * n / self._effective
        self._effective = min(self._rate, self._effective + gain)
        self._retune()
        self._arm()

    def _check(self, cost: int) -> None:
        if cost <= 0:
            raise ValueError(f"cost must be a positive number of recipients, not {cost!r}")
        if cost > self._cap:
            raise ValueError(
                f"cost {cost} can never fit in one second at a quota of {self._rate:g}/s"
            )

    @staticmethod
    def _floor(rate: float) -> float:
        return min(rate, max(1.0, _FLOOR * rate))

    def _retune(self) -> None:
        e = self._effective
        interval = 1.0 / (e * (1.0 - self._headroom))
        if self._tat != -math.inf:  # recipients already charged are repriced at the new pace
            now = self._clock()
            if self._tat > now:
                self._tat = now + (self._tat - now) * interval / self._interval
        self._interval = interval
        # τ stays derived against 1 s (catch-up after late timers keeps the rate at small R);
        # the ledger's longer span clips the rare catch-up that would eat the jitter margin.
        self._tau = max(0.0, math.floor(e) * self._interval - 1.0 - _MARGIN)

    def _earliest(self, cost: int, now: float) -> float:
        """The first time ``>= now`` at which ``cost`` recipients satisfy rules 1-3."""
        log = self._log
        while log and now - log[0][0] > self._span:
            self._in_window -= log.popleft()[1]
        at = max(now, self._tat - self._tau)
        if log:
            at = max(at, log[-1][0])
            excess = self._in_window + cost - max(self._cap, cost)
            if excess > 0:  # wait until enough of the last second has slid out of the window
                for edge, c in log:
                    excess -= c
                    if excess <= 0:
                        at = max(at, edge + self._span + _MARGIN)
                        break
        return at

    def _commit(self, at: float, cost: int) -> None:
        tat = self._tat
        if at - tat > self._span:
            # Idle for a whole window (or the first release): start as a steady stream runs,
            # τ ahead, so the tolerance kept for late timers is not spent as a burst that
            # fills the first second to R (it then left the ledger binding with no room for
            # arrival jitter: 8-29 throttles at the 1-s mark of a 5,000/s run, 2 runs in 3).
            tat = at + self._tau
        self._tat = max(tat, at) + cost * self._interval
        self._log.append((at, cost))
        self._in_window += cost

    def _take(self, cost: int) -> bool:
        now = self._clock()
        if self._earliest(cost, now) > now:
            return False
        self._commit(now, cost)
        return True

    def _arm(self) -> None:
        """Wake the head waiter now, or set the one timer for when it can go."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiters or self._waiters[0].future.done():
            return
        head = self._waiters[0]
        now = self._clock()
        delay = self._earliest(head.cost, now) - now
        if delay <= 0:
            head.future.set_result(None)
        else:
            loop = head.future.get_loop()
            self._timer = loop.call_at(loop.time() + delay, self._wake)

    def _wake(self) -> None:
        self._timer = None
        if self._waiters and not self._waiters[0].future.done():
            self._waiters[0].future.set_result(None)
