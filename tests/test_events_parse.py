"""SES event documents (both shapes, every type) -> one event per recipient."""

from __future__ import annotations

import orjson
import pytest

from bulkmail.deliverability.ses_events import NotAnSesEvent, parse_ses_message
from tests._sns import bounce, complaint


def parse(doc: dict[str, object]) -> list[tuple[str, str, str | None, bool]]:
    return [
        (e.kind, e.email, e.subtype, e.suppress)
        for e in parse_ses_message(orjson.dumps(doc).decode())
    ]


@pytest.mark.parametrize("shape", ["notification", "event"])
def test_every_recipient_of_a_bounce_and_a_complaint(shape: str) -> None:
    assert parse(bounce("m", "a@x.org", "b@x.org", shape=shape)) == [
        ("bounce", "a@x.org", "Permanent", True),
        ("bounce", "b@x.org", "Permanent", True),
    ]
    assert parse(bounce("m", "a@x.org", kind="Transient", shape=shape)) == [
        ("bounce", "a@x.org", "Transient", False)
    ]
    assert parse(bounce("m", "a@x.org", kind="Undetermined", shape=shape))[0][3] is False
    assert parse(complaint("m", "c@x.org", "d@x.org", shape=shape)) == [
        ("complaint", "c@x.org", "abuse", True),
        ("complaint", "d@x.org", "abuse", True),
    ]


def test_delivery_reject_and_delay() -> None:
    mail = {"messageId": "m", "destination": ["a@x.org", "b@x.org"]}
    delivery = {"eventType": "Delivery", "mail": mail, "delivery": {"recipients": ["a@x.org"]}}
    assert parse(delivery) == [("delivery", "a@x.org", None, False)]
    reject = {"eventType": "Reject", "mail": mail, "reject": {"reason": "Bad content"}}
    assert parse(reject) == [
        ("reject", "a@x.org", None, False),
        ("reject", "b@x.org", None, False),
    ]
    delay = {
        "eventType": "DeliveryDelay",
        "mail": mail,
        "deliveryDelay": {
            "delayType": "MailboxFull",
            "delayedRecipients": [{"emailAddress": "b@x.org"}],
        },
    }
    assert parse(delay) == [("delay", "b@x.org", "MailboxFull", False)]


def test_diagnostic_codes_are_per_recipient() -> None:
    doc = bounce("m", "a@x.org", "b@x.org")
    doc["bounce"]["bouncedRecipients"][1]["diagnosticCode"] = "smtp; 550 no such user"  # type: ignore[index]
    events = parse_ses_message(orjson.dumps(doc).decode())
    assert [e.detail for e in events] == ["smtp; 550 5.1.1 user unknown", "smtp; 550 no such user"]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"eventType": "Open", "mail": {"messageId": "m"}}',
        '{"notificationType": "Bounce", "mail": {}, "bounce": {}}',
        '{"notificationType": "Bounce", "mail": {"messageId": "m"}, "bounce": {}}',
    ],
)
def test_what_is_not_an_ses_event(text: str) -> None:
    with pytest.raises(NotAnSesEvent):
        parse_ses_message(text)
