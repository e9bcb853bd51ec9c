"""Amazon SES on the wire, server side, what v1 and v2 share: the SigV4 check, body limits,
ids, the recipient count and the errors both report (in each API's own code).

v1 and v2 are served by the same front end, so the signature errors share their codes; only
the envelope differs, and :mod:`._ses_v1` / :mod:`._ses_v2` draw it.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Mapping

from bulkmail.servers._wire import ApiError, SendRequest
from bulkmail.signing.sigv4 import (
    AwsCredentials,
    amz_date,
    parse_authorization,
    verify_request,
)

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


def check_count(send: SendRequest, *, v2: bool) -> None:
    """Refuse a send with no recipient or more than :data:`MAX_RECIPIENTS` (v2 or v1 codes)."""
    count = send.recipients
    if count == 0:
        raise (
            ApiError(400, "BadRequestException", "Missing required field Destination.")
            if v2
            else ApiError(400, "InvalidParameterValue", "Missing final '@domain'")
        )
    if count > MAX_RECIPIENTS:
        raise (
            ApiError(400, "BadRequestException", TOO_MANY_RECIPIENTS)
            if v2
            else ApiError(400, "InvalidParameterValue", TOO_MANY_RECIPIENTS)
        )


# --- the errors both report, each in its API's code -------------------------------------


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
