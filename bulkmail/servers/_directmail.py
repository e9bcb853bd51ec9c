"""Alibaba Cloud DirectMail on the wire, server side: RPC signature 1.0 checks,
``SingleSendMail`` and ``BatchSendMail``, with the real JSON answers.

``BatchSendMail`` (alibabacloud.com/help/en/direct-mail/api-dm-2015-11-23-batchsendmail)
sends a template stored in the console to a recipient list uploaded there; it requires
``AccountName``, ``AddressType`` (0 or 1), ``TemplateName`` and ``ReceiversName`` and takes
``TagName`` and ``ClickTrace`` (plus ``ReplyAddress``, ``ReplyAddressAlias`` and the
unsubscribe settings, which are recorded as given). The sandbox has no console, so any
template and list name is taken as existing; the send is recorded as api
``directmail-batch`` with no To addresses (the list lives in the console) and answered
``{EnvId, RequestId}`` like ``SingleSendMail``."""

from __future__ import annotations

import calendar
import hmac
import itertools
import re
import time
import uuid
from collections.abc import Mapping

import orjson

from bulkmail.servers._wire import ApiError, Reply, SendRequest
from bulkmail.signing.aliyun import AlibabaCredentials, rpc_signature, string_to_sign

HOST_ID = "dm.aliyuncs.com"
NONCE_TTL = 900.0  # the service refuses a nonce seen in the last 15 minutes
MAX_SKEW = 900.0  # and a Timestamp more than 15 minutes off
MAX_NONCES = 1_000_000  # bounded memory: the oldest are forgotten first
MAX_RECIPIENTS = 100  # SingleSendMail: up to 100 addresses in ToAddress

_COMMON = (
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Version",
    "Action",
)
_SEND_REQUIRED = ("AccountName", "AddressType", "ReplyToAddress", "ToAddress", "Subject")
_BATCH_REQUIRED = ("AccountName", "AddressType", "TemplateName", "ReceiversName")
_ACTIONS = frozenset({"SingleSendMail", "BatchSendMail"})
_TAG_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")

THROTTLED = ApiError(400, "Throttling.User", "Request was denied due to user flow control.")
# Not found in public material: the sandbox's own code for a spent daily quota (see report).
DAILY_EXCEEDED = ApiError(400, "Throttling.DailyQuota", "Daily message quota exceeded.")

_env_ids = itertools.count(600000000000000 + int(time.time()) % 100000 * 1000)


def looks_like(params: Mapping[str, str]) -> bool:
    """Whether a ``POST /`` without a SigV4 header is meant for DirectMail."""
    return (
        "SignatureVersion" in params
        or "SignatureNonce" in params
        or (params.get("Action") in _ACTIONS)
    )


def _missing(name: str) -> ApiError:
    return ApiError(400, f"Missing{name}", f"{name} is mandatory for this action.")


def _timestamp_epoch(value: str) -> float | None:
    """``2016-02-23T12:46:24Z`` -> epoch seconds (None if not that shape)."""
    try:
        return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


class NonceBook:
    """Nonces seen in the last 15 minutes, oldest first, never more than ``limit``."""

    __slots__ = ("_seen", "_ttl", "_limit")

    def __init__(self, ttl: float = NONCE_TTL, limit: int = MAX_NONCES) -> None:
        self._seen: dict[str, float] = {}
        self._ttl = ttl
        self._limit = limit

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, nonce: str, now: float) -> bool:
        """Record ``nonce``; False if it was already used within the TTL."""
        seen = self._seen
        horizon = now - self._ttl
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > horizon and len(seen) < self._limit:
                break
            del seen[oldest]
        if nonce in seen:
            return False
        seen[nonce] = now
        return True


