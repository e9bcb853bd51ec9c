"""MimeBuilder output, parsed back with the standard library's email package."""

from __future__ import annotations

import email
import email.policy
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from bulkmail.mail.message import Message
from bulkmail.mail.mime import (
    SES_V1_RAW_LIMIT,
    SES_V2_RAW_LIMIT,
    Attachment,
    MessageTooLarge,
    MimeBuilder,
    load_attachment,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40
SOURCE_ARN = "arn:aws:ses:eu-west-1:123456789012:identity/example.com"
FROM_ARN = "arn:aws:ses:eu-west-1:123456789012:identity/example.com"
RETURN_ARN = "arn:aws:ses:eu-west-1:123456789012:identity/bounces.example.com"


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(entity: EmailMessage) -> list[EmailMessage]:
    payload = entity.get_payload()
    assert isinstance(payload, list)
    found = [part for part in payload if isinstance(part, EmailMessage)]
    assert len(found) == len(payload)
    return found


def msg(**kwargs: object) -> Message:
    fields: dict[str, object] = {
        "to": "ana@example.org",
        "sender": "News <news@example.com>",
        "subject": "Hello",
        "text": "Hi Ana\nsecond line",
        "html": '<p>Hi Ana</p><img src="cid:logo">',
    }
    fields.update(kwargs)
    return Message(**fields)  # type: ignore[arg-type]


def test_structure_attachments_and_inline_image() -> None:
    builder = MimeBuilder(
        attachments=[
            Attachment("terms.pdf", "application/pdf", PDF),
            Attachment("logo.png", "image/png", PNG, inline_cid="logo"),
        ]
    )
    raw = builder.build(
        msg(), per_recipient=[Attachment("invoice-42.csv", "text/csv", b"a,b\n1,2\n")]
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()
    parsed = parse(raw)
    assert parsed.get_content_type() == "multipart/mixed"
    alternative = parts(parsed)[0]
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = parts(alternative)
    assert text.get_content_type() == "text/plain"
    # The email package keeps the wire's CRLF in a 7bit part's content.
    assert text.get_content().replace("\r\n", "\n") == "Hi Ana\nsecond line\n"
    assert related.get_content_type() == "multipart/related"
    html, image = parts(related)
    assert html.get_content_type() == "text/html"
    assert "cid:logo" in html.get_content()
    assert image["Content-ID"] == "<logo>"
    assert image.get_content_type() == "image/png"
    assert image.get_content() == PNG
    attachments = {part.get_filename(): part for part in parsed.iter_attachments()}
    assert set(attachments) == {"terms.pdf", "invoice-42.csv"}
    assert attachments["terms.pdf"].get_content_type() == "application/pdf"
    assert attachments["terms.pdf"].get_content() == PDF
    assert attachments["invoice-42.csv"].get_content_type() == "text/csv"
    assert attachments["invoice-42.csv"].get_payload(decode=True) == b"a,b\n1,2\n"


def test_campaign_attachment_is_spliced_not_reencoded() -> None:
    builder = MimeBuilder(attachments=[Attachment("terms.pdf", "application/pdf", PDF)])
    first = builder.build(msg(to="a@example.org"))
    second = builder.build(msg(to="b@example.org"))
    [shared] = builder._attachments  # encoded once, in __init__
    assert shared in first and shared in second
    assert parse(first)["To"] == "a@example.org" and parse(second)["To"] == "b@example.org"


def test_headers_and_list_unsubscribe() -> None:
    builder = MimeBuilder(extra_headers=[("X-Campaign", "spring")])
    headers = (
        ("List-Unsubscribe", "<https://example.com/u?t=1>, <mailto:u@example.com>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )
    raw = builder.build(msg(html=None, headers=headers, reply_to=("help@example.com",)), now=0)
    parsed = parse(raw)
    assert parsed.get_content_type() == "text/plain"
    assert parsed["From"] == "News <news@example.com>"
    assert parsed.get_all("To") == ["ana@example.org"]
    assert parsed["Reply-To"] == "help@example.com"
    assert b"\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n" in raw
    assert parsed["Message-ID"].endswith("@example.com>")
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["X-Campaign"] == "spring"
    assert parsed["List-Unsubscribe"] == headers[0][1]
    assert parsed["List-Unsubscribe-Post"] == headers[1][1]
    assert parse(builder.build(msg()))["Message-ID"] != parsed["Message-ID"]


def test_non_ascii_subject_display_name_and_bodies_round_trip() -> None:
    subject = "Grüße aus Köln — 東京からのお知らせ, a subject long enough to need folding"
    german = "Liebe Leserin, lieber Leser: wir haben Neuigkeiten für Sie. Grüße, Jürgen\n"
    raw = MimeBuilder().build(
        msg(
            sender="Zoë Müller <zoe@example.com>",
            to="Jürgen Ölberg <jurgen@example.org>",
            subject=subject,
            text=german,
            html="<p>東京からのお知らせ、いつもありがとうございます。</p>",
        )
    )
    assert raw.isascii()
    assert b"=?utf-8?" in raw
    parsed = parse(raw)
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "Zoë Müller"
    assert parsed["To"].addresses[0].display_name == "Jürgen Ölberg"
    assert parsed["To"].addresses[0].addr_spec == "jurgen@example.org"
    text, html = parts(parsed)
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text.get_content().replace("\r\n", "\n") == german
    assert html["Content-Transfer-Encoding"] == "base64"
    assert "東京" in html.get_content()


def test_ses_arn_headers_exactly_once() -> None:
    arns = {
        "X-SES-SOURCE-ARN": SOURCE_ARN,
        "x-ses-from-arn": FROM_ARN,
        "X-SES-RETURN-PATH-ARN": RETURN_ARN,
    }
    builder = MimeBuilder(ses_arn_headers=arns)
    # A message that repeats one of them with the same value still gets it once.
    parsed = parse(builder.build(msg(headers=(("X-SES-SOURCE-ARN", SOURCE_ARN),))))
    assert parsed.get_all("X-SES-SOURCE-ARN") == [SOURCE_ARN]
    assert parsed.get_all("X-SES-FROM-ARN") == [FROM_ARN]
    assert parsed.get_all("X-SES-RETURN-PATH-ARN") == [RETURN_ARN]
    with pytest.raises(ValueError, match="differs"):
        builder.build(msg(headers=(("X-SES-FROM-ARN", RETURN_ARN),)))
    with pytest.raises(ValueError, match="unknown SES ARN header"):
        MimeBuilder(ses_arn_headers={"X-SES-CONFIGURATION-SET": "x"})
    with pytest.raises(ValueError, match="extra header"):
        MimeBuilder(extra_headers=[("X-SES-SOURCE-ARN", SOURCE_ARN)])


def test_size_limit() -> None:
    big = Attachment("big.bin", "application/octet-stream", b"\0" * 60_000)
    builder = MimeBuilder(max_bytes=70_000)
    assert builder.build(msg(), per_recipient=[Attachment("s.bin", "text/plain", b"x")])
    with pytest.raises(
        MessageTooLarge, match=r"bytes after MIME encoding, over the limit of 70,000"
    ) as info:
        builder.build(msg(), per_recipient=[big])
    assert isinstance(info.value, ValueError)
    assert info.value.size > 80_000  # base64 grows 60 KB by a third
    with pytest.raises(MessageTooLarge, match="campaign attachments"):
        MimeBuilder(attachments=[big], max_bytes=70_000)
    assert SES_V2_RAW_LIMIT == 40 * 1024 * 1024 and SES_V1_RAW_LIMIT == 10 * 1024 * 1024


@pytest.mark.parametrize(
    "bad",
    [
        {"subject": "Hi\r\nBcc: victim@example.org"},
        {"to": "ana@example.org\nBcc: victim@example.org"},
        {"sender": "News <news@example.com>\r\nX-Evil: 1"},
        {"headers": (("List-Unsubscribe", "<https://x>\r\nBcc: v@example.org"),)},
        {"headers": (("Bad Name", "v"),)},
        {"headers": (("Content-Type", "text/plain"),)},
    ],
)
def test_header_injection_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MimeBuilder().build(msg(**bad))


def test_bad_attachments_and_extra_headers_refused() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        Attachment("a\r\nb.pdf", "application/pdf", b"")
    with pytest.raises(ValueError, match="type/subtype"):
        Attachment("a.pdf", "pdf", b"")
    with pytest.raises(ValueError, match="CR or LF"):
        MimeBuilder(extra_headers=[("X-Campaign", "a\nb")])


def test_load_attachment_and_non_ascii_filename(tmp_path: Path) -> None:
    path = tmp_path / "Übersicht.pdf"
    path.write_bytes(PDF)
    attachment = load_attachment(path)
    assert attachment.content_type == "application/pdf"
    unknown = tmp_path / "data.zzz-unknown"
    unknown.write_bytes(b"?")
    assert load_attachment(unknown).content_type == "application/octet-stream"
    parsed = parse(MimeBuilder(attachments=[attachment]).build(msg(html=None)))
    [part] = parsed.iter_attachments()
    assert part.get_filename() == "Übersicht.pdf"
    assert part.get_content() == PDF


def test_raw_message_passes_through_with_size_check() -> None:
    raw = b"From: a@example.com\r\nTo: b@example.org\r\n\r\nhi\r\n"
    assert MimeBuilder().build(msg(raw=raw)) == raw
    with pytest.raises(MessageTooLarge):
        MimeBuilder(max_bytes=10).build(msg(raw=raw))


def test_build_speed_is_reported() -> None:
    """Not a pass/fail benchmark: prints µs per build for a 2 KB message + 100 KB file."""
    builder = MimeBuilder(
        attachments=[Attachment("report.pdf", "application/pdf", bytes(range(256)) * 400)]
    )
    body = ("Dear Ana, " * 100 + "\n") * 2  # ~2 KB
    message = msg(text=body, html=f"<p>{body}</p>", subject="Your monthly report")
    runs = 2000
    start = time.perf_counter()
    for _ in range(runs):
        builder.build(message)
    per_build = (time.perf_counter() - start) / runs * 1e6
    print(f"MimeBuilder.build: {per_build:.1f} µs per message")
    assert per_build < 5_000
