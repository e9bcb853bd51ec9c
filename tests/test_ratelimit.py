"""RateLimiter: exact window guarantee, throughput, FIFO, cancellation, adaptive slow-down.

Nothing here really sleeps. :class:`VirtualLoop` is an asyncio loop whose clock only moves
when the loop is idle: it then jumps straight to the next timer, optionally *late* by a random
amount (a jittery machine), and every loop step may also cost a little random "CPU time".
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import pytest
from aiolimiter import AsyncLimiter

from bulkmail.pacing.local import RateLimiter

T = TypeVar("T")
Release = tuple[float, int]  # (time the acquire returned, cost)


class _VirtualSelector(selectors.DefaultSelector):
    loop: VirtualLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)  # real I/O (the self-pipe) is polled, never waited for
        self.loop.advance(timeout, idle=not events)
        return events


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(
        self,
        *,
        start: float = 1_000_000.0,  # a large clock, as on a machine with long uptime
        late: Callable[[], float] = lambda: 0.0,
        busy: Callable[[], float] = lambda: 0.0,
    ) -> None:
        selector = _VirtualSelector()
        selector.loop = self
        self.now = start
        self.late, self.busy = late, busy
        self.jumps = 0  # how often the loop went idle and jumped to a timer
        self.stuck = 0  # steps in a row at the same instant (a livelock fails, not hangs)
        super().__init__(selector)

    def time(self) -> float:
        return self.now

    def advance(self, timeout: float | None, *, idle: bool) -> None:
        before = self.now
        self.now += self.busy()
        if idle and timeout is None:
            raise RuntimeError("deadlock: nothing ready and no timer scheduled")
        if idle and timeout > 0:
            # jump exactly to the earliest timer (not now + timeout, which may round short)
            due = self._scheduled[0].when()  # type: ignore[attr-defined]
            self.now = max(self.now, due) + self.late()
            self.jumps += 1
        self.stuck = self.stuck + 1 if self.now == before else 0
        if self.stuck > 100_000:
            raise RuntimeError("livelock: the loop keeps running without time passing")


def run(main: Callable[[VirtualLoop], Awaitable[T]], **options: Any) -> T:
    loop = VirtualLoop(**options)
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


class Limiter(Protocol):
    async def acquire(self, cost: int = 1) -> None: ...


async def campaign(
    loop: VirtualLoop,
    limiter: Limiter,
    total: int,
    *,
    workers: int = 20,
    cost: Callable[[], int] = lambda: 1,
    pause: Callable[[], float] = lambda: 0.0,
) -> list[Release]:
    """``workers`` tasks acquire until ``total`` recipients went out; returns the releases."""
    releases: list[Release] = []
    left = [total]

    async def worker() -> None:
        while left[0] > 0:
            c = min(cost(), left[0])
            left[0] -= c
            await limiter.acquire(c)
            releases.append((loop.time(), c))
            if (p := pause()) > 0:
                await asyncio.sleep(p)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return releases


def fullest_window(releases: list[Release]) -> int:
    """Most recipients released in any closed one-second window (checked at every release)."""
    times = [t for t, _ in releases]
    assert times == sorted(times), "releases must be reported in time order"
    best = inside = start = 0
    for t, c in releases:
        inside += c
        while t - releases[start][0] > 1.0:
            inside -= releases[start][1]
            start += 1
        best = max(best, inside)
    return best


def rate_of(releases: list[Release]) -> float:
    """Recipients per second after the first second (which may start with a τ-sized burst)."""
    steady = [(t, c) for t, c in releases if t - releases[0][0] >= 1.0]
    return (sum(c for _, c in steady) - steady[-1][1]) / (steady[-1][0] - steady[0][0])


# -- the window guarantee ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 14, 500, 5000])
@pytest.mark.parametrize("mix", ["unit", "batches"])
@pytest.mark.parametrize("jitter", [False, True])
def test_no_one_second_window_exceeds_the_quota(rate: int, mix: str, jitter: bool) -> None:
    rng = random.Random(f"{rate}-{mix}-{jitter}")
    if mix == "unit":
        cost: Callable[[], int] = lambda: 1  # noqa: E731
    else:  # mostly small batches, every tenth one as large as the whole quota
        draws = iter(range(10**9))
        cost = lambda: rate if next(draws) % 10 == 3 else rng.randint(1, min(rate, 5))  # noqa: E731
    options: dict[str, Any] = {}
    if jitter:  # timers fire up to 50 ms late; each loop step costs up to 20 µs
        options = {"late": lambda: rng.uniform(0, 0.05), "busy": lambda: rng.uniform(0, 2e-5)}
    # workers also go idle now and then, so the limiter sees bursts after quiet periods
    pause = lambda: rng.expovariate(0.5) if rng.random() < 0.01 else 0.0  # noqa: E731

    async def main(loop: VirtualLoop) -> list[Release]:
        limiter = RateLimiter(rate)
        return await campaign(loop, limiter, max(60, 6 * rate), cost=cost, pause=pause)

    releases = run(main, **options)
    assert sum(c for _, c in releases) == max(60, 6 * rate)
    assert fullest_window(releases) <= rate
    if mix == "batches":
        assert any(c == rate for _, c in releases)


def test_the_window_check_catches_a_leaky_bucket() -> None:
    """Negative control: aiolimiter lets a whole second through at once, then keeps pace."""

    async def main(loop: VirtualLoop) -> list[Release]:
        return await campaign(loop, AsyncLimiter(14, 1), 100)

    # (aiolimiter re-arms with sub-ulp delays, so time must pass a little at every step)
    assert fullest_window(run(main, busy=lambda: 1e-6)) > 14


def without_ledger(rate: int, extra_tau: float = 0.0) -> RateLimiter:
    """A limiter paced by GCRA alone: the exact ledger (rule 3) can never bind."""
    limiter = RateLimiter(rate)
    # white-box: the quota check against the last second is off
    limiter._cap = 10**9
    limiter._tau += extra_tau
    return limiter


@pytest.mark.parametrize("rate", [1, 14, 500, 5000])
def test_tau_alone_keeps_unit_streams_within_the_quota(rate: int) -> None:
    rng = random.Random(rate)
    pause = lambda: rng.expovariate(0.5) if rng.random() < 0.01 else 0.0  # noqa: E731

    async def main(loop: VirtualLoop) -> list[Release]:
        return await campaign(loop, without_ledger(rate), max(60, 6 * rate), pause=pause)

    releases = run(main, late=lambda: rng.uniform(0, 0.05), busy=lambda: rng.uniform(0, 2e-5))
    assert fullest_window(releases) <= rate


@pytest.mark.parametrize("rate", [1, 14, 500, 5000])
def test_tau_is_the_largest_safe_tolerance(rate: int) -> None:
    """A stream resumed within a window of its last release catches up by τ at once and
    fills some second exactly to R; 1 ms more of τ overfills it."""

    def fullest(extra_tau: float) -> int:
        async def main(loop: VirtualLoop) -> list[Release]:
            limiter = without_ledger(rate, extra_tau)
            await limiter.acquire()
            # white-box: idle past the next due time, but for less than a window
            await asyncio.sleep(limiter._tat - loop.time() + 0.5)
            return await campaign(loop, limiter, 3 * rate + 2)

        return fullest_window(run(main))

    assert fullest(0.0) == rate
    assert fullest(0.001) > rate


@pytest.mark.parametrize("rate", [14, 500, 5000])
@pytest.mark.parametrize("idle", [None, 1.5, 30.0])
def test_a_fresh_or_long_idle_stream_does_not_burst(rate: int, idle: float | None) -> None:
    """The first second of a campaign (or of a stream idle for a whole window) holds what
    steady pacing does, not R: the τ kept for late timers is not spent as a burst, which
    left a 5,000/s run's ledger binding at the 1-s mark with no room for arrival jitter."""

    async def main(loop: VirtualLoop) -> list[Release]:
        limiter = RateLimiter(rate)
        if idle is not None:
            await campaign(loop, limiter, 3 * rate)
            await asyncio.sleep(idle)
        start = loop.time()
        return [(t - start, c) for t, c in await campaign(loop, limiter, 2 * rate)]

    releases = run(main)
    first_second = sum(c for t, c in releases if t <= 1.0)
    steady = rate * 0.98  # R·(1-h): one release each 1/steady s, from t = 0
    assert math.floor(steady) <= first_second <= math.floor(steady) + 1


