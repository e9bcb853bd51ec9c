"""DirectMail provider: against the real sandbox, and a recording server for what it cannot show.

The sandbox (``bulkmail.servers.sandbox``) checks the RPC signature and the nonce, records
every accepted ``SingleSendMail`` and answers ``Throttling.User`` over its quota. A small
aiohttp server records raw requests and answers with whatever a test sets, for the errors
the sandbox does not produce (a string-to-sign echo, quota codes, 5xx).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from aiohttp import web
from aiolimiter import AsyncLimiter

from bulkmail.mail.message import Message
from bulkmail.pacing.calls import batch_limiter
from bulkmail.providers.base import Verdict
from bulkmail.providers.directmail import (
    REGION_ENDPOINTS,
    DirectMailProvider,
    classify_directmail_error,
    endpoint_for,
)
from bulkmail.servers.sandbox import SANDBOX_ALIBABA, Sandbox
from bulkmail.signing.aliyun import AlibabaCredentials, rpc_signature, rpc_timestamp

SENDER = "Spring News <news@example.com>"
HEADERS = (
    ("List-Unsubscribe", "<https://example.com/u?e=ana%40example.org>, <mailto:u@example.com>"),
    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
)


def message(**changes: Any) -> Message:
    fields: dict[str, Any] = {
        "to": "ana@example.org",
        "sender": SENDER,
        "subject": "Olá Ana, spring news",
        "text": "Hello Ana ✓",
        "html": "<p>Hello <b>Ana</b> ✓</p>",
        "headers": HEADERS,
    }
    fields.update(changes)
    return Message(**fields)


# -- a recording server ----------------------------------------------------------------------


@dataclass
class Recorder:
    """Records each request's form and answers ``(status, json)`` from ``answer``."""

    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    answer: Callable[[dict[str, str]], tuple[int, Any]] = lambda p: (
        200,
        {"EnvId": "env-1", "RequestId": "req-1"},
    )


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()

    async def handle(request: web.Request) -> web.Response:
        body = (await request.read()).decode("ascii")
        params = dict(parse_qsl(body, keep_blank_values=True))
        params["_content_type"] = request.headers.get("Content-Type", "")
        rec.requests.append(params)
        status, doc = rec.answer(params)
        if isinstance(doc, str | bytes):
            return web.Response(status=status, body=doc)
        return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()


def signature_ok(params: dict[str, str], secret: str) -> bool:
    signed = {k: v for k, v in params.items() if not k.startswith("_")}
    return rpc_signature("POST", signed, secret) == params["Signature"]


CREDS = AlibabaCredentials("LTAI-test-key-id", "test-secret-value-1234")


