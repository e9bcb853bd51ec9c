"""Composer: from a campaign file and a recipient row to the message a provider sends.

Campaigns are real files read by ``Campaign.from_file``; raw messages are parsed back with
the standard library's ``email`` package.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from bulkmail.errors import ConfigError
from bulkmail.input.campaign import Campaign
from bulkmail.input.compose import Composer, inline_cid
from bulkmail.input.recipients import Recipient
from bulkmail.input.render import Renderer, RenderProblem
from bulkmail.mail.message import Message
from bulkmail.mail.mime import SES_V1_RAW_LIMIT, MimeBuilder

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SOURCE_ARN = "arn:aws:ses:us-east-1:123456789012:identity/example.com"
FROM_ARN = "arn:aws:ses:us-east-1:123456789012:identity/news@example.com"
RETURN_ARN = "arn:aws:ses:us-east-1:123456789012:identity/bounces.example.com"
SES_V2 = "name: ses\n  region: us-east-1"
SES_V1 = "name: ses\n  region: us-east-1\n  api: v1"
SMTP = "name: smtp\n  host: 127.0.0.1\n  port: 2525\n  tls: none"

Write = Callable[..., Campaign]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write a campaign folder (terms.pdf, logo.png, files/ana.pdf) and load the campaign.

    ``content`` replaces the subject/text/html lines; ``extra`` is appended YAML.
    """
    (tmp_path / "terms.pdf").write_bytes(PDF)
    (tmp_path / "logo.png").write_bytes(PNG)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "ana.pdf").write_bytes(b"%PDF ana's invoice")
    (tmp_path / "list.csv").write_text("email,first_name\n", encoding="utf-8")

    def factory(
        *,
        provider: str = SES_V2,
        content: str | None = None,
        extra: str = "",
        sender: str = "News <news@example.com>",
    ) -> Campaign:
        if content is None:
            content = (
                'subject: "Hi {{ first_name }}"\n'
                'text: "Hello {{ first_name }}"\n'
                'html: "<p>Hello {{ first_name }}</p><img src=\\"cid:logo.png\\">"\n'
            )
        path = tmp_path / "campaign.yaml"
        path.write_text(
            f"provider:\n  {provider}\nrate: 10\nfrom: {json.dumps(sender)}\n"
            f"recipients: list.csv\n{content}{extra}",
            encoding="utf-8",
        )
        return Campaign.from_file(path)

    return factory


def row(email_: str = "ana@example.org", **fields: str) -> Recipient:
    return Recipient(line=2, email=email_, key=email_.lower(), fields={"email": email_, **fields})


def compose(campaign: Campaign, recipient: Recipient) -> Message:
    message = Composer.for_campaign(campaign).compose(recipient, key=1)
    assert isinstance(message, Message), message
    return message


def parse(raw: bytes | None) -> EmailMessage:
    assert raw is not None
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def attachments(parsed: EmailMessage) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for part in parsed.walk():
        name = part.get_filename()
        if name is not None:
            assert isinstance(part, EmailMessage)
            content = part.get_content()
            assert isinstance(content, bytes)
            found[name] = content
    return found


def test_simple_campaign_is_not_raw(write: Write) -> None:
    message = compose(write(), row(first_name="Ana"))
    assert message.raw is None and message.template is None
    assert Composer.for_campaign(write()).raw_size_hint is None
    assert message.subject == "Hi Ana" and message.text == "Hello Ana"


