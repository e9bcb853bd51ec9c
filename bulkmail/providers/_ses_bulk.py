"""SESv2 ``SendBulkEmail`` on the wire: which messages may share a call, the request body,
and the per-entry statuses as per-recipient outcomes.

One call carries up to :data:`MAX_ENTRIES` destinations of one stored template, sender,
reply-to, configuration set and tags; each entry is its own message with its own
``ReplacementTemplateData`` and ``ReplacementHeaders``. The answer holds one
``BulkEmailEntryResult`` per entry, in order. Statuses are the ``BulkEmailStatus`` enum of
the SESv2 API reference (``BulkEmailEntryResult``); each maps to the verdict the single-send
path gives the matching error code (:func:`bulkmail.providers.ses.classify_ses_error`), so a
campaign behaves the same whichever way it is sent:

=================================== ===========================================================
``SUCCESS``                          sent, with its ``MessageId`` (without one: still sent)
``ACCOUNT_THROTTLED``                throttled: back off, slow down, retry this recipient
``TRANSIENT_FAILURE``, ``FAILED``    retry (SES says this entry was not accepted)
``MESSAGE_REJECTED``,                rejected: this recipient fails, the campaign goes on
``INVALID_PARAMETER``
``ACCOUNT_DAILY_QUOTA_EXCEEDED``     quota: stop, resumable tomorrow
``MAIL_FROM_DOMAIN_NOT_VERIFIED``,   fatal: nothing more can succeed (``MailFromDomainNot-
``TEMPLATE_NOT_FOUND``, ...          Verified``, ``TemplateDoesNotExist``, a paused or
                                     suspended account are fatal on ``SendEmail`` too)
=================================== ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from bulkmail.mail.message import Message
from bulkmail.providers.base import Outcome, Verdict

#: SESv2's limit on ``BulkEmailEntries`` in one call.
MAX_ENTRIES = 50

#: What may share a call: template, sender, reply-to, configuration set, tags.
BulkKey = tuple[str, str, tuple[str, ...], str | None, tuple[tuple[str, str], ...]]

_VERDICTS = {
    "SUCCESS": Verdict.SENT,
    "ACCOUNT_THROTTLED": Verdict.THROTTLED,
    "TRANSIENT_FAILURE": Verdict.RETRY,
    "FAILED": Verdict.RETRY,
    "MESSAGE_REJECTED": Verdict.REJECTED,
    "INVALID_PARAMETER": Verdict.REJECTED,
    "ACCOUNT_DAILY_QUOTA_EXCEEDED": Verdict.QUOTA,
    "MAIL_FROM_DOMAIN_NOT_VERIFIED": Verdict.FATAL,
    "CONFIGURATION_SET_NOT_FOUND": Verdict.FATAL,
    "TEMPLATE_NOT_FOUND": Verdict.FATAL,
    "ACCOUNT_SUSPENDED": Verdict.FATAL,
    "INVALID_SENDING_POOL_NAME": Verdict.FATAL,
    "ACCOUNT_SENDING_PAUSED": Verdict.FATAL,
    "CONFIGURATION_SET_SENDING_PAUSED": Verdict.FATAL,
}


def bulk_key(message: Message) -> BulkKey | None:
    """The key messages must share to go in one call, or ``None`` (not a stored template).

    >>> m = Message(to="a@x.org", sender="n@x.org", template="news", template_data="{}")
    >>> bulk_key(m)
    ('news', 'n@x.org', (), None, ())
    """
    if message.template is None or message.raw is not None:
        return None
    tags = tuple(sorted(message.tags.items())) if message.tags else ()
    return (message.template, message.sender, message.reply_to, message.configuration_set, tags)


def bulk_body(messages: Sequence[Message], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The ``SendBulkEmail`` request for ``messages`` (all with the same :func:`bulk_key`)."""
    first = messages[0]
    entries = []
    for message in messages:
        entry: dict[str, Any] = {
            "Destination": {"ToAddresses": [message.to]},
            "ReplacementEmailContent": {
                "ReplacementTemplate": {"ReplacementTemplateData": message.template_data or "{}"}
            },
        }
        if message.headers:
            entry["ReplacementHeaders"] = [{"Name": n, "Value": v} for n, v in message.headers]
        entries.append(entry)
    doc: dict[str, Any] = {
        "FromEmailAddress": first.sender,
        "DefaultContent": {"Template": {"TemplateName": first.template, "TemplateData": "{}"}},
        "BulkEmailEntries": entries,
    }
    if first.reply_to:
        doc["ReplyToAddresses"] = list(first.reply_to)
    if first.configuration_set:
        doc["ConfigurationSetName"] = first.configuration_set
    if first.tags:
        doc["DefaultEmailTags"] = [{"Name": k, "Value": v} for k, v in first.tags.items()]
    doc.update(extra)
    return doc


def bulk_outcomes(data: bytes, count: int, service_time: float) -> list[Outcome]:
    """A 200 answer's ``BulkEmailEntryResults`` as one outcome per entry, in order.

    An answer that cannot be matched to the entries (not JSON, a different count) makes
    every entry ambiguous: SES may have accepted any of them.
    """
    try:
        results = orjson.loads(data).get("BulkEmailEntryResults")
    except (orjson.JSONDecodeError, AttributeError):
        results = None
    if not isinstance(results, list) or len(results) != count:
        lost = Outcome(
            Verdict.AMBIGUOUS,
            error_code="BadResponse",
            error=f"SendBulkEmail answer does not list {count} entry results",
        )
        return [lost] * count
    return [_entry(result, service_time) for result in results]


def _entry(result: Any, service_time: float) -> Outcome:
    if not isinstance(result, dict):
        return Outcome(Verdict.AMBIGUOUS, error_code="BadResponse", error="entry is not an object")
    status = str(result.get("Status") or "")
    verdict = _VERDICTS.get(status, Verdict.REJECTED)
    if verdict is Verdict.SENT:
        # As for SendEmail: SES said it took the message; a missing id does not undo that.
        message_id = result.get("MessageId")
        return Outcome(
            Verdict.SENT,
            message_id=str(message_id) if message_id else None,
            service_time=service_time,
        )
    error = result.get("Error")
    return Outcome(
        verdict,
        error_code=status or "BadResponse",
        error=str(error)[:500] if error else status or "entry without a status",
    )


__all__ = ["MAX_ENTRIES", "BulkKey", "bulk_body", "bulk_key", "bulk_outcomes"]