def test_reservations_also_respect_the_window() -> None:
    now = [50.0]
    limiter = RateLimiter(14, clock=lambda: now[0])
    rng = random.Random(7)
    releases = []
    for _ in range(2000):
        cost = rng.choice([1, 1, 1, 2, 5, 14])
        releases.append((now[0] + limiter.reserve(cost), cost))
        now[0] += rng.choice([0.0, 0.0, 0.01, 0.3, 2.0])
    assert fullest_window(releases) <= 14


def test_steady_stream_is_evenly_spaced_not_bursty() -> None:
    async def main(loop: VirtualLoop) -> list[Release]:
        return await campaign(loop, RateLimiter(14), 100)

    releases = run(main)
    gaps = [b[0] - a[0] for a, b in zip(releases, releases[1:], strict=False)]
    interval = 1 / (14 * 0.98)
    # on time, releases are one emission interval apart: no bursts. The second may come τ
    # (< 21 ms) early; once a second the ledger (1 s + δ) holds one back by at most δ
    # (~10 ms) and the next catches up: never a gap shorter than interval − τ.
    span = 1.0 + 0.01 / 0.98
    assert interval - 0.021 < gaps[0] < interval
    assert min(gaps[1:]) > interval - 0.021
    assert max(gaps[1:]) < interval + span - 1.0 + 1e-6
    assert sum(1 for g in gaps[1:] if abs(g - interval) > 1e-6) <= 2 * (len(gaps) // 14 + 1)


# -- throughput -------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "seconds"), [(1, 600), (14, 600), (500, 60), (5000, 8)])
def test_long_run_reaches_97_percent_despite_late_wake_ups(rate: int, seconds: int) -> None:
    rng = random.Random(rate)
    options = {"late": lambda: rng.uniform(0, 0.015), "busy": lambda: rng.uniform(0, 1e-5)}

    async def main(loop: VirtualLoop) -> list[Release]:
        return await campaign(loop, RateLimiter(rate), rate * seconds, workers=64)

    releases = run(main, **options)
    assert releases[-1][0] - releases[0][0] == pytest.approx(seconds / 0.98, rel=0.03)
    assert 0.97 * rate <= rate_of(releases) <= 0.98 * rate * 1.004  # + τ of catch-up
    assert fullest_window(releases) <= rate


def test_late_wake_ups_within_tau_lose_nothing() -> None:
    """At R = 500, τ ≈ 20 ms: timers up to 15 ms late still give exactly R·(1-h)."""

    def achieved(late: float) -> float:
        rng = random.Random(1)

        async def main(loop: VirtualLoop) -> list[Release]:
            return await campaign(loop, RateLimiter(500), 10_000)

        return rate_of(run(main, late=lambda: rng.uniform(0, late)))

    assert achieved(0.015) == pytest.approx(achieved(0.0), rel=1e-3)
    assert achieved(0.0) == pytest.approx(500 * 0.98, rel=1e-3)


def test_waiting_uses_one_timer_not_a_poll_loop() -> None:
    async def main(loop: VirtualLoop) -> int:
        limiter = RateLimiter(1)
        await limiter.acquire()
        before = loop.jumps
        await limiter.acquire()  # about one second away
        # a fresh stream keeps its τ: the second goes out one interval T = 1/0.98 s later
        assert loop.time() - 1_000_000.0 == pytest.approx(1 / 0.98, abs=1e-5)
        return loop.jumps - before

    assert run(main) == 1


# -- queueing ---------------------------------------------------------------------------------


def test_waiters_are_served_first_in_first_out() -> None:
    async def main(loop: VirtualLoop) -> list[str]:
        limiter = RateLimiter(14)
        order: list[str] = []

        async def send(name: str, cost: int) -> None:
            await limiter.acquire(cost)
            order.append(name)

        await limiter.acquire(14)  # the whole second is used up
        tasks = []
        for name, cost in [("big", 10), ("a", 1), ("b", 1), ("c", 3)]:
            tasks.append(asyncio.create_task(send(name, cost)))
            await asyncio.sleep(0)  # arrive in this order
        await asyncio.gather(*tasks)
        return order

    # "a" would fit long before "big" does, but it may not overtake
    assert run(main) == ["big", "a", "b", "c"]


def schedule(cancel: str | None, *, woken: bool = False) -> dict[str, float]:
    """Release times of A, B, C queued behind a first send; optionally cancel one."""

    async def main(loop: VirtualLoop) -> dict[str, float]:
        limiter = RateLimiter(10)
        start = loop.time()
        times: dict[str, float] = {}

        async def send(name: str) -> None:
            await limiter.acquire(2)
            times[name] = loop.time() - start

        await limiter.acquire(2)
        tasks = {}
        for name in "ABC":
            tasks[name] = asyncio.create_task(send(name))
            await asyncio.sleep(0)
        if cancel is not None:
            if woken:  # the head's future is already resolved when it is cancelled
                limiter.set_rate(1000)
                limiter.set_rate(10)
            tasks[cancel].cancel()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        assert [isinstance(r, asyncio.CancelledError) for r in results] == [
            name == cancel for name in "ABC"
        ]
        return times

    return run(main)


def test_cancelled_waiter_leaks_no_capacity() -> None:
    full = schedule(None)
    assert schedule("B") == {"A": full["A"], "C": full["B"]}
    assert schedule("C") == {"A": full["A"], "B": full["B"]}
    assert schedule("A") == {"B": full["A"], "C": full["B"]}


def test_head_cancelled_after_being_woken_leaks_no_capacity() -> None:
    full = schedule(None)
    times = schedule("A", woken=True)
    assert times["B"] == pytest.approx(full["A"], abs=1e-6)  # A's slot went to B
    assert times["C"] - times["B"] == pytest.approx(full["B"] - full["A"])


# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize("cost", [0, -1, 15])
async def test_impossible_cost_is_a_value_error(cost: int) -> None:
    limiter = RateLimiter(14.5)
    with pytest.raises(ValueError, match="cost"):
        await limiter.acquire(cost)
    with pytest.raises(ValueError, match="cost"):
        limiter.reserve(cost)


@pytest.mark.parametrize("rate", [0, -3, math.nan, math.inf])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate)
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(14).set_rate(rate)


