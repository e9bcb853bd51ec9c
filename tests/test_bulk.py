"""SESv2 SendBulkEmail: the coalescing provider, the per-entry statuses, whole campaigns.

moto (5.2) has no SendBulkEmail, so the wire tests use the embedded sandbox, which checks
every request's SigV4 signature like the service (a wrong signature is refused).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import orjson
import pytest

from bulkmail.api import make_provider, run_campaign
from bulkmail.delivery.bulk import BulkSender
from bulkmail.input.campaign import Campaign
from bulkmail.mail.message import Message
from bulkmail.providers._ses_bulk import bulk_outcomes
from bulkmail.providers.base import Outcome, Quota, Verdict
from bulkmail.providers.ses import SesProvider
from bulkmail.servers import SANDBOX_AWS, Faults, Sandbox
from bulkmail.signing import AwsCredentials
from tests.conftest import CampaignFactory


def templated(i: int, template: str = "news", **kw: str) -> Message:
    return Message(
        to=f"u{i}@example.org",
        sender="news@example.com",
        template=template,
        template_data=json.dumps({"n": i}),
        headers=(("List-Unsubscribe", f"<https://x.example/u/{i}>"),),
        key=i,
        **kw,  # type: ignore[arg-type]
    )


class FakeBulk:
    """Records the groups it is sent; answers each entry SENT with an id naming it."""

    name = "fake"

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.singles: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __aenter__(self) -> FakeBulk:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def bulk_key(self, message: Message) -> tuple[str, str] | None:
        return None if message.template is None else (message.template, message.sender)

    async def send(self, message: Message) -> Outcome:
        self.singles.append(message.to)
        return Outcome(Verdict.SENT, message_id=f"single-{message.to}")

    async def send_bulk(self, messages: Sequence[Message]) -> list[Outcome]:
        self.groups.append([m.to for m in messages])
        if self.gate is not None:
            await self.gate.wait()
        return [Outcome(Verdict.SENT, message_id=f"bulk-{m.to}") for m in messages]

    async def get_quota(self) -> Quota | None:
        return None


async def test_full_groups_go_at_once_and_each_caller_gets_its_own_outcome() -> None:
    fake = FakeBulk()
    async with BulkSender(fake, size=3, linger=60.0) as bulk:
        outcomes = await asyncio.gather(*(bulk.send(templated(i)) for i in range(6)))
    assert fake.groups == [
        [f"u{i}@example.org" for i in range(3)],
        [f"u{i}@example.org" for i in range(3, 6)],
    ]
    assert [o.message_id for o in outcomes] == [f"bulk-u{i}@example.org" for i in range(6)]
    assert all(o.service_time is not None and o.service_time >= 0 for o in outcomes)
    assert bulk.calls == 2


async def test_a_partial_group_goes_after_the_linger_and_keys_never_mix() -> None:
    fake = FakeBulk()
    async with BulkSender(fake, size=50, linger=0.001) as bulk:
        tasks = [bulk.send(templated(i, template="a" if i % 2 else "b")) for i in range(4)]
        outcomes = await asyncio.gather(*tasks)
    assert sorted(fake.groups) == [
        ["u0@example.org", "u2@example.org"],
        ["u1@example.org", "u3@example.org"],
    ]
    assert all(o.ok for o in outcomes)


async def test_a_message_that_cannot_be_grouped_is_sent_alone() -> None:
    fake = FakeBulk()
    plain = Message(to="p@example.org", sender="news@example.com", subject="Hi", text="x")
    async with BulkSender(fake, size=50, linger=0.001) as bulk:
        outcome = await bulk.send(plain)
        lone = await bulk.send(templated(1))  # a group of one uses the single call
    assert outcome.message_id == "single-p@example.org"
    assert lone.message_id == "single-u1@example.org"
    assert fake.groups == []


async def test_a_caller_cancelled_while_parked_is_never_sent() -> None:
    fake = FakeBulk()
    async with BulkSender(fake, size=50, linger=0.01) as bulk:
        gone = asyncio.ensure_future(bulk.send(templated(0)))
        kept = [asyncio.ensure_future(bulk.send(templated(i))) for i in (1, 2)]
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(*kept)
    assert fake.groups == [["u1@example.org", "u2@example.org"]]


async def test_a_bug_in_send_bulk_reaches_every_caller() -> None:
    class Broken(FakeBulk):
        async def send_bulk(self, messages: Sequence[Message]) -> list[Outcome]:
            return []  # wrong count

    async with BulkSender(Broken(), size=2, linger=60.0) as bulk:
        results = await asyncio.gather(
            bulk.send(templated(0)), bulk.send(templated(1)), return_exceptions=True
        )
    assert all(isinstance(r, RuntimeError) for r in results)


def test_every_bulk_status_maps_to_the_verdict_of_the_matching_single_send_error() -> None:
    statuses = {
        "SUCCESS": Verdict.SENT,
        "ACCOUNT_THROTTLED": Verdict.THROTTLED,
        "TRANSIENT_FAILURE": Verdict.RETRY,
        "FAILED": Verdict.RETRY,
        "MESSAGE_REJECTED": Verdict.REJECTED,
        "INVALID_PARAMETER": Verdict.REJECTED,
        "ACCOUNT_DAILY_QUOTA_EXCEEDED": Verdict.QUOTA,
        "MAIL_FROM_DOMAIN_NOT_VERIFIED": Verdict.FATAL,
        "CONFIGURATION_SET_NOT_FOUND": Verdict.FATAL,
        "TEMPLATE_NOT_FOUND": Verdict.FATAL,
        "ACCOUNT_SUSPENDED": Verdict.FATAL,
        "INVALID_SENDING_POOL_NAME": Verdict.FATAL,
        "ACCOUNT_SENDING_PAUSED": Verdict.FATAL,
        "CONFIGURATION_SET_SENDING_PAUSED": Verdict.FATAL,
    }
    body = orjson.dumps(
        {
            "BulkEmailEntryResults": [
                {"Status": s, "MessageId": "id-1"} if s == "SUCCESS" else {"Status": s, "Error": s}
                for s in statuses
            ]
        }
    )
    outcomes = bulk_outcomes(body, len(statuses), 0.001)
    assert [o.verdict for o in outcomes] == list(statuses.values())
    assert outcomes[0].message_id == "id-1"
    assert outcomes[1].error_code == "ACCOUNT_THROTTLED"


def test_an_answer_that_does_not_match_the_entries_is_ambiguous_for_all() -> None:
    body = orjson.dumps({"BulkEmailEntryResults": [{"Status": "SUCCESS", "MessageId": "x"}]})
    assert {o.verdict for o in bulk_outcomes(body, 2, 0.0)} == {Verdict.AMBIGUOUS}
    assert {o.verdict for o in bulk_outcomes(b"<html>", 2, 0.0)} == {Verdict.AMBIGUOUS}
    missing_id = orjson.dumps({"BulkEmailEntryResults": [{"Status": "SUCCESS"}]})
    sent = bulk_outcomes(missing_id, 1, 0.0)[0]  # as for SendEmail: a 200 took it
    assert sent.verdict is Verdict.SENT and sent.message_id is None


async def test_send_bulk_on_the_wire_signed_with_per_entry_data_and_statuses() -> None:
    frozen = 1_700_000_000.0
    async with Sandbox(quota=3, clock=lambda: frozen) as sandbox:  # the 4th entry is over
        async with SesProvider(
            credentials=SANDBOX_AWS, endpoint=sandbox.url, clock=lambda: frozen
        ) as ses:
            messages = [templated(i) for i in range(5)]
            outcomes = await ses.send_bulk(messages)
        async with SesProvider(
            credentials=AwsCredentials(SANDBOX_AWS.access_key_id, "wrong"),
            endpoint=sandbox.url,
            clock=lambda: frozen,
        ) as forged:
            refused = await forged.send_bulk(messages[:2])
    assert [o.verdict for o in outcomes] == [Verdict.SENT] * 3 + [Verdict.THROTTLED] * 2
    assert [o.message_id for o in outcomes[:3]] == [a.message_id for a in sandbox.accepted]
    for i, accepted in enumerate(sandbox.accepted):
        assert accepted.to == (f"u{i}@example.org",)
        entry = accepted.params["Entry"]["ReplacementEmailContent"]["ReplacementTemplate"]
        assert json.loads(entry["ReplacementTemplateData"]) == {"n": i}
        assert accepted.headers == (("List-Unsubscribe", f"<https://x.example/u/{i}>"),)
        assert accepted.params["DefaultContent"]["Template"]["TemplateName"] == "news"
    assert sandbox.stats["bulk_calls"] == 1
    assert [o.verdict for o in refused] == [Verdict.FATAL] * 2
    assert refused[0].error_code == "SignatureDoesNotMatch"


def template_campaign(make_campaign: CampaignFactory, url: str, count: int, extra: str) -> Path:
    path = make_campaign(count=count, provider=f"name: ses\n  endpoint: {url}", extra=extra)
    text = path.read_text()
    text = text.replace('subject: "Hi {{ first_name }}"\n', "").replace(
        "text: {file: body.txt}\n", ""
    )
    text = text.replace('html: "<p>Hello {{ first_name }}</p>"\n', "")
    path.write_text(text + "template: {name: newsletter}\n")
    return path


async def run_against(sandbox: Sandbox, path: Path) -> list[dict[str, object]]:
    campaign = Campaign.from_file(path)
    provider = make_provider(campaign, endpoint=sandbox.url, credentials=SANDBOX_AWS)
    await run_campaign(campaign, provider=provider)
    lines = campaign.results.read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("bulk", [True, False])
async def test_a_template_campaign_goes_in_bulk_calls_and_is_journaled_per_recipient(
    make_campaign: CampaignFactory, bulk: bool
) -> None:
    async with Sandbox() as sandbox:
        extra = "unsubscribe: {url: 'https://x.example/u/{{ email }}'}\n"
        if not bulk:
            extra += "bulk: false\n"
        path = template_campaign(make_campaign, sandbox.url, 120, extra)
        results = await run_against(sandbox, path)
    assert len(results) == 120 and {r["status"] for r in results} == {"sent"}
    by_to = {a.to[0]: a for a in sandbox.accepted}
    for row in results:
        accepted = by_to[str(row["email"])]
        assert row["message_id"] == accepted.message_id
        assert ("List-Unsubscribe", f"<https://x.example/u/{row['email']}>") in accepted.headers
    if bulk:
        assert 3 <= sandbox.stats["bulk_calls"] < 120  # ≤ 50 a call, and calls were shared
        data = [a.params["Entry"] for a in sandbox.accepted if "Entry" in a.params]
        names = {
            json.loads(
                e["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"]
            )["first_name"]
            for e in data
        }
        assert len(names) == len(data)  # each entry carried its own recipient's data
    else:
        assert sandbox.stats["bulk_calls"] == 0


async def test_entries_that_fail_transiently_are_retried_one_by_one(
    make_campaign: CampaignFactory,
) -> None:
    async with Sandbox(faults=Faults(error_503=0.2, seed=7)) as sandbox:
        path = template_campaign(make_campaign, sandbox.url, 60, "max_attempts: 8\n")
        results = await run_against(sandbox, path)
    assert {r["status"] for r in results} == {"sent"}
    assert any(int(str(r["attempts"])) > 1 for r in results)
    assert sandbox.stats["errors_injected"] > 0
    assert len({a.to for a in sandbox.accepted}) == 60 == len(sandbox.accepted)  # no duplicates


def test_bulk_key_must_be_true_or_false(make_campaign: CampaignFactory) -> None:
    from bulkmail.errors import ConfigError

    path = make_campaign(extra="bulk: sometimes\n")
    with pytest.raises(ConfigError, match="bulk"):
        Campaign.from_file(path)


def test_only_sesv2_stored_templates_can_share_a_call() -> None:
    v2 = SesProvider(credentials=SANDBOX_AWS, endpoint="http://127.0.0.1:1")
    v1 = SesProvider(credentials=SANDBOX_AWS, endpoint="http://127.0.0.1:1", api="v1")
    plain = Message(to="p@example.org", sender="news@example.com", subject="Hi", text="x")
    assert v2.bulk_key(templated(1)) == v2.bulk_key(templated(2)) is not None
    assert v2.bulk_key(templated(1, template="other")) != v2.bulk_key(templated(1))
    assert v2.bulk_key(plain) is None and v1.bulk_key(templated(1)) is None


async def test_an_entry_error_echoing_the_secret_is_scrubbed() -> None:
    secret = SANDBOX_AWS.secret_access_key

    class Echo(SesProvider):
        async def _request(self, method: str, path: str, body: bytes, content_type: str | None):  # type: ignore[no-untyped-def]
            from bulkmail.providers._http_types import Headers, Response

            doc = {
                "BulkEmailEntryResults": [{"Status": "MESSAGE_REJECTED", "Error": f"bad {secret}"}]
            }
            return Response(200, Headers({}), orjson.dumps(doc), 0.001)

    ses = Echo(credentials=SANDBOX_AWS, endpoint="http://127.0.0.1:1")
    [outcome] = await ses.send_bulk([templated(0)])
    assert outcome.verdict is Verdict.REJECTED and outcome.error and secret not in outcome.error