def test_attachments_make_raw_with_inline_image(write: Write) -> None:
    campaign = write(extra="attachments: [terms.pdf, logo.png]\n")
    message = compose(campaign, row(first_name="Ana"))
    parsed = parse(message.raw)
    assert parsed["To"] == "ana@example.org" and parsed["Subject"] == "Hi Ana"
    assert attachments(parsed) == {"terms.pdf": PDF, "logo.png": PNG}
    [logo] = [p for p in parsed.walk() if p.get_filename() == "logo.png"]
    assert logo["Content-ID"] == "<logo.png>"
    assert logo.get_content_disposition() == "inline"
    hint = Composer.for_campaign(campaign).raw_size_hint
    assert hint is not None and len(PDF) * 4 // 3 < hint < len(message.raw or b"") + 8192
    related = [p for p in parsed.walk() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1
    [terms] = [p for p in parsed.walk() if p.get_filename() == "terms.pdf"]
    assert terms.get_content_disposition() == "attachment"


def test_attachment_not_shown_in_html_is_a_plain_attachment(write: Write) -> None:
    campaign = write(
        content='subject: s\nhtml: "<img src=\\"cid:logo.png2\\">"\n',
        extra="attachments: [logo.png]\n",
    )
    parsed = parse(compose(campaign, row()).raw)
    [logo] = [p for p in parsed.walk() if p.get_filename() == "logo.png"]
    assert logo.get_content_disposition() == "attachment" and "Content-ID" not in logo


def test_inline_cid_rule() -> None:
    assert inline_cid("logo.png", "<img src='cid:logo.png'>") == "logo.png"
    assert inline_cid("logo.png", "<img src='cid:logo.png.bak'>") is None
    assert inline_cid("my logo.png", "cid:my logo.png") is None  # not a valid Content-ID
    assert inline_cid("logo.png", None) is None


def test_per_recipient_attachment_from_column(write: Write) -> None:
    composer = Composer.for_campaign(
        write(extra="attachments: [terms.pdf]\nattachment_column: invoice\n")
    )
    assert "invoice" in composer.variables
    message = composer.compose(row(first_name="Ana", invoice="files/ana.pdf"))
    assert isinstance(message, Message)
    assert attachments(parse(message.raw)) == {"terms.pdf": PDF, "ana.pdf": b"%PDF ana's invoice"}
    # An empty cell: only the campaign's attachment.
    message = composer.compose(row("bo@example.org", first_name="Bo", invoice="  "))
    assert isinstance(message, Message)
    assert attachments(parse(message.raw)) == {"terms.pdf": PDF}


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [
        ("files/nobody.pdf", "attachment", ["'files/nobody.pdf'", "not found"]),
        ("../campaign-outside.txt", "attachment", ["'../campaign-outside.txt'", "outside"]),
        ("/etc/hostname", "attachment", ["'/etc/hostname'"]),
        ("files", "attachment", ["'files'", "not a file"]),
    ],
)
def test_bad_row_attachment_is_a_render_problem(
    write: Write, tmp_path: Path, value: str, code: str, words: list[str]
) -> None:
    (tmp_path.parent / "campaign-outside.txt").write_text("secret")
    composer = Composer.for_campaign(write(extra="attachment_column: invoice\n"))
    problem = composer.compose(row(first_name="Ana", invoice=value))
    assert isinstance(problem, RenderProblem), problem
    assert problem.code == code
    for word in words:
        assert word in problem.reason


def test_missing_attachment_column_is_a_render_problem(write: Write) -> None:
    composer = Composer.for_campaign(write(extra="attachment_column: invoice\n"))
    problem = composer.compose(row(first_name="Ana"))
    assert problem == RenderProblem(
        "missing_field", "attachment_column 'invoice' is not a column of the row"
    )


def test_row_attachment_over_the_v1_limit_is_too_large(write: Write, tmp_path: Path) -> None:
    (tmp_path / "files" / "big.bin").write_bytes(b"\0" * (SES_V1_RAW_LIMIT + 1))
    composer = Composer.for_campaign(write(provider=SES_V1, extra="attachment_column: f\n"))
    problem = composer.compose(row(first_name="Ana", f="files/big.bin"))
    assert isinstance(problem, RenderProblem) and problem.code == "too_large"
    assert "'files/big.bin'" in problem.reason
    assert f"{SES_V1_RAW_LIMIT + 1:,} bytes" in problem.reason
    assert f"limit of {SES_V1_RAW_LIMIT:,} bytes" in problem.reason


def test_message_over_the_builder_limit_is_too_large(tmp_path: Path) -> None:
    renderer = Renderer(sender="news@example.com", subject="s", text="x" * 5000, html=None)
    composer = Composer(renderer, mime=MimeBuilder(max_bytes=4000))
    problem = composer.compose(row())
    assert isinstance(problem, RenderProblem) and problem.code == "too_large"
    assert "over the limit of 4,000 bytes" in problem.reason


def test_campaign_attachments_over_the_limit_are_a_config_error(
    write: Write, tmp_path: Path
) -> None:
    (tmp_path / "big.bin").write_bytes(b"\0" * (SES_V1_RAW_LIMIT + 1))
    campaign = write(provider=SES_V1, extra="attachments: [big.bin]\n")
    with pytest.raises(ConfigError, match="campaign attachments is .* over the limit") as info:
        Composer.for_campaign(campaign)
    assert info.value.key == "attachments"


def test_arn_headers_are_written_exactly_once(write: Write) -> None:
    campaign = write(
        extra=f"attachments: [terms.pdf]\nsource_arn: {SOURCE_ARN}\nfrom_arn: {FROM_ARN}\n"
        f"return_path_arn: {RETURN_ARN}\n"
    )
    raw = compose(campaign, row(first_name="Ana")).raw
    assert raw is not None
    parsed = parse(raw)
    assert parsed.get_all("X-SES-SOURCE-ARN") == [SOURCE_ARN]
    assert parsed.get_all("X-SES-FROM-ARN") == [FROM_ARN]
    assert parsed.get_all("X-SES-RETURN-PATH-ARN") == [RETURN_ARN]
    assert raw.count(b"X-SES-") == 3


