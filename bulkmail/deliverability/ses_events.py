"""SES notifications (``notificationType``) and event publishing (``eventType``) -> events.

Both shapes carry the same objects: ``mail`` (with the ``messageId`` SES returned when the
message was sent) and one of ``bounce`` / ``complaint`` / ``delivery`` / ``reject`` /
``deliveryDelay``. Every recipient of a multi-recipient event becomes one :class:`Event`.
Which events put an address on the suppression list is decided here (:attr:`Event.suppress`):
a ``Permanent`` bounce and every complaint; a ``Transient`` or ``Undetermined`` bounce never.

>>> [e.kind for e in parse_ses_message('{"notificationType": "Complaint", '
...  '"mail": {"messageId": "m1"}, "complaint": {"complainedRecipients": '
...  '[{"emailAddress": "a@x.org"}, {"emailAddress": "b@x.org"}]}}')]
['complaint', 'complaint']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

#: Our event kinds, keyed by SES's type name (both shapes use the same names).
KINDS = {
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Delivery": "delivery",
    "Reject": "reject",
    "DeliveryDelay": "delay",
}
_OBJECT = {
    "bounce": ("bounce", "bouncedRecipients"),
    "complaint": ("complaint", "complainedRecipients"),
    "delivery": ("delivery", "recipients"),
    "reject": ("reject", None),
    "delay": ("deliveryDelay", "delayedRecipients"),
}


class NotAnSesEvent(ValueError):
    """The SNS ``Message`` is not an SES event bulkmail understands."""


@dataclass(frozen=True, slots=True)
class Event:
    """One recipient's event. ``subtype``: the bounce type (Permanent, Transient,
    Undetermined), the complaint feedback type, or the delay type; ``detail``: the bounce
    sub-type or diagnostic, the reject reason.

    >>> Event("bounce", "m1", "a@x.org", "Transient", None, None).suppress
    False
    """

    kind: str
    message_id: str
    email: str
    subtype: str | None
    detail: str | None
    at: str | None

    @property
    def suppress(self) -> bool:
        """A permanent bounce or a complaint: never mail this address again."""
        return self.kind == "complaint" or (self.kind == "bounce" and self.subtype == "Permanent")


def parse_ses_message(text: str) -> list[Event]:
    """The events in one SNS ``Message`` (a JSON document, as SES publishes it)."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise NotAnSesEvent("the SNS Message is not JSON") from None
    if not isinstance(doc, dict):
        raise NotAnSesEvent("the SNS Message is not a JSON object")
    name = doc.get("notificationType") or doc.get("eventType")
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise NotAnSesEvent(f"not an SES event bulkmail records: {name!r}")
    mail = _dict(doc.get("mail"))
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise NotAnSesEvent("the event has no mail.messageId")
    key, list_key = _OBJECT[kind]
    body = _dict(doc.get(key))
    at = _text(body.get("timestamp")) or _text(mail.get("timestamp"))
    if kind == "bounce":
        subtype, detail = _text(body.get("bounceType")), _text(body.get("bounceSubType"))
    elif kind == "complaint":
        subtype, detail = _text(body.get("complaintFeedbackType")), _text(body.get("userAgent"))
    elif kind == "delay":
        subtype, detail = _text(body.get("delayType")), None
    elif kind == "reject":
        subtype, detail = None, _text(body.get("reason"))
    else:
        subtype, detail = None, _text(body.get("smtpResponse"))
    if list_key is None:  # a reject names no recipient: every destination of the mail
        emails = [_email(a) for a in mail.get("destination") or []]
    else:
        emails = [_email(item) for item in body.get(list_key) or []]
    found = [e for e in emails if e is not None]
    if not found:
        raise NotAnSesEvent(f"the {name} event names no recipient")
    out = []
    for email in dict.fromkeys(found):
        own = _diagnostic(body.get("bouncedRecipients"), email) if kind == "bounce" else None
        out.append(Event(kind, message_id, email, subtype, own or detail, at))
    return out


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _email(item: Any) -> str | None:
    """``{"emailAddress": ...}`` (bounces, complaints, delays) or a plain string (deliveries)."""
    if isinstance(item, str):
        return item.strip() or None
    if isinstance(item, dict) and isinstance(item.get("emailAddress"), str):
        return str(item["emailAddress"]).strip() or None
    return None


def _diagnostic(items: Any, email: str) -> str | None:
    for item in items or []:
        if isinstance(item, dict) and item.get("emailAddress") == email:
            return _text(item.get("diagnosticCode"))
    return None


__all__ = ["KINDS", "Event", "NotAnSesEvent", "parse_ses_message"]
