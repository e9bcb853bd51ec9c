"""The guard in a real run: hard bounces pour in while sending, the run pauses with rows
pending, and a rerun with a looser threshold finishes without sending anyone twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bulkmail.api import run_campaign
from bulkmail.books.reader import JournalReader
from bulkmail.deliverability.ses_events import Event
from bulkmail.deliverability.store import EventStore
from bulkmail.input.campaign import Campaign
from bulkmail.providers.ses import SesProvider
from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox


async def bounce_everything(journal: Path, events: Path, stop: asyncio.Event) -> None:
    """Plays SES: every sent message bounces (permanently) a moment later."""
    with EventStore.open(events) as store:
        while not stop.is_set():
            if journal.exists():
                with JournalReader.open(journal) as books:
                    ids = books.recent_sent(100_000)
                store.add(
                    "sns",
                    [Event("bounce", i, f"{i}@x.org", "Permanent", None, None) for i in ids],
                    received_at=0,
                )
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_bounces_pause_the_run_and_it_resumes(tmp_path: Path, make_campaign) -> None:  # type: ignore[no-untyped-def]
    guard = "guard: {bounce_rate: 0.04, window: 500, min_sends: 20}\n"
    path = make_campaign(count=400, rate=80, extra="events: events.sqlite\n" + guard)
    campaign = Campaign.from_file(path)
    assert campaign.events is not None
    stop = asyncio.Event()
    async with Sandbox() as sandbox:
        bouncer = asyncio.create_task(bounce_everything(campaign.journal, campaign.events, stop))
        try:
            provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
            summary = await run_campaign(campaign, provider=provider)
        finally:
            stop.set()
            await bouncer
        assert summary.stop_kind == "paused"
        assert summary.stopped is not None and "bounce rate" in summary.stopped
        assert summary.counts["pending"] > 0 and summary.counts["in_flight"] == 0
        assert summary.exit_code == 1
        first = summary.counts["sent"]
        assert sandbox.stats["accepted"] == first

        # The operator looks, decides, loosens the threshold: the rerun finishes the rest.
        path.write_text(path.read_text().replace("bounce_rate: 0.04", "bounce_rate: 0.99"))
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        again = await run_campaign(Campaign.from_file(path), provider=provider)
    assert again.stop_kind is None and again.counts["sent"] == 400
    assert again.sent_this_run == 400 - first
    assert sandbox.stats["accepted"] == 400  # nobody twice
