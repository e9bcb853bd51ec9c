"""The concurrency gate sizes itself from the service's time, not from bulkmail's own queue.

Synthetic latencies and an injected clock: nothing here sleeps or measures real time.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from bulkmail.delivery.gate import Gate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(gate: Gate, clock: Clock, *, total: float, service: float, windows: int) -> None:
    """Simulate a closed loop: ``limit`` requests always in flight, each taking ``total``
    seconds in bulkmail of which ``service`` at the service; completions spread evenly."""
    for _ in range(windows):
        in_flight = gate.limit
        per_second = in_flight / total
        step = 1.0 / per_second
        for _ in range(max(1, int(per_second * 0.1))):  # one 0.1 s window of completions
            clock.now += step
            gate.observe(total, service)


def test_starts_at_the_floor_before_any_answer() -> None:
    gate = Gate(lambda: 1e6, floor=8, cap=512, clock=Clock())
    assert gate.limit == 8


@pytest.mark.parametrize("floor", [8, 32])
def test_unlimited_rate_and_a_fast_service_stays_at_the_floor_when_bulkmail_is_the_queue(
    floor: int,
) -> None:
    # rate: 1000000, a 0.3 ms service, but each request spends 3 ms inside bulkmail (a busy
    # loop): Little's law on the service's time needs a handful, not the cap (the old gate,
    # sized from 2 × rate × attempt time, went straight to 512).
    clock = Clock()
    gate = Gate(lambda: 1e6, floor=floor, cap=512, clock=clock)
    drive(gate, clock, total=0.003, service=0.0003, windows=50)
    assert gate.limit == floor
    assert gate.service_time == pytest.approx(0.0003)


def test_queueing_inside_bulkmail_does_not_make_it_grow() -> None:
    # The same closed loop where bulkmail's own time per request grows with what is in
    # flight (a saturated event loop): the old gate fed on that; this one stays put.
    clock = Clock()
    gate = Gate(lambda: 1e6, floor=8, cap=512, clock=clock)
    for _ in range(50):
        total = 0.0005 * gate.limit  # every extra request in flight adds 0.5 ms
        drive(gate, clock, total=total, service=0.0004, windows=1)
    assert gate.limit == 8


def test_slow_service_makes_the_gate_grow_to_what_the_rate_needs() -> None:
    # 80 ms added to every answer, rate 2000: 160 in flight carry it; the gate must grow.
    clock = Clock()
    gate = Gate(lambda: 2000.0, floor=8, cap=512, clock=clock)
    limits = []
    for _ in range(30):
        drive(gate, clock, total=0.08, service=0.08, windows=1)
        limits.append(gate.limit)
    assert limits[0] < limits[3] < limits[6]  # doubles window after window
    assert gate.limit >= 2000 * 0.08  # enough for the rate
    assert gate.limit <= 2 * 2000 * 0.08 + 40 + 1  # bounded by the rate, not the cap


def test_slow_service_and_unlimited_rate_grows_to_the_cap() -> None:
    clock = Clock()
    gate = Gate(lambda: 1e6, floor=8, cap=300, clock=clock)
    drive(gate, clock, total=0.08, service=0.08, windows=40)
    assert gate.limit == 300


def test_uses_a_low_percentile_so_slow_outliers_do_not_inflate_it() -> None:
    clock = Clock()
    gate = Gate(lambda: 1000.0, floor=4, cap=512, clock=clock)
    for i in range(256):
        clock.now += 0.001
        gate.observe(0.5, 0.5 if i % 4 == 0 else 0.01)  # a quarter of the answers are slow
    assert gate.service_time == pytest.approx(0.01)


def test_without_a_service_time_it_falls_back_to_the_attempt_time() -> None:
    clock = Clock()
    gate = Gate(lambda: 100.0, floor=2, cap=512, clock=clock)
    for _ in range(64):
        clock.now += 0.01
        gate.observe(0.2)
    assert gate.service_time == pytest.approx(0.2)
    assert gate.limit == 2 * 100 * 0.2 + 2  # the rate binds (+ 2 % of it to catch up)


def test_cap_below_floor_is_the_cap() -> None:
    assert Gate(lambda: 10.0, floor=8, cap=2, clock=Clock()).limit == 2
    with pytest.raises(ValueError):
        Gate(lambda: 10.0, floor=0, cap=2)


async def test_acquire_waits_for_a_release_and_a_cancelled_waiter_takes_no_slot() -> None:
    gate = Gate(lambda: 10.0, floor=2, cap=2, clock=Clock())
    await gate.acquire()
    await gate.acquire()
    waiter = asyncio.ensure_future(gate.acquire())
    cancelled = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    cancelled.cancel()
    gate.release()
    await waiter
    assert gate.in_use == 2
    gate.release()
    gate.release()
    assert gate.in_use == 0


async def test_a_larger_limit_wakes_waiters_at_once() -> None:
    clock = Clock()
    gate = Gate(lambda: 1e6, floor=1, cap=64, clock=clock)
    await gate.acquire()
    waiters = [asyncio.ensure_future(gate.acquire()) for _ in range(4)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    for _ in range(64):  # 500 answers/s of 10 ms: the limit grows past 5
        clock.now += 0.002
        gate.observe(0.01, 0.01)
    await asyncio.sleep(0)
    assert all(w.done() for w in waiters)
    assert gate.in_use == 5


def test_when_the_pacer_limits_there_are_slots_for_its_catch_up() -> None:
    # rate 5000, a 0.5 ms service, throughput at the rate: Little's law alone gives 5;
    # the limiter may release 2 % of a second's quota (100) at once after a stall.
    clock = Clock()
    gate = Gate(lambda: 5000.0, floor=4, cap=512, clock=clock)
    for _ in range(2000):
        clock.now += 1 / 4900
        gate.observe(0.004, 0.0005)
    assert gate.limit == math.ceil(2 * gate.throughput * 0.0005) + 100


def test_slow_answers_of_the_service_get_slots_though_the_percentile_ignores_them() -> None:
    # 1,000 answers/s, 3 ms each, but 1 in 20 takes 2 s (the sandbox's "slow" fault): those
    # hold 0.05 × 1000 × 2 = 100 slots on their own, which the 10th percentile never sees.
    clock = Clock()
    gate = Gate(lambda: 1e6, floor=32, cap=512, clock=clock)
    for i in range(5000):
        clock.now += 0.001
        gate.observe(2.0 if i % 20 == 0 else 0.003, 2.0 if i % 20 == 0 else 0.003)
    assert gate.service_time == pytest.approx(0.003)
    assert 32 + 90 <= gate.limit <= 32 + 110


def test_our_own_loop_lag_is_not_a_slow_answer() -> None:
    clock = Clock()
    gate = Gate(lambda: 1e6, floor=32, cap=512, clock=clock)
    for i in range(5000):
        clock.now += 0.001
        gate.observe(0.02, 0.0004 if i % 3 else 0.02)  # a third come 20 ms late: loop lag
    assert gate.limit == 32
