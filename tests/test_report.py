"""`bulkmail report` after a run with faults: the real counts, a chart, and a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from bulkmail.api import run_campaign
from bulkmail.books.reader import JournalReader
from bulkmail.cli import main
from bulkmail.deliverability.ses_events import Event
from bulkmail.deliverability.store import EventStore
from bulkmail.input.campaign import Campaign
from bulkmail.providers.ses import SesProvider
from bulkmail.report import write_report
from bulkmail.report.html import RATE_COLOUR
from bulkmail.servers.sandbox import SANDBOX_AWS, Faults, Sandbox


@pytest.fixture
async def ran(tmp_path: Path, make_campaign) -> Campaign:  # type: ignore[no-untyped-def]
    """A 120-recipient campaign through a throttling, faulty sandbox, plus a few SES events."""
    path = make_campaign(count=120, rate=400, extra="events: events.sqlite\nmax_attempts: 2\n")
    campaign = Campaign.from_file(path)
    faults = Faults(seed=3, error_500=0.1, error_503=0.1)
    async with Sandbox(quota=60, faults=faults) as sandbox:
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        summary = await run_campaign(campaign, provider=provider)
    assert summary.counts["failed"] > 0 and summary.counts["sent"] > 60  # faults happened
    with JournalReader.open(campaign.journal) as books:
        ids = books.recent_sent(6)
    events = [
        Event("bounce", ids[0], "x@example.org", "Permanent", None, None),
        Event("bounce", ids[1], "y@example.org", "Permanent", None, None),
        Event("bounce", ids[2], "z@example.org", "Transient", None, None),
        Event("complaint", ids[3], "w@example.org", "abuse", None, None),
        Event("bounce", "another-campaign", "v@example.net", "Permanent", None, None),
    ]
    with EventStore.open(campaign.events) as store:  # type: ignore[arg-type]
        store.add("sns-1", events, received_at=0)
    return campaign


def card(page: str, label: str) -> str:
    match = re.search(r"<b>([^<]*)</b><span>" + re.escape(label) + "</span>", page)
    assert match, label
    return match.group(1)


async def test_page_is_self_contained_with_the_real_counts(ran: Campaign, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(ran, out)
    page = out.read_text()
    with JournalReader.open(ran.journal) as books:
        counts = books.counts()
        attempts = sum(max(r.attempts - 1, 0) for r in books.rows())
    assert card(page, "sent") == f"{counts['sent']:,}"
    assert card(page, "failed") == f"{counts['failed']:,}"
    assert card(page, "recipients") == "120"
    assert card(page, "retries") == f"{attempts:,}" and attempts > 0
    assert card(page, "hard bounces") == "2"  # the other campaign's is not counted
    assert card(page, "complaints") == "1" and card(page, "soft bounces") == "1"
    assert "<svg" in page and RATE_COLOUR in page
    assert "failed · InternalFailure" in page or "failed · ServiceUnavailable" in page
    assert "<td>example.org</td><td class=n>2</td><td class=n>1</td><td class=n>1</td>" in page
    assert "example.net" not in page
    # self-contained: nothing to fetch
    assert not re.search(r"<script|<link|<img|@import|url\(|src=|href=", page, re.I)


@pytest.mark.slow
async def test_chromium_renders_the_page(ran: Campaign, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser is not None, "chromium is not installed: run make install-test (it installs it)"
    out = tmp_path / "report.html"
    assert main(["report", str(ran.path), "--out", str(out)]) == 0
    shot = tmp_path / "shot.png"
    keep = os.environ.get("BULKMAIL_KEEP_SHOT")
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1000,1100", out.as_uri()],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    if keep:  # BULKMAIL_KEEP_SHOT=path: keep the screenshot to look at it
        shutil.copy(shot, keep)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1000, 1100)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # not blank
    target = tuple(int(RATE_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    chart = sum(n for n, rgb in colours if rgb == target)
    assert chart > 500, f"only {chart} pixels of the chart colour"


@pytest.mark.slow  # importing matplotlib takes seconds
async def test_png_of_the_chart(ran: Campaign, tmp_path: Path) -> None:
    import matplotlib  # noqa: F401  (a test extra: a missing one fails here, never skips)

    html, png = write_report(ran, tmp_path / "r.html", png=True)
    assert png == tmp_path / "r.png"
    image = Image.open(png).convert("RGB")
    target = tuple(int(RATE_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    assert sum(n for n, rgb in image.getcolors(1 << 20) or [] if rgb == target) > 200


def test_report_cli_errors_exit_2(tmp_path: Path, make_campaign) -> None:  # type: ignore[no-untyped-def]
    path = make_campaign(count=3)
    assert main(["report", str(path), "--out", str(tmp_path / "r.html")]) == 2  # never ran
    assert main(["report", str(tmp_path / "nope.yaml")]) == 2
