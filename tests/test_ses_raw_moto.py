"""Raw MIME, delegated sending and stored templates, end to end through ``run_campaign``.

Against moto's server with SigV4 checking on (``moto_ses``), and against the embedded
Sandbox, whose outbox holds each accepted message as an ``.eml`` file.

moto records raw messages whole (so the ``X-SES-*-ARN`` headers and attachments can be read
back from it) but drops the API's ARN fields (``SourceArn``, ``FromEmailAddressIdentityArn``
...); those are checked on the wire by :class:`RecordingProxy`, which sits in front of moto
and forwards every request unchanged, so moto still checks the signature of what was
recorded. moto's SESv2 has no ``Template`` content, so the v2 stored-template send is checked
against the Sandbox; v1 ``SendTemplatedEmail`` against moto.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
import pytest
from aiohttp import web

from bulkmail import run_campaign

from .conftest import SENDER, MotoSes

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 400  # 100 KiB, every byte value
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SOURCE_ARN = "arn:aws:ses:us-east-1:123456789012:identity/example.com"
FROM_ARN = "arn:aws:ses:us-east-1:123456789012:identity/news@example.com"
RETURN_ARN = "arn:aws:ses:us-east-1:123456789012:identity/bounces.example.com"
ARNS = f"source_arn: {SOURCE_ARN}\nfrom_arn: {FROM_ARN}\nreturn_path_arn: {RETURN_ARN}\n"

WriteCampaign = Callable[..., Path]


@pytest.fixture
def aws_env(moto_ses: MotoSes, monkeypatch: pytest.MonkeyPatch) -> MotoSes:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_ses.credentials.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_ses.credentials.secret_access_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_ses


@pytest.fixture
def write_campaign(tmp_path: Path) -> WriteCampaign:
    """A campaign folder with terms.pdf, logo.png and per-row files under files/.

    Rows are ``email,first_name,invoice``; ``content`` replaces subject/text/html.
    """
    (tmp_path / "terms.pdf").write_bytes(PDF)
    (tmp_path / "logo.png").write_bytes(PNG)
    (tmp_path / "files").mkdir()

    def factory(
        *,
        provider: str,
        emails: list[str],
        extra: str = "",
        content: str | None = None,
        sender: str = f"News <{SENDER}>",
    ) -> Path:
        lines = ["email,first_name,invoice"]
        for i, address in enumerate(emails):
            (tmp_path / "files" / f"invoice{i}.pdf").write_bytes(f"%PDF invoice {i}".encode())
            lines.append(f"{address},Nome{i},files/invoice{i}.pdf")
        (tmp_path / "list.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if content is None:
            content = (
                'subject: "Olá {{ first_name }} ✓"\n'
                'text: "Hello {{ first_name }}"\n'
                'html: "<p>Hello {{ first_name }}</p><img src=\\"cid:logo.png\\">"\n'
            )
        path = tmp_path / "campaign.yaml"
        path.write_text(
            f"provider:\n  {provider}\nrate: 500\nfrom: {json.dumps(sender)}\n"
            f"recipients: list.csv\n{content}{extra}",
            encoding="utf-8",
        )
        return path

    return factory


def parse(raw: bytes | str) -> EmailMessage:
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def files_of(parsed: EmailMessage) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for part in parsed.walk():
        name = part.get_filename()
        if name is not None:
            assert isinstance(part, EmailMessage)
            content = part.get_content()
            assert isinstance(content, bytes)
            found[name] = content
    return found


def moto_records(moto: MotoSes, kind: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = moto.data().get("ses", {}).get(kind, [])
    return records


def raw_by_recipient(moto: MotoSes, domain: str) -> dict[str, list[EmailMessage]]:
    """moto's RawMessage records in ``domain``, parsed, keyed by their To address."""
    found: dict[str, list[EmailMessage]] = {}
    for record in moto_records(moto, "RawMessage"):
        parsed = parse(record["raw_data"])
        to = parsed["To"].addresses[0].addr_spec
        if to.endswith("@" + domain):
            found.setdefault(to, []).append(parsed)
    return found


