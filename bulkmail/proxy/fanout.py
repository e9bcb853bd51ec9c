"""One SES request in, one message per recipient out.

:func:`fan_out` turns a parsed SES send (v1 ``SendEmail``/``SendRawEmail``/``SendTemplatedEmail``/
``SendBulkTemplatedEmail``, v2 ``SendEmail``/``SendBulkEmail``) into :class:`Envelope` s: the
content every recipient of one proxy message shares, and the recipients (To, Cc and Bcc
alike). :func:`compose_message` builds the one-recipient :class:`~bulkmail.mail.message.Message`
for a recipient of an envelope: its ``To:`` names only that recipient, and it has no Cc or
Bcc. A raw message is rewritten at the header level only (:func:`rewrite_raw`): the body
bytes are never touched.

>>> rewrite_raw(b"From: a@x.org\\r\\nTo: b@y.org, c@y.org\\r\\nCc: d@y.org\\r\\n\\r\\nHi\\r\\n",
...             "c@y.org")
b'From: a@x.org\\r\\nTo: c@y.org\\r\\n\\r\\nHi\\r\\n'
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from bulkmail.mail.message import Message
from bulkmail.servers import _ses as ses
from bulkmail.servers._wire import ApiError, SendRequest

#: Headers that name recipients: dropped from every per-recipient copy (To is written anew).
_RECIPIENT_HEADERS = frozenset({b"to", b"cc", b"bcc"})
#: SES's own limit on destinations in one bulk request.
MAX_BULK_DESTINATIONS = 50


@dataclass(slots=True)
class Envelope:
    """One proxy message: what its recipients share, and who they are.

    >>> Envelope({"sender": "a@example.com"}, None, ["b@example.com"]).recipients
    ['b@example.com']
    """

    spec: dict[str, Any]  # JSON-able: sender, subject, text, html, reply_to, headers, ...
    raw: bytes | None
    recipients: list[str] = field(default_factory=list)

    @property
    def sender(self) -> str:
        return str(self.spec.get("sender", ""))


# --- raw messages ---------------------------------------------------------------------------


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """(header block with its last line end, the rest: blank line + body), byte exact."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            cut = at + len(sep) // 2
            return raw[:cut], raw[cut:]
    return raw if raw.endswith(b"\n") else raw + b"\r\n", b""


def _fields(head: bytes) -> list[bytes]:
    """Header fields, each with its continuation lines and line ends."""
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _name(field_: bytes) -> bytes:
    return field_.partition(b":")[0].strip().lower()


def raw_header(raw: bytes, name: str) -> list[str]:
    """Every value of header ``name`` in a raw message (unfolded, decoded leniently)."""
    head, _ = _split(raw)
    wanted = name.lower().encode()
    return [
        " ".join(f.partition(b":")[2].decode("utf-8", "replace").split())
        for f in _fields(head)
        if _name(f) == wanted
    ]


def rewrite_raw(raw: bytes, to: str) -> bytes:
    """``raw`` with To/Cc/Bcc replaced by ``To: <to>``; everything else byte for byte."""
    head, rest = _split(raw)
    fields = _fields(head)
    eol = b"\r\n" if head.endswith(b"\r\n") else b"\n"
    out: list[bytes] = []
    placed = False
    for f in fields:
        if _name(f) in _RECIPIENT_HEADERS:
            if not placed and _name(f) == b"to":
                out.append(b"To: " + to.encode() + eol)
                placed = True
            continue
        out.append(f)
    if not placed:
        out.insert(0, b"To: " + to.encode() + eol)
    return b"".join(out) + rest


def _addresses(values: list[str]) -> list[str]:
    return [addr for _, addr in email.utils.getaddresses(values) if addr]


# --- requests -> envelopes ------------------------------------------------------------------


def _v1_tags(params: Mapping[str, str], prefix: str = "Tags") -> dict[str, str]:
    tags: dict[str, str] = {}
    i = 1
    while (name := params.get(f"{prefix}.member.{i}.Name")) is not None:
        tags[name] = params.get(f"{prefix}.member.{i}.Value", "")
        i += 1
    return tags


def _v2_tags(value: Any) -> dict[str, str]:
    if not isinstance(value, list):
        return {}
    return {str(t.get("Name")): str(t.get("Value")) for t in value if isinstance(t, dict)}


