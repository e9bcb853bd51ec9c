"""Amazon SES on the wire, server side: SigV4 checks, SESv2 (JSON) and v1 (Query/XML).

Error codes and messages are the real service's (see the sandbox module's docstring for
where each was found). v1 and v2 are served by the same front end, so the signature errors
share their codes; only the envelope differs (v1: XML ``ErrorResponse``; v2: JSON
``{"message": ...}`` with the code in ``x-amzn-ErrorType``).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import uuid
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

import orjson

from bulkmail.servers._wire import ApiError, Quota, Reply, SendRequest, describe_raw
from bulkmail.signing.sigv4 import (
    AwsCredentials,
    amz_date,
    parse_authorization,
    verify_request,
)

XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
V2_SEND = "/v2/email/outbound-emails"
V2_ACCOUNT = "/v2/email/account"
V2_BULK = "/v2/email/outbound-bulk-emails"
MAX_RECIPIENTS = 50
MAX_SKEW = 300.0  # seconds between X-Amz-Date and the sandbox clock
#: Declared bodies above these are refused (413) before being read: SES's message limits
#: (v2 40 MB, v1 10 MB raw) as base64 in a JSON document / a form, plus room for the rest.
V2_BODY_LIMIT = 40 * 1024 * 1024 * 4 // 3 + (1 << 20)
V1_BODY_LIMIT = 10 * 1024 * 1024 * 4 // 3 + (1 << 20)


def body_limit(path: str) -> int:
    """The largest request body SES takes on ``path`` (v2 paths start with ``/v2/``)."""
    return V2_BODY_LIMIT if path.startswith("/v2/") else V1_BODY_LIMIT


def too_large(length: int, limit: int, *, v2: bool) -> ApiError:
    """The answer to a declared body over ``limit``."""
    return ApiError(
        413,
        "BadRequestException" if v2 else "RequestEntityTooLarge",
        f"Request body is {length} bytes; the limit is {limit} bytes.",
    )


SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."
RATE_EXCEEDED = "Maximum sending rate exceeded."
DAILY_EXCEEDED = "Daily message quota exceeded."
TOO_MANY_RECIPIENTS = f"Recipient count exceeds {MAX_RECIPIENTS}."


def _stamp_epoch(stamp: str) -> float | None:
    """``20150830T123600Z`` -> epoch seconds (None if not that shape)."""
    if len(stamp) != 16 or stamp[8] != "T" or stamp[15] != "Z":
        return None
    digits = stamp[:8] + stamp[9:15]
    if not digits.isdigit():
        return None
    fields = (
        int(digits[0:4]),
        int(digits[4:6]),
        int(digits[6:8]),
        int(digits[8:10]),
        int(digits[10:12]),
        int(digits[12:14]),
    )
    if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31):
        return None
    return float(calendar.timegm((*fields, 0, 0, 0)))


def check_sigv4(
    *,
    v2: bool,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: AwsCredentials | Mapping[str, AwsCredentials],
    now: float,
) -> AwsCredentials:
    """Raise the real SES error for a request the service would refuse; else the key it used.

    ``credentials`` is the one key the server accepts, or the keys it issued by access key
    id (the proxy's clients). No error message echoes the client's ``Authorization`` header:
    it is a credential, and the answer may end up in a log."""
    value = headers.get("Authorization")
    if not value:
        if v2:
            raise ApiError(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        raise ApiError(403, "MissingAuthenticationToken", "Request is missing Authentication Token")
    incomplete = "IncompleteSignatureException" if v2 else "IncompleteSignature"
    try:
        auth = parse_authorization(value)
    except ValueError as exc:
        raise ApiError(400, incomplete, str(exc)) from None
    keys = (
        {credentials.access_key_id: credentials}
        if isinstance(credentials, AwsCredentials)
        else credentials
    )
    found = keys.get(auth.access_key_id)
    if found is None:
        raise ApiError(
            403, "UnrecognizedClientException" if v2 else "InvalidClientTokenId", INVALID_TOKEN
        )
    token = headers.get("X-Amz-Security-Token")
    if token != found.session_token:
        raise ApiError(
            403, "UnrecognizedClientException" if v2 else "InvalidClientTokenId", INVALID_TOKEN
        )
    stamp = headers.get("X-Amz-Date", "")
    when = _stamp_epoch(stamp)
    if when is None:
        raise ApiError(
            400,
            incomplete,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    if auth.service not in ("ses", "email"):
        raise ApiError(
            403, "SignatureDoesNotMatch", "Credential should be scoped to correct service: 'ses'. "
        )
    if when < now - MAX_SKEW:
        raise ApiError(
            403,
            "SignatureDoesNotMatch",
            f"Signature expired: {stamp} is now earlier than "
            f"{amz_date(now - MAX_SKEW)} ({amz_date(now)} - 5 min.)",
        )
    if when > now + MAX_SKEW:
        raise ApiError(
            403,
            "SignatureDoesNotMatch",
            f"Signature not yet current: {stamp} is still later than "
            f"{amz_date(now + MAX_SKEW)} ({amz_date(now)} + 5 min.)",
        )
    if not verify_request(
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        secret_access_key=found.secret_access_key,
        authorization=auth,
    ):
        raise ApiError(403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    return found


def new_message_id(now: float) -> str:
    """An SES-shaped message id: ``<ms timestamp hex>-<uuid>-000000``."""
    return f"{int(now * 1000):016x}-{uuid.uuid4()}-000000"


def new_request_id() -> str:
    return str(uuid.uuid4())


# --- SESv2 (REST, JSON) ---------------------------------------------------------------------


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
    _check_count(send, v2=True)
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
        _check_count(send, v2=True)
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


def _check_count(send: SendRequest, *, v2: bool) -> None:
    count = send.recipients
    if count == 0:
        raise (
            _v2_bad("Missing required field Destination.")
            if v2
            else ApiError(400, "InvalidParameterValue", "Missing final '@domain'")
        )
    if count > MAX_RECIPIENTS:
        raise (
            _v2_bad(TOO_MANY_RECIPIENTS)
            if v2
            else ApiError(400, "InvalidParameterValue", TOO_MANY_RECIPIENTS)
        )


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


# --- SES v1 (Query API, XML) ----------------------------------------------------------------

V1_SEND_ACTIONS = frozenset({"SendEmail", "SendRawEmail", "SendTemplatedEmail"})
V1_ACTIONS = V1_SEND_ACTIONS | {"GetSendQuota"}


def members(params: Mapping[str, str], prefix: str) -> tuple[str, ...]:
    """The values of a Query-API list: ``prefix.member.1``, ``prefix.member.2``, ..."""
    found = []
    i = 1
    while (value := params.get(f"{prefix}.member.{i}")) is not None:
        found.append(value)
        i += 1
    return tuple(found)


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise ApiError(400, "MissingParameter", f"The request must contain the parameter {name}")
    return value


def parse_v1_send(params: Mapping[str, str]) -> SendRequest:
    """``SendEmail`` / ``SendRawEmail`` / ``SendTemplatedEmail`` form -> the send."""
    action = params.get("Action", "")
    send = SendRequest(
        api="sesv1",
        to=members(params, "Destination.ToAddresses"),
        cc=members(params, "Destination.CcAddresses"),
        bcc=members(params, "Destination.BccAddresses"),
        reply_to=members(params, "ReplyToAddresses"),
        sender=params.get("Source", ""),
        subject="",
        params=params,
    )
    if action == "SendEmail":
        send.sender = _required(params, "Source")
        send.subject = _required(params, "Message.Subject.Data")
        send.text = params.get("Message.Body.Text.Data")
        send.html = params.get("Message.Body.Html.Data")
    elif action == "SendRawEmail":
        try:
            send.raw = base64.b64decode(_required(params, "RawMessage.Data"), validate=True)
        except binascii.Error:
            raise ApiError(
                400, "InvalidParameterValue", "Invalid base64 in RawMessage.Data"
            ) from None
        send.to = members(params, "Destinations") or send.to
        describe_raw(send)
    else:  # SendTemplatedEmail
        send.sender = _required(params, "Source")
        send.template = _required(params, "Template")
        send.template_data = _required(params, "TemplateData")
        send.subject = f"[template {send.template}]"
    _check_count(send, v2=False)
    return send


def _xml(action: str, result: str, request_id: str) -> Reply:
    body = (
        f'<{action}Response xmlns="{XMLNS}">\n'
        f"  <{action}Result>{result}</{action}Result>\n"
        f"  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n"
        f"  </ResponseMetadata>\n</{action}Response>\n"
    )
    return Reply(200, body.encode(), "text/xml", {"x-amzn-RequestId": request_id})


def v1_sent(action: str, message_id: str, request_id: str) -> Reply:
    return _xml(action, f"\n    <MessageId>{message_id}</MessageId>\n  ", request_id)


def v1_bulk_sent(message_ids: list[str], request_id: str) -> Reply:
    """``SendBulkTemplatedEmail``'s answer: one ``Success`` status per destination."""
    members = "".join(
        f"\n      <member>\n        <Status>Success</Status>\n"
        f"        <MessageId>{m}</MessageId>\n      </member>"
        for m in message_ids
    )
    return _xml("SendBulkTemplatedEmail", f"\n    <Status>{members}\n    </Status>\n  ", request_id)


def v1_quota(quota: Quota, request_id: str) -> Reply:
    return _xml(
        "GetSendQuota",
        f"\n    <SentLast24Hours>{quota.sent_24h:.1f}</SentLast24Hours>"
        f"\n    <Max24HourSend>{quota.max_24h:.1f}</Max24HourSend>"
        f"\n    <MaxSendRate>{quota.max_send_rate:.1f}</MaxSendRate>\n  ",
        request_id,
    )


def v1_error(error: ApiError, request_id: str) -> Reply:
    kind = "Receiver" if error.status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{XMLNS}">\n  <Error>\n    <Type>{kind}</Type>\n'
        f"    <Code>{escape(error.code)}</Code>\n    <Message>{escape(error.message)}</Message>\n"
        f"  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n"
    )
    return Reply(error.status, body.encode(), "text/xml", {"x-amzn-RequestId": request_id})


# --- what both report -----------------------------------------------------------------------


def throttled(v2: bool) -> ApiError:
    if v2:
        return ApiError(429, "TooManyRequestsException", RATE_EXCEEDED)
    return ApiError(400, "Throttling", RATE_EXCEEDED)


def daily_exceeded(v2: bool) -> ApiError:
    if v2:
        return ApiError(429, "TooManyRequestsException", DAILY_EXCEEDED)
    return ApiError(400, "Throttling", DAILY_EXCEEDED)


def injected(status: int) -> ApiError:
    if status == 503:
        return ApiError(503, "ServiceUnavailable", "Service Unavailable")
    return ApiError(
        500,
        "InternalFailure",
        "The request processing has failed because of an unknown error, exception or failure.",
    )
