"""Amazon SES on the wire, server side: SigV4 checks, SESv2 (JSON) and v1 (Query/XML).

Error codes and messages are the real service's (see the sandbox module's docstring for
where each was found). v1 and v2 are served by the same front end, so the signature errors
share their codes; only the envelope differs (v1: XML ``ErrorResponse``; v2: JSON
``{"message": ...}`` with the code in ``x-amzn-ErrorType``).

The one name the sandbox and the proxy use for all of it (``from bulkmail.servers import
_ses as ses``); the code lives in :mod:`._ses_common` (what both share: the SigV4 check,
body limits, ids, the recipient count, throttling and injected errors), :mod:`._ses_v2`
(REST/JSON) and :mod:`._ses_v1` (Query API/XML).
"""

from __future__ import annotations

from bulkmail.servers._ses_common import (
    DAILY_EXCEEDED,
    INVALID_TOKEN,
    MAX_RECIPIENTS,
    MAX_SKEW,
    RATE_EXCEEDED,
    SIGNATURE_MISMATCH,
    TOO_MANY_RECIPIENTS,
    V1_BODY_LIMIT,
    V2_BODY_LIMIT,
    body_limit,
    check_count,
    check_sigv4,
    daily_exceeded,
    injected,
    new_message_id,
    new_request_id,
    throttled,
    too_large,
)
from bulkmail.servers._ses_v1 import (
    V1_ACTIONS,
    V1_SEND_ACTIONS,
    XMLNS,
    members,
    parse_v1_send,
    v1_bulk_sent,
    v1_error,
    v1_quota,
    v1_sent,
)
from bulkmail.servers._ses_v2 import (
    V2_ACCOUNT,
    V2_BULK,
    V2_SEND,
    bulk_entry_error,
    json_object,
    parse_v2_bulk,
    parse_v2_send,
    v2_account,
    v2_bulk_sent,
    v2_error,
    v2_sent,
)

__all__ = [
    "DAILY_EXCEEDED",
    "INVALID_TOKEN",
    "MAX_RECIPIENTS",
    "MAX_SKEW",
    "RATE_EXCEEDED",
    "SIGNATURE_MISMATCH",
    "TOO_MANY_RECIPIENTS",
    "V1_ACTIONS",
    "V1_BODY_LIMIT",
    "V1_SEND_ACTIONS",
    "V2_ACCOUNT",
    "V2_BODY_LIMIT",
    "V2_BULK",
    "V2_SEND",
    "XMLNS",
    "body_limit",
    "bulk_entry_error",
    "check_count",
    "check_sigv4",
    "daily_exceeded",
    "injected",
    "json_object",
    "members",
    "new_message_id",
    "new_request_id",
    "parse_v1_send",
    "parse_v2_bulk",
    "parse_v2_send",
    "throttled",
    "too_large",
    "v1_bulk_sent",
    "v1_error",
    "v1_quota",
    "v1_sent",
    "v2_account",
    "v2_bulk_sent",
    "v2_error",
    "v2_sent",
]
