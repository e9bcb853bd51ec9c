"""SESv2 on the wire, server side: the REST/JSON requests (``SendEmail``, ``SendBulkEmail``,
``GetAccount``) parsed into sends, and the JSON answers (errors as ``{"message": ...}`` with
the code in ``x-amzn-ErrorType``)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from bulkmail.servers._ses_common import (
    DAILY_EXCEEDED,
    MAX_RECIPIENTS,
    RATE_EXCEEDED,
    check_count,
)
from bulkmail.servers._wire import ApiError, Quota, Reply, SendRequest, describe_raw

V2_SEND = "/v2/email/outbound-emails"
V2_ACCOUNT = "/v2/email/account"
V2_BULK = "/v2/email/outbound-bulk-emails"


def _v2_bad(message: str) -> ApiError:
    return ApiError(400, "BadRequestException", message)


def _data(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("Data"), str):
        raise _v2_bad("Content Data must be an object with a string 'Data'.")
    data: str = value["Data"]
    return data


def _addresses(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise _v2_bad(f"{key} must be a list of strings.")
    return tuple(value)


def _name_values(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    try:
        return tuple((str(item["Name"]), str(item["Value"])) for item in value)
    except (TypeError, KeyError):
        raise _v2_bad(f"{what} must be a list of {{Name, Value}} objects.") from None


def json_object(body: bytes) -> dict[str, Any]:
    """A v2 request body as a JSON object, or SES's ``SerializationException``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "SerializationException", "Invalid JSON in request body.") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "SerializationException", "Request body must be a JSON object.")
    return doc


def parse_v2_send(body: bytes) -> SendRequest:
    """``SendEmail`` (``POST /v2/email/outbound-emails``) -> the send, or the real error."""
    doc = json_object(body)
    destination = doc.get("Destination") or {}
    if not isinstance(destination, dict):
        raise _v2_bad("Destination must be an object.")
    content = doc.get("Content")
    if not isinstance(content, dict) or not content:
        raise _v2_bad("Content is required.")
    sender = doc.get("FromEmailAddress") or ""
    if not isinstance(sender, str):
        raise _v2_bad("FromEmailAddress must be a string.")
    send = SendRequest(
        api="sesv2",
        to=_addresses(destination, "ToAddresses"),
        cc=_addresses(destination, "CcAddresses"),
        bcc=_addresses(destination, "BccAddresses"),
        reply_to=_addresses(doc, "ReplyToAddresses"),
        sender=sender,
        subject="",
        params=doc,
    )
    if "Simple" in content:
        simple = content["Simple"]
        if not isinstance(simple, dict):
            raise _v2_bad("Content.Simple must be an object.")
        send.subject = _data(simple.get("Subject")) or ""
        body_doc = simple.get("Body") or {}
        if not isinstance(body_doc, dict):
            raise _v2_bad("Content.Simple.Body must be an object.")
        send.text = _data(body_doc.get("Text"))
        send.html = _data(body_doc.get("Html"))
        send.headers = _name_values(simple.get("Headers"), "Headers")
    elif "Raw" in content:
        raw = content["Raw"]
        try:
            send.raw = base64.b64decode(raw["Data"], validate=True)
        except (TypeError, KeyError, binascii.Error):
            raise _v2_bad("Content.Raw.Data must be base64.") from None
        describe_raw(send)
    elif "Template" in content:
        template = content["Template"]
        if not isinstance(template, dict):
            raise _v2_bad("Content.Template must be an object.")
        name = template.get("TemplateName") or template.get("TemplateArn")
        if not isinstance(name, str) or not name:
            raise _v2_bad("Content.Template needs TemplateName or TemplateArn.")
        send.template = name
        data = template.get("TemplateData")
        send.template_data = data if isinstance(data, str) else None
        send.subject = f"[template {name}]"
        send.headers = _name_values(template.get("Headers"), "Headers")
    else:
        raise _v2_bad("Content must have one of Simple, Raw or Template.")
    if send.raw is None and not send.sender:
        raise _v2_bad("FromEmailAddress is required.")
    check_count(send, v2=True)
    return send