@pytest.mark.parametrize("headroom", [-0.1, 1.0])
def test_headroom_must_be_a_fraction(headroom: float) -> None:
    with pytest.raises(ValueError, match="headroom"):
        RateLimiter(14, headroom=headroom)


def test_waiter_whose_cost_no_longer_fits_after_set_rate_fails() -> None:
    async def main(loop: VirtualLoop) -> None:
        limiter = RateLimiter(14)
        await limiter.acquire(14)
        waiting = asyncio.create_task(limiter.acquire(12))
        behind = asyncio.create_task(limiter.acquire(1))
        await asyncio.sleep(0)
        limiter.set_rate(10)
        with pytest.raises(ValueError, match="cost 12"):
            await waiting
        await behind  # the queue moves on

    run(main)


# -- adaptive slow-down -----------------------------------------------------------------------


def test_throttled_cuts_once_per_burst_down_to_a_floor() -> None:
    now = [0.0]
    limiter = RateLimiter(500, clock=lambda: now[0])
    for _ in range(20):  # a burst of throttles from requests already in flight
        limiter.throttled()
    assert limiter.effective_rate == pytest.approx(350)
    for _ in range(30):
        now[0] += 1.0
        limiter.throttled()
    assert limiter.effective_rate == 25  # max(1, 5 % of 500)
    assert limiter.rate == 500

    small = RateLimiter(14, clock=lambda: now[0])
    for _ in range(30):
        now[0] += 1.0
        small.throttled()
    assert small.effective_rate == 1


