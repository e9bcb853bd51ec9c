"""Paced, retrying delivery of messages: the part of the engine you can use on its own.

:class:`Sender` wraps a provider with the rate limiter, a concurrency gate sized by Little's
law (in flight ≈ rate × observed latency), and the retry classes:

========== ==========================================================================
throttled  back off with jitter, slow the whole campaign down (adaptive limiter), retry
retry      back off with jitter, retry with a fresh signature, up to ``max_attempts``
ambiguous  may have been accepted (500/502/504, no answer): retry and flag
           ``possible_duplicate`` (default), or stop and report ``uncertain``
           (``at_most_once=True``)
rejected   permanent for this recipient: ``failed``
fatal      raise :class:`~bulkmail.errors.FatalProviderError`: nothing more can succeed
           (bad key, an untrusted certificate); the message comes back ``pending``
quota      raise :class:`~bulkmail.errors.QuotaExhausted`: resumable later
========== ==========================================================================

An attempt that never reached the provider (refused, DNS, connect timeout) is retried like
``retry``, and also told to the :class:`~bulkmail.delivery.breaker.CircuitBreaker`: when
``threshold`` of them come in a row the campaign pauses and probes, and no recipient is
charged for them (their attempts are given back); after ``outage_wait`` seconds without an
answer it stops with :class:`~bulkmail.errors.ProviderUnavailable`, rows pending.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from bulkmail._frozen import fast_init
from bulkmail.delivery.breaker import BreakerState, CircuitBreaker, Ticket
from bulkmail.delivery.gate import Gate
from bulkmail.errors import (
    CampaignStopped,
    FatalProviderError,
    ProviderUnavailable,
    QuotaExhausted,
)
from bulkmail.mail.message import Message
from bulkmail.pacing.base import Pacer
from bulkmail.pacing.local import RateLimiter
from bulkmail.providers.base import Outcome, Provider, Verdict
from bulkmail.providers.errors import UNREACHABLE_CODES, UNWRITTEN_FATAL_CODES


class _Drained(Exception):
    """A limiter wait was interrupted because the sender is draining or stopped."""


class Status(StrEnum):
    """Final state of one recipient, as it appears in the results."""

    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    #: Not sent and not failed: the run stopped before this message could go (resumable).
    UNSENT = "pending"


@fast_init
@dataclass(slots=True, frozen=True)
class Delivery:
    """What became of one message after all its attempts.

    >>> Delivery(Status.SENT, message_id="abc", attempts=1).ok
    True
    """

    status: Status
    message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    attempts: int = 0
    possible_duplicate: bool = False
    #: For ``FAILED``: the last answer was not the provider refusing this recipient
    #: (transport, 5xx, throttling that ran out of attempts): a later run may succeed.
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.status is Status.SENT


@dataclass(slots=True, frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    >>> RetryPolicy(base=0.5, cap=8).ceiling(3)
    2.0
    """

    max_attempts: int = 5
    #: Throttled answers do not use up attempts this fast: a throttling storm slows the
    #: campaign instead of failing recipients.
    max_throttled: int = 30
    base: float = 0.25
    cap: float = 20.0
    #: Attempts that never reached the provider are not charged to ``max_attempts`` (the
    #: breaker handles outages); this bounds them for one message all the same.
    max_unreachable: int = 30

    def ceiling(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** (attempt - 1)))

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``attempt``; at least what the provider asked for
        (``Retry-After``), never more than :attr:`cap`."""
        delay = rng.uniform(self.ceiling(attempt) / 2, self.ceiling(attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay


class Sender:
    """Send messages you build, paced to ``rate`` recipients per second, with retries.

    >>> async def main(provider: Provider) -> None:                    # doctest: +SKIP
    ...     async with Sender(provider, rate=14) as sender:
    ...         delivery = await sender.send(
    ...             Message(to="ana@example.com", sender="news@example.com",
    ...                     subject="Hi", text="Hello"))
    ...         print(delivery.status, delivery.message_id)

    ``send`` returns a :class:`Delivery` for every per-recipient result and raises only when
    the campaign as a whole cannot go on (:class:`~bulkmail.errors.CampaignStopped`). Call it
    concurrently as much as you like: the limiter and the gate keep the pace; or use
    :meth:`send_many` for a bounded pipeline over an async iterable.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        rate: float,
        retry: RetryPolicy | None = None,
        at_most_once: bool = False,
        max_concurrency: int = 512,
        min_concurrency: int = 32,
        limiter: Pacer | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        outage_wait: float = 600.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.provider = provider
        self.limiter: Pacer = limiter if limiter is not None else RateLimiter(rate)
        self.retry = retry or RetryPolicy()
        self.at_most_once = at_most_once
        self._gate = Gate(
            lambda: self.limiter.effective_rate, floor=min_concurrency, cap=max_concurrency
        )
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._stopped: CampaignStopped | None = None
        self._draining = False
        self._wake = asyncio.Event()  # set on drain or stop: ends backoff sleeps early
        self.counters = {"attempts": 0, "throttled": 0, "retried": 0, "ambiguous": 0}
        self.breaker = breaker or CircuitBreaker(outage_wait=outage_wait, clock=clock, sleep=sleep)
        self.breaker._on_give_up = self._give_up

    async def __aenter__(self) -> Sender:
        await self.provider.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.provider.__aexit__(exc_type, exc, tb)

    @property
    def in_flight(self) -> int:
        return self._gate.in_use

    @property
    def stopped(self) -> CampaignStopped | None:
        """The error that stopped sending, once a provider said nothing more can succeed."""
        return self._stopped

    def drain(self) -> None:
        """Stop starting new attempts: waiting messages come back as ``Status.UNSENT`` at
        once, including those sleeping between retries or queued at the limiter."""
        self._draining = True
        self._interrupt()

    def _interrupt(self) -> None:
        self._wake.set()
        self.limiter.interrupt(_Drained)
        self.breaker.stop()

    def _give_up(self, reason: str) -> None:
        self._stop(ProviderUnavailable(reason, code="ProviderUnavailable"))

    async def send(self, message: Message) -> Delivery:
        """Deliver one message (paced, retried); see the class docstring."""
        await self._gate.acquire()
        try:
            delivery = await self._deliver(message)
        finally:
            self._gate.release()
        if delivery.status is Status.UNSENT and self._stopped is not None:
            raise self._stopped
        return delivery

    async def acquire_slot(self) -> None:
        """Wait for room in the gate; pair with :meth:`send_in_slot`. Used by the engine so
        that it creates a task only when a request can actually go."""
        await self._gate.acquire()

    async def send_in_slot(self, message: Message) -> Delivery:
        """Like :meth:`send` inside a slot taken by :meth:`acquire_slot`, but never raises
        for a stop: the message comes back ``Status.UNSENT`` and :attr:`stopped` says why."""
        try:
            return await self._deliver(message)
        finally:
            self._gate.release()

    async def send_many(
        self, messages: AsyncIterable[Message]
    ) -> AsyncIterator[tuple[Message, Delivery]]:
        """Deliver a stream of messages with bounded concurrency, yielding as each ends."""
        done: asyncio.Queue[tuple[Message, Delivery] | BaseException] = asyncio.Queue()
        pending = 0

        async def one(message: Message) -> None:
            try:
                await done.put((message, await self.send_in_slot(message)))
            except BaseException as exc:  # handed to the consumer below
                await done.put(exc)

        tasks: set[asyncio.Task[None]] = set()
        async for message in messages:
            await self.acquire_slot()
            task = asyncio.create_task(one(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            pending += 1
            while not done.empty():
                item = done.get_nowait()
                pending -= 1
                if isinstance(item, BaseException):
                    raise item
                yield item
        while pending:
            item = await done.get()
            pending -= 1
            if isinstance(item, BaseException):
                raise item
            yield item

    async def _deliver(self, message: Message) -> Delivery:
        attempts = throttled = 0
        # Attempts that never reached the provider: given back when the message returns
        # pending or waits out an outage (the outage is not the recipient's).
        unreached = unreached_total = 0
        possible_duplicate = False
        last: Outcome | None = None
        breaker = self.breaker
        while True:
            if self._draining or self._stopped is not None:
                return self._unsent(last, attempts - unreached, possible_duplicate)
            probe = False
            if breaker.state is not BreakerState.CLOSED:
                attempts -= unreached
                unreached = 0
                ticket = await breaker.admit()
                if ticket is Ticket.STOP:
                    return self._unsent(last, attempts, possible_duplicate)
                probe = ticket is Ticket.PROBE
            try:
                await self.limiter.acquire(message.cost)
            except _Drained:
                if probe:
                    breaker.failure("the probe was interrupted", probe=True)
                return self._unsent(last, attempts - unreached, possible_duplicate)
            if self._draining or self._stopped is not None:
                if probe:
                    breaker.failure("the probe was interrupted", probe=True)
                return self._unsent(last, attempts - unreached, possible_duplicate)
            attempts += 1
            self.counters["attempts"] += 1
            started = self._clock()
            outcome = await self.provider.send(message)
            self._gate.observe(self._clock() - started, outcome.service_time)
            last = outcome
            verdict = outcome.verdict
            if verdict is Verdict.RETRY and outcome.error_code in UNREACHABLE_CODES:
                unreached += 1
                unreached_total += 1
                breaker.failure(self._describe(outcome), probe=probe)
                if breaker.state is not BreakerState.CLOSED:
                    continue  # wait out the outage at the top, uncharged
                if unreached_total >= self.retry.max_unreachable:
                    return self._final(Status.FAILED, outcome, attempts, possible_duplicate)
                self.counters["retried"] += 1
                await self._pause(self.retry.delay(min(unreached_total, 6), self._rng))
                continue
            breaker.success()
            if verdict is Verdict.SENT:
                self.limiter.succeeded(message.cost)
                return Delivery(
                    Status.SENT,
                    message_id=outcome.message_id,
                    attempts=attempts,
                    possible_duplicate=possible_duplicate,
                )
            if verdict is Verdict.REJECTED:
                return self._final(Status.FAILED, outcome, attempts, possible_duplicate)
            if verdict is Verdict.FATAL:
                self._stop(FatalProviderError(self._describe(outcome), code=outcome.error_code))
                if outcome.error_code in UNWRITTEN_FATAL_CODES:  # e.g. an untrusted certificate
                    attempts -= 1 + unreached
                    unreached = 0
                return self._unsent(outcome, attempts - unreached, possible_duplicate)
            if verdict is Verdict.QUOTA:
                self._stop(QuotaExhausted(self._describe(outcome), code=outcome.error_code))
                return self._unsent(outcome, attempts - unreached, possible_duplicate)
            if verdict is Verdict.AMBIGUOUS:
                self.counters["ambiguous"] += 1
                if self.at_most_once:
                    return self._final(Status.UNCERTAIN, outcome, attempts, True)
                possible_duplicate = True
            if verdict is Verdict.THROTTLED:
                throttled += 1
                self.counters["throttled"] += 1
                self.limiter.throttled()
                if throttled >= self.retry.max_throttled:
                    return self._final(Status.FAILED, outcome, attempts, possible_duplicate)
                delay = self.retry.delay(min(throttled, 6), self._rng, outcome.retry_after)
            else:
                charged = attempts - throttled - unreached
                if charged >= self.retry.max_attempts:
                    return self._final(Status.FAILED, outcome, attempts, possible_duplicate)
                delay = self.retry.delay(charged, self._rng, outcome.retry_after)
            self.counters["retried"] += 1
            await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        """Back off for ``delay`` seconds, or less if the sender drains or stops."""
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _stop(self, error: CampaignStopped) -> None:
        if self._stopped is None:
            self._stopped = error
            self._interrupt()

    def stop(self, error: CampaignStopped) -> None:
        """Stop sending for a reason found outside the provider (for example a daily cap)."""
        self._stop(error)

    @staticmethod
    def _describe(outcome: Outcome) -> str:
        if outcome.error:
            return f"{outcome.error_code}: {outcome.error}"
        return str(outcome.error_code)

    @staticmethod
    def _final(status: Status, outcome: Outcome, attempts: int, dup: bool) -> Delivery:
        return Delivery(
            status,
            retryable=status is Status.FAILED and outcome.verdict is not Verdict.REJECTED,
            error_code=outcome.error_code,
            error=outcome.error,
            attempts=attempts,
            possible_duplicate=dup,
        )

    @staticmethod
    def _unsent(last: Outcome | None, attempts: int, dup: bool) -> Delivery:
        return Delivery(
            Status.UNSENT,
            error_code=last.error_code if last else None,
            error=last.error if last else None,
            attempts=attempts,
            possible_duplicate=dup,
        )


__all__ = ["Delivery", "RetryPolicy", "Sender", "Status"]
