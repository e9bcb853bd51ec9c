"""Retry classes and the concurrency gate, with a scripted provider and no real sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import pytest

from bulkmail import (
    FatalProviderError,
    Message,
    Outcome,
    QuotaExhausted,
    RetryPolicy,
    Sender,
    Status,
    Verdict,
)
from bulkmail.providers.base import Quota


class Scripted:
    """A provider that answers from a script, one outcome per attempt."""

    name = "scripted"

    def __init__(self, script: Iterable[Outcome] = (), *, delay: float = 0.0) -> None:
        self.script = list(script)
        self.calls: list[Message] = []
        self.delay = delay
        self.active = 0
        self.peak = 0

    async def __aenter__(self) -> Scripted:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def send(self, message: Message) -> Outcome:
        self.calls.append(message)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.script:
                return self.script.pop(0)
            return Outcome(Verdict.SENT, message_id=f"id-{len(self.calls)}")
        finally:
            self.active -= 1

    async def get_quota(self) -> Quota | None:
        return None


MSG = Message(to="a@example.org", sender="n@example.com", subject="s", text="t")
SENT = Outcome(Verdict.SENT, message_id="m-1")


def make(script: Iterable[Outcome], **kw: object) -> tuple[Sender, Scripted, list[float]]:
    provider = Scripted(script)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    sender = Sender(provider, rate=1_000_000, sleep=sleep, **kw)  # type: ignore[arg-type]
    return sender, provider, slept


async def test_sent_first_time() -> None:
    sender, provider, slept = make([SENT])
    d = await sender.send(MSG)
    assert (d.status, d.message_id, d.attempts, d.possible_duplicate) == (
        Status.SENT,
        "m-1",
        1,
        False,
    )
    assert slept == []


async def test_throttled_backs_off_slows_down_and_retries() -> None:
    throttle = Outcome(Verdict.THROTTLED, error_code="Throttling", error="Maximum sending rate")
    sender, provider, slept = make([throttle, throttle, SENT])
    before = sender.limiter.effective_rate
    d = await sender.send(MSG)
    assert d.status is Status.SENT and d.attempts == 3
    assert len(slept) == 2 and all(s > 0 for s in slept)
    assert sender.limiter.effective_rate < before
    assert sender.counters["throttled"] == 2


async def test_retry_class_is_bounded_then_failed_with_last_error() -> None:
    err = Outcome(Verdict.RETRY, error_code="ServiceUnavailable", error="try later")
    sender, provider, slept = make([err] * 10, retry=RetryPolicy(max_attempts=3))
    d = await sender.send(MSG)
    assert d.status is Status.FAILED
    assert (d.attempts, d.error_code, d.error) == (3, "ServiceUnavailable", "try later")
    assert len(provider.calls) == 3 and len(slept) == 2
    assert slept[1] >= slept[0] / 2  # grows (with jitter)


async def test_retry_after_is_honoured() -> None:
    err = Outcome(Verdict.RETRY, error_code="ServiceUnavailable", retry_after=7.0)
    sender, _, slept = make([err, SENT])
    await sender.send(MSG)
    assert slept == [7.0]


async def test_ambiguous_is_retried_and_flagged() -> None:
    lost = Outcome(Verdict.AMBIGUOUS, error_code="Timeout", error="no answer in time")
    sender, provider, _ = make([lost, SENT])
    d = await sender.send(MSG)
    assert d.status is Status.SENT and d.possible_duplicate and d.attempts == 2


async def test_ambiguous_at_most_once_is_uncertain_without_resend() -> None:
    lost = Outcome(Verdict.AMBIGUOUS, error_code="Timeout", error="no answer in time")
    sender, provider, _ = make([lost, SENT], at_most_once=True)
    d = await sender.send(MSG)
    assert d.status is Status.UNCERTAIN and d.possible_duplicate
    assert len(provider.calls) == 1


async def test_rejected_fails_this_recipient_only() -> None:
    bad = Outcome(Verdict.REJECTED, error_code="MessageRejected", error="bad address")
    sender, provider, _ = make([bad, SENT])
    assert (await sender.send(MSG)).status is Status.FAILED
    assert (await sender.send(MSG)).status is Status.SENT


@pytest.mark.parametrize(
    ("verdict", "error"), [(Verdict.FATAL, FatalProviderError), (Verdict.QUOTA, QuotaExhausted)]
)
async def test_campaign_level_answers_stop_everything(
    verdict: Verdict, error: type[Exception]
) -> None:
    sender, provider, _ = make([Outcome(verdict, error_code="X", error="stop")])
    with pytest.raises(error):
        await sender.send(MSG)
    with pytest.raises(error):
        await sender.send(MSG)
    assert len(provider.calls) == 1  # the second message never went out
    assert isinstance(sender.stopped, error)


async def test_send_in_slot_returns_unsent_instead_of_raising() -> None:
    sender, provider, _ = make([Outcome(Verdict.FATAL, error_code="AccessDenied")])
    await sender.acquire_slot()
    d = await sender.send_in_slot(MSG)
    assert d.status is Status.UNSENT and d.error_code == "AccessDenied"


async def test_drain_returns_waiting_messages_unsent() -> None:
    sender, provider, _ = make([])
    sender.drain()
    d = await sender.send(MSG)
    assert d.status is Status.UNSENT and provider.calls == []


async def test_gate_bounds_requests_in_flight() -> None:
    provider = Scripted(delay=0.001)
    sender = Sender(provider, rate=1_000_000, max_concurrency=5)

    async def messages():  # type: ignore[no-untyped-def]
        for i in range(40):
            yield Message(to=f"u{i}@example.org", sender="n@example.com", subject="s", text="t")

    results = [d async for _, d in sender.send_many(messages())]
    assert len(results) == 40 and all(d.ok for d in results)
    assert provider.peak <= 5
    assert sender.in_flight == 0


async def test_a_provider_bug_stops_the_campaign_and_leaves_the_row_in_flight(
    tmp_path: Path,
) -> None:
    from bulkmail import run_campaign

    class Broken(Scripted):
        async def send(self, message: Message) -> Outcome:
            raise RuntimeError("boom")

    (tmp_path / "list.csv").write_text("email\na@example.org\nb@example.org\n")
    path = tmp_path / "c.yaml"
    path.write_text(
        'name: c\nprovider: {name: ses}\nrate: 100\nfrom: "n@example.com"\n'
        'subject: "s"\ntext: "t"\nrecipients: list.csv\n'
    )
    summary = await run_campaign(path, provider=Broken())
    assert summary.stop_kind == "fatal" and "RuntimeError: boom" in (summary.stopped or "")
    assert summary.counts["sent"] == 0 and summary.counts["failed"] == 0
    assert summary.counts["in_flight"] + summary.counts["pending"] == 2


async def test_drain_wakes_a_message_sleeping_between_retries() -> None:
    # A 503 with Retry-After 20 s: the retry sleeps; Ctrl-C (drain) must not wait for it.
    err = Outcome(Verdict.RETRY, error_code="ServiceUnavailable", retry_after=20.0)
    provider = Scripted([err, SENT])
    sender = Sender(provider, rate=1_000_000)  # the real asyncio.sleep
    task = asyncio.create_task(sender.send(MSG))
    while not provider.calls:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    sender.drain()
    delivery = await asyncio.wait_for(task, timeout=5)  # far less than the 20 s backoff
    assert delivery.status is Status.UNSENT and delivery.error_code == "ServiceUnavailable"
    assert len(provider.calls) == 1


async def test_drain_releases_messages_queued_at_the_limiter_without_sending() -> None:
    provider = Scripted()
    sender = Sender(provider, rate=1)  # one per second: the rest queue at the limiter
    tasks = [asyncio.create_task(sender.send(MSG)) for _ in range(5)]
    while not provider.calls:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    sender.drain()
    done = await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert [d.status for d in done].count(Status.SENT) == 1
    assert [d.status for d in done].count(Status.UNSENT) == 4
    assert len(provider.calls) == 1