# ---------------------------------------------------------------------------- raw against moto


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_raw_campaign_with_attachments_reaches_moto_once_each(
    aws_env: MotoSes, write_campaign: WriteCampaign, api: str
) -> None:
    domain = f"raw-{api}.example.org"
    emails = [f"user{i}@{domain}" for i in range(12)]
    path = write_campaign(
        provider=f"name: ses\n  endpoint: {aws_env.url}\n  api: {api}",
        emails=emails,
        extra="attachments: [terms.pdf, logo.png]\nattachment_column: invoice\n",
    )
    summary = await run_campaign(path)
    assert summary.counts["sent"] == len(emails)

    got = raw_by_recipient(aws_env, domain)
    assert sorted(got) == sorted(emails)
    for i, address in enumerate(emails):
        [message] = got[address]  # exactly once
        assert message["Subject"] == f"Olá Nome{i} ✓"
        assert files_of(message) == {
            "terms.pdf": PDF, "logo.png": PNG, f"invoice{i}.pdf": f"%PDF invoice {i}".encode(),
        }  # fmt: skip


# ------------------------------------------------------------------------- delegated sending


@dataclass
class RecordingProxy:
    """Forwards every request to ``upstream`` unchanged (signed Host included) and records it."""

    upstream: str
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.path, body))
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        async with (
            aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Content-Type")) as session,
            session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            data = await answer.read()
            keep = {k: v for k, v in answer.headers.items()
                    if k.lower() in ("content-type", "x-amzn-errortype")}  # fmt: skip
            return web.Response(status=answer.status, body=data, headers=keep)

    def sends(self) -> list[dict[str, Any]]:
        """Each send request: SESv2 JSON documents or v1 form parameters."""
        out: list[dict[str, Any]] = []
        for path, body in self.requests:
            if path.endswith("/outbound-emails"):
                out.append(orjson.loads(body))
            elif path == "/":
                params = dict(parse_qsl(body.decode()))
                if params.get("Action", "").startswith("Send"):
                    out.append(params)
        return out


@pytest.fixture
async def proxy(moto_ses: MotoSes) -> AsyncIterator[RecordingProxy]:
    recorder = RecordingProxy(moto_ses.url)
    server = web.Server(recorder.handle)  # type: ignore[arg-type]
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recorder.url = f"http://127.0.0.1:{port}"
    yield recorder
    await runner.cleanup()


@pytest.mark.parametrize("api", ["v2", "v1"])
@pytest.mark.parametrize("raw", [False, True], ids=["simple", "raw"])
async def test_delegated_sending_arns_reach_the_wire_and_moto(
    aws_env: MotoSes,
    proxy: RecordingProxy,
    write_campaign: WriteCampaign,
    api: str,
    raw: bool,
) -> None:
    domain = f"arn-{api}-{'raw' if raw else 'simple'}.example.org"
    emails = [f"user{i}@{domain}" for i in range(3)]
    extra = ARNS + f"return_path: {SENDER}\n" + ("attachments: [terms.pdf]\n" if raw else "")
    path = write_campaign(
        provider=f"name: ses\n  endpoint: {proxy.url}\n  api: {api}", emails=emails, extra=extra
    )
    summary = await run_campaign(path)
    assert summary.counts["sent"] == 3

    sends = proxy.sends()
    assert len(sends) == 3
    for send in sends:
        if api == "v2":
            assert ("Raw" in send["Content"]) is raw
            assert send["FromEmailAddressIdentityArn"] == FROM_ARN
            assert send["FeedbackForwardingEmailAddressIdentityArn"] == RETURN_ARN
            assert send["FeedbackForwardingEmailAddress"] == SENDER
        else:
            assert send["Action"] == ("SendRawEmail" if raw else "SendEmail")
            assert (send["SourceArn"], send["FromArn"], send["ReturnPathArn"]) == (
                SOURCE_ARN, FROM_ARN, RETURN_ARN,
            )  # fmt: skip
            if raw:  # SendRawEmail has no ReturnPath parameter: its Source is the bounce address
                assert send["Source"] == SENDER and "ReturnPath" not in send
            else:
                assert send["ReturnPath"] == SENDER
    if raw:
        got = raw_by_recipient(aws_env, domain)
        assert sorted(got) == sorted(emails)
        for [message] in got.values():
            assert message.get_all("X-SES-SOURCE-ARN") == [SOURCE_ARN]
            assert message.get_all("X-SES-FROM-ARN") == [FROM_ARN]
            assert message.get_all("X-SES-RETURN-PATH-ARN") == [RETURN_ARN]
    else:  # moto keeps simple sends without the ARNs; it accepted each recipient once
        assert sorted(aws_env.recipients(domain)) == sorted(emails)


# --------------------------------------------------------------------------- stored templates


async def test_v1_stored_template_campaign_against_moto(
    aws_env: MotoSes, write_campaign: WriteCampaign
) -> None:
    import botocore.session

    client: Any = botocore.session.get_session().create_client(
        "ses",
        region_name="us-east-1",
        endpoint_url=aws_env.url,
        aws_access_key_id=aws_env.credentials.access_key_id,
        aws_secret_access_key=aws_env.credentials.secret_access_key,
    )
    client.create_template(Template={
        "TemplateName": "Welcome", "SubjectPart": "Hi {{first_name}}",
        "TextPart": "Hello {{first_name}}", "HtmlPart": "<p>Hello {{first_name}}</p>",
    })  # fmt: skip
    domain = "template-v1.example.org"
    emails = [f"user{i}@{domain}" for i in range(5)]
    path = write_campaign(
        provider=f"name: ses\n  endpoint: {aws_env.url}\n  api: v1",
        emails=emails,
        content="template: {name: Welcome}\n",
    )
    summary = await run_campaign(path)
    assert summary.counts["sent"] == 5

    records = [r for r in moto_records(aws_env, "TemplateMessage")
               if r["destinations"]["ToAddresses"][0].endswith("@" + domain)]  # fmt: skip
    assert sorted(r["destinations"]["ToAddresses"][0] for r in records) == sorted(emails)
    for record in records:
        [to] = record["destinations"]["ToAddresses"]
        i = emails.index(to)
        assert record["template"] == "Welcome" and record["source"] == f"News <{SENDER}>"
        assert json.loads(record["template_data"]) == {
            "email": to, "first_name": f"Nome{i}", "invoice": f"files/invoice{i}.pdf",
        }  # fmt: skip


async def test_v2_stored_template_with_unsubscribe_against_the_sandbox(
    write_campaign: WriteCampaign, tmp_path: Path
) -> None:
    emails = [f"user{i}@template-v2.example.org" for i in range(4)]
    path = write_campaign(
        provider="name: ses\n  endpoint: sandbox",
        emails=emails,
        content="template: {name: Welcome}\n",
        extra='unsubscribe: {url: "https://example.com/u?e={{ email }}"}\n',
    )
    summary = await run_campaign(path)
    assert summary.counts["sent"] == 4
    outbox = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(outbox) == 4
    seen = []
    for eml in outbox:
        parsed = parse(eml.read_bytes())
        to = parsed["To"].addresses[0].addr_spec
        seen.append(to)
        assert parsed["List-Unsubscribe"] == f"<https://example.com/u?e={to}>"
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        body = parsed.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "Template: Welcome" in text and f'"email":"{to}"' in text
    assert sorted(seen) == sorted(emails)


# ----------------------------------------------------------------------- raw into the Sandbox


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_sandbox_outbox_has_attachments_inline_image_and_unsubscribe(
    write_campaign: WriteCampaign, tmp_path: Path, api: str
) -> None:
    emails = [f"user{i}@sandbox-{api}.example.org" for i in range(5)]
    path = write_campaign(
        provider=f"name: ses\n  endpoint: sandbox\n  api: {api}",
        emails=emails,
        sender=f"Café Ünïcode <{SENDER}>",
        extra=(
            "attachments: [terms.pdf, logo.png]\nattachment_column: invoice\n"
            'unsubscribe: {url: "https://example.com/u?e={{ email }}", '
            "mailto: leave@example.com}\n"
        ),
    )
    summary = await run_campaign(path)
    assert summary.counts["sent"] == 5
    outbox = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(outbox) == 5
    seen = []
    for eml in outbox:
        parsed = parse(eml.read_bytes())
        to = parsed["To"].addresses[0].addr_spec
        seen.append(to)
        i = emails.index(to)
        assert parsed["Subject"] == f"Olá Nome{i} ✓"
        assert parsed["From"].addresses[0].display_name == "Café Ünïcode"
        assert parsed["List-Unsubscribe"] == (
            f"<https://example.com/u?e={to}>, <mailto:leave@example.com>"
        )
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert files_of(parsed) == {
            "terms.pdf": PDF, "logo.png": PNG, f"invoice{i}.pdf": f"%PDF invoice {i}".encode(),
        }  # fmt: skip
        [related] = [p for p in parsed.walk() if p.get_content_type() == "multipart/related"]
        [logo] = [p for p in related.iter_parts() if p.get_filename() == "logo.png"]
        assert logo["Content-ID"] == "<logo.png>"
        html = parsed.get_body(("html",))
        assert html is not None and 'src="cid:logo.png"' in html.get_content()
    assert sorted(seen) == sorted(emails)