class FakeClock:
    """Wall-clock seconds that move only when a test says so (shared by sandbox and provider)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Nonces:
    """Fresh random nonces, remembered in order."""

    def __init__(self) -> None:
        self.issued: list[str] = []

    def __call__(self) -> str:
        self.issued.append(uuid.uuid4().hex)
        return self.issued[-1]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sandbox(clock: FakeClock) -> AsyncIterator[Sandbox]:
    async with Sandbox(port=0, quota=1, clock=clock) as server:
        yield server


def provider(sandbox: Sandbox, clock: FakeClock, **options: Any) -> DirectMailProvider:
    options.setdefault("credentials", SANDBOX_ALIBABA)
    return DirectMailProvider(endpoint=sandbox.url, clock=clock, **options)


# -- against the sandbox -----------------------------------------------------------------------


async def test_single_send_is_accepted_with_every_field(sandbox: Sandbox, clock: FakeClock) -> None:
    async with provider(sandbox, clock, tag_name="spring", click_trace="1", address_type=0) as dm:
        outcome = await dm.send(message(reply_to=("help@example.com",)))
    assert outcome.verdict is Verdict.SENT, outcome
    (accepted,) = sandbox.accepted
    assert outcome.message_id == accepted.message_id  # the EnvId
    params = accepted.params
    assert params["Action"] == "SingleSendMail" and params["Version"] == "2015-11-23"
    assert params["AccountName"] == "news@example.com"
    assert params["FromAlias"] == "Spring News"
    assert params["ToAddress"] == "ana@example.org" and accepted.to == ("ana@example.org",)
    assert params["Subject"] == "Olá Ana, spring news"
    assert params["TextBody"] == "Hello Ana ✓"
    assert params["HtmlBody"] == "<p>Hello <b>Ana</b> ✓</p>"
    assert orjson.loads(params["Headers"]) == dict(HEADERS)
    assert accepted.headers == HEADERS
    assert params["TagName"] == "spring" and params["ClickTrace"] == "1"
    assert params["AddressType"] == "0"
    assert params["ReplyToAddress"] == "true"
    assert params["Timestamp"] == rpc_timestamp(clock.now)
    assert "SecurityToken" not in params


async def test_tag_name_can_come_from_the_message(sandbox: Sandbox, clock: FakeClock) -> None:
    async with provider(sandbox, clock) as dm:
        outcome = await dm.send(message(tags={"TagName": "news_1", "campaign": "spring"}))
    assert outcome.ok
    params = sandbox.accepted[0].params
    assert params["TagName"] == "news_1"
    assert "campaign" not in str(params.values())  # SES-style tags are not sent


async def test_two_sends_carry_different_nonces(sandbox: Sandbox, clock: FakeClock) -> None:
    async with provider(sandbox, clock) as dm:
        first = await dm.send(message())
        clock.now += 1.5  # past the sandbox's one-per-second quota
        second = await dm.send(message(to="bo@example.org"))
    assert first.ok and second.ok
    nonces = [a.params["SignatureNonce"] for a in sandbox.accepted]
    assert len(set(nonces)) == 2
    assert sandbox.stats["nonce_reused"] == 0


async def test_a_reused_nonce_is_refused_and_fatal(sandbox: Sandbox, clock: FakeClock) -> None:
    """Why every attempt needs a fresh nonce: the service refuses one it has seen."""
    async with provider(sandbox, clock, nonce=lambda: "always-the-same") as dm:
        first = await dm.send(message())
        clock.now += 1.5
        second = await dm.send(message(to="bo@example.org"))
    assert first.ok
    assert (second.verdict, second.error_code) == (Verdict.FATAL, "SignatureNonceUsed")
    assert sandbox.stats["nonce_reused"] == 1


async def test_a_retry_is_signed_again_with_new_nonce_and_timestamp(
    sandbox: Sandbox, clock: FakeClock
) -> None:
    nonces = Nonces()
    retried = message(to="bo@example.org")
    async with provider(sandbox, clock, nonce=nonces) as dm:
        assert (await dm.send(message())).ok  # uses the sandbox's quota for this second
        throttled = await dm.send(retried)
        refused_at = clock.now
        clock.now += 2.0
        again = await dm.send(retried)
    assert throttled.verdict is Verdict.THROTTLED
    assert throttled.error_code == "Throttling.User"
    assert again.ok
    params = sandbox.accepted[-1].params
    assert params["ToAddress"] == "bo@example.org"
    assert params["SignatureNonce"] == nonces.issued[2] != nonces.issued[1]
    assert params["Timestamp"] == rpc_timestamp(clock.now) != rpc_timestamp(refused_at)
    assert len(set(nonces.issued)) == 3


async def test_wrong_secret_is_fatal_and_scrubbed(sandbox: Sandbox, clock: FakeClock) -> None:
    wrong = AlibabaCredentials(SANDBOX_ALIBABA.access_key_id, "not-the-sandbox-secret-xyz")
    async with provider(sandbox, clock, credentials=wrong) as dm:
        outcome = await dm.send(message())
    assert outcome.verdict is Verdict.FATAL
    assert outcome.error_code == "SignatureDoesNotMatch"
    error = outcome.error or ""
    assert "not matched with our calculation" in error
    for leak in (
        "string to sign",
        "POST&",
        "%26",
        "not-the-sandbox-secret-xyz",
        SANDBOX_ALIBABA.access_key_secret,
        SANDBOX_ALIBABA.access_key_id,
    ):
        assert leak.lower() not in error.lower(), leak
    assert sandbox.accepted == [] and sandbox.stats["signature_failures"] == 1


async def test_unknown_access_key_is_fatal(sandbox: Sandbox, clock: FakeClock) -> None:
    stranger = AlibabaCredentials("LTAIsomebodyElse", SANDBOX_ALIBABA.access_key_secret)
    async with provider(sandbox, clock, credentials=stranger) as dm:
        outcome = await dm.send(message())
    assert (outcome.verdict, outcome.error_code) == (Verdict.FATAL, "InvalidAccessKeyId.NotFound")


async def test_a_clock_far_off_is_fatal(sandbox: Sandbox, clock: FakeClock) -> None:
    async with DirectMailProvider(
        credentials=SANDBOX_ALIBABA, endpoint=sandbox.url, clock=lambda: clock.now - 3600
    ) as dm:
        outcome = await dm.send(message())
    assert (outcome.verdict, outcome.error_code) == (Verdict.FATAL, "InvalidTimeStamp.Expired")


async def test_sandbox_rate_quota_is_throttled(sandbox: Sandbox, clock: FakeClock) -> None:
    async with provider(sandbox, clock) as dm:
        outcomes = [await dm.send(message(to=f"r{i}@example.org")) for i in range(3)]
    assert [o.verdict for o in outcomes] == [Verdict.SENT, Verdict.THROTTLED, Verdict.THROTTLED]
    assert sandbox.stats["throttled"] == 2 and len(sandbox.accepted) == 1


async def test_sandbox_daily_quota_is_quota(clock: FakeClock) -> None:
    async with Sandbox(port=0, daily_quota=1, clock=clock) as server:
        async with provider(server, clock) as dm:
            first = await dm.send(message())
            clock.now += 5
            second = await dm.send(message(to="bo@example.org"))
    assert first.ok
    assert second.verdict is Verdict.QUOTA
    assert second.error_code == "Throttling.DailyQuota"


async def test_limits_are_checked_before_any_request(sandbox: Sandbox, clock: FakeClock) -> None:
    async with provider(sandbox, clock) as dm:
        subject = await dm.send(message(subject="s" * 101))
        alias = await dm.send(message(sender="A Sixteen Chars! <news@example.com>"))
    assert (subject.verdict, subject.error_code) == (Verdict.REJECTED, "InvalidSubject")
    assert "at most 100" in (subject.error or "")
    assert (alias.verdict, alias.error_code) == (Verdict.REJECTED, "InvalidFromAlias")
    assert "at most 15" in (alias.error or "")
    assert sandbox.accepted == []
    assert not any(sandbox.stats.values())  # the sandbox saw no request at all


async def test_sts_token_is_signed_and_accepted_by_the_sandbox(clock: FakeClock) -> None:
    sts = AlibabaCredentials("STS.sandboxKey", "sts-sandbox-secret", security_token="CAIS+tok/=")
    async with Sandbox(port=0, clock=clock, alibaba=sts) as server:
        async with provider(server, clock, credentials=sts) as dm:
            outcome = await dm.send(message())
        assert outcome.ok, outcome
        assert server.accepted[0].params["SecurityToken"] == "CAIS+tok/="


# -- construction ----------------------------------------------------------------------------


def test_region_endpoint_table() -> None:
    assert endpoint_for("cn-hangzhou") == "https://dm.aliyuncs.com"
    for region in ("ap-southeast-1", "ap-southeast-2", "us-east-1", "eu-central-1"):
        assert endpoint_for(region) == f"https://dm.{region}.aliyuncs.com"
    assert set(REGION_ENDPOINTS) == {
        "cn-hangzhou",
        "ap-southeast-1",
        "ap-southeast-2",
        "us-east-1",
        "eu-central-1",
    }
    with pytest.raises(ValueError, match="valid regions: cn-hangzhou, ap-southeast-1"):
        DirectMailProvider(credentials=CREDS, region="cn-beijing")
    # An explicit endpoint wins over the region table.
    provider = DirectMailProvider(
        credentials=CREDS, region="cn-beijing", endpoint="http://127.0.0.1:1/"
    )
    assert provider._endpoint == "http://127.0.0.1:1"


def test_version_and_options_are_checked() -> None:
    assert DirectMailProvider(credentials=CREDS, version="2017-06-22").version == "2017-06-22"
    with pytest.raises(ValueError, match="2015-11-23, 2017-06-22"):
        DirectMailProvider(credentials=CREDS, version="2020-01-01")
    with pytest.raises(ValueError, match="at most 15"):
        DirectMailProvider(credentials=CREDS, from_alias="A sixteen chars!")
    with pytest.raises(ValueError, match="address_type"):
        DirectMailProvider(credentials=CREDS, address_type=2)
    with pytest.raises(ValueError, match="click_trace"):
        DirectMailProvider(credentials=CREDS, click_trace="yes")
    with pytest.raises(ValueError, match="tag_name"):
        DirectMailProvider(credentials=CREDS, tag_name="spring news")


def test_validate_message_names_the_problem() -> None:
    dm = DirectMailProvider(credentials=CREDS)
    assert dm.validate_message(message()) is None
    assert "FromAlias" in (dm.validate_message(message(sender="Sixteen Char Name <n@x.org>")) or "")
    assert "at most 100" in (dm.validate_message(message(subject="s" * 101)) or "")
    assert "exactly one" in (dm.validate_message(message(to="a@x.org, b@x.org")) or "")
    assert "raw MIME" in (dm.validate_message(message(raw=b"Subject: x\r\n\r\nx")) or "")
    assert "X-User-" in (dm.validate_message(message(headers=(("X-Campaign", "1"),))) or "")
    assert dm.validate_message(message(headers=(("X-User-Campaign", "1"),))) is None
    assert "text or an HTML" in (dm.validate_message(message(text=None, html=None)) or "")
    tracked = DirectMailProvider(credentials=CREDS, click_trace="1")
    assert "TagName" in (tracked.validate_message(message()) or "")
    # A provider-wide alias replaces a too-long display name.
    aliased = DirectMailProvider(credentials=CREDS, from_alias="News")
    assert aliased.validate_message(message(sender="Sixteen Char Name <n@x.org>")) is None


def test_error_classification_table() -> None:
    table = {
        "Throttling": Verdict.THROTTLED,
        "Throttling.User": Verdict.THROTTLED,
        "Throttling.Api": Verdict.THROTTLED,
        "InvalidSendMail.Spam": Verdict.THROTTLED,
        "ServiceUnavailable": Verdict.RETRY,
        "InternalError": Verdict.RETRY,
        "InvalidToAddress": Verdict.REJECTED,
        "InvalidToAddress.Spam": Verdict.REJECTED,
        "InvalidReceiverName.Malformed": Verdict.REJECTED,
        "InvalidMailAddress.NotFound": Verdict.FATAL,
        "InvalidMailAddressStatus.Malformed": Verdict.FATAL,
        "SignatureDoesNotMatch": Verdict.FATAL,
        "InvalidAccessKeyId.NotFound": Verdict.FATAL,
        "InvalidAccessKeyId.Inactive": Verdict.FATAL,
        "Forbidden": Verdict.FATAL,
        "Forbidden.RAM": Verdict.FATAL,
        "InvalidTemplate.NotFound": Verdict.FATAL,
        "InvalidTimeStamp.Expired": Verdict.FATAL,
        "SignatureNonceUsed": Verdict.FATAL,
        "InvalidSecurityToken.Expired": Verdict.FATAL,
        "QuotaExhausted": Verdict.QUOTA,
        "InvalidQuota": Verdict.QUOTA,
        "InvalidBody": Verdict.REJECTED,
        "InvalidSubject.Malformed": Verdict.REJECTED,
    }
    for code, verdict in table.items():
        assert classify_directmail_error(400, code, "x") is verdict, code
    # 500/502/504 do not prove the message was refused; 503 and other 5xx do.
    assert classify_directmail_error(502, None, "<html>bad gateway</html>") is Verdict.AMBIGUOUS
    assert classify_directmail_error(500, "SomethingNew", None) is Verdict.AMBIGUOUS
    assert classify_directmail_error(503, "SomethingNew", None) is Verdict.RETRY
    assert classify_directmail_error(400, "SomethingNew", None) is Verdict.REJECTED
    assert classify_directmail_error(429, None, None) is Verdict.THROTTLED
    assert classify_directmail_error(403, "SomethingNew", None) is Verdict.FATAL
    assert classify_directmail_error(400, "Other", "Daily quota exceeded") is Verdict.QUOTA


# -- limits checked before any request ---------------------------------------------------------


async def test_too_long_subject_or_alias_is_rejected_without_a_request(
    recorder: Recorder,
) -> None:
    async with DirectMailProvider(credentials=CREDS, endpoint=recorder.url) as dm:
        long_subject = await dm.send(message(subject="x" * 101))
        long_alias = await dm.send(message(sender="A Sixteen Chars! <news@example.com>"))
        ok_subject = await dm.send(message(subject="x" * 100))
    assert long_subject.verdict is Verdict.REJECTED
    assert long_subject.error_code == "InvalidSubject"
    assert "101 characters" in (long_subject.error or "")
    assert long_alias.verdict is Verdict.REJECTED
    assert long_alias.error_code == "InvalidFromAlias"
    assert ok_subject.verdict is Verdict.SENT
    assert len(recorder.requests) == 1  # only the 100-character subject went out


# -- signing details the recording server shows ------------------------------------------------


async def test_sts_security_token_is_sent_and_signed(recorder: Recorder) -> None:
    sts = AlibabaCredentials("STS.key-id", "sts-secret-5678", security_token="CAIS-token/+=")
    async with DirectMailProvider(credentials=sts, endpoint=recorder.url) as dm:
        outcome = await dm.send(message())
    assert outcome.verdict is Verdict.SENT and outcome.message_id == "env-1"
    (params,) = recorder.requests
    assert params["SecurityToken"] == "CAIS-token/+="
    assert params["AccessKeyId"] == "STS.key-id"
    assert params["SignatureMethod"] == "HMAC-SHA1" and params["SignatureVersion"] == "1.0"
    assert params["Format"] == "JSON" and params["Action"] == "SingleSendMail"
    assert params["_content_type"].startswith("application/x-www-form-urlencoded")
    # The token is part of what was signed: the signature checks out with it, not without it.
    assert signature_ok(params, "sts-secret-5678")
    without = {k: v for k, v in params.items() if k != "SecurityToken"}
    assert not signature_ok(without, "sts-secret-5678")


async def test_reply_to_and_version_and_region_go_out(recorder: Recorder) -> None:
    async with DirectMailProvider(
        credentials=CREDS, endpoint=recorder.url, region="us-east-1", version="2017-06-22"
    ) as dm:
        await dm.send(message(reply_to=("Help <help@example.com>",)))
        await dm.send(message())
    first, second = recorder.requests
    assert first["ReplyToAddress"] == "true" and first["ReplyAddress"] == "help@example.com"
    assert second["ReplyToAddress"] == "false" and "ReplyAddress" not in second
    assert first["Version"] == "2017-06-22" and first["RegionId"] == "us-east-1"


async def test_echoed_string_to_sign_is_scrubbed(recorder: Recorder) -> None:
    """Whatever the server echoes after a bad signature never reaches the Outcome."""
    secret = CREDS.access_key_secret

    def answer(params: dict[str, str]) -> tuple[int, Any]:
        return 400, {
            "Code": "SignatureDoesNotMatch",
            "Message": "Specified signature is not matched with our calculation. server string "
            f"to sign is:POST&%2F&AccessKeyId%3D{params['AccessKeyId']}%26Secret%3D{secret}",
            "RequestId": "req-sig",
        }

    recorder.answer = answer
    async with DirectMailProvider(credentials=CREDS, endpoint=recorder.url) as dm:
        outcome = await dm.send(message())
    assert outcome.verdict is Verdict.FATAL
    assert outcome.error_code == "SignatureDoesNotMatch"
    error = outcome.error or ""
    assert "not matched with our calculation" in error and "req-sig" in error
    for leak in ("string to sign", "POST&", secret, CREDS.access_key_id):
        assert leak.lower() not in error.lower()


@pytest.mark.parametrize(
    ("status", "doc", "verdict", "code"),
    [
        (
            503,
            {"Code": "ServiceUnavailable", "Message": "try later"},
            Verdict.RETRY,
            "ServiceUnavailable",
        ),
        (502, "<html>Bad Gateway</html>", Verdict.AMBIGUOUS, "HTTP502"),
        (504, "<html>Gateway Timeout</html>", Verdict.AMBIGUOUS, "HTTP504"),
        (400, {"Code": "InvalidToAddress", "Message": "bad"}, Verdict.REJECTED, "InvalidToAddress"),
        (
            400,
            {"Code": "InvalidSendMail.Spam", "Message": "spam"},
            Verdict.THROTTLED,
            "InvalidSendMail.Spam",
        ),
        (
            400,
            {"Code": "QuotaExhausted", "Message": "no more today"},
            Verdict.QUOTA,
            "QuotaExhausted",
        ),
        (200, {"RequestId": "r"}, Verdict.SENT, None),  # a 200 without an EnvId is sent
    ],
)
async def test_answers_become_outcomes(
    recorder: Recorder, status: int, doc: Any, verdict: Verdict, code: str
) -> None:
    recorder.answer = lambda params: (status, doc)
    async with DirectMailProvider(credentials=CREDS, endpoint=recorder.url) as dm:
        outcome = await dm.send(message())
    assert (outcome.verdict, outcome.error_code) == (verdict, code)


async def test_connection_refused_is_retry() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with DirectMailProvider(credentials=CREDS, endpoint=url) as dm:
        outcome = await dm.send(message())
    assert outcome.verdict is Verdict.RETRY


async def test_batch_send_posts_one_batch_call(recorder: Recorder) -> None:
    async with DirectMailProvider(
        credentials=CREDS, endpoint=recorder.url, tag_name="spring"
    ) as dm:
        outcome = await dm.batch_send(
            template_name="news",
            receivers_name="spring-list",
            account_name="news@example.com",
            click_trace="1",
        )
    assert outcome.verdict is Verdict.SENT and outcome.message_id == "env-1"
    (params,) = recorder.requests
    assert params["Action"] == "BatchSendMail"
    assert params["TemplateName"] == "news" and params["ReceiversName"] == "spring-list"
    assert params["AccountName"] == "news@example.com" and params["AddressType"] == "1"
    assert params["TagName"] == "spring" and params["ClickTrace"] == "1"
    assert signature_ok(params, CREDS.access_key_secret)


# -- batch pacing ------------------------------------------------------------------------------


def _pace(limiter: AsyncLimiter, calls: int) -> list[float]:
    """When each of ``calls`` acquisitions gets through, on a fake loop clock (no sleeping)."""
    loop = asyncio.new_event_loop()
    now = 0.0
    loop.time = lambda: now  # type: ignore[method-assign]
    times: list[float] = []

    async def run() -> None:
        nonlocal now
        while len(times) < calls:
            if limiter.has_capacity():
                await limiter.acquire()  # capacity is there: returns without waiting
                times.append(now)
            else:
                now += 0.25

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return times


def test_batch_limiter_never_exceeds_20_calls_a_minute() -> None:
    limiter = batch_limiter()
    assert (limiter.max_rate, limiter.time_period) == (1, 3)
    times = _pace(limiter, 41)
    assert all(b - a >= 3 for a, b in itertools.pairwise(times))
    # Any 60-second window (t, t + 60] holds at most 20 calls.
    assert max(sum(t < u <= t + 60 for u in times) for t in [x - 1e-9 for x in times]) <= 20
    # The tempting AsyncLimiter(20, 60) lets 20 through at once, then keeps leaking more in:
    burst = _pace(AsyncLimiter(20, 60), 41)
    assert burst[:20] == [0.0] * 20
    assert sum(t <= 60 for t in burst) > 20
    outside_china = batch_limiter("ap-southeast-1")
    assert (outside_china.max_rate, outside_china.time_period) == (1, 6)