def test_smtp_campaign_is_always_raw(write: Write) -> None:
    message = compose(write(provider=SMTP), row(first_name="Ana"))
    parsed = parse(message.raw)
    assert parsed["Subject"] == "Hi Ana" and attachments(parsed) == {}


def test_ses_v1_with_headers_goes_raw_v2_does_not(write: Write) -> None:
    extra = 'unsubscribe: {url: "https://example.com/u?e={{ email }}"}\n'
    v1 = compose(write(provider=SES_V1, extra=extra), row(first_name="Ana"))
    parsed = parse(v1.raw)
    assert parsed["List-Unsubscribe"] == "<https://example.com/u?e=ana@example.org>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    v2 = compose(write(extra=extra), row(first_name="Ana"))
    assert v2.raw is None
    assert ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click") in v2.headers


def test_non_ascii_subject_and_display_name_round_trip(write: Write) -> None:
    campaign = write(
        sender="Café Ünïcode <news@example.com>",
        content='subject: "Olá {{ first_name }} ✓"\ntext: "Grüße, {{ first_name }}"\n',
        extra="attachments: [terms.pdf]\n",
    )
    message = compose(campaign, row(first_name="Zoë"))
    assert message.raw is not None and message.raw.isascii()
    parsed = parse(message.raw)
    assert parsed["Subject"] == "Olá Zoë ✓"
    assert parsed["From"].addresses[0].display_name == "Café Ünïcode"
    assert parsed["From"].addresses[0].addr_spec == "news@example.com"
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content().splitlines() == ["Grüße, Zoë"]


def test_stored_template_message_fields(write: Write) -> None:
    campaign = write(
        content="template: {name: Welcome}\n",
        extra=(
            "reply_to: help@example.com\nconfiguration_set: marketing\ntags: {kind: news}\n"
            'headers: {X-Campaign: "spring-{{ first_name }}"}\n'
            'unsubscribe: {url: "https://example.com/u?e={{ email }}", '
            "mailto: leave@example.com}\n"
        ),
    )
    message = compose(campaign, row(first_name="Ana", city="Lisboa"))
    assert message.template == "Welcome"
    assert json.loads(message.template_data or "") == {
        "email": "ana@example.org", "first_name": "Ana", "city": "Lisboa",
    }  # fmt: skip
    assert (message.subject, message.text, message.html, message.raw) == ("", None, None, None)
    assert message.sender == "News <news@example.com>"
    assert message.reply_to == ("help@example.com",)
    assert dict(message.tags) == {"kind": "news"}
    assert message.configuration_set == "marketing"
    assert message.key == 1
    assert dict(message.headers) == {
        "X-Campaign": "spring-Ana",
        "List-Unsubscribe": "<https://example.com/u?e=ana@example.org>, <mailto:leave@example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_stored_template_header_problems_still_skip_the_row(write: Write) -> None:
    campaign = write(
        content="template: {name: Welcome}\n",
        extra='unsubscribe: {url: "https://example.com/u/{{ token }}"}\n',
    )
    composer = Composer.for_campaign(campaign)
    assert composer.variables == {"token"}
    problem = composer.compose(row(first_name="Ana"))
    assert isinstance(problem, RenderProblem) and problem.code == "missing_field"


@pytest.mark.parametrize(
    ("provider", "content", "extra", "key", "words"),
    [
        (SES_V2, "template: {name: T}\n", "attachments: [terms.pdf]\n", "attachments",
         "stored template cannot carry attachments"),
        (SES_V1, "template: {name: T}\n", "unsubscribe: {mailto: out@example.com}\n",
         "template", "SES v1 SendTemplatedEmail cannot carry headers"),
        ("name: directmail", None, "attachments: [terms.pdf]\n", "attachments",
         "DirectMail's API cannot send attachments"),
    ],
)  # fmt: skip
def test_combinations_no_provider_can_send_are_config_errors(
    write: Write, provider: str, content: str | None, extra: str, key: str, words: str
) -> None:
    campaign = write(provider=provider, content=content, extra=extra)
    with pytest.raises(ConfigError, match=words) as info:
        Composer.for_campaign(campaign)
    assert info.value.key == key


def test_renderer_headers_only_refuses_bodies() -> None:
    with pytest.raises(ConfigError, match="stored template replaces"):
        Renderer(sender="n@example.com", subject="Hi", text=None, html=None, headers_only=True)
    renderer = Renderer(sender="n@example.com", subject="", text=None, html=None,
                        unsubscribe_mailto="out@example.com", headers_only=True)  # fmt: skip
    message = renderer.render(row())
    assert isinstance(message, Message)
    assert message.headers == (("List-Unsubscribe", "<mailto:out@example.com>"),)