def _spec(send: SendRequest, *, tags: dict[str, str], configuration_set: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"sender": send.sender, "subject": send.subject}
    for key, value in (
        ("text", send.text),
        ("html", send.html),
        ("template", send.template),
        ("template_data", send.template_data),
    ):
        if value is not None:
            spec[key] = value
    if send.template is not None:
        spec["subject"] = ""
    if send.reply_to:
        spec["reply_to"] = list(send.reply_to)
    if send.headers and send.raw is None:
        spec["headers"] = [list(pair) for pair in send.headers]
    if tags:
        spec["tags"] = tags
    if isinstance(configuration_set, str) and configuration_set:
        spec["configuration_set"] = configuration_set
    return spec


def _raw_recipients(send: SendRequest, explicit: bool) -> list[str]:
    if explicit:
        return [*send.to, *send.cc, *send.bcc]
    assert send.raw is not None
    return _addresses([v for h in ("To", "Cc", "Bcc") for v in raw_header(send.raw, h)])


def envelope_for(send: SendRequest) -> Envelope:
    """A parsed single send (either version) as one envelope."""
    params = send.params
    if send.api == "sesv2":
        tags = _v2_tags(params.get("EmailTags"))
        explicit = bool(params.get("Destination"))
    else:
        tags = _v1_tags(params)
        explicit = "Destinations.member.1" in params
    spec = _spec(send, tags=tags, configuration_set=params.get("ConfigurationSetName"))
    if send.raw is not None:
        froms = _addresses(raw_header(send.raw, "From"))
        spec["from"] = froms[0] if froms else ""
        recipients = _raw_recipients(send, explicit)
        _check_recipients(recipients, v2=send.api == "sesv2")
        return Envelope(spec, send.raw, recipients)
    return Envelope(spec, None, [*send.to, *send.cc, *send.bcc])


def _check_recipients(recipients: list[str], *, v2: bool) -> None:
    if not recipients:
        raise (
            ApiError(400, "BadRequestException", "Missing required field Destination.")
            if v2
            else ApiError(400, "InvalidParameterValue", "Missing final '@domain'")
        )
    if len(recipients) > ses.MAX_RECIPIENTS:
        code = "BadRequestException" if v2 else "InvalidParameterValue"
        raise ApiError(400, code, ses.TOO_MANY_RECIPIENTS)


def _merge(default: str | None, replacement: str | None, v2: bool) -> str:
    """Replacement data over the default data (both JSON objects), as SES applies them."""
    try:
        base = orjson.loads(default) if default else {}
        extra = orjson.loads(replacement) if replacement else {}
    except orjson.JSONDecodeError:
        code = "BadRequestException" if v2 else "InvalidParameterValue"
        raise ApiError(400, code, "Template data must be a JSON object.") from None
    if not isinstance(base, dict) or not isinstance(extra, dict):
        code = "BadRequestException" if v2 else "InvalidParameterValue"
        raise ApiError(400, code, "Template data must be a JSON object.")
    return orjson.dumps({**base, **extra}).decode()


def _members(params: Mapping[str, str], prefix: str) -> list[str]:
    return list(ses.members(params, prefix))


def bulk_v1(params: Mapping[str, str]) -> list[Envelope]:
    """``SendBulkTemplatedEmail``: one envelope per destination, with its replacement data."""
    for name in ("Source", "Template", "Destinations.member.1.Destination.ToAddresses.member.1"):
        if name not in params and not name.startswith("Destinations"):
            raise ApiError(
                400, "MissingParameter", f"The request must contain the parameter {name}"
            )
    default = params.get("DefaultTemplateData")
    base_tags = _v1_tags(params, "DefaultTags")
    out: list[Envelope] = []
    i = 1
    while f"Destinations.member.{i}.Destination.ToAddresses.member.1" in params or any(
        f"Destinations.member.{i}.Destination.{k}.member.1" in params
        for k in ("CcAddresses", "BccAddresses")
    ):
        prefix = f"Destinations.member.{i}"
        recipients = [
            *_members(params, f"{prefix}.Destination.ToAddresses"),
            *_members(params, f"{prefix}.Destination.CcAddresses"),
            *_members(params, f"{prefix}.Destination.BccAddresses"),
        ]
        _check_recipients(recipients, v2=False)
        spec: dict[str, Any] = {
            "sender": params["Source"],
            "subject": "",
            "template": params["Template"],
            "template_data": _merge(
                default, params.get(f"{prefix}.ReplacementTemplateData"), False
            ),
        }
        tags = {**base_tags, **_v1_tags(params, f"{prefix}.ReplacementTags")}
        if tags:
            spec["tags"] = tags
        if reply_to := _members(params, "ReplyToAddresses"):
            spec["reply_to"] = reply_to
        if params.get("ConfigurationSetName"):
            spec["configuration_set"] = params["ConfigurationSetName"]
        out.append(Envelope(spec, None, recipients))
        i += 1
    _check_destinations(len(out), v2=False)
    return out


