"""Coalesce single sends into bulk calls: a provider in front of one that has ``send_bulk``.

The engine and the :class:`~bulkmail.delivery.sender.Sender` stay per recipient — each
message is paced (one unit of quota), marked in flight, retried and journaled on its own —
while the wire carries up to ``size`` of them per call. :meth:`BulkSender.send` parks the
message on a future in the group of messages that may share a call (the provider's
``bulk_key``: for SES the same template, sender, configuration set and tags) and the group
goes out when it is full or ``linger`` seconds after its first message, whichever is first.
Each caller gets its own entry's :class:`~bulkmail.providers.base.Outcome`; a retry parks
again and goes in a later call.

``linger`` (5 ms) is kept below the limiter's jitter margin (half its 2 % headroom of a
second, ~10 ms): the recipients of one call were released within ``linger`` of each other,
so sending them together cannot put more than the quota in any one-second window at the
provider. The outcome's ``service_time`` is the time from parking to the answer (the group's
wait plus the call), so the concurrency gate keeps enough messages in flight to fill groups.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Protocol

from bulkmail.mail.message import Message
from bulkmail.providers.base import Outcome, Provider, Quota

__all__ = ["BulkCapable", "BulkSender"]


class BulkCapable(Provider, Protocol):
    """A provider that can send a group of compatible messages in one call."""

    def bulk_key(self, message: Message) -> Hashable | None:
        """Messages with equal keys may share a call; ``None``: send this one alone."""
        ...

    async def send_bulk(self, messages: Sequence[Message]) -> list[Outcome]:
        """One attempt of every message, one outcome each, in order; never raises."""
        ...


class _Group:
    __slots__ = ("items", "timer")

    def __init__(self) -> None:
        self.items: list[tuple[Message, asyncio.Future[Outcome], float]] = []
        self.timer: asyncio.TimerHandle | None = None


class BulkSender:
    """A :class:`~bulkmail.providers.base.Provider` that sends through ``send_bulk``.

    >>> async def main(ses: SesProvider, message: Message) -> None:     # doctest: +SKIP
    ...     async with Sender(BulkSender(ses), rate=500) as sender:
    ...         delivery = await sender.send(message)   # goes in a SendBulkEmail call

    Messages the provider cannot group (``bulk_key`` is ``None``) are sent one by one.
    """

    def __init__(
        self,
        provider: BulkCapable,
        *,
        size: int = 50,
        linger: float = 0.005,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if size < 1 or linger < 0:
            raise ValueError("size must be at least 1 and linger not negative")
        self.provider = provider
        self.name = provider.name
        self.size = size
        self.linger = linger
        self._clock = clock
        self._groups: dict[Hashable, _Group] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self.calls = 0  # bulk calls made (for the summary and the tests)

    async def __aenter__(self) -> BulkSender:
        await self.provider.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for key in list(self._groups):
            self._flush(key)  # nobody should be parked by now; never strand a caller
        if self._calls:
            await asyncio.wait(set(self._calls))
        await self.provider.__aexit__(exc_type, exc, tb)

    async def get_quota(self) -> Quota | None:
        return await self.provider.get_quota()

    async def send(self, message: Message) -> Outcome:
        """One attempt of ``message``, in a bulk call with others when it can share one."""
        key = self.provider.bulk_key(message)
        if key is None:
            return await self.provider.send(message)
        loop = asyncio.get_running_loop()
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
            group.timer = loop.call_later(self.linger, self._flush, key)
        future: asyncio.Future[Outcome] = loop.create_future()
        group.items.append((message, future, self._clock()))
        if len(group.items) >= self.size:
            self._flush(key)
        # A caller cancelled while parked is skipped when its group goes (never sent); once
        # the call is under way its answer is dropped and its row stays in flight.
        return await future

    def _flush(self, key: Hashable) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        items = [item for item in group.items if not item[1].done()]
        if not items:
            return
        task = asyncio.get_running_loop().create_task(self._call(items))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _call(self, items: list[tuple[Message, asyncio.Future[Outcome], float]]) -> None:
        self.calls += 1
        try:
            if len(items) == 1:
                outcomes = [await self.provider.send(items[0][0])]
            else:
                outcomes = await self.provider.send_bulk([message for message, _, _ in items])
            if len(outcomes) != len(items):
                raise RuntimeError(f"send_bulk gave {len(outcomes)} outcomes for {len(items)}")
        except BaseException as exc:  # a bug below us: every caller sees it, none hangs
            for _, future, _ in items:
                if not future.done():
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:
                        future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        now = self._clock()
        for (_, future, parked), outcome in zip(items, outcomes, strict=True):
            if not future.done():
                future.set_result(replace(outcome, service_time=now - parked))
