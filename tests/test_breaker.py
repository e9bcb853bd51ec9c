"""The circuit breaker (issue #11, item 1): an outage pauses the campaign, probes, resumes or
gives up after ``outage_wait``; no recipient is charged for it. Clock and sleep are injected:
nothing here really waits, and nothing asserts a duration."""

from __future__ import annotations

import asyncio

import pytest

from bulkmail.delivery.breaker import BreakerState, CircuitBreaker, Ticket
from bulkmail.delivery.sender import RetryPolicy, Sender, Status
from bulkmail.errors import ProviderUnavailable
from bulkmail.mail.message import Message
from bulkmail.providers.base import Outcome, Quota, Verdict
from tests.conftest import CampaignFactory

REFUSED = Outcome(Verdict.RETRY, error_code="ConnectError", error="cannot connect: refused")


class FakeTime:
    """A clock that moves only when someone sleeps; records every sleep asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Outage:
    """A provider that refuses ``down_for`` clock-seconds from its first call, then sends."""

    name = "fake"

    def __init__(self, time: FakeTime, down_for: float) -> None:
        self.time = time
        self.until: float | None = None
        self.down_for = down_for
        self.calls = 0
        self.sent: list[str] = []
        self.breaker: CircuitBreaker | None = None
        self.calls_while_paused = 0  # requests made while the breaker was not closed

    async def __aenter__(self) -> Outage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, message: Message) -> Outcome:
        self.calls += 1
        if self.breaker is not None and self.breaker.state is not BreakerState.CLOSED:
            self.calls_while_paused += 1
        if self.until is None:
            self.until = self.time.now + self.down_for
        await asyncio.sleep(0)
        if self.time.now < self.until:
            return REFUSED
        self.sent.append(message.to)
        return Outcome(Verdict.SENT, message_id=f"id-{len(self.sent)}")

    async def get_quota(self) -> Quota | None:
        return None


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _messages(n: int) -> list[Message]:
    return [
        Message(to=f"u{i}@example.org", sender="n@example.org", subject="s", text="t")
        for i in range(n)
    ]


def _sender(provider: Outage, time: FakeTime, *, outage_wait: float, **kw: object) -> Sender:
    return Sender(
        provider,  # type: ignore[arg-type]
        rate=1e6,
        retry=RetryPolicy(max_attempts=1),
        sleep=time.sleep,
        clock=time.clock,
        outage_wait=outage_wait,
        **kw,  # type: ignore[arg-type]
    )


async def test_an_outage_pauses_then_everyone_is_sent_once_and_charged_one_attempt() -> None:
    time = FakeTime()
    provider = Outage(time, down_for=30.0)
    sender = _sender(provider, time, outage_wait=600)
    provider.breaker = sender.breaker
    shown: list[str | None] = []  # what the progress line is told
    sender.breaker.on_pause = shown.append
    results = await asyncio.gather(*(sender.send(m) for m in _messages(40)))
    assert [d.status for d in results] == [Status.SENT] * 40
    assert [d.attempts for d in results] == [1] * 40  # max_attempts 1: nobody failed either
    assert sorted(provider.sent) == sorted(m.to for m in _messages(40))
    assert sender.breaker.outages == 1 and sender.breaker.state is BreakerState.CLOSED
    # While open, single probes at growing intervals, not 40 recipients hammering.
    probe_sleeps = [s for s in time.sleeps if s >= 1.0]
    assert probe_sleeps[:4] == [1.0, 2.0, 4.0, 8.0]
    assert provider.calls_while_paused == sender.breaker.probes == len(probe_sleeps)
    assert shown[0] == "provider unreachable; next try in 1s" and shown[-1] is None


async def test_an_outage_longer_than_outage_wait_stops_with_rows_pending() -> None:
    time = FakeTime()
    provider = Outage(time, down_for=10_000.0)
    sender = _sender(provider, time, outage_wait=120)
    deliveries = []
    for message in _messages(20):
        await sender.acquire_slot()
        deliveries.append(asyncio.ensure_future(sender.send_in_slot(message)))
    results = await asyncio.gather(*deliveries)
    assert {d.status for d in results} == {Status.UNSENT}
    assert {d.attempts for d in results} == {0}  # nobody is charged for the outage
    assert isinstance(sender.stopped, ProviderUnavailable)
    assert "120" in str(sender.stopped) and "refused" in str(sender.stopped)
    assert provider.sent == []
    assert time.now >= 1000.0 + 120 - 1e-6  # it waited the whole outage_wait (fake clock)


async def test_answers_other_than_unreachable_never_trip_it() -> None:
    breaker = CircuitBreaker(threshold=3)
    for _ in range(10):
        breaker.failure("refused")
        breaker.failure("refused")
        breaker.success()  # a 5xx or a rejection is an answer: the provider is there
    assert breaker.state is BreakerState.CLOSED and breaker.outages == 0
    assert await breaker.admit() is Ticket.GO


async def test_one_probe_at_a_time_and_a_straggler_success_closes_it() -> None:
    time = FakeTime()
    breaker = CircuitBreaker(threshold=2, clock=time.clock, sleep=time.sleep)
    breaker.failure("refused")
    breaker.failure("refused")
    assert breaker.state is BreakerState.OPEN
    waiters = [asyncio.ensure_future(breaker.admit()) for _ in range(5)]
    await _settle()
    assert breaker.state is BreakerState.PROBING
    done = [w.result() for w in waiters if w.done()]
    assert done == [Ticket.PROBE]  # exactly one probe, the others still wait
    breaker.failure("refused again", probe=True)
    await _settle()
    assert [w.result() for w in waiters if w.done()].count(Ticket.PROBE) == 2
    breaker.success()  # any answer, from the probe or a request already under way
    await _settle()
    assert all(w.done() for w in waiters)
    assert sorted(w.result().value for w in waiters) == ["go", "go", "go", "probe", "probe"]
    assert time.sleeps == [1.0, 2.0]


async def test_stop_releases_waiters() -> None:
    breaker = CircuitBreaker(threshold=1, first_probe=1000)
    breaker.failure("refused")
    waiter = asyncio.ensure_future(breaker.admit())
    await asyncio.sleep(0)
    breaker.stop()
    assert await waiter is Ticket.STOP
    assert await breaker.admit() is Ticket.STOP


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(outage_wait=-1)


def test_outage_wait_from_the_campaign_and_the_flag(make_campaign: CampaignFactory) -> None:
    from bulkmail.errors import ConfigError
    from bulkmail.input.campaign import Campaign

    assert Campaign.from_file(make_campaign()).outage_wait == 600.0
    assert Campaign.from_file(make_campaign(extra="outage_wait: 90s\n")).outage_wait == 90.0
    path = make_campaign(extra="outage_wait: 2m\n")
    assert Campaign.from_file(path, overrides={"outage_wait": "0"}).outage_wait == 0.0
    with pytest.raises(ConfigError, match="--outage-wait.*duration"):
        Campaign.from_file(path, overrides={"outage_wait": "soon"})
    with pytest.raises(ConfigError, match="outage_wait"):
        Campaign.from_file(make_campaign(extra="outage_wait: [1]\n"))