def check_signature(
    method: str,
    params: Mapping[str, str],
    credentials: AlibabaCredentials,
    nonces: NonceBook,
    now: float,
) -> None:
    """Raise the real DirectMail error for a request the service would refuse."""
    for name in _COMMON:
        if not params.get(name):
            raise _missing(name)
    if params["AccessKeyId"] != credentials.access_key_id:
        raise ApiError(400, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    expected = rpc_signature(method, params, credentials.access_key_secret)
    if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
        # The real service echoes its string-to-sign; bulkmail must never log or store it.
        raise ApiError(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. "
            "server string to sign is:" + string_to_sign(method, params),
        )
    when = _timestamp_epoch(params["Timestamp"])
    if when is None:
        raise ApiError(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    if abs(when - now) > MAX_SKEW:
        raise ApiError(
            400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
        )
    if not nonces.use(params["SignatureNonce"], now):
        raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")


def _invalid(name: str) -> ApiError:
    return ApiError(400, "InvalidParameter", f"The specified parameter {name} is not valid.")


def parse_send(params: Mapping[str, str]) -> SendRequest:
    """``SingleSendMail`` or ``BatchSendMail`` -> the send, or the real error."""
    action = params.get("Action")
    if action == "BatchSendMail":
        return parse_batch(params)
    if action != "SingleSendMail":
        raise ApiError(
            404,
            "InvalidApi.NotFound",
            "Specified api is not found, please check your url and method.",
        )
    for name in _SEND_REQUIRED:
        if not params.get(name):
            raise _missing(name)
    to = tuple(a.strip() for a in params["ToAddress"].split(",") if a.strip())
    if not to or len(to) > MAX_RECIPIENTS or not all("@" in a for a in to):
        raise ApiError(400, "InvalidToAddress", "The specified toAddress is wrongly formed.")
    headers: tuple[tuple[str, str], ...] = ()
    if params.get("Headers"):
        try:
            doc = orjson.loads(params["Headers"])
            if not isinstance(doc, dict):
                raise ValueError
        except (orjson.JSONDecodeError, ValueError):
            raise ApiError(
                400, "InvalidParameter", "The specified parameter Headers is not valid."
            ) from None
        headers = tuple((str(k), str(v)) for k, v in doc.items())
    account = params["AccountName"]
    alias = params.get("FromAlias")
    return SendRequest(
        api="directmail",
        to=to,
        sender=f"{alias} <{account}>" if alias else account,
        subject=params["Subject"],
        text=params.get("TextBody"),
        html=params.get("HtmlBody"),
        headers=headers,
        params=params,
    )


def parse_batch(params: Mapping[str, str]) -> SendRequest:
    """``BatchSendMail`` -> the send (api ``directmail-batch``, no To), or the real error.

    The sandbox cannot know which addresses a console list holds, so the send counts no
    recipients against the quotas; it is one accepted call in ``stats``.
    """
    for name in _BATCH_REQUIRED:
        if not params.get(name):
            raise _missing(name)
    if params["AddressType"] not in ("0", "1"):
        raise _invalid("AddressType")
    trace = params.get("ClickTrace")
    if trace is not None and trace not in ("0", "1"):
        raise _invalid("ClickTrace")
    tag = params.get("TagName")
    if tag is not None and not _TAG_NAME.fullmatch(tag):
        raise _invalid("TagName")
    if trace == "1" and not tag:
        raise _invalid("TagName")
    template = params["TemplateName"]
    return SendRequest(
        api="directmail-batch",
        to=(),
        sender=params["AccountName"],
        subject=f"BatchSendMail {template} to {params['ReceiversName']}",
        template=template,
        template_data=orjson.dumps({"ReceiversName": params["ReceiversName"]}).decode(),
        params=params,
    )


def new_env_id() -> str:
    return str(next(_env_ids))


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def sent(env_id: str, request_id: str) -> Reply:
    return Reply(
        200,
        orjson.dumps({"EnvId": env_id, "RequestId": request_id}),
        "application/json;charset=utf-8",
    )


def error(err: ApiError, request_id: str) -> Reply:
    doc = {
        "RequestId": request_id,
        "HostId": HOST_ID,
        "Code": err.code,
        "Message": err.message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Dm"
        f"&requestId={request_id}",
    }
    return Reply(err.status, orjson.dumps(doc), "application/json;charset=utf-8")


def injected(status: int) -> ApiError:
    if status == 503:
        return ApiError(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        )
    return ApiError(
        500,
        "InternalError",
        "The request processing has failed due to some unknown error, exception or failure.",
    )