def parse_v2_bulk(body: bytes) -> list[SendRequest]:
    """``SendBulkEmail`` (``POST /v2/email/outbound-bulk-emails``) -> one send per entry.

    Each entry is its own message: the default template with the entry's
    ``ReplacementTemplateData`` (else the default data) and ``ReplacementHeaders`` (else the
    default headers). ``params`` is the request without its entries plus ``Entry``.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "SerializationException", "Invalid JSON in request body.") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "SerializationException", "Request body must be a JSON object.")
    template = ((doc.get("DefaultContent") or {}).get("Template")) or {}
    name = template.get("TemplateName") or template.get("TemplateArn")
    if not isinstance(name, str) or not name:
        raise _v2_bad("DefaultContent.Template needs TemplateName or TemplateArn.")
    entries = doc.get("BulkEmailEntries")
    if not isinstance(entries, list) or not entries:
        raise _v2_bad("BulkEmailEntries is required.")
    if len(entries) > MAX_RECIPIENTS:
        raise _v2_bad(f"BulkEmailEntries count exceeds {MAX_RECIPIENTS}.")
    sender = doc.get("FromEmailAddress")
    if not isinstance(sender, str) or not sender:
        raise _v2_bad("FromEmailAddress is required.")
    common = {k: v for k, v in doc.items() if k != "BulkEmailEntries"}
    sends = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Destination"), dict):
            raise _v2_bad("Each BulkEmailEntry needs a Destination.")
        replacement = (entry.get("ReplacementEmailContent") or {}).get("ReplacementTemplate")
        data = (replacement or {}).get("ReplacementTemplateData", template.get("TemplateData"))
        headers = entry.get("ReplacementHeaders", template.get("Headers"))
        send = SendRequest(
            api="sesv2",
            to=_addresses(entry["Destination"], "ToAddresses"),
            cc=_addresses(entry["Destination"], "CcAddresses"),
            bcc=_addresses(entry["Destination"], "BccAddresses"),
            reply_to=_addresses(doc, "ReplyToAddresses"),
            sender=sender,
            subject=f"[template {name}]",
            params={**common, "Entry": entry},
            headers=_name_values(headers, "ReplacementHeaders"),
            template=name,
            template_data=data if isinstance(data, str) else None,
        )
        check_count(send, v2=True)
        sends.append(send)
    return sends


def v2_bulk_sent(results: list[dict[str, str]], request_id: str) -> Reply:
    return Reply(
        200,
        orjson.dumps({"BulkEmailEntryResults": results}),
        "application/json",
        {"x-amzn-RequestId": request_id},
    )


def bulk_entry_error(error: ApiError) -> dict[str, str]:
    """The entry result SES gives where a single send would have failed with ``error``."""
    if error.message == DAILY_EXCEEDED:
        status = "ACCOUNT_DAILY_QUOTA_EXCEEDED"
    elif error.message == RATE_EXCEEDED:
        status = "ACCOUNT_THROTTLED"
    elif error.status >= 500:
        status = "TRANSIENT_FAILURE"
    else:
        status = "FAILED"
    return {"Status": status, "Error": error.message}


def v2_sent(message_id: str, request_id: str) -> Reply:
    return Reply(
        200,
        orjson.dumps({"MessageId": message_id}),
        "application/json",
        {"x-amzn-RequestId": request_id},
    )


def v2_account(quota: Quota, request_id: str) -> Reply:
    doc = {
        "DedicatedIpAutoWarmupEnabled": False,
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": True,
        "SendQuota": {
            "Max24HourSend": quota.max_24h,
            "MaxSendRate": quota.max_send_rate,
            "SentLast24Hours": quota.sent_24h,
        },
        "SendingEnabled": True,
    }
    return Reply(200, orjson.dumps(doc), "application/json", {"x-amzn-RequestId": request_id})


def v2_error(error: ApiError, request_id: str) -> Reply:
    return Reply(
        error.status,
        orjson.dumps({"message": error.message}),
        "application/json",
        {"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id},
    )