def test_succeeded_recovers_a_few_percent_per_second_never_above_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(500, clock=lambda: now[0])
    limiter.succeeded(1000)
    assert limiter.effective_rate == 500  # never above the configured rate
    limiter.throttled()
    limiter.succeeded(100)  # answers to requests sent before the cut: no recovery yet
    assert limiter.effective_rate == pytest.approx(350)
    now[0] += 1.0
    seconds = 0
    while limiter.effective_rate < 500:  # one second of clean sending at the current pace
        before = limiter.effective_rate
        limiter.succeeded(round(before))
        assert limiter.effective_rate - before <= 0.031 * 500 + 1e-9
        seconds += 1
    assert limiter.effective_rate == 500
    assert 8 <= seconds <= 12  # 150 to regain at 3 % of 500 per second


def test_throttled_slows_the_pace_and_set_rate_rescales_it() -> None:
    async def main(loop: VirtualLoop) -> tuple[float, float, float]:
        limiter = RateLimiter(100)
        first = await campaign(loop, limiter, 300)
        limiter.throttled()
        slowed = await campaign(loop, limiter, 300)
        limiter.set_rate(200)  # quota discovery: the slow-down ratio is kept
        assert limiter.rate == 200
        assert limiter.effective_rate == pytest.approx(140)
        faster = await campaign(loop, limiter, 600)
        return rate_of(first), rate_of(slowed), rate_of(faster)

    first, slowed, faster = run(main)
    assert first == pytest.approx(98, rel=1e-2)  # 300 releases: τ's idle burst shows
    assert slowed == pytest.approx(70 * 0.98, rel=1e-2)
    assert faster == pytest.approx(140 * 0.98, rel=1e-2)