def _check_destinations(count: int, *, v2: bool) -> None:
    code = "BadRequestException" if v2 else "InvalidParameterValue"
    if count == 0:
        raise ApiError(400, code, "Destinations must not be empty.")
    if count > MAX_BULK_DESTINATIONS:
        raise ApiError(400, code, f"Destinations count exceeds {MAX_BULK_DESTINATIONS}.")


def bulk_v2(body: bytes) -> list[Envelope]:
    """``SendBulkEmail`` (``POST /v2/email/outbound-bulk-emails``): one envelope per entry."""

    def bad(message: str) -> ApiError:
        return ApiError(400, "BadRequestException", message)

    doc = ses.json_object(body)
    sender = doc.get("FromEmailAddress")
    template = (doc.get("DefaultContent") or {}).get("Template")
    if not isinstance(sender, str) or not sender:
        raise bad("FromEmailAddress is required.")
    if not isinstance(template, dict) or not template.get("TemplateName"):
        raise bad("DefaultContent.Template.TemplateName is required.")
    entries = doc.get("BulkEmailEntries")
    if not isinstance(entries, list):
        raise bad("BulkEmailEntries is required.")
    _check_destinations(len(entries), v2=True)
    base_tags = _v2_tags(doc.get("DefaultEmailTags"))
    out: list[Envelope] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Destination"), dict):
            raise bad("Each BulkEmailEntry needs a Destination.")
        dest = entry["Destination"]
        recipients = [
            a
            for key in ("ToAddresses", "CcAddresses", "BccAddresses")
            for a in (dest.get(key) or [])
            if isinstance(a, str)
        ]
        _check_recipients(recipients, v2=True)
        replacement = (entry.get("ReplacementEmailContent") or {}).get("ReplacementTemplate") or {}
        spec: dict[str, Any] = {
            "sender": sender,
            "subject": "",
            "template": str(template["TemplateName"]),
            "template_data": _merge(
                template.get("TemplateData"), replacement.get("ReplacementTemplateData"), True
            ),
        }
        tags = {**base_tags, **_v2_tags(entry.get("ReplacementTags"))}
        if tags:
            spec["tags"] = tags
        if isinstance(doc.get("ReplyToAddresses"), list):
            spec["reply_to"] = [str(a) for a in doc["ReplyToAddresses"]]
        if isinstance(doc.get("ConfigurationSetName"), str):
            spec["configuration_set"] = doc["ConfigurationSetName"]
        out.append(Envelope(spec, None, recipients))
    return out


def check_addresses(envelopes: list[Envelope], *, v2: bool) -> None:
    """Every recipient must at least look like an address (SES's own first check)."""
    for env in envelopes:
        for addr in env.recipients:
            local, at, domain = addr.rpartition("@")
            if not at or not local or not domain or any(c in addr for c in "\r\n \t<>,"):
                code = "BadRequestException" if v2 else "InvalidParameterValue"
                raise ApiError(400, code, f"Missing final '@domain' in {addr[:100]!r}")


# --- envelope + recipient -> message ----------------------------------------------------------


def compose_message(spec: Mapping[str, Any], raw: bytes | None, to: str, key: int) -> Message:
    """The message one recipient of an envelope receives."""
    if raw is not None:
        return Message(
            to=to,
            sender=str(spec.get("sender") or spec.get("from") or ""),
            raw=rewrite_raw(raw, to),
            tags=spec.get("tags") or {},
            configuration_set=spec.get("configuration_set"),
            key=key,
        )
    return Message(
        to=to,
        sender=str(spec["sender"]),
        subject=str(spec.get("subject", "")),
        text=spec.get("text"),
        html=spec.get("html"),
        reply_to=tuple(spec.get("reply_to") or ()),
        headers=tuple((str(n), str(v)) for n, v in spec.get("headers") or ()),
        tags=spec.get("tags") or {},
        configuration_set=spec.get("configuration_set"),
        template=spec.get("template"),
        template_data=spec.get("template_data"),
        key=key,
    )


__all__ = [
    "Envelope",
    "bulk_v1",
    "bulk_v2",
    "check_addresses",
    "compose_message",
    "envelope_for",
    "raw_header",
    "rewrite_raw",
]
