"""End to end against moto's server with SigV4 checking on: every recipient exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkmail import Message, SesProvider, Verdict, run_campaign
from bulkmail.signing import AwsCredentials

from .conftest import SENDER, CampaignFactory, MotoSes


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_provider_send_is_accepted_by_moto(moto_ses: MotoSes, api: str) -> None:
    domain = f"provider-{api}.example.org"
    async with SesProvider(
        credentials=moto_ses.credentials,
        endpoint=moto_ses.url,
        api=api,  # type: ignore[arg-type]
    ) as ses:
        outcome = await ses.send(
            Message(
                to=f"ana@{domain}",
                sender=f"News <{SENDER}>",
                subject="Olá Ana",
                text="Hello ✓",
                html="<p>Hello</p>",
                reply_to=("help@example.com",),
            )
        )
    assert outcome.verdict is Verdict.SENT, outcome
    assert outcome.message_id
    assert moto_ses.recipients(domain) == [f"ana@{domain}"]


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_wrong_secret_is_fatal_and_scrubbed(moto_ses: MotoSes, api: str) -> None:
    bad = AwsCredentials(moto_ses.credentials.access_key_id, "not-the-secret-at-all")
    async with SesProvider(credentials=bad, endpoint=moto_ses.url, api=api) as ses:  # type: ignore[arg-type]
        outcome = await ses.send(
            Message(to="x@wrong.example.org", sender=SENDER, subject="s", text="t")
        )
    assert outcome.verdict is Verdict.FATAL
    assert outcome.error_code == "SignatureDoesNotMatch"
    assert "not-the-secret-at-all" not in (outcome.error or "")
    assert moto_ses.recipients("wrong.example.org") == []


async def test_quota_is_read_from_moto(moto_ses: MotoSes) -> None:
    creds = moto_ses.credentials
    async with SesProvider(credentials=creds, endpoint=moto_ses.url, api="v1") as ses:
        quota = await ses.get_quota()
    assert quota is not None and quota.max_send_rate > 0


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_campaign_delivers_each_recipient_exactly_once(
    moto_ses: MotoSes, make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_ses.credentials.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_ses.credentials.secret_access_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    domain = f"campaign-{api}.example.org"
    rows = [f"user{i}@{domain},N{i}" for i in range(60)]
    rows += [f"user1@{domain.upper()},dup", "not-an-address,x"]  # a duplicate and a bad row
    path = make_campaign(
        rows=rows, provider=f"name: ses\n  endpoint: {moto_ses.url}\n  api: {api}", rate=200
    )
    summary = await run_campaign(path)
    assert summary.counts["sent"] == 60
    got = moto_ses.recipients(domain)
    assert sorted(got) == sorted(f"user{i}@{domain}" for i in range(60))
    results = [json.loads(line) for line in Path(summary.results).read_text().splitlines()]
    assert len(results) == 62
    assert {r["status"] for r in results[:60]} == {"sent"}  # rows in list order
    skipped = [r for r in results if r["status"] == "skipped"]
    assert {r["error_code"] for r in skipped} == {"duplicate", "invalid_address"}
    # Resuming a finished campaign sends nothing more.
    again = await run_campaign(path)
    assert again.sent_this_run == 0
    assert len(moto_ses.recipients(domain)) == 60
