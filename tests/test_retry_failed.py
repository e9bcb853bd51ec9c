"""``--retry-failed``: a rerun sends again the rows that failed for a reason that may pass
(5xx, transport, throttling that ran out of attempts), exactly once each; rows the provider
refused only with ``--retry-failed=all``; attempts add up across runs in the results."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from bulkmail import run_campaign
from bulkmail.api import load_campaign, make_provider
from bulkmail.cli import main
from bulkmail.input.campaign import Campaign
from bulkmail.mail.message import Message
from bulkmail.providers.base import Outcome, Provider, Quota, Verdict
from bulkmail.servers.sandbox import SANDBOX_AWS, Faults, Sandbox

from .conftest import CampaignFactory

REFUSED = "user000007@retry.example.org"


class Refusing:
    """A provider that refuses one address the way SES refuses a bad one, else delegates."""

    def __init__(self, inner: Provider, refuse: str = REFUSED) -> None:
        self.inner = inner
        self.refuse = refuse

    async def __aenter__(self) -> Refusing:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    async def send(self, message: Message) -> Outcome:
        if message.to == self.refuse:
            return Outcome(Verdict.REJECTED, error_code="MessageRejected", error="refused")
        return await self.inner.send(message)

    async def get_quota(self) -> Quota | None:
        return await self.inner.get_quota()


def provider(campaign: Campaign, server: Sandbox, refuse: bool = True) -> Any:
    inner = make_provider(campaign, endpoint=server.url, aws=SANDBOX_AWS)
    return Refusing(inner) if refuse else inner


def results(campaign: Campaign) -> dict[str, dict[str, Any]]:
    rows = [json.loads(x) for x in Path(campaign.results).read_text().splitlines()]
    return {r["email"]: r for r in rows}


def accepted(server: Sandbox) -> collections.Counter[str]:
    return collections.Counter(to for a in server.accepted for to in a.to)


async def test_retry_failed_after_500s_sends_exactly_the_failed_rows_once(
    make_campaign: CampaignFactory,
) -> None:
    path = make_campaign(count=120, domain="retry.example.org", extra="max_attempts: 1\n")
    campaign = load_campaign(path)
    async with Sandbox(faults=Faults(seed=11, error_500=0.25)) as flaky:
        first = await run_campaign(campaign, provider=provider(campaign, flaky))
    assert first.exit_code == 1
    rows = results(campaign)
    failed = {email for email, r in rows.items() if r["status"] == "failed"}
    retryable = failed - {REFUSED}
    assert REFUSED in failed and len(retryable) >= 10
    assert all(rows[e]["attempts"] == 1 for e in failed)

    async with Sandbox() as clean:
        plain = await run_campaign(campaign, provider=provider(campaign, clean))
        assert clean.stats["accepted"] == 0 and plain.counts["failed"] == len(failed)

        again = await run_campaign(
            campaign, provider=provider(campaign, clean), retry_failed="retryable"
        )
        assert again.recovery.retried == len(retryable)
        assert accepted(clean) == collections.Counter(retryable)  # exactly those, once each
        rows = results(campaign)
        assert all(rows[e]["status"] == "sent" and rows[e]["attempts"] == 2 for e in retryable)
        assert rows[REFUSED]["status"] == "failed" and rows[REFUSED]["attempts"] == 1
        assert again.counts["failed"] == 1 and again.exit_code == 1

        # The refused row is sent again only with =all (say its address was fixed upstream).
        everything = await run_campaign(
            campaign, provider=provider(campaign, clean, refuse=False), retry_failed="all"
        )
        assert everything.recovery.retried == 1 and everything.exit_code == 0
        assert accepted(clean) == collections.Counter([*retryable, REFUSED])
        assert results(campaign)[REFUSED]["attempts"] == 2


def test_retry_failed_flag_on_the_command_line(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--retry-failed`` and ``--retry-failed=all`` reach the journal; nothing failed: no-op."""
    path = make_campaign(count=3)
    assert main([str(path), "--quiet"]) == 0
    assert main([str(path), "--quiet", "--retry-failed"]) == 0
    assert main([str(path), "--quiet", "--retry-failed=all"]) == 0
    with pytest.raises(SystemExit) as info:
        main([str(path), "--quiet", "--retry-failed=some"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_bare_retry_failed_before_the_campaign_path_takes_no_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from bulkmail.cli import main

    missing = tmp_path / "camp.yaml"
    assert main(["--retry-failed", str(missing)]) == 2
    # The path was read as the campaign (not as the flag's value): the file is named.
    assert "camp.yaml: campaign file not found" in capsys.readouterr().err
