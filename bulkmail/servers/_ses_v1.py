"""SES v1 on the wire, server side: the Query API forms (``SendEmail``, ``SendRawEmail``,
``SendTemplatedEmail``, ``GetSendQuota``) parsed into sends, and the XML answers and
``ErrorResponse``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from xml.sax.saxutils import escape

from bulkmail.servers._ses_common import check_count
from bulkmail.servers._wire import ApiError, Quota, Reply, SendRequest, describe_raw

XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
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
    check_count(send, v2=False)
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
