"""Guard rails: pause a running campaign whose own bounce or complaint rate gets too high.

SES puts an account under review at a 5 % bounce rate or a 0.1 % complaint rate and may
suspend it at 10 % / 0.5 %. The guard looks at the campaign's last ``window`` sent messages
(from its journal), counts those SES reported as a hard bounce or a complaint (from the event
store ``bulkmail events`` writes), and once at least ``min_sends`` were sent, gives the engine
a reason to pause when a rate passes its threshold. Defaults stay below the review levels.

Campaign keys (``events:`` is the event store; ``guard:`` is optional)::

    events: events.sqlite
    guard: {bounce_rate: 0.04, complaint_rate: 0.0008, window: 1000, min_sends: 200}

>>> guard = DeliverabilityGuard(GuardSettings(), sent=books, events=store)  # doctest: +SKIP
>>> await guard.check()                                                     # doctest: +SKIP
'bounce rate 6.0% (60 of the last 1000 sends) is above guard.bounce_rate 4.0%'
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from bulkmail.books.reader import JournalReader
from bulkmail.deliverability.settings import GuardSettings
from bulkmail.deliverability.store import EventStore


class SentWindow(Protocol):
    """Where the guard reads the campaign's recent sends (the journal)."""

    def recent_sent(self, n: int) -> list[str]: ...


class EventLookup(Protocol):
    """Where the guard reads what SES reported per message (the event store)."""

    def kinds(self, message_ids: Iterable[str]) -> dict[str, set[str]]: ...


class DeliverabilityGuard:
    """A :class:`bulkmail.delivery.guards.Guard`: ``await check()`` -> a reason, or None.

    >>> class Sent:
    ...     def recent_sent(self, n): return [f"m{i}" for i in range(300)]
    >>> class Events:
    ...     def kinds(self, ids): return {"m1": {"complaint"}}
    >>> asyncio.run(DeliverabilityGuard(GuardSettings(), sent=Sent(), events=Events()).check())
    'complaint rate 0.33% (1 of the last 300 sends) is above guard.complaint_rate 0.08%'
    """

    def __init__(self, settings: GuardSettings, *, sent: SentWindow, events: EventLookup) -> None:
        self.settings = settings
        self._sent = sent
        self._events = events

    @classmethod
    def for_files(cls, settings: GuardSettings, journal: Path, events: Path) -> DeliverabilityGuard:
        """A guard on a campaign's journal and event store, opened when first there."""
        return cls(settings, sent=_LazyJournal(journal), events=_LazyEvents(events))

    async def check(self) -> str | None:
        return await asyncio.to_thread(self.check_now)

    def close(self) -> None:
        """Close files the guard opened (a no-op for injected sources without ``close``)."""
        for source in (self._sent, self._events):
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def check_now(self) -> str | None:
        """The synchronous check (it reads two SQLite files)."""
        s = self.settings
        ids = self._sent.recent_sent(s.window)
        if len(ids) < s.min_sends:
            return None
        kinds = self._events.kinds(ids)
        hard = sum(1 for k in kinds.values() if "hard_bounce" in k)
        complaints = sum(1 for k in kinds.values() if "complaint" in k)
        for what, count, limit in (
            ("bounce", hard, s.bounce_rate),
            ("complaint", complaints, s.complaint_rate),
        ):
            rate = count / len(ids)
            if count and rate > limit:
                return (
                    f"{what} rate {rate:.2%} ({count} of the last {len(ids)} sends) is above "
                    f"guard.{what}_rate {limit:.2%}"
                )
        return None


class _LazyJournal:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._reader: JournalReader | None = None

    def recent_sent(self, n: int) -> list[str]:
        if self._reader is None:
            if not self._path.is_file():
                return []
            self._reader = JournalReader.open(self._path)
        return self._reader.recent_sent(n)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class _LazyEvents:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: EventStore | None = None

    def kinds(self, message_ids: Iterable[str]) -> dict[str, set[str]]:
        if self._store is None:
            if not self._path.is_file():
                return {}
            self._store = EventStore.open(self._path, readonly=True)
        return self._store.kinds(message_ids)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def campaign_guard(campaign: _HasGuard) -> list[DeliverabilityGuard]:
    """The campaign's guard (none without ``events:``), on its journal and event store."""
    if campaign.events is None or campaign.guard is None:
        return []
    return [DeliverabilityGuard.for_files(campaign.guard, campaign.journal, campaign.events)]


class _HasGuard(Protocol):
    @property
    def journal(self) -> Path: ...
    @property
    def events(self) -> Path | None: ...
    @property
    def guard(self) -> GuardSettings | None: ...


__all__ = [
    "DeliverabilityGuard",
    "EventLookup",
    "GuardSettings",
    "SentWindow",
    "campaign_guard",
]
