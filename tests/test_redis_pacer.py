"""The fleet pacer: its Lua step against a real server with an injected clock (the window
property, shared throttles, the daily cap), and the Python side's batching."""

from __future__ import annotations

import asyncio
import bisect
import random

import pytest

from bulkmail.fleet.keys import pacer_keys
from bulkmail.fleet.link import Link
from bulkmail.pacing.redis import RedisPacer
from tests.fleet_conftest import ValkeyServer


async def reserve(
    link: Link, account: str, now: float, want: int, rate: float, **kw: float
) -> list[float]:
    keys = pacer_keys(account)
    args = [want, repr(rate), repr(kw.get("h", 0.03)), int(kw.get("ok", 0)),
            int(kw.get("limit", 0)), repr(kw.get("horizon", 0.2)), repr(now)]  # fmt: skip
    n, start, interval, _e, _now = await link.script("pace_reserve", list(keys), args)
    n = int(n)
    return [float(start) + i * float(interval) for i in range(max(0, n))] if n > 0 else [n]


def fullest_window(times: list[float]) -> int:
    times = sorted(times)
    return max(bisect.bisect_right(times, t + 1.0) - i for i, t in enumerate(times))


@pytest.mark.parametrize("rate", [14, 2000])
async def test_no_window_over_quota_for_any_mix_of_workers(valkey: ValkeyServer, rate: int) -> None:
    rng = random.Random(rate)
    link = Link.from_url(valkey.url)
    used: list[float] = []
    clock = 1_000_000.0
    try:
        # four workers asking in random order and sizes for 6 simulated seconds; each uses
        # every slot it gets anywhere from on time to `slack` (0.02 s) late
        while clock < 1_000_006.0:
            clock += rng.uniform(0.0, 0.01)
            got = await reserve(link, f"acct-{rate}", clock, rng.randint(1, 100), rate)
            if got[0] > 0:
                used += [t + rng.uniform(0.0, 0.02) for t in got]
                if got[-1] > clock + 0.2:
                    clock = got[0]
    finally:
        await link.close()
    assert fullest_window(used) <= rate
    span = max(used) - min(used)
    assert len(used) / span >= 0.95 * rate  # paced at 0.97 R, not starved


async def test_a_throttle_slows_every_worker_and_the_daily_cap_is_shared(
    valkey: ValkeyServer,
) -> None:
    link = Link.from_url(valkey.url)
    try:
        await reserve(link, "a", 100.0, 10, 1000)
        cut = await link.script("pace_throttle", [pacer_keys("a")[0]], ["1000", "100.5"])
        again = await link.script("pace_throttle", [pacer_keys("a")[0]], ["1000", "100.7"])
        keys = pacer_keys("a")
        reply = await link.script(
            "pace_reserve", list(keys), [10, "1000", "0.03", 0, 0, "0.2", "101.0"]
        )
        capped = [await reserve(link, "b", 200.0 + i, 30, 1000, limit=50) for i in range(3)]
    finally:
        await link.close()
    assert float(cut) == pytest.approx(700) and float(again) == pytest.approx(700)
    assert float(reply[3]) == pytest.approx(700)  # another worker sees the cut
    assert [len(c) for c in capped[:2]] == [30, 20] and capped[2] == [-1]


async def test_python_side_batches_round_trips(valkey: ValkeyServer) -> None:
    link = Link.from_url(valkey.url)
    pacer = RedisPacer(link, "batching", rate=5000)
    try:
        await asyncio.gather(*(pacer.acquire() for _ in range(500)))
    finally:
        await link.close()
    assert pacer.reservations / 500 <= 0.05
    assert link.trips / 500 <= 0.05


async def test_interrupt_fails_waiters(valkey: ValkeyServer) -> None:
    class Drained(Exception):
        pass

    link = Link.from_url(valkey.url)
    pacer = RedisPacer(link, "interrupt", rate=10)
    try:
        waiters = [asyncio.ensure_future(pacer.acquire()) for _ in range(30)]
        await asyncio.sleep(0.3)
        pacer.interrupt(Drained)
        results = await asyncio.gather(*waiters, return_exceptions=True)
    finally:
        await link.close()
    assert any(isinstance(r, Drained) for r in results)
    # Waiters granted before the interrupt: at most what the quota allows over the 0.3 s
    # waited, one window and a reservation run ahead (two seconds' worth, 20, bounds it);
    # the other waiters fail at once instead of waiting for their slot.
    assert sum(r is None for r in results) <= 20
