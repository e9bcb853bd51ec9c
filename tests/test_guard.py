"""The deliverability guard: thresholds over a sliding window of sends, with in-memory books."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from bulkmail.deliverability.guard import DeliverabilityGuard, GuardSettings
from bulkmail.deliverability.ses_events import Event
from bulkmail.deliverability.store import EventStore
from bulkmail.errors import ConfigError
from bulkmail.input.campaign import Campaign


class FakeBooks:
    """Sent message ids, newest last, as the journal would list them."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, n: int) -> list[str]:
        new = [f"m{len(self.sent) + i}" for i in range(n)]
        self.sent.extend(new)
        return new

    def recent_sent(self, n: int) -> list[str]:
        return self.sent[::-1][:n]


class FakeEvents:
    def __init__(self) -> None:
        self.by_id: dict[str, set[str]] = {}

    def add(self, ids: Iterable[str], *kinds: str) -> None:
        for i in ids:
            self.by_id.setdefault(i, set()).update(kinds)

    def kinds(self, message_ids: Iterable[str]) -> dict[str, set[str]]:
        return {i: self.by_id[i] for i in message_ids if i in self.by_id}


@pytest.fixture
def books() -> FakeBooks:
    return FakeBooks()


@pytest.fixture
def events() -> FakeEvents:
    return FakeEvents()


def guard(books: FakeBooks, events: FakeEvents, **settings: float) -> DeliverabilityGuard:
    return DeliverabilityGuard(GuardSettings(**settings), sent=books, events=events)  # type: ignore[arg-type]


async def test_nothing_before_min_sends(books: FakeBooks, events: FakeEvents) -> None:
    g = guard(books, events, window=100, min_sends=50)
    events.add(books.send(49), "bounce", "hard_bounce")  # 100 % bounced, but too few sends
    assert await g.check() is None
    books.send(1)
    reason = await g.check()
    assert reason is not None and reason.startswith("bounce rate 98.00% (49 of the last 50")


async def test_bounce_rate_just_above_and_at_the_threshold(
    books: FakeBooks, events: FakeEvents
) -> None:
    g = guard(books, events, bounce_rate=0.04, window=100, min_sends=100)
    sent = books.send(100)
    events.add(sent[:4], "bounce", "hard_bounce")  # exactly 4 %: not above
    assert await g.check() is None
    events.add(sent[4:5], "bounce", "hard_bounce")
    assert await g.check() == (
        "bounce rate 5.00% (5 of the last 100 sends) is above guard.bounce_rate 4.00%"
    )


async def test_soft_bounces_do_not_count(books: FakeBooks, events: FakeEvents) -> None:
    g = guard(books, events, window=100, min_sends=10)
    events.add(books.send(100)[:50], "bounce")  # transient only
    assert await g.check() is None


async def test_window_slides_past_old_bounces(books: FakeBooks, events: FakeEvents) -> None:
    g = guard(books, events, window=100, min_sends=10)
    events.add(books.send(100)[:10], "bounce", "hard_bounce")
    assert await g.check() is not None
    books.send(100)  # the bounced ones are now out of the window
    assert await g.check() is None


async def test_complaint_rate(books: FakeBooks, events: FakeEvents) -> None:
    g = guard(books, events, complaint_rate=0.001, window=1000, min_sends=1000)
    sent = books.send(1000)
    events.add(sent[:1], "complaint")
    assert await g.check() is None  # 0.1 % is not above 0.1 %
    events.add(sent[1:2], "complaint")
    reason = await g.check()
    assert reason is not None and reason.startswith("complaint rate 0.20% (2 of the last 1000")


async def test_real_files_missing_then_present(tmp_path: Path) -> None:
    """for_files: no journal or store yet is no reason; the store's hard bounces are."""
    store_path = tmp_path / "events.sqlite"
    g = DeliverabilityGuard.for_files(
        GuardSettings(window=10, min_sends=1), tmp_path / "none.sqlite", store_path
    )
    assert await g.check() is None
    with EventStore.open(store_path) as store:
        store.add("s1", [Event("bounce", "m1", "a@x.org", "Permanent", None, None)], received_at=0)
        assert store.kinds(["m1", "m2"]) == {"m1": {"bounce", "hard_bounce"}}
    g.close()


def test_campaign_guard_keys(make_campaign) -> None:  # type: ignore[no-untyped-def]
    path = make_campaign(extra="events: ev.sqlite\n")
    campaign = Campaign.from_file(path)
    assert campaign.events == path.parent / "ev.sqlite"
    assert campaign.guard == GuardSettings()
    path = make_campaign(extra="events: ev.sqlite\nguard: {bounce_rate: 4, windw: 10}\n")
    with pytest.raises(ConfigError) as info:
        Campaign.from_file(path)
    text = str(info.value)
    assert "key 'guard.bounce_rate': must be a fraction" in text
    assert "key 'guard.windw': unknown key; did you mean 'window'?" in text
    path = make_campaign(extra="guard: {window: 10}\n")
    with pytest.raises(ConfigError, match="key 'guard': needs 'events:'"):
        Campaign.from_file(path)
    assert Campaign.from_file(make_campaign()).guard is None


def test_it_is_an_engine_guard() -> None:
    from bulkmail.delivery.guards import Guard

    assert isinstance(guard(FakeBooks(), FakeEvents()), Guard)
