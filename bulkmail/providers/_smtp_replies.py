"""What bulkmail knows of SMTP servers: the presets of known providers and how to read replies.

:mod:`bulkmail.providers.smtp` holds the session pool and
:mod:`bulkmail.providers._smtp_session` the transaction; this module holds the tables they
consult, re-exported from the former: :data:`SMTP_PRESETS` (host, port and TLS of the SES and
DirectMail SMTP endpoints), :func:`ses_smtp_credentials`, and :func:`classify_smtp_reply` with
the patterns that pick the server's id for a message out of a ``250`` reply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from bulkmail.providers.base import Verdict
from bulkmail.signing.smtp_password import ses_smtp_password

TlsMode = Literal["starttls", "implicit", "none"]
Stage = Literal["connect", "starttls", "auth", "mail", "rcpt", "data"]

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


def _ses_preset(region: str | None) -> tuple[str, int, TlsMode]:
    # Amazon SES SMTP interface: email-smtp.<region>.amazonaws.com; STARTTLS on 25, 587 or
    # 2587, TLS Wrapper on 465 or 2465 (https://docs.aws.amazon.com/ses/latest/dg/
    # smtp-connect.html). 587 because EC2 throttles port 25.
    if not region or not _REGION.fullmatch(region):
        raise ValueError(f"SES SMTP needs an AWS region such as 'eu-west-1', got {region!r}")
    return f"email-smtp.{region}.amazonaws.com", 587, "starttls"


# Alibaba Cloud DirectMail SMTP endpoints, from "Direct Mail: SMTP service endpoints"
# (https://www.alibabacloud.com/help/pt-br/direct-mail/smtp-endpoints) and "Send emails using
# SMTP" (https://help.aliyun.com/en/direct-mail/user-guide/send-emails-using-smtp): ports 25
# and 80 (plain, STARTTLS possible) and 465 (SSL); port 25 is blocked on Alibaba ECS. Pick the
# endpoint of the region the sender address was set up in; the .aliyun.com names for
# Singapore and Sydney are documented as legacy.
_DIRECTMAIL_HOSTS: dict[str, str] = {
    "cn-hangzhou": "smtpdm.aliyun.com",
    "ap-southeast-1": "smtpdm-ap-southeast-1.aliyuncs.com",
    "us-east-1": "smtpdm-us-east-1.aliyuncs.com",
    "eu-central-1": "smtpdm-eu-central-1.aliyuncs.com",
    "ap-southeast-2": "smtpdm-ap-southeast-2.aliyun.com",  # legacy, Sydney
}


def _directmail_preset(region: str | None) -> tuple[str, int, TlsMode]:
    host = _DIRECTMAIL_HOSTS.get(region or "cn-hangzhou")
    if host is None:
        known = ", ".join(sorted(_DIRECTMAIL_HOSTS))
        raise ValueError(f"no DirectMail SMTP endpoint known for {region!r}; known: {known}")
    return host, 465, "implicit"


#: ``name -> (region -> (host, port, tls))`` for the providers bulkmail knows.
SMTP_PRESETS: dict[str, Callable[[str | None], tuple[str, int, TlsMode]]] = {
    "ses": _ses_preset,
    "directmail": _directmail_preset,
}


def ses_smtp_credentials(access_key_id: str, secret: str, region: str) -> tuple[str, str]:
    """SMTP user name and password for SES from an IAM access key pair.

    The user name is the access key id; the password is derived from the secret for
    ``region`` (SigV4 flavour), so it only works against that region's endpoint.
    """
    return access_key_id, ses_smtp_password(secret, region)


_THROTTLE_TEXT = re.compile(r"throttl|rate exceeded|too many", re.IGNORECASE)
_QUOTA_TEXT = re.compile(r"daily (message |sending )?quota", re.IGNORECASE)
_AUTH_CODES = frozenset({530, 534, 535, 538})
_ENHANCED = re.compile(r"^\d\.\d{1,3}\.\d{1,3}\s+")
_QUEUED_AS = re.compile(r"queued as\s+<?([^\s<>]+)>?", re.IGNORECASE)
_ENVID = re.compile(r"envid=<?([^\s<>]+)>?", re.IGNORECASE)
_OK_ID = re.compile(r"ok[:\s]+<?([^\s<>]+)>?", re.IGNORECASE)  # SES: "250 Ok <id>"
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def classify_smtp_reply(code: int, text: str, stage: Stage, sender: str = "") -> Verdict:
    """Which verdict an SMTP error reply at ``stage`` earns.

    >>> classify_smtp_reply(454, "Throttling failure: Maximum sending rate exceeded.", "data")
    <Verdict.THROTTLED: 'throttled'>
    >>> classify_smtp_reply(550, "No such user", "rcpt")
    <Verdict.REJECTED: 'rejected'>
    """
    if _QUOTA_TEXT.search(text):
        return Verdict.QUOTA
    if 400 <= code < 500:
        if code == 454 and stage == "auth" and not _THROTTLE_TEXT.search(text):
            return Verdict.RETRY  # "Temporary authentication failure"
        if code == 454 or _THROTTLE_TEXT.search(text):
            return Verdict.THROTTLED
        return Verdict.RETRY
    if code < 400:  # a success code where the protocol expected another: do not guess
        return Verdict.AMBIGUOUS if stage == "data" else Verdict.RETRY
    if code in _AUTH_CODES or stage in ("connect", "starttls", "auth"):
        return Verdict.FATAL
    if stage == "mail":
        # The envelope sender is the campaign's: if it is refused, nothing will go. 552 is
        # "message size exceeds the limit" (RFC 1870 SIZE) and concerns this message only.
        return Verdict.REJECTED if code == 552 else Verdict.FATAL
    if stage == "data" and "not verified" in text.lower() and sender:
        # SES names the identities that failed; when ours is one, nothing can be sent.
        domain = sender.rpartition("@")[2].lower()
        lowered = text.lower()
        if sender.lower() in lowered or f": {domain}" in lowered or f" {domain}," in lowered:
            return Verdict.FATAL
    return Verdict.REJECTED


def queue_id_of(reply: str) -> str | None:
    """The server's id for an accepted message, when its 250 reply carries one."""
    text = _ENHANCED.sub("", reply.strip())
    for pattern in (_QUEUED_AS, _ENVID):
        match = pattern.search(text)
        if match:
            return match.group(1)
    match = _OK_ID.fullmatch(text)
    return match.group(1) if match else None


def message_id_of(data: bytes) -> str | None:
    header_end = data.find(b"\r\n\r\n")
    match = _MESSAGE_ID.search(data, 0, header_end if header_end >= 0 else len(data))
    return match.group(1).decode("ascii", "replace") if match else None


__all__ = [
    "SMTP_PRESETS",
    "Stage",
    "TlsMode",
    "classify_smtp_reply",
    "message_id_of",
    "queue_id_of",
    "ses_smtp_credentials",
]
