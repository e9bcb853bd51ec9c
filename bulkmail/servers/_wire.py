"""What every sandbox protocol shares: one parsed send, one answer, one error, one .eml.

Kept apart from the protocols (:mod:`._ses`, :mod:`._directmail`) so that each of those is
only about its own wire format, and from :mod:`.sandbox`, which is about serving, quotas and
faults.
"""

from __future__ import annotations

import binascii
import email.header
import email.policy
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any

# compat32 parsing is several times faster than policy.default and enough to read a raw
# message's headers and bodies; the .eml writer below is by hand for the same reason (an
# EmailMessage costs ~1.5 ms a message, which caps an outbox-writing sandbox near 500/s).
_PARSER = BytesParser(policy=email.policy.compat32)
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})
_OURS = ("from", "to", "cc", "reply-to", "subject", "date", "message-id", "mime-version")


class ApiError(Exception):
    """An error answer: HTTP status, the service's error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(slots=True)
class Reply:
    """A complete HTTP answer."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Quota:
    """What the quota actions report."""

    max_send_rate: float
    max_24h: float
    sent_24h: float


@dataclass(slots=True)
class SendRequest:
    """One parsed send, whatever the protocol: what the sandbox accepts and records."""

    api: str
    to: tuple[str, ...]
    sender: str
    subject: str
    params: Mapping[str, Any]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    text: str | None = None
    html: str | None = None
    raw: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    template: str | None = None
    template_data: str | None = None

    @property
    def recipients(self) -> int:
        """How many recipients count against the quotas (To, Cc and Bcc)."""
        return len(self.to) + len(self.cc) + len(self.bcc)


def _decoded(value: str | None) -> str:
    if not value:
        return ""
    return str(email.header.make_header(email.header.decode_header(value)))


def describe_raw(send: SendRequest) -> None:
    """Fill sender, subject, bodies, headers (and To when not given) from a raw message."""
    assert send.raw is not None
    message = _PARSER.parsebytes(send.raw)
    send.headers = tuple((name, _decoded(str(value))) for name, value in message.items())
    send.subject = _decoded(message.get("Subject"))
    if not send.sender:
        send.sender = _decoded(message.get("From"))
    if not send.to:
        send.to = tuple(addr for _, addr in email.utils.getaddresses(message.get_all("To", [])))
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_filename() is not None:
            continue
        subtype = part.get_content_subtype()
        if (subtype == "plain" and send.text is None) or (subtype == "html" and send.html is None):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                text = payload.decode(part.get_content_charset() or "utf-8", "replace")
                if subtype == "plain":
                    send.text = text
                else:
                    send.html = text


def _header(name: str, value: str) -> bytes:
    value = " ".join(value.splitlines())  # no header injection through a value
    if not value.isascii():
        if name.lower() in _ADDRESS_HEADERS:
            value = ", ".join(
                email.utils.formataddr(pair, charset="utf-8")
                for pair in email.utils.getaddresses([value])
            )
        else:
            value = email.header.Header(value, "utf-8").encode(linesep="\r\n")
    return f"{name}: {value}\r\n".encode()


def _text_part(content: str, subtype: str) -> bytes:
    data = content.replace("\r\n", "\n").encode()
    if data.isascii() and all(len(line) <= 998 for line in data.split(b"\n")):
        encoding, body = "7bit", data
    else:  # quoted-printable keeps a text body readable in an editor
        encoding, body = "quoted-printable", binascii.b2a_qp(data, istext=True)
    return (
        (
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        ).encode()
        + body.replace(b"\n", b"\r\n")
        + b"\r\n"
    )


def build_eml(send: SendRequest, message_id: str, received_at: float) -> bytes:
    """An RFC 5322 message a person can open: the raw message as given, or one built from
    simple content (with its extra headers) or, for a template send, a note of the template.

    The caller's extra headers replace ours of the same name (From, To, Subject, ...)."""
    if send.raw is not None:
        return send.raw
    extra = {name.lower() for name, _ in send.headers}
    ours = {
        "from": send.sender,
        "to": ", ".join(send.to),
        "cc": ", ".join(send.cc),
        "reply-to": ", ".join(send.reply_to),
        "subject": send.subject,
        "date": email.utils.formatdate(received_at, usegmt=True),
        "message-id": f"<{message_id}@sandbox.bulkmail.invalid>",
        "mime-version": "1.0",
    }
    names = {
        "from": "From",
        "to": "To",
        "cc": "Cc",
        "reply-to": "Reply-To",
        "subject": "Subject",
        "date": "Date",
        "message-id": "Message-ID",
        "mime-version": "MIME-Version",
    }
    head = [_header(names[key], ours[key]) for key in _OURS if ours[key] and key not in extra]
    head.extend(
        _header(name, value)
        for name, value in send.headers
        if name.lower() not in ("content-type", "content-transfer-encoding")
    )
    text = send.text
    if send.template is not None:
        text = f"Template: {send.template}\nTemplateData: {send.template_data or '{}'}\n"
    if text is not None and send.html is not None:
        boundary = f"=_sandbox_{message_id}"
        body = (
            (
                f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
                f"--{boundary}\r\n"
            ).encode()
            + _text_part(text, "plain")
            + f"--{boundary}\r\n".encode()
            + _text_part(send.html, "html")
            + f"--{boundary}--\r\n".encode()
        )
    elif send.html is not None:
        body = _text_part(send.html, "html")
    else:
        body = _text_part(text or "", "plain")
    return b"".join(head) + body