def test_recovery_wakes_a_waiter_sooner() -> None:
    async def main(loop: VirtualLoop) -> float:
        limiter = RateLimiter(10)
        for _ in range(4):
            limiter.throttled()
            loop.now += 1.0  # past the one-cut-per-second interval
        assert limiter.effective_rate == pytest.approx(10 * 0.7**4)
        await limiter.acquire()
        start = loop.time()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        loop.call_soon(limiter.succeeded, 100)  # back to 10/s while it waits
        await waiter
        return loop.time() - start

    assert run(main) < 0.2  # instead of ~0.42 s at 2.4/s


def test_throttle_with_evidence_goes_just_under_what_was_accepted() -> None:
    now = [0.0]
    limiter = RateLimiter(400, clock=lambda: now[0])
    for _ in range(100):  # one second of answers: the provider accepted 150/s
        now[0] += 0.01
        limiter.succeeded(1) if _ % 2 else limiter.succeeded(2)
    limiter.throttled()
    assert limiter.effective_rate == pytest.approx(150 * 0.95, rel=0.02)  # one step, not five

    jitter = RateLimiter(500, clock=lambda: now[0])
    for _ in range(100):  # accepting 490/s, a stray throttle from timing jitter
        now[0] += 0.01
        jitter.succeeded(5 if _ % 10 else 4)
    jitter.throttled()
    assert 0.9 * 500 < jitter.effective_rate <= 0.95 * 500  # a mild cut


@pytest.mark.parametrize("rate", [14, 40, 500])
def test_ledger_keeps_half_the_headroom_free_for_jitter(rate: int) -> None:
    """No window of 1 s + δ (δ = h/2 in time, ~10 ms) holds more than R, even with late
    timers catching up: arrival jitter up to δ cannot make R + 1 in the provider's second."""

    async def main(loop: VirtualLoop) -> list[tuple[float, int]]:
        limiter = RateLimiter(rate)
        return await campaign(loop, limiter, 20 * rate)

    jitter = random.Random(rate)
    releases = run(main, late=lambda: jitter.uniform(0, 0.015))
    span = 1.0 + 0.5 * 0.02 / 0.98
    shifted = [(t / span, c) for t, c in releases]  # a window of `span` becomes one of 1 s
    assert fullest_window(shifted) <= rate


@pytest.mark.parametrize("made", ["inside the loop", "outside any loop"])
def test_default_clock_is_the_loop_s_time(made: str) -> None:
    # Made in a loop, the limiter binds that loop's time() once (no lookup of the running
    # loop per call); made outside, it reads the running loop's at each call. Both pace on
    # the virtual clock here: 14/s from idle spends ~9 virtual seconds on 140 recipients.
    outside = RateLimiter(14) if made == "outside any loop" else None

    async def main(loop: VirtualLoop) -> list[Release]:
        limiter = outside or RateLimiter(14)
        return await campaign(loop, limiter, 140)

    releases = run(main)
    assert len(releases) == 140
    assert 9.0 < releases[-1][0] - releases[0][0] < 10.5
    assert fullest_window(releases) <= 14
