"""The proxy against boto3 clients and the sandbox as upstream: fan-out, auth, accept."""

from __future__ import annotations

import asyncio
import email
import email.policy
import http.client
import logging
import shutil
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from botocore.exceptions import ClientError

from bulkmail.proxy.fanout import rewrite_raw
from bulkmail.signing.sigv4 import AwsCredentials, sign_headers

from ._proxy_helpers import KEY_ID, OTHER_ID, OTHER_SECRET, SECRET, client, recorded, running, until

SIMPLE = {
    "Subject": {"Data": "Hello"},
    "Body": {"Text": {"Data": "Hi"}, "Html": {"Data": "<p>Hi</p>"}},
}


async def call(fn: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(fn, **kw)


def _body(raw: bytes) -> bytes:
    return raw[raw.index(b"\r\n\r\n") :]


async def test_v2_simple_fans_out_one_message_per_recipient(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        ses = client("sesv2", r.url)
        answer = await call(
            ses.send_email,
            FromEmailAddress="News <news@example.com>",
            Destination={
                "ToAddresses": ["a@x.org", "b@x.org"],
                "CcAddresses": ["c@x.org"],
                "BccAddresses": ["d@x.org"],
            },
            ReplyToAddresses=["reply@example.com"],
            Content={"Simple": {**SIMPLE, "Headers": [{"Name": "X-Campaign", "Value": "7"}]}},
            EmailTags=[{"Name": "kind", "Value": "reset"}],
            ConfigurationSetName="tracking",
        )
        assert answer["MessageId"].endswith("-proxy0")
        assert await until(lambda: r.sandbox.stats["accepted"] == 4, 10)
        sent = sorted(r.sandbox.accepted, key=lambda a: a.to)
        assert [a.to for a in sent] == [("a@x.org",), ("b@x.org",), ("c@x.org",), ("d@x.org",)]
        for a in sent:
            dest = a.params["Destination"]
            assert dest == {"ToAddresses": list(a.to)}  # no Cc, no Bcc
            assert a.subject == "Hello" and a.text == "Hi" and a.html == "<p>Hi</p>"
            assert a.params["ReplyToAddresses"] == ["reply@example.com"]
            assert a.params["ConfigurationSetName"] == "tracking"
            assert a.params["EmailTags"] == [{"Name": "kind", "Value": "reset"}]
            assert ("X-Campaign", "7") in a.headers
        # every recipient's upstream id is recorded against the proxy's message id
        assert await recorded(r, 4)
        status = await r.proxy.queue.status(answer["MessageId"], KEY_ID)  # type: ignore[union-attr]
        assert status is not None
        ids = {x["UpstreamMessageId"] for x in status["Recipients"]}
        assert ids == {a.message_id for a in sent}


async def test_v1_actions_and_bulk(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        ses = client("ses", r.url)
        await call(
            ses.send_email,
            Source="news@example.com",
            Destination={"ToAddresses": ["a@x.org"], "BccAddresses": ["b@x.org"]},
            Message={"Subject": {"Data": "S"}, "Body": {"Text": {"Data": "T"}}},
            Tags=[{"Name": "k", "Value": "v"}],
        )
        await call(
            ses.send_templated_email,
            Source="news@example.com",
            Destination={"ToAddresses": ["c@x.org"], "CcAddresses": ["d@x.org"]},
            Template="welcome",
            TemplateData='{"name": "x"}',
        )
        bulk = await call(
            ses.send_bulk_templated_email,
            Source="news@example.com",
            Template="promo",
            DefaultTemplateData='{"name": "friend", "code": "A"}',
            Destinations=[
                {
                    "Destination": {"ToAddresses": ["e@x.org"]},
                    "ReplacementTemplateData": '{"name": "E"}',
                },
                {"Destination": {"ToAddresses": ["f@x.org", "g@x.org"]}},
            ],
        )
        assert [s["Status"] for s in bulk["Status"]] == ["Success", "Success"]
        v2 = client("sesv2", r.url)
        answer = await call(
            v2.send_bulk_email,
            FromEmailAddress="news@example.com",
            DefaultContent={"Template": {"TemplateName": "promo", "TemplateData": '{"code": "B"}'}},
            BulkEmailEntries=[
                {
                    "Destination": {"ToAddresses": ["h@x.org"]},
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {"ReplacementTemplateData": '{"name": "H"}'}
                    },
                }
            ],
        )
        assert answer["BulkEmailEntryResults"][0]["Status"] == "SUCCESS"
        assert await until(lambda: r.sandbox.stats["accepted"] == 8, 10)
        by_to = {a.to[0]: a for a in r.sandbox.accepted}
        assert sorted(by_to) == [f"{c}@x.org" for c in "abcdefgh"]
        assert by_to["b@x.org"].params.get("Destination") == {"ToAddresses": ["b@x.org"]}
        data = {
            k: orjson.loads(by_to[k].params["Content"]["Template"]["TemplateData"])
            for k in ("e@x.org", "h@x.org")
        }
        assert data["e@x.org"] == {"name": "E", "code": "A"}
        assert data["h@x.org"] == {"name": "H", "code": "B"}
        assert orjson.loads(by_to["f@x.org"].params["Content"]["Template"]["TemplateData"]) == {
            "name": "friend",
            "code": "A",
        }
        assert await recorded(r, 8)
        quota = await call(ses.get_send_quota)
        assert quota["MaxSendRate"] == 500.0 and quota["SentLast24Hours"] == 8.0
        account = await call(v2.get_account)
        assert account["SendQuota"]["MaxSendRate"] == 500.0


async def test_raw_with_attachment_arrives_per_recipient_body_unchanged(tmp_path: Path) -> None:
    built = EmailMessage()
    built["From"] = "News <news@example.com>"
    built["To"] = "a@x.org, B <b@x.org>"
    built["Cc"] = "c@x.org"
    built["Bcc"] = "d@x.org"
    built["Subject"] = "Report"
    built["X-Custom"] = "kept"
    built.set_content("See attached")
    built.add_attachment(bytes(range(256)) * 40, maintype="application", subtype="pdf",
                         filename="report.pdf")  # fmt: skip
    raw = built.as_bytes(policy=email.policy.SMTP)
    async with running(tmp_path) as r:
        await call(client("ses", r.url).send_raw_email, RawMessage={"Data": raw})
        await call(
            client("sesv2", r.url).send_email,
            Destination={"ToAddresses": ["e@x.org"]},
            Content={"Raw": {"Data": raw}},
        )
        assert await until(lambda: len(list((tmp_path / "outbox").glob("*.eml"))) == 5, 10)
        seen = []
        for eml in (tmp_path / "outbox").glob("*.eml"):
            data = eml.read_bytes()
            assert _body(data) == _body(raw)  # body bytes untouched
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            assert parsed["Cc"] is None and parsed["Bcc"] is None
            seen.append(str(parsed["To"]))
            assert parsed["X-Custom"] == "kept" and parsed["Subject"] == "Report"
            attachment = next(iter(parsed.iter_attachments()))
            assert attachment.get_content() == bytes(range(256)) * 40
        assert sorted(seen) == [f"{c}@x.org" for c in "abcde"]


def test_rewrite_raw_keeps_everything_but_recipient_headers() -> None:
    raw = b"From: a@x\r\nTo: b@y,\r\n c@y\r\nSubject: s\r\nCC: d@y\r\n\r\nbody\r\n\r\nmore"
    assert rewrite_raw(raw, "c@y") == b"From: a@x\r\nTo: c@y\r\nSubject: s\r\n\r\nbody\r\n\r\nmore"


async def test_auth_failures_send_nothing_and_never_log_a_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bulkmail")
    async with running(tmp_path) as r:
        kwargs = {
            "FromEmailAddress": "news@example.com",
            "Destination": {"ToAddresses": ["a@x.org"]},
            "Content": {"Simple": SIMPLE},
        }
        cases = [
            (client("sesv2", r.url, secret="wrong-secret-0000"), "SignatureDoesNotMatch", 403),
            (
                client("sesv2", r.url, key="AKIDUNKNOWNKEY000000"),
                "UnrecognizedClientException",
                403,
            ),
            (client("sesv2", r.url, key=OTHER_ID, secret=OTHER_SECRET), "MessageRejected", 400),
        ]
        for ses, code, status in cases:
            with pytest.raises(ClientError) as info:
                await call(ses.send_email, **kwargs)
            assert info.value.response["Error"]["Code"] == code
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        v1 = client("ses", r.url, key="AKIDUNKNOWNKEY000000")
        with pytest.raises(ClientError) as info:
            await call(v1.get_send_quota)
        assert info.value.response["Error"]["Code"] == "InvalidClientTokenId"
        # a request signed six minutes ago: expired
        status, body = await _signed(r.url, "GET", "/v2/email/account", now=time.time() - 360)
        assert status == 403 and b"Signature expired" in body
        await asyncio.sleep(0.3)
        assert r.sandbox.stats["accepted"] == 0
        assert (await r.proxy.queue.counts())["total"] == 0  # type: ignore[union-attr]
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (SECRET, OTHER_SECRET, "wrong-secret-0000"):
        assert secret not in text
    assert "SignatureDoesNotMatch" in caplog.text  # the refusals were logged, one line each


async def _signed(
    url: str, method: str, path: str, *, now: float | None = None,
    key: AwsCredentials | None = None, body: bytes = b"",
) -> tuple[int, bytes]:  # fmt: skip
    key = key or AwsCredentials(KEY_ID, SECRET)
    parts = urlsplit(url)
    host = parts.netloc
    headers = sign_headers(
        method=method, host=host, path=path, query="", headers={}, body=body, credentials=key,
        region="us-east-1", service="ses", now=time.time() if now is None else now,
    )  # fmt: skip

    def go() -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={"Host": host, **headers})
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    return await asyncio.to_thread(go)


async def test_status_endpoint_only_for_the_sending_client(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        answer = await call(
            client("sesv2", r.url).send_email,
            FromEmailAddress="news@example.com",
            Destination={"ToAddresses": ["a@x.org", "b@x.org"]},
            Content={"Simple": SIMPLE},
        )
        mid = answer["MessageId"]
        assert await until(lambda: r.sandbox.stats["accepted"] == 2, 10)
        assert await recorded(r, 2)
        status, body = await _signed(r.url, "GET", f"/bulkmail/v1/messages/{mid}")
        assert status == 200
        doc = orjson.loads(body)
        assert [x["Email"] for x in doc["Recipients"]] == ["a@x.org", "b@x.org"]
        assert all(x["Status"] == "sent" and x["UpstreamMessageId"] for x in doc["Recipients"])
        other = AwsCredentials(OTHER_ID, OTHER_SECRET)
        status, _ = await _signed(r.url, "GET", f"/bulkmail/v1/messages/{mid}", key=other)
        assert status == 404
        results = (tmp_path / "proxy.results.jsonl").read_bytes().splitlines()
        records = [orjson.loads(line) for line in results]
        assert {x["proxy_message_id"] for x in records} == {mid}
        assert {x["status"] for x in records} == {"sent"}


async def test_backlog_bound_answers_throttling(tmp_path: Path) -> None:
    async with running(tmp_path, rate="1") as r:
        r.proxy.service.max_backlog = 3  # type: ignore[union-attr]
        ses = client("ses", r.url, attempts=1)
        await call(
            ses.send_email,
            Source="news@example.com",
            Destination={"ToAddresses": ["a@x.org", "b@x.org", "c@x.org"]},
            Message={"Subject": {"Data": "S"}, "Body": {"Text": {"Data": "T"}}},
        )
        with pytest.raises(ClientError) as info:
            await call(
                ses.send_email,
                Source="news@example.com",
                Destination={"ToAddresses": ["d@x.org", "e@x.org"]},  # 2 still queued + 2 > 3
                Message={"Subject": {"Data": "S"}, "Body": {"Text": {"Data": "T"}}},
            )
        assert info.value.response["Error"]["Code"] == "Throttling"
        assert info.value.response["Error"]["Message"] == "Maximum sending rate exceeded."


async def test_ses_in_directmail_out(tmp_path: Path) -> None:
    async with running(tmp_path, name="directmail", rate="100") as r:
        await call(
            client("sesv2", r.url).send_email,
            FromEmailAddress="news@example.com",
            Destination={"ToAddresses": ["a@x.org"], "CcAddresses": ["b@x.org"]},
            Content={"Simple": SIMPLE},
        )
        assert await until(lambda: r.sandbox.stats["accepted"] == 2, 10)
        assert {a.api for a in r.sandbox.accepted} == {"directmail"}
        assert sorted(a.to for a in r.sandbox.accepted) == [("a@x.org",), ("b@x.org",)]


async def test_moto_as_upstream(tmp_path: Path, moto_ses: Any) -> None:
    """SES in, SES out, against moto with its SigV4 checks on."""
    from bulkmail.proxy import Proxy, ProxyConfig

    from ._proxy_helpers import ENV, write_config

    config = ProxyConfig.from_file(write_config(tmp_path, rate="50"), environ=ENV)
    async with Proxy(config, endpoint=moto_ses.url, credentials=moto_ses.credentials) as proxy:
        before = len(moto_ses.recipients("moto.example"))
        await call(
            client("sesv2", proxy.url).send_email,
            FromEmailAddress="news@example.com",
            Destination={"ToAddresses": ["a@moto.example"], "BccAddresses": ["b@moto.example"]},
            Content={"Simple": SIMPLE},
        )
        assert await until(lambda: len(moto_ses.recipients("moto.example")) - before >= 2, 15)
        assert sorted(moto_ses.recipients("moto.example")[before:]) == [
            "a@moto.example",
            "b@moto.example",
        ]


async def test_tls_listener(tmp_path: Path) -> None:
    import subprocess

    assert shutil.which("openssl"), "openssl makes the test certificate: run make install-test"

    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    extra = "tls: {cert: cert.pem, key: key.pem}\n"
    async with running(tmp_path, extra=extra) as r:
        assert r.url.startswith("https://")
        import boto3

        ses = boto3.client(
            "ses", endpoint_url=r.url, region_name="us-east-1", aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET, verify=str(tmp_path / "cert.pem"),
        )  # fmt: skip
        quota = await call(ses.get_send_quota)
        assert quota["MaxSendRate"] == 500.0
