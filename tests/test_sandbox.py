"""The sandbox answers as SES (v2 and v1) and DirectMail do: shapes, real error codes,
quotas and injected faults, checked over real HTTP on 127.0.0.1 with hand-signed requests."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import aiohttp
import orjson
import pytest

from bulkmail.servers import SANDBOX_ALIBABA, SANDBOX_AWS, Faults, Sandbox
from bulkmail.signing.aliyun import AlibabaCredentials, rpc_timestamp, sign_params
from bulkmail.signing.sigv4 import AwsCredentials, SigV4Signer

NS = {"ses": "http://ses.amazonaws.com/doc/2010-12-01/"}
QNAME = "{http://ses.amazonaws.com/doc/2010-12-01/}"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
UNSUBSCRIBE = "<mailto:unsubscribe@example.com?subject=u1>, <https://example.com/u/1>"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Client:
    """Signs and sends requests to one sandbox, the way a provider would."""

    def __init__(
        self, sandbox: Sandbox, session: aiohttp.ClientSession, clock: Callable[[], float]
    ) -> None:
        self.url = sandbox.url
        self.host = sandbox.url.removeprefix("http://")
        self.session = session
        self.clock = clock

    async def aws(
        self,
        method: str,
        path: str,
        body: bytes,
        content_type: str | None,
        credentials: AwsCredentials = SANDBOX_AWS,
        now: float | None = None,
        sign: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": content_type} if content_type else {}
        if sign:
            signer = SigV4Signer(credentials, region="us-east-1", service="ses")
            headers.update(
                signer.sign(
                    method, self.host, path, "", headers, body, self.clock() if now is None else now
                )
            )
        async with self.session.request(
            method, self.url + path, data=body or None, headers=headers
        ) as response:
            return response.status, dict(response.headers), await response.read()

    async def v2_send(self, doc: dict[str, Any], **kw: Any) -> tuple[int, dict[str, str], Any]:
        status, headers, data = await self.aws(
            "POST", "/v2/email/outbound-emails", orjson.dumps(doc), "application/json", **kw
        )
        return status, headers, orjson.loads(data)

    async def v1(self, params: dict[str, str], **kw: Any) -> tuple[int, ElementTree.Element]:
        body = urlencode(params).encode()
        status, _, data = await self.aws("POST", "/", body, FORM, **kw)
        return status, ElementTree.fromstring(data)

    async def directmail(
        self,
        params: dict[str, str],
        *,
        nonce: str | None = None,
        credentials: AlibabaCredentials = SANDBOX_ALIBABA,
        now: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        signed = sign_params(
            {"Version": "2015-11-23", **params},
            credentials,
            nonce=nonce or uuid.uuid4().hex,
            timestamp=rpc_timestamp(self.clock() if now is None else now),
        )
        async with self.session.post(
            self.url + "/", data=urlencode(signed), headers={"Content-Type": FORM}
        ) as response:
            return response.status, orjson.loads(await response.read())


def simple(to: str | list[str], **extra: Any) -> dict[str, Any]:
    return {
        "FromEmailAddress": "News <news@example.com>",
        "Destination": {"ToAddresses": [to] if isinstance(to, str) else to},
        "Content": {
            "Simple": {
                "Subject": {"Data": "Hello Ünïcode", "Charset": "UTF-8"},
                "Body": {"Text": {"Data": "plain body"}, "Html": {"Data": "<p>html body</p>"}},
                "Headers": [
                    {"Name": "List-Unsubscribe", "Value": UNSUBSCRIBE},
                    {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
                ],
            }
        },
        **extra,
    }


def v1_send(to: str) -> dict[str, str]:
    return {
        "Action": "SendEmail",
        "Version": "2010-12-01",
        "Source": "news@example.com",
        "Destination.ToAddresses.member.1": to,
        "Message.Subject.Data": "v1 subject",
        "Message.Body.Text.Data": "v1 text",
        "Message.Body.Html.Data": "<b>v1</b>",
        "ReplyToAddresses.member.1": "reply@example.com",
        "ConfigurationSetName": "cs",
        "Tags.member.1.Name": "campaign",
        "Tags.member.1.Value": "spring",
    }


DM_SEND = {
    "Action": "SingleSendMail",
    "AccountName": "news@mail.example.com",
    "AddressType": "1",
    "ReplyToAddress": "false",
    "ToAddress": "dm1@example.org",
    "FromAlias": "News",
    "Subject": "dm subject",
    "HtmlBody": "<p>dm</p>",
    "TextBody": "dm text",
    "Headers": orjson.dumps({"List-Unsubscribe": UNSUBSCRIBE}).decode(),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


SandboxFactory = Callable[..., Any]


@pytest.fixture
async def start(
    session: aiohttp.ClientSession, clock: FakeClock
) -> AsyncIterator[Callable[..., Any]]:
    """``await start(**sandbox_kwargs)`` -> (sandbox, client); stopped after the test."""
    running: list[Sandbox] = []

    async def factory(**kwargs: Any) -> tuple[Sandbox, Client]:
        kwargs.setdefault("clock", clock)
        sandbox = Sandbox(**kwargs)
        await sandbox.start()
        running.append(sandbox)
        return sandbox, Client(sandbox, session, kwargs["clock"])

    yield factory
    for sandbox in running:
        await sandbox.stop()


async def test_v2_simple_send_is_accepted_recorded_and_written(
    start: Any, tmp_path: Path, clock: FakeClock
) -> None:
    sandbox, client = await start(outbox=tmp_path / "outbox")
    doc = simple(
        "rcpt@example.org",
        ConfigurationSetName="cs",
        EmailTags=[{"Name": "campaign", "Value": "spring"}],
        FromEmailAddressIdentityArn="arn:aws:ses:us-east-1:1:identity/example.com",
        ReplyToAddresses=["reply@example.com"],
    )
    status, headers, answer = await client.v2_send(doc)
    assert status == 200, answer
    assert set(answer) == {"MessageId"} and headers["x-amzn-RequestId"]
    [got] = sandbox.accepted
    assert got.api == "sesv2" and got.message_id == answer["MessageId"]
    assert got.to == ("rcpt@example.org",) and got.sender == "News <news@example.com>"
    assert (got.subject, got.text, got.html) == ("Hello Ünïcode", "plain body", "<p>html body</p>")
    assert ("List-Unsubscribe", UNSUBSCRIBE) in got.headers and got.raw is None
    assert got.params["FromEmailAddressIdentityArn"].endswith("identity/example.com")
    assert got.params["EmailTags"] == [{"Name": "campaign", "Value": "spring"}]
    assert got.received_at == clock.now
    assert sandbox.stats["accepted"] == 1 and sandbox.stats["recipients"] == 1

    eml = tmp_path / "outbox" / f"{answer['MessageId']}.eml"
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "rcpt@example.org" and message["Subject"] == "Hello Ünïcode"
    assert message["From"] == "News <news@example.com>"
    assert message["Reply-To"] == "reply@example.com"
    assert message["List-Unsubscribe"] == UNSUBSCRIBE
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == "plain body"
    assert html.get_content().strip() == "<p>html body</p>"
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == [eml.name]


async def test_v2_raw_send_is_written_as_given(start: Any, tmp_path: Path) -> None:
    sandbox, client = await start(outbox=tmp_path)
    raw = (
        b"From: a@example.com\r\nTo: raw@example.org\r\nSubject: raw one\r\n"
        b"List-Unsubscribe: <https://example.com/u>\r\n\r\nraw body\r\n"
    )
    status, _, answer = await client.v2_send(
        {"Content": {"Raw": {"Data": base64.b64encode(raw).decode()}}}
    )
    assert status == 200, answer
    [got] = sandbox.accepted
    assert got.raw == raw and got.to == ("raw@example.org",) and got.subject == "raw one"
    assert got.text is not None and got.text.strip() == "raw body"
    assert (tmp_path / f"{got.message_id}.eml").read_bytes() == raw


async def test_v2_get_account_shape(start: Any) -> None:
    _, client = await start(quota=14, daily_quota=50000)
    await client.v2_send(simple(["a@example.org", "b@example.org"]))
    status, _, data = await client.aws("GET", "/v2/email/account", b"", None)
    assert status == 200
    doc = orjson.loads(data)
    assert doc["SendingEnabled"] is True and doc["ProductionAccessEnabled"] is True
    assert doc["SendQuota"] == {
        "Max24HourSend": 50000.0,
        "MaxSendRate": 14.0,
        "SentLast24Hours": 2.0,
    }


async def test_v1_send_email_and_get_send_quota_shapes(start: Any) -> None:
    sandbox, client = await start(quota=5, daily_quota=200)
    status, root = await client.v1(v1_send("v1@example.org"))
    assert status == 200
    assert root.tag == QNAME + "SendEmailResponse"
    message_id = root.findtext("ses:SendEmailResult/ses:MessageId", namespaces=NS)
    assert message_id and root.findtext("ses:ResponseMetadata/ses:RequestId", namespaces=NS)
    [got] = sandbox.accepted
    assert (got.api, got.message_id, got.to) == ("sesv1", message_id, ("v1@example.org",))
    assert (got.subject, got.text, got.html) == ("v1 subject", "v1 text", "<b>v1</b>")
    assert got.params["Tags.member.1.Value"] == "spring"

    status, root = await client.v1({"Action": "GetSendQuota", "Version": "2010-12-01"})
    assert status == 200
    result = root.find("ses:GetSendQuotaResult", NS)
    assert result is not None
    values = {child.tag.split("}")[1]: float(child.text or "") for child in result}
    assert values == {"SentLast24Hours": 1.0, "Max24HourSend": 200.0, "MaxSendRate": 5.0}


async def test_v1_raw_and_templated_sends(start: Any) -> None:
    sandbox, client = await start()
    raw = b"From: a@example.com\r\nTo: x@example.org\r\nSubject: r\r\n\r\nbody\r\n"
    status, root = await client.v1(
        {
            "Action": "SendRawEmail",
            "RawMessage.Data": base64.b64encode(raw).decode(),
            "Destinations.member.1": "raw1@example.org",
        }
    )
    assert status == 200 and root.tag.endswith("SendRawEmailResponse")
    status, root = await client.v1(
        {
            "Action": "SendTemplatedEmail",
            "Source": "n@example.com",
            "Template": "welcome",
            "TemplateData": '{"name": "A"}',
            "Destination.ToAddresses.member.1": "t@example.org",
        }
    )
    assert status == 200 and root.tag.endswith("SendTemplatedEmailResponse")
    assert [a.to for a in sandbox.accepted] == [("raw1@example.org",), ("t@example.org",)]


def _v1_error(root: ElementTree.Element) -> tuple[str | None, str | None, str | None]:
    assert root.tag == QNAME + "ErrorResponse"
    assert root.findtext("ses:RequestId", namespaces=NS)
    kind, code, message = (
        root.findtext(f"ses:Error/ses:{n}", namespaces=NS) for n in ("Type", "Code", "Message")
    )
    return kind, code, message


async def test_sigv4_failures_get_the_real_errors(start: Any, clock: FakeClock) -> None:
    sandbox, client = await start()
    wrong = AwsCredentials(SANDBOX_AWS.access_key_id, "not-the-secret")
    status, headers, doc = await client.v2_send(simple("a@example.org"), credentials=wrong)
    assert status == 403 and headers["x-amzn-ErrorType"] == "SignatureDoesNotMatch"
    assert doc["message"].startswith("The request signature we calculated does not match")
    status, root = await client.v1(v1_send("a@example.org"), credentials=wrong)
    assert status == 403
    assert _v1_error(root)[:2] == ("Sender", "SignatureDoesNotMatch")

    stranger = AwsCredentials("AKIAUNKNOWNKEY000000", SANDBOX_AWS.secret_access_key)
    status, headers, doc = await client.v2_send(simple("a@example.org"), credentials=stranger)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "UnrecognizedClientException")
    assert doc == {"message": "The security token included in the request is invalid."}
    status, root = await client.v1(v1_send("a@example.org"), credentials=stranger)
    assert (status, _v1_error(root)[1]) == (403, "InvalidClientTokenId")

    status, headers, doc = await client.v2_send(simple("a@example.org"), sign=False)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")
    status, root = await client.v1(v1_send("a@example.org"), sign=False)
    assert (status, _v1_error(root)[1]) == (403, "MissingAuthenticationToken")

    status, headers, doc = await client.v2_send(simple("a@example.org"), now=clock.now - 301)
    assert status == 403 and doc["message"].startswith("Signature expired: ")
    assert "- 5 min.)" in doc["message"]
    status, root = await client.v1(v1_send("a@example.org"), now=clock.now + 301)
    assert status == 403 and (_v1_error(root)[2] or "").startswith("Signature not yet current")

    garbled = {"Authorization": "AWS4-HMAC-SHA256 Credential=nonsense", "X-Amz-Date": "x"}
    async with client.session.post(
        client.url + "/v2/email/outbound-emails", data=b"{}", headers=garbled
    ) as response:
        assert response.status == 400
        assert response.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"

    assert sandbox.accepted == [] and sandbox.stats["signature_failures"] == 9
    # The clock skew allowed is 5 minutes either way.
    status, _, _ = await client.v2_send(simple("a@example.org"), now=clock.now - 299)
    assert status == 200


async def test_more_than_50_recipients_is_refused(start: Any) -> None:
    sandbox, client = await start()
    many = [f"r{i}@example.org" for i in range(51)]
    status, headers, doc = await client.v2_send(simple(many))
    assert status == 400 and headers["x-amzn-ErrorType"] == "BadRequestException"
    assert doc["message"] == "Recipient count exceeds 50."
    params = v1_send("a@example.org")
    params.update(
        {f"Destination.CcAddresses.member.{i}": f"c{i}@example.org" for i in range(1, 51)}
    )
    status, root = await client.v1(params)
    assert (status, _v1_error(root)[1]) == (400, "InvalidParameterValue")
    status, _, _ = await client.v2_send(simple(many[:50]))  # 50 is allowed, and counted
    assert status == 200 and sandbox.stats["recipients"] == 50


async def test_rate_quota_counts_recipients_in_a_strict_sliding_second(
    start: Any, clock: FakeClock
) -> None:
    sandbox, client = await start(quota=3)
    assert (await client.v2_send(simple(["a@example.org", "b@example.org"])))[0] == 200
    clock.now += 0.5
    assert (await client.v2_send(simple("c@example.org")))[0] == 200
    clock.now += 0.4
    status, headers, doc = await client.v2_send(simple("d@example.org"))  # 4th in 0.9 s
    assert (status, headers["x-amzn-ErrorType"]) == (429, "TooManyRequestsException")
    assert doc == {"message": "Maximum sending rate exceeded."}
    status, root = await client.v1(v1_send("d@example.org"))
    assert (status, _v1_error(root)[1:]) == (400, ("Throttling", "Maximum sending rate exceeded."))
    clock.now += 0.1  # the first two recipients are now exactly 1 s old: out of the window
    assert (await client.v2_send(simple("d@example.org")))[0] == 200
    assert (await client.v2_send(simple("e@example.org")))[0] == 200
    assert (await client.v2_send(simple("f@example.org")))[0] == 429
    assert [a.to[-1][0] for a in sandbox.accepted] == ["b", "c", "d", "e"]
    assert sandbox.stats["throttled"] == 3 and sandbox.stats["recipients"] == 5


async def test_daily_quota(start: Any, clock: FakeClock) -> None:
    sandbox, client = await start(daily_quota=2)
    for to in ("a@example.org", "b@example.org"):
        assert (await client.v2_send(simple(to)))[0] == 200
    status, _, doc = await client.v2_send(simple("c@example.org"))
    assert status == 429 and doc == {"message": "Daily message quota exceeded."}
    status, root = await client.v1(v1_send("c@example.org"))
    assert (status, _v1_error(root)[1:]) == (400, ("Throttling", "Daily message quota exceeded."))
    clock.now += 86400
    assert (await client.v2_send(simple("c@example.org")))[0] == 200
    assert sandbox.stats["accepted"] == 3


async def test_directmail_send_and_its_refusals(
    start: Any, clock: FakeClock, tmp_path: Path
) -> None:
    sandbox, client = await start(outbox=tmp_path)
    status, doc = await client.directmail(DM_SEND, nonce="nonce-1")
    assert status == 200 and set(doc) == {"EnvId", "RequestId"}, doc
    [got] = sandbox.accepted
    assert (got.api, got.message_id, got.to) == ("directmail", doc["EnvId"], ("dm1@example.org",))
    assert got.sender == "News <news@mail.example.com>" and got.subject == "dm subject"
    assert ("List-Unsubscribe", UNSUBSCRIBE) in got.headers
    message = email.message_from_bytes((tmp_path / f"{doc['EnvId']}.eml").read_bytes())
    assert message["To"] == "dm1@example.org" and message["List-Unsubscribe"] == UNSUBSCRIBE

    status, doc = await client.directmail(DM_SEND, nonce="nonce-1")
    assert (status, doc["Code"]) == (400, "SignatureNonceUsed")
    assert doc["HostId"] == "dm.aliyuncs.com" and doc["RequestId"] and doc["Recommend"]

    wrong = AlibabaCredentials(SANDBOX_ALIBABA.access_key_id, "wrong-secret")
    status, doc = await client.directmail(DM_SEND, credentials=wrong)
    assert (status, doc["Code"]) == (400, "SignatureDoesNotMatch")
    assert doc["Message"].startswith(
        "Specified signature is not matched with our calculation."
        " server string to sign is:POST&%2F&AccessKeyId%3D"
    )

    status, doc = await client.directmail(DM_SEND, now=clock.now - 901)
    assert (status, doc["Code"]) == (400, "InvalidTimeStamp.Expired")
    status, doc = await client.directmail(
        DM_SEND, credentials=AlibabaCredentials("LTAIunknown", "x")
    )
    assert (status, doc["Code"]) == (400, "InvalidAccessKeyId.NotFound")
    status, doc = await client.directmail({k: v for k, v in DM_SEND.items() if k != "Subject"})
    assert (status, doc["Code"]) == (400, "MissingSubject")
    assert len(sandbox.accepted) == 1
    assert sandbox.stats["nonce_reused"] == 1 and sandbox.stats["signature_failures"] == 3

    # A nonce is remembered for 15 minutes, then may be used again.
    clock.now += 901
    status, doc = await client.directmail(DM_SEND, nonce="nonce-1")
    assert status == 200, doc


async def test_directmail_throttling(start: Any, clock: FakeClock) -> None:
    _, client = await start(quota=1)
    assert (await client.directmail(DM_SEND))[0] == 200
    status, doc = await client.directmail(DM_SEND)
    assert (status, doc["Code"], doc["Message"]) == (
        400,
        "Throttling.User",
        "Request was denied due to user flow control.",
    )


async def test_reset_before_closes_without_accepting(start: Any) -> None:
    sandbox, client = await start(faults=Faults(seed=1, reset_before=1.0))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.v2_send(simple("a@example.org"))
    assert sandbox.accepted == [] and sandbox.stats["accepted"] == 0
    assert sandbox.stats["resets"] == 1
    # Quota reads are never faulted: a provider can always learn its limits.
    status, _, _ = await client.aws("GET", "/v2/email/account", b"", None)
    assert status == 200


async def test_lost_after_accept_records_then_closes(start: Any, tmp_path: Path) -> None:
    sandbox, client = await start(faults=Faults(seed=1, lost_after_accept=1.0), outbox=tmp_path)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.v2_send(simple("a@example.org"))
    assert [a.to for a in sandbox.accepted] == [("a@example.org",)]
    assert sandbox.stats["lost"] == 1 and len(list(tmp_path.glob("*.eml"))) == 1


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("error_500", 500, "InternalFailure"), ("error_503", 503, "ServiceUnavailable")],
)
async def test_injected_errors(start: Any, kind: str, status: int, code: str) -> None:
    sandbox, client = await start(faults=Faults(seed=1, **{kind: 1.0}))
    got, headers, _ = await client.v2_send(simple("a@example.org"))
    assert (got, headers["x-amzn-ErrorType"]) == (status, code)
    assert sandbox.accepted == [] and sandbox.stats["errors_injected"] == 1


async def test_slow_and_latency(start: Any) -> None:
    sandbox, client = await start(
        faults=Faults(seed=1, slow=1.0, slow_seconds=0.3, latency=0.05), clock=time.time
    )
    began = time.monotonic()
    status, _, _ = await client.v2_send(simple("a@example.org"))
    assert status == 200 and time.monotonic() - began >= 0.35
    assert sandbox.stats["slowed"] == 1 and len(sandbox.accepted) == 1


async def test_faults_are_seeded_and_proportionate(start: Any) -> None:
    faults = Faults(seed=42, error_503=0.3, reset_before=0.2)
    outcomes = []
    for _ in range(2):
        sandbox, client = await start(faults=faults, record=False)
        run = []
        for i in range(200):
            try:
                run.append((await client.v2_send(simple(f"u{i}@example.org")))[0])
            except aiohttp.ServerDisconnectedError:
                run.append(0)
        outcomes.append(run)
        assert sandbox.accepted == [] and sandbox.stats["accepted"] == run.count(200)
    assert outcomes[0] == outcomes[1]  # same seed, same faults
    assert 40 < outcomes[0].count(503) < 80 and 20 < outcomes[0].count(0) < 60


def test_fault_probabilities_are_checked() -> None:
    with pytest.raises(ValueError):
        Faults(error_500=0.6, error_503=0.6)
    with pytest.raises(ValueError):
        Sandbox(quota=0)


async def test_run_sandbox_serves_until_cancelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], session: aiohttp.ClientSession
) -> None:
    from bulkmail.servers import run_sandbox

    with socket.socket() as probe:  # a free port, as the CLI would be given one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(run_sandbox(port=port, quota=None, outbox=tmp_path / "out"))
    banner = ""
    for _ in range(200):  # the banner is printed once the port is open
        await asyncio.sleep(0.01)
        banner += capsys.readouterr().out
        if "Ctrl-C" in banner:
            break
    assert f"http://127.0.0.1:{port}" in banner
    assert f"AWS_SECRET_ACCESS_KEY={SANDBOX_AWS.secret_access_key}" in banner
    assert str((tmp_path / "out").resolve()) in banner

    class Stub:
        url = f"http://127.0.0.1:{port}"

    client = Client(Stub(), session, time.time)  # type: ignore[arg-type]
    doc = simple("Ünï Reader <reader@example.org>")
    doc["FromEmailAddress"] = "Ünï News <news@example.com>"
    status, _, answer = await client.v2_send(doc)
    assert status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    eml = (tmp_path / "out" / f"{answer['MessageId']}.eml").read_bytes()
    assert eml.isascii()  # non-ASCII names and subject are RFC 2047-encoded
    message = email.message_from_bytes(eml, policy=email.policy.default)
    assert message["From"].addresses[0].display_name == "Ünï News"
    assert message["To"].addresses[0].addr_spec == "reader@example.org"
    assert message["Subject"] == "Hello Ünïcode"
