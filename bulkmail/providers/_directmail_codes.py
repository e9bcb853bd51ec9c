"""Reading DirectMail's error answers: their fields, and which class each error code is.

Kept apart from :mod:`bulkmail.providers.directmail` (which re-exports
:func:`classify_directmail_error`) so the wire code and the tables of what each error code
means can be read, and changed, one at a time.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from bulkmail.providers.base import Verdict
from bulkmail.providers.errors import server_error_verdict

# A signature error echoes the server's string to sign ("POST&%2F&AccessKeyId%3D..."): cut
# from there even if the wording before it is one scrub() does not know.
_ECHOED_STRING_TO_SIGN = re.compile(r"(GET|POST)&%2F&", re.IGNORECASE)

_THROTTLE_CODES = frozenset({"Throttling", "Throttling.User", "Throttling.Api"})
_RETRY_CODES = frozenset({"ServiceUnavailable", "InternalError", "InternalServiceError"})
_REJECT_CODES = frozenset({"InvalidToAddress", "InvalidToAddress.Spam",
                           "InvalidReceiverName.Malformed"})  # fmt: skip
_FATAL_CODES = frozenset(
    {
        "InvalidMailAddress.NotFound",
        "InvalidMailAddressStatus.Malformed",
        "InvalidMailAddressDomain.Malformed",
        "InvalidMailAddressSendType.Malformed",
        "SignatureDoesNotMatch",
        "Signature",  # DirectMail's error-code table spells the signature error this way
        "IncompleteSignature",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "Forbidden",
        "Forbidden.RAM",
        "InvalidTemplate.NotFound",
        "InvalidReceiver.NotFound",
        "InvalidTimeStamp.Expired",
        "InvalidTimeStamp.Format",
        # A reused nonce means our nonce/clock logic is broken: every later call would fail.
        "SignatureNonceUsed",
        "InvalidUser.NotFound",
        "InvalidUserStatus",
    }
)
# Prefixes that can only mean credentials or account state (STS token expired, key disabled).
_FATAL_PREFIXES = ("Forbidden.", "InvalidAccessKeyId.", "InvalidSecurityToken.")
# No daily-quota error code is published for SingleSendMail (the error table lists none; a
# refused send over the account's limits comes back as InvalidSendMail.Spam, which the docs
# gloss as "check user status, frequency limit, quota"). Any code naming a quota (the
# sandbox's Throttling.DailyQuota, InvalidQuota, QuotaExhausted...) is taken as the daily
# quota, and so is a message saying so.
_QUOTA_MESSAGE = re.compile(r"daily (send(ing)? )?(quota|limit)|quota (exceeded|exhausted)", re.I)


def classify_directmail_error(status: int, code: str | None, message: str | None) -> Verdict:
    """Which class a DirectMail error answer belongs to.

    >>> classify_directmail_error(400, "Throttling.User", "Request was denied due to flow control.")
    <Verdict.THROTTLED: 'throttled'>
    >>> classify_directmail_error(400, "InvalidToAddress", "The toAddress is wrongly formed.")
    <Verdict.REJECTED: 'rejected'>
    """
    code = code or ""
    # Quota first: a daily limit may come as a Throttling.* code ("Throttling.DailyQuota").
    if "quota" in code.lower() or (message and _QUOTA_MESSAGE.search(message)):
        return Verdict.QUOTA
    if code in _THROTTLE_CODES or code.startswith("Throttling."):
        return Verdict.THROTTLED
    if code == "InvalidSendMail.Spam":
        # The anti-spam system refused the send (rate, reputation or volume): slow the whole
        # campaign down rather than marking recipients failed one by one.
        return Verdict.THROTTLED
    if code in _FATAL_CODES or code.startswith(_FATAL_PREFIXES):
        return Verdict.FATAL
    if code in _REJECT_CODES:
        return Verdict.REJECTED
    if status >= 500:
        return server_error_verdict(status)
    if code in _RETRY_CODES:
        return Verdict.RETRY
    if status == 429:
        return Verdict.THROTTLED
    if status in (401, 403):
        # An unknown code on an auth status still means no request can succeed: stopping is
        # cheaper than marking the whole list rejected.
        return Verdict.FATAL
    return Verdict.REJECTED


def error_fields(
    data: bytes, doc: dict[str, Any] | None
) -> tuple[str | None, str | None, str | None]:
    """``Code``, ``Message`` and ``RequestId`` of an error answer (``doc`` is its JSON object).

    A body that is not JSON gives its first 500 bytes as the message. The message is cut
    where it starts echoing the string to sign; it still needs :func:`scrub` before use.

    >>> error_fields(b"", {"Code": "Throttling.User", "Message": "flow control", "RequestId": "r1"})
    ('Throttling.User', 'flow control', 'r1')
    """
    code: str | None = None
    text: str | None = None
    request_id: str | None = None
    if doc is not None:
        code = _str(doc.get("Code"))
        text = _str(doc.get("Message"))
        request_id = _str(doc.get("RequestId"))
    elif data.strip():
        text = data.strip()[:500].decode("utf-8", "replace")
    if text is not None:
        echo = _ECHOED_STRING_TO_SIGN.search(text)
        if echo:
            text = text[: echo.start()]
    return code, text, request_id


def json_object(data: bytes) -> dict[str, Any] | None:
    """The answer's JSON object, or ``None`` when the body is not one."""
    if not data.lstrip().startswith(b"{"):
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


__all__ = ["classify_directmail_error", "error_fields", "json_object"]
